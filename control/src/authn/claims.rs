//! The claims of a ServiceAccount token, as kube writes them (`pkg/serviceaccount/claims.go`):
//! the registered ones (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`) and the private
//! `kubernetes.io` claim naming the ServiceAccount and the object the token is bound to.
//!
//! Fields are declared in alphabetical order because kube's tokens are serialized from a
//! map, so Skiff's tokens read the same byte for byte (`{"aud":…,"exp":…,"iat":…,"iss":…,
//! "jti":…,"kubernetes.io":{"namespace":…,"node":…,"pod":…,"serviceaccount":…},"nbf":…,
//! "sub":…}`).

use serde::{Deserialize, Deserializer, Serialize};

/// The whole payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Audiences. Always written as an array; read from an array or a single string
    /// (RFC 7519 allows both).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub aud: Vec<String>,
    /// Expiry, Unix seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    pub exp: Option<i64>,
    /// Issued at, Unix seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    pub iat: Option<i64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub iss: String,
    /// Token id (a random UUID).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    /// kube's private claim.
    #[serde(
        default,
        rename = "kubernetes.io",
        skip_serializing_if = "Option::is_none"
    )]
    pub kubernetes: Option<KubernetesClaims>,
    /// Not before, Unix seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    pub nbf: Option<i64>,
    /// Subject: `system:serviceaccount:<namespace>:<name>`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sub: String,
}

impl Claims {
    /// Claims from a JWT payload, which must be a JSON object (serde would also take a
    /// positional array for a struct).
    pub fn from_json(payload: &[u8]) -> Result<Self, serde_json::Error> {
        use serde::de::Error;
        if payload.trim_ascii_start().first() != Some(&b'{') {
            return Err(serde_json::Error::custom(
                "the claims are not a JSON object",
            ));
        }
        serde_json::from_slice(payload)
    }
}

/// The `kubernetes.io` claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    /// Namespace of the ServiceAccount (and of a bound pod or secret).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The node: the bound object, or the node of a bound pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
    /// The bound pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    /// The bound secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    /// The ServiceAccount.
    #[serde(default)]
    pub serviceaccount: ObjectRef,
    /// After this (Unix seconds) a token that is still accepted is reported stale (kube's
    /// extended projected-token expiry).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    pub warnafter: Option<i64>,
}

/// An object by name and UID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// UID (may be empty: a pod's node that did not exist when the token was made).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl ObjectRef {
    /// An object reference.
    pub fn new(name: impl Into<String>, uid: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            uid: uid.into(),
        }
    }
}

/// `aud` as one string or an array of strings.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    })
}

/// A JWT NumericDate: seconds, integer or fractional (truncated, as go-jose reads it).
fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(seconds) = number.as_i64() {
        return Ok(Some(seconds));
    }
    let seconds = number
        .as_f64()
        .filter(|f| f.is_finite() && f.abs() < 1e15)
        .ok_or_else(|| D::Error::custom(format!("numeric date {number} out of range")))?;
    // In range (|f| < 1e15), so the truncating conversion is exact.
    Ok(Some(seconds.trunc() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serialized_as_kube_writes_them() {
        let claims = Claims {
            aud: vec!["https://kubernetes.default.svc.cluster.local".into()],
            exp: Some(1_700_003_600),
            iat: Some(1_700_000_000),
            iss: "https://kubernetes.default.svc.cluster.local".into(),
            jti: "5b4c0c38-0f4f-4f1a-9d36-2b8f1c2f4e1a".into(),
            kubernetes: Some(KubernetesClaims {
                namespace: "default".into(),
                node: Some(ObjectRef::new("n1", "nu")),
                pod: Some(ObjectRef::new("p", "pu")),
                secret: None,
                serviceaccount: ObjectRef::new("default", "su"),
                warnafter: None,
            }),
            nbf: Some(1_700_000_000),
            sub: "system:serviceaccount:default:default".into(),
        };
        let text = serde_json::to_string(&claims).expect("json");
        assert_eq!(
            text,
            concat!(
                r#"{"aud":["https://kubernetes.default.svc.cluster.local"],"exp":1700003600,"#,
                r#""iat":1700000000,"iss":"https://kubernetes.default.svc.cluster.local","#,
                r#""jti":"5b4c0c38-0f4f-4f1a-9d36-2b8f1c2f4e1a","kubernetes.io":{"namespace":"default","#,
                r#""node":{"name":"n1","uid":"nu"},"pod":{"name":"p","uid":"pu"},"#,
                r#""serviceaccount":{"name":"default","uid":"su"}},"nbf":1700000000,"#,
                r#""sub":"system:serviceaccount:default:default"}"#
            )
        );
        let back: Claims = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, claims);
    }

    #[test]
    fn lenient_where_rfc_7519_is() {
        let claims: Claims = serde_json::from_value(json!({
            "aud": "one", "exp": 1700000000.9, "nbf": null, "extra": {"ignored": true}
        }))
        .expect("parse");
        assert_eq!(claims.aud, ["one"]);
        assert_eq!(claims.exp, Some(1_700_000_000));
        assert_eq!(claims.nbf, None);
        assert!(claims.kubernetes.is_none());
    }

    #[test]
    fn malformed_claims_are_refused() {
        for bad in [
            json!({"exp": "tomorrow"}),
            json!({"exp": 1e300}),
            json!({"aud": 5}),
            json!({"aud": [1]}),
            json!({"kubernetes.io": "x"}),
            json!({"sub": 1}),
            json!([]),
            json!(["aud"]),
            json!("claims"),
        ] {
            let text = serde_json::to_vec(&bad).expect("json");
            assert!(Claims::from_json(&text).is_err(), "{bad}");
        }
        assert!(Claims::from_json(br#"{"sub":"a","sub":"b"}"#).is_err());
        assert!(Claims::from_json(br#"{"sub":"a"} x"#).is_err());
        assert!(Claims::from_json(br#"{"sub":"a"}"#).is_ok());
    }
}
