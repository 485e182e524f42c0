//! Encryption at rest, as kube-apiserver's `--encryption-provider-config`: an
//! `EncryptionConfiguration` (apiserver.config.k8s.io/v1) names resources and, for each, an
//! ordered list of providers. The first writes; every one of them reads. Providers:
//! `secretbox` (XSalsa20-Poly1305, values stored as `k8s:enc:secretbox:v1:<key>:` + nonce +
//! sealed box, byte for byte as kube stores them) and `identity` (plain, so data written
//! before encryption was turned on stays readable).

use std::path::Path;

use base64::Engine as _;
use crypto_secretbox::{
    KeyInit, XSalsa20Poly1305,
    aead::{Aead, AeadCore, OsRng, generic_array::GenericArray},
};
use serde::Deserialize;
use thiserror::Error;

/// Prefix of every value a secretbox provider wrote.
const SECRETBOX_PREFIX: &str = "k8s:enc:secretbox:v1:";
/// Prefix of any encrypted value (of a provider this server may not have).
const ENCRYPTED_PREFIX: &str = "k8s:enc:";
/// Nonce size of XSalsa20.
const NONCE_BYTES: usize = 24;

/// Why an encryption configuration or a stored value cannot be used.
#[derive(Debug, Error)]
pub enum EncryptionError {
    /// The file cannot be read or parsed.
    #[error("the encryption configuration {path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A stored value could not be decrypted.
    #[error("{0}")]
    Decrypt(String),
    /// Encryption failed.
    #[error("encrypting: {0}")]
    Encrypt(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    kind: String,
    api_version: String,
    resources: Vec<ResourceConfig>,
}

#[derive(Deserialize)]
struct ResourceConfig {
    resources: Vec<String>,
    providers: Vec<ProviderConfig>,
}

#[derive(Deserialize)]
struct ProviderConfig {
    secretbox: Option<KeysConfig>,
    identity: Option<serde_json::Value>,
    aescbc: Option<KeysConfig>,
    aesgcm: Option<KeysConfig>,
    kms: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct KeysConfig {
    keys: Vec<KeyConfig>,
}

#[derive(Deserialize)]
struct KeyConfig {
    name: String,
    secret: String,
}

/// One provider.
enum Provider {
    Secretbox(Vec<(String, XSalsa20Poly1305)>),
    Identity,
}

/// The providers of some resources.
struct Rule {
    /// `secrets` (core) or `deployments.apps`; `*.*` or `*.<group>` for wildcards.
    resources: Vec<String>,
    providers: Vec<Provider>,
}

/// What is encrypted, and how.
pub struct EncryptionConfig {
    rules: Vec<Rule>,
}

impl std::fmt::Debug for EncryptionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionConfig")
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// Where skiff-control keeps the cluster CA (certificate and private key): sealed as
/// secrets are.
const PKI_PREFIX: &str = "/skiff/pki/";

/// `(group, resource)` of a `/registry/<group>/<resource>/…` key (the cluster CA counts as
/// a secret).
fn resource_of(key: &str) -> Option<(&str, &str)> {
    if key.starts_with(PKI_PREFIX) {
        return Some(("", "secrets"));
    }
    let mut parts = key.strip_prefix("/registry/")?.split('/');
    let group = parts.next()?;
    let resource = parts.next()?;
    Some((if group == "core" { "" } else { group }, resource))
}

impl Rule {
    fn matches(&self, group: &str, resource: &str) -> bool {
        self.resources.iter().any(|entry| {
            let (name, entry_group) = entry.split_once('.').unwrap_or((entry, ""));
            (name == "*" || name == resource) && (entry_group == "*" || entry_group == group)
        })
    }
}

impl EncryptionConfig {
    /// Parse kube's EncryptionConfiguration YAML; every problem is an error (a server
    /// must not start writing secrets in the clear by mistake).
    pub fn parse(path: &str, text: &str) -> Result<Self, EncryptionError> {
        let bad = |reason: String| EncryptionError::Config {
            path: path.to_owned(),
            reason,
        };
        let file: ConfigFile = serde_saphyr::from_str(text).map_err(|e| bad(e.to_string()))?;
        if file.kind != "EncryptionConfiguration"
            || file.api_version != "apiserver.config.k8s.io/v1"
        {
            return Err(bad(format!(
                "expected apiserver.config.k8s.io/v1 EncryptionConfiguration, got {} {}",
                file.api_version, file.kind
            )));
        }
        let mut rules = Vec::new();
        for (i, resource) in file.resources.into_iter().enumerate() {
            let mut providers = Vec::new();
            for provider in resource.providers {
                if provider.aescbc.is_some() || provider.aesgcm.is_some() || provider.kms.is_some()
                {
                    return Err(bad(format!(
                        "resources[{i}]: only the secretbox and identity providers are supported"
                    )));
                }
                match (provider.secretbox, provider.identity) {
                    (Some(keys), None) => {
                        let mut ciphers = Vec::new();
                        for key in keys.keys {
                            let secret = base64::engine::general_purpose::STANDARD
                                .decode(key.secret.trim())
                                .map_err(|e| bad(format!("key {:?}: {e}", key.name)))?;
                            if secret.len() != 32 {
                                return Err(bad(format!(
                                    "key {:?}: a secretbox key is 32 bytes, got {}",
                                    key.name,
                                    secret.len()
                                )));
                            }
                            let cipher = XSalsa20Poly1305::new(GenericArray::from_slice(&secret));
                            ciphers.push((key.name, cipher));
                        }
                        if ciphers.is_empty() {
                            return Err(bad(format!("resources[{i}]: secretbox without keys")));
                        }
                        providers.push(Provider::Secretbox(ciphers));
                    }
                    (None, Some(_)) => providers.push(Provider::Identity),
                    _ => {
                        return Err(bad(format!(
                            "resources[{i}]: each provider must be exactly one of secretbox, identity"
                        )));
                    }
                }
            }
            if providers.is_empty() {
                return Err(bad(format!("resources[{i}]: no providers")));
            }
            rules.push(Rule {
                resources: resource.resources,
                providers,
            });
        }
        Ok(Self { rules })
    }

