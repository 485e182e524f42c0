//! The ServiceAccount issuer's OpenID Connect discovery documents, as kube-apiserver
//! serves them (`pkg/serviceaccount/openidmetadata.go`, `pkg/routes/openidmetadata.go`):
//! `/.well-known/openid-configuration` and the JWKS at `/openid/v1/jwks`, both rendered
//! once and served with `Cache-Control: public, max-age=3600`.

use std::sync::Arc;

use serde::Serialize;

use super::signing_key::{Jwk, VerificationKeys};

/// Path of the discovery document.
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";
/// Path of the key set.
pub const JWKS_PATH: &str = "/openid/v1/jwks";
/// Content type of the discovery document.
pub const CONFIGURATION_CONTENT_TYPE: &str = "application/json";
/// Content type of the key set (RFC 7517 §8.5.1).
pub const JWKS_CONTENT_TYPE: &str = "application/jwk-set+json";
/// `Cache-Control` of both documents (kube's static key getter's 3600 s).
pub const CACHE_CONTROL: &str = "public, max-age=3600";

/// Why the discovery documents cannot be served (kube's messages; kube-apiserver logs
/// them and serves no discovery endpoints).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// No issuer.
    #[error("empty issuer URL")]
    EmptyIssuer,
    /// The issuer is not an https URL.
    #[error("issuer URL must use https scheme, got: {0}")]
    IssuerNotHttps(String),
    /// The issuer has a query.
    #[error("issuer URL may not include a query, got: {0}")]
    IssuerQuery(String),
    /// The issuer has a fragment.
    #[error("issuer URL may not include a fragment, got: {0}")]
    IssuerFragment(String),
    /// Neither a JWKS URI nor an external address.
    #[error("either the JWKS URI or the default external address, or both, must be set")]
    NoJwksUri,
    /// The JWKS URI is not an https URL.
    #[error("jwksURI requires https scheme, parsed as: {0}")]
    JwksUriNotHttps(String),
    /// The external address is not a bare host[:port].
    #[error(
        "attempted to build jwks_uri from external address {0}, but could not construct a valid URL"
    )]
    ExternalAddress(String),
}

/// The discovery document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenIdConfiguration {
    /// The issuer (`--service-account-issuer`).
    pub issuer: String,
    /// Where the key set is.
    pub jwks_uri: String,
    /// Always `["id_token"]`.
    pub response_types_supported: Vec<String>,
    /// Always `["public"]`.
    pub subject_types_supported: Vec<String>,
    /// The keys' algorithms, sorted: `["ES256"]`.
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// A JSON Web Key Set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JsonWebKeySet {
    /// The public keys.
    pub keys: Vec<Jwk>,
}

impl JsonWebKeySet {
    /// The set of `keys`, the signing key's first.
    pub fn new(keys: &VerificationKeys) -> Self {
        Self {
            keys: keys.keys().iter().map(|k| k.jwk()).collect(),
        }
    }
}

/// Both documents, rendered. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OpenIdMetadata {
    configuration: Arc<str>,
    keyset: Arc<str>,
}

impl OpenIdMetadata {
    /// The documents for `issuer` and `keys`. The JWKS URI is `jwks_uri` if given, else
    /// `https://<external_address>/openid/v1/jwks` (`--service-account-jwks-uri`, else the
    /// API server's external host:port).
    pub fn new(
        issuer: &str,
        jwks_uri: Option<&str>,
        external_address: Option<&str>,
        keys: &VerificationKeys,
    ) -> Result<Self, DiscoveryError> {
        validate_issuer(issuer)?;
        let jwks_uri = match (jwks_uri.filter(|u| !u.is_empty()), external_address) {
            (Some(uri), _) => {
                if !has_scheme(uri, "https") {
                    return Err(DiscoveryError::JwksUriNotHttps(uri.to_owned()));
                }
                uri.to_owned()
            }
            (None, Some(address)) if !address.is_empty() => {
                if address.contains(['/', '?', '#', '@']) || address.contains("://") {
                    return Err(DiscoveryError::ExternalAddress(address.to_owned()));
                }
                format!("https://{address}{JWKS_PATH}")
            }
            _ => return Err(DiscoveryError::NoJwksUri),
        };
        // Never empty: the signing key's public half is always the first.
        let keyset = JsonWebKeySet::new(keys);
        let mut algorithms: Vec<String> = keyset.keys.iter().map(|k| k.alg.to_owned()).collect();
        algorithms.sort();
        algorithms.dedup();
        let configuration = OpenIdConfiguration {
            issuer: issuer.to_owned(),
            jwks_uri,
            response_types_supported: vec!["id_token".to_owned()],
            subject_types_supported: vec!["public".to_owned()],
            id_token_signing_alg_values_supported: algorithms,
        };
        Ok(Self {
            configuration: to_json(&configuration).into(),
            keyset: to_json(&keyset).into(),
        })
    }

