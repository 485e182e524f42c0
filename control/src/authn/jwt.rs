//! Compact JWS (RFC 7515) for ES256 only: what ServiceAccount tokens are.
//!
//! Signing writes the header kube's tokens carry (`{"alg":"ES256","kid":…}`). Verification
//! refuses every other algorithm (`none`, `HS256`…), unknown critical headers, anything
//! that is not three canonical unpadded base64url parts, and tokens over
//! [`MAX_TOKEN_BYTES`]; it tries the keys with the token's `kid`, or every key when the
//! token has none, as kube's `JWTTokenAuthenticator`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use super::signing_key::{ALGORITHM, KeyError, SigningKey, VerificationKeys};

/// The largest token accepted. kube's tokens are about 1 KiB; anything near this is not
/// one, and refusing it early bounds the work an unauthenticated request can cause.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token could not be made or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Larger than [`MAX_TOKEN_BYTES`].
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not three dot-separated parts.
    #[error("token is not a compact JWS")]
    Malformed,
    /// A part is not canonical unpadded base64url.
    #[error("invalid base64url in the token {part}")]
    Base64 {
        /// `header`, `payload` or `signature`.
        part: &'static str,
    },
    /// The header is not the JSON object expected.
    #[error("invalid token header: {detail}")]
    Header {
        /// What the JSON reader said.
        detail: String,
    },
    /// An algorithm other than ES256.
    #[error("unsupported signing algorithm {alg:?}: only ES256 is accepted")]
    UnsupportedAlgorithm {
        /// The header's `alg`.
        alg: String,
    },
    /// The header has a `crit` parameter (no extension is understood).
    #[error("unsupported critical header parameters")]
    CriticalHeader,
    /// No key has the token's `kid` (kube's wording).
    #[error("invalid signature, no keys found")]
    NoKeys,
    /// No candidate key verifies the signature.
    #[error("invalid signature")]
    BadSignature,
    /// The claims could not be serialized.
    #[error("failed to encode the token claims: {detail}")]
    Encode {
        /// What the JSON writer said.
        detail: String,
    },
    /// The key could not sign.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The JOSE header Skiff writes.
#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'a str,
    kid: &'a str,
}

/// The JOSE header as read (other parameters such as `typ` are ignored).
#[derive(Deserialize)]
struct HeaderIn {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// A token whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The payload bytes (JSON claims, not yet interpreted).
    pub payload: Vec<u8>,
    /// Id of the key that verified it.
    pub key_id: String,
}

/// Signs `claims` into a compact JWS with header `{"alg":"ES256","kid":<key id>}`.
pub fn encode(key: &SigningKey, claims: &impl Serialize) -> Result<String, JwtError> {
    let header = serde_json::to_vec(&HeaderOut {
        alg: ALGORITHM,
        kid: key.key_id(),
    })
    .map_err(|e| JwtError::Encode {
        detail: e.to_string(),
    })?;
    let payload = serde_json::to_vec(claims).map_err(|e| JwtError::Encode {
        detail: e.to_string(),
    })?;
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(token)
}

/// Verifies a compact JWS against `keys` and returns its payload.
pub fn verify(token: &str, keys: &VerificationKeys) -> Result<Verified, JwtError> {
    let parts = split(token)?;
    let header: HeaderIn =
        serde_json::from_slice(&decode(parts.header, "header")?).map_err(|e| JwtError::Header {
            detail: e.to_string(),
        })?;
    if header.alg != ALGORITHM {
        return Err(JwtError::UnsupportedAlgorithm { alg: header.alg });
    }
    if header.crit.is_some() {
        return Err(JwtError::CriticalHeader);
    }
    let signature = decode(parts.signature, "signature")?;
    let payload = decode(parts.payload, "payload")?;
    let key_id = header.kid.as_deref().filter(|kid| !kid.is_empty());
    let mut candidates = keys.candidates(key_id).peekable();
    if candidates.peek().is_none() {
        return Err(JwtError::NoKeys);
    }
    let key = candidates
        .find(|key| key.verify(parts.signing_input.as_bytes(), &signature))
        .ok_or(JwtError::BadSignature)?;
    Ok(Verified {
        payload,
        key_id: key.key_id().to_owned(),
    })
}

/// The payload of a token WITHOUT checking its signature: only to decide whether a token
/// is meant for this issuer at all (kube's `hasCorrectIssuer`). Never trust what it says.
pub fn unverified_payload(token: &str) -> Result<Vec<u8>, JwtError> {
    decode(split(token)?.payload, "payload")
}

/// The three parts of a compact JWS and the signed input (`header.payload`).
struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    signing_input: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
    let (header, payload) = signing_input.split_once('.').ok_or(JwtError::Malformed)?;
    if payload.contains('.') || header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(JwtError::Malformed);
    }
    Ok(Parts {
        header,
        payload,
        signature,
        signing_input,
    })
}