    /// Read and parse a configuration file.
    pub fn load(path: &Path) -> Result<Self, EncryptionError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| EncryptionError::Config {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(&shown, &text)
    }

    fn rule(&self, key: &str) -> Option<&Rule> {
        let (group, resource) = resource_of(key)?;
        self.rules.iter().find(|r| r.matches(group, resource))
    }

    /// The bytes to store for `plain` at `key`.
    pub fn encrypt(&self, key: &str, plain: Vec<u8>) -> Result<Vec<u8>, EncryptionError> {
        let Some(rule) = self.rule(key) else {
            return Ok(plain);
        };
        match rule.providers.first() {
            Some(Provider::Secretbox(keys)) => {
                let Some((name, cipher)) = keys.first() else {
                    return Ok(plain);
                };
                let nonce = XSalsa20Poly1305::generate_nonce(&mut OsRng);
                let sealed = cipher
                    .encrypt(&nonce, plain.as_slice())
                    .map_err(|e| EncryptionError::Encrypt(e.to_string()))?;
                let mut out = Vec::with_capacity(
                    SECRETBOX_PREFIX.len() + name.len() + 1 + NONCE_BYTES + sealed.len(),
                );
                out.extend_from_slice(SECRETBOX_PREFIX.as_bytes());
                out.extend_from_slice(name.as_bytes());
                out.push(b':');
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
                Ok(out)
            }
            Some(Provider::Identity) | None => Ok(plain),
        }
    }