    /// The body of `/.well-known/openid-configuration`.
    pub fn configuration_json(&self) -> &str {
        &self.configuration
    }

    /// The body of `/openid/v1/jwks`.
    pub fn keyset_json(&self) -> &str {
        &self.keyset
    }
}

/// kube's checks of the issuer URL for discovery (OIDC Discovery §3).
fn validate_issuer(issuer: &str) -> Result<(), DiscoveryError> {
    if issuer.is_empty() {
        return Err(DiscoveryError::EmptyIssuer);
    }
    if !has_scheme(issuer, "https") {
        return Err(DiscoveryError::IssuerNotHttps(issuer.to_owned()));
    }
    if issuer.contains('?') {
        return Err(DiscoveryError::IssuerQuery(issuer.to_owned()));
    }
    if issuer.contains('#') {
        return Err(DiscoveryError::IssuerFragment(issuer.to_owned()));
    }
    Ok(())
}

/// True if `url` starts with `<scheme>://` (scheme compared case-insensitively).
fn has_scheme(url: &str, scheme: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(s, _)| s.eq_ignore_ascii_case(scheme))
}

/// Serializes plain data (strings and lists, which cannot fail).
fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::signing_key::SigningKey;
    use serde_json::json;

    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

    fn keys() -> (SigningKey, VerificationKeys) {
        let key = SigningKey::generate().expect("generate");
        let old = SigningKey::generate().expect("generate");
        let keys = VerificationKeys::new(&key, [old.public_key().clone()]);
        (key, keys)
    }

    #[test]
    fn configuration_as_kube_serves_it() {
        let (_, keys) = keys();
        let metadata =
            OpenIdMetadata::new(ISSUER, None, Some("10.0.0.1:6443"), &keys).expect("metadata");
        assert_eq!(
            metadata.configuration_json(),
            concat!(
                r#"{"issuer":"https://kubernetes.default.svc.cluster.local","#,
                r#""jwks_uri":"https://10.0.0.1:6443/openid/v1/jwks","#,
                r#""response_types_supported":["id_token"],"subject_types_supported":["public"],"#,
                r#""id_token_signing_alg_values_supported":["ES256"]}"#
            )
        );
        let explicit = OpenIdMetadata::new(
            ISSUER,
            Some("https://example.com/keys"),
            Some("10.0.0.1:6443"),
            &keys,
        )
        .expect("metadata");
        let config: serde_json::Value =
            serde_json::from_str(explicit.configuration_json()).expect("json");
        assert_eq!(config["jwks_uri"], "https://example.com/keys");
    }

    #[test]
    fn keyset_lists_every_key_with_the_token_kid() {
        let (key, keys) = keys();
        let metadata = OpenIdMetadata::new(ISSUER, None, Some("api:6443"), &keys).expect("ok");
        let set: serde_json::Value = serde_json::from_str(metadata.keyset_json()).expect("json");
        let listed = set["keys"].as_array().expect("keys");
        assert_eq!(listed.len(), 2);
        let token = crate::authn::jwt::encode(&key, &json!({})).expect("token");
        let header: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                token.split('.').next().expect("header"),
            )
            .expect("base64"),
        )
        .expect("json");
        assert_eq!(listed[0]["kid"], header["kid"]);
        assert_eq!(listed[1]["kid"], keys.keys()[1].key_id());
        let first = listed[0].as_object().expect("object");
        let fields: Vec<&str> = first.keys().map(String::as_str).collect();
        assert_eq!(fields.len(), 7);
        assert_eq!(
            metadata.keyset_json().find("\"use\""),
            Some(10),
            "go-jose's field order: use first"
        );
    }

    #[test]
    fn bad_issuers_and_addresses_are_refused() {
        let (_, keys) = keys();
        let cases = [
            ("", Some("a:1"), DiscoveryError::EmptyIssuer),
            (
                "http://x",
                Some("a:1"),
                DiscoveryError::IssuerNotHttps("http://x".into()),
            ),
            (
                "https://x?a=b",
                Some("a:1"),
                DiscoveryError::IssuerQuery("https://x?a=b".into()),
            ),
            (
                "https://x#f",
                Some("a:1"),
                DiscoveryError::IssuerFragment("https://x#f".into()),
            ),
            (ISSUER, None, DiscoveryError::NoJwksUri),
            (
                ISSUER,
                Some("https://a:1"),
                DiscoveryError::ExternalAddress("https://a:1".into()),
            ),
        ];
        for (issuer, address, error) in cases {
            assert_eq!(
                OpenIdMetadata::new(issuer, None, address, &keys).err(),
                Some(error)
            );
        }
        assert_eq!(
            OpenIdMetadata::new(ISSUER, Some("http://x/keys"), None, &keys).err(),
            Some(DiscoveryError::JwksUriNotHttps("http://x/keys".into()))
        );
        assert_eq!(
            DiscoveryError::IssuerNotHttps("http://x".into()).to_string(),
            "issuer URL must use https scheme, got: http://x"
        );
    }
}