/// Strict unpadded base64url: padding, other alphabets and non-zero trailing bits are
/// refused, so each token has one spelling.
fn decode(part: &str, name: &'static str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Base64 { part: name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(key: &SigningKey) -> VerificationKeys {
        VerificationKeys::new(key, [])
    }

    fn b64(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
    }

    #[test]
    fn round_trip() {
        let key = SigningKey::generate().expect("generate");
        let token = encode(&key, &json!({"sub": "me"})).expect("encode");
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().expect("header"))
                .expect("base64"),
        )
        .expect("json");
        assert_eq!(header, json!({"alg": "ES256", "kid": key.key_id()}));
        let verified = verify(&token, &keys(&key)).expect("verify");
        assert_eq!(verified.key_id, key.key_id());
        let claims: serde_json::Value = serde_json::from_slice(&verified.payload).expect("json");
        assert_eq!(claims, json!({"sub": "me"}));
        assert_eq!(
            unverified_payload(&token).expect("payload"),
            verified.payload
        );
    }

    #[test]
    fn tampering_is_refused() {
        let key = SigningKey::generate().expect("generate");
        let token = encode(&key, &json!({"sub": "me"})).expect("encode");
        let (head, rest) = token.split_once('.').expect("parts");
        let (_, signature) = rest.split_once('.').expect("parts");
        let forged = format!("{head}.{}.{signature}", b64(&json!({"sub": "admin"})));
        assert_eq!(verify(&forged, &keys(&key)), Err(JwtError::BadSignature));
        // A flipped bit in the signature.
        let mut raw = URL_SAFE_NO_PAD.decode(signature).expect("signature");
        raw[10] ^= 1;
        let flipped = format!(
            "{}.{}",
            token.rsplit_once('.').expect("parts").0,
            URL_SAFE_NO_PAD.encode(&raw)
        );
        assert_eq!(verify(&flipped, &keys(&key)), Err(JwtError::BadSignature));
        // A truncated signature.
        let short = &token[..token.len() - 4];
        assert!(verify(short, &keys(&key)).is_err());
        // Another key's token.
        let other = SigningKey::generate().expect("generate");
        let foreign = encode(&other, &json!({"sub": "me"})).expect("encode");
        assert_eq!(verify(&foreign, &keys(&key)), Err(JwtError::NoKeys));
    }

    #[test]
    fn other_algorithms_are_refused() {
        let key = SigningKey::generate().expect("generate");
        let payload = b64(&json!({"sub": "admin"}));
        let none = format!("{}.{payload}.", b64(&json!({"alg": "none"})));
        assert_eq!(verify(&none, &keys(&key)), Err(JwtError::Malformed));
        let none = format!("{}.{payload}.AAAA", b64(&json!({"alg": "none"})));
        assert_eq!(
            verify(&none, &keys(&key)),
            Err(JwtError::UnsupportedAlgorithm { alg: "none".into() })
        );
        // HS256 keyed with the public key: the classic confusion attack.
        let hs = format!(
            "{}.{payload}.AAAA",
            b64(&json!({"alg": "HS256", "kid": key.key_id()}))
        );
        assert_eq!(
            verify(&hs, &keys(&key)),
            Err(JwtError::UnsupportedAlgorithm {
                alg: "HS256".into()
            })
        );
        let crit = format!(
            "{}.{payload}.AAAA",
            b64(&json!({"alg": "ES256", "crit": ["b64"], "b64": false}))
        );
        assert_eq!(verify(&crit, &keys(&key)), Err(JwtError::CriticalHeader));
    }

    #[test]
    fn missing_kid_tries_every_key_and_unknown_kid_none() {
        let old = SigningKey::generate().expect("generate");
        let new = SigningKey::generate().expect("generate");
        let rotated = VerificationKeys::new(&new, [old.public_key().clone()]);
        let token = encode(&old, &json!({"n": 1})).expect("encode");
        assert_eq!(
            verify(&token, &rotated).expect("old key verifies").key_id,
            old.key_id()
        );
        // The same token without a kid.
        let (_, rest) = token.split_once('.').expect("parts");
        let no_kid = format!("{}.{rest}", b64(&json!({"alg": "ES256"})));
        // The header is part of the signed input, so re-sign with the stripped header.
        let input = no_kid.rsplit_once('.').expect("parts").0;
        let signature = URL_SAFE_NO_PAD.encode(old.sign(input.as_bytes()).expect("sign"));
        let no_kid = format!("{input}.{signature}");
        assert_eq!(
            verify(&no_kid, &rotated).expect("all keys tried").key_id,
            old.key_id()
        );
        let wrong_kid = {
            let input = format!("{}.{}", b64(&json!({"alg": "ES256", "kid": "x"})), rest);
            let input = input.rsplit_once('.').expect("parts").0.to_owned();
            let signature = URL_SAFE_NO_PAD.encode(old.sign(input.as_bytes()).expect("sign"));
            format!("{input}.{signature}")
        };
        assert_eq!(verify(&wrong_kid, &rotated), Err(JwtError::NoKeys));
    }

    #[test]
    fn garbage_is_refused_without_panics() {
        let key = SigningKey::generate().expect("generate");
        let keys = keys(&key);
        let valid = encode(&key, &json!({"sub": "me"})).expect("encode");
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        let cases = [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            "....",
            "é.é.é",
            "{}.{}.{}",
            "eyJhbGciOiJFUzI1NiJ9.e30=.AAAA",
            "eyJhbGciOiJFUzI1NiJ9.e30.AA+/",
            "bnVsbA.e30.AAAA",
            "W10.e30.AAAA",
            "eyJhbGciOjF9.e30.AAAA",
            huge.as_str(),
        ];
        for case in cases {
            assert!(verify(case, &keys).is_err(), "{case:?} accepted");
        }
        assert_eq!(verify(&huge, &keys), Err(JwtError::TooLarge));
        assert_eq!(
            verify("eyJhbGciOiJFUzI1NiJ9.e30=.AAAA", &keys),
            Err(JwtError::Base64 { part: "payload" })
        );
        // Every truncation and every single-character change of a valid token.
        for end in 0..valid.len() {
            assert!(verify(&valid[..end], &keys).is_err());
        }
        let bytes = valid.as_bytes();
        for i in 0..bytes.len() {
            for replacement in [b'A', b'.', b'_', b'='] {
                if bytes[i] == replacement {
                    continue;
                }
                let mut changed = bytes.to_vec();
                changed[i] = replacement;
                let changed = String::from_utf8(changed).expect("ascii");
                assert!(verify(&changed, &keys).is_err(), "{changed} accepted");
            }
        }
    }
}