    /// The plain bytes of `stored` at `key`.
    pub fn decrypt<'a>(
        &self,
        key: &str,
        stored: &'a [u8],
    ) -> Result<std::borrow::Cow<'a, [u8]>, EncryptionError> {
        let Some(rule) = self.rule(key) else {
            return Ok(std::borrow::Cow::Borrowed(stored));
        };
        if let Some(rest) = stored.strip_prefix(SECRETBOX_PREFIX.as_bytes()) {
            let colon = rest.iter().position(|b| *b == b':').ok_or_else(|| {
                EncryptionError::Decrypt(format!("{key}: malformed secretbox value"))
            })?;
            let name = String::from_utf8_lossy(&rest[..colon]);
            let body = &rest[colon + 1..];
            if body.len() < NONCE_BYTES {
                return Err(EncryptionError::Decrypt(format!(
                    "{key}: truncated secretbox value"
                )));
            }
            let (nonce, sealed) = body.split_at(NONCE_BYTES);
            let cipher = rule
                .providers
                .iter()
                .filter_map(|p| match p {
                    Provider::Secretbox(keys) => Some(keys),
                    Provider::Identity => None,
                })
                .flatten()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| c)
                .ok_or_else(|| {
                    EncryptionError::Decrypt(format!("{key}: no secretbox key named {name:?}"))
                })?;
            return cipher
                .decrypt(GenericArray::from_slice(nonce), sealed)
                .map(std::borrow::Cow::Owned)
                .map_err(|_| {
                    EncryptionError::Decrypt(format!("{key}: secretbox authentication failed"))
                });
        }
        if stored.starts_with(ENCRYPTED_PREFIX.as_bytes()) {
            return Err(EncryptionError::Decrypt(format!(
                "{key}: encrypted by a provider this server does not have"
            )));
        }
        if rule
            .providers
            .iter()
            .any(|p| matches!(p, Provider::Identity))
        {
            Ok(std::borrow::Cow::Borrowed(stored))
        } else {
            Err(EncryptionError::Decrypt(format!(
                "{key}: stored unencrypted, and no identity provider reads it"
            )))
        }
    }
}

/// Keys per configured provider, for tests and for writing a configuration.
pub fn secretbox_config(key_name: &str, secret: &[u8; 32]) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: {key_name}\n        secret: {}\n  - identity: {{}}\n",
        base64::engine::general_purpose::STANDARD.encode(secret)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EncryptionConfig {
        EncryptionConfig::parse("test", &secretbox_config("key1", &[7u8; 32])).expect("parses")
    }

    #[test]
    fn secrets_are_sealed_in_kubes_format_and_opened_again() {
        let config = config();
        let key = "/registry/core/secrets/ns/s";
        let sealed = config
            .encrypt(key, b"{\"data\":1}".to_vec())
            .expect("sealed");
        assert!(sealed.starts_with(b"k8s:enc:secretbox:v1:key1:"));
        assert!(
            !sealed.windows(8).any(|w| w == b"\"data\":1"),
            "no plaintext left"
        );
        assert_eq!(
            config.decrypt(key, &sealed).expect("opened").as_ref(),
            b"{\"data\":1}"
        );
        // Tampering is detected.
        let mut tampered = sealed.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert!(config.decrypt(key, &tampered).is_err());
        // Plain values written before encryption stay readable through identity.
        assert_eq!(
            config.decrypt(key, b"{}").expect("identity").as_ref(),
            b"{}"
        );
        // The cluster CA's key is sealed like a secret.
        let ca = config
            .encrypt("/skiff/pki/ca", b"{}".to_vec())
            .expect("sealed");
        assert!(ca.starts_with(b"k8s:enc:secretbox:v1:"));
        // Other resources are untouched.
        let cm = "/registry/core/configmaps/ns/c";
        assert_eq!(config.encrypt(cm, b"{}".to_vec()).expect("plain"), b"{}");
    }

    #[test]
    fn bad_configurations_are_refused() {
        for text in [
            "apiVersion: v1\nkind: Pod\nresources: []\n",
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox: {keys: [{name: k, secret: c2hvcnQ=}]}\n",
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc: {keys: [{name: k, secret: c2hvcnQ=}]}\n",
        ] {
            assert!(EncryptionConfig::parse("t", text).is_err(), "{text}");
        }
    }
}
