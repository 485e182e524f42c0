//! The ServiceAccount token signing key (ECDSA P-256, ES256) and the public keys tokens
//! are verified with, as kube-apiserver's `--service-account-signing-key-file` and
//! `--service-account-key-file`.
//!
//! Key ids are kube's (`pkg/serviceaccount/jwt.go` `keyIDFromPublicKey`): the unpadded
//! base64url SHA-256 of the public key's DER SubjectPublicKeyInfo, so a token's `kid`, the
//! JWKS and any relying party that computes it from the key agree.

use std::{fmt, sync::Arc};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use ring::{
    digest,
    rand::SystemRandom,
    signature::{
        ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
        UnparsedPublicKey,
    },
};
use rustls::pki_types::pem::{self, PemObject, SectionKind};
use serde::Serialize;

/// The one JWS algorithm Skiff signs and accepts.
pub const ALGORITHM: &str = "ES256";

/// DER of a P-256 SubjectPublicKeyInfo up to its uncompressed point: SEQUENCE {
/// SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) … }. DER is
/// canonical, so every such key starts with exactly these bytes (Go's
/// `x509.MarshalPKIXPublicKey` writes them too).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// Length of an uncompressed P-256 point (`04 || X || Y`).
const P256_POINT_LEN: usize = 65;
/// Length of one P-256 coordinate.
const P256_COORDINATE_LEN: usize = 32;
/// The PKCS#8 AlgorithmIdentifier for a P-256 key: SEQUENCE { id-ecPublicKey, prime256v1 }.
const P256_ALGORITHM_IDENTIFIER: [u8; 21] = [
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
/// Characters per line of PEM base64, as OpenSSL and Go write it.
const PEM_LINE: usize = 64;

/// Why a key could not be made, read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The system random generator failed.
    #[error("failed to generate an ECDSA P-256 key")]
    Generate,
    /// The PEM text could not be read.
    #[error("invalid PEM data: {detail}")]
    Pem {
        /// What the PEM reader said.
        detail: String,
    },
    /// The PEM text holds no private key.
    #[error("no private key (PRIVATE KEY or EC PRIVATE KEY) found in the PEM data")]
    NoPrivateKey,
    /// The PEM text holds no public key (kube's wording).
    #[error("data does not contain any valid RSA or ECDSA public keys")]
    NoPublicKey,
    /// A key of another kind than ECDSA P-256.
    #[error("unsupported {what}: only ECDSA P-256 (ES256) keys are supported")]
    Unsupported {
        /// What was found (`RSA PRIVATE KEY`, `public key`…).
        what: String,
    },
    /// ring refused the private key.
    #[error("invalid ECDSA P-256 private key: {reason}")]
    Rejected {
        /// ring's reason.
        reason: String,
    },
    /// A certificate could not be parsed.
    #[error("invalid certificate: {detail}")]
    Certificate {
        /// What the parser said.
        detail: String,
    },
    /// Signing failed.
    #[error("failed to sign")]
    Sign,
}

/// A public key tokens may be verified with, with its kube key id. Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(Arc<PublicKeyInner>);

#[derive(PartialEq, Eq)]
struct PublicKeyInner {
    /// `04 || X || Y`.
    point: [u8; P256_POINT_LEN],
    key_id: String,
}

impl PublicKey {
    /// A key from its uncompressed point (`04 || X || Y`, 65 bytes).
    pub fn from_point(point: &[u8]) -> Result<Self, KeyError> {
        let point: [u8; P256_POINT_LEN] = point
            .try_into()
            .ok()
            .filter(|p: &[u8; P256_POINT_LEN]| p[0] == 0x04)
            .ok_or_else(|| KeyError::Unsupported {
                what: "public key encoding (not an uncompressed P-256 point)".to_owned(),
            })?;
        let mut spki = Vec::with_capacity(P256_SPKI_PREFIX.len() + P256_POINT_LEN);
        spki.extend_from_slice(&P256_SPKI_PREFIX);
        spki.extend_from_slice(&point);
        let key_id = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &spki));
        Ok(Self(Arc::new(PublicKeyInner { point, key_id })))
    }

    /// A key from its DER SubjectPublicKeyInfo (a `PUBLIC KEY` PEM block's content).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) => Self::from_point(point),
            None => Err(KeyError::Unsupported {
                what: "public key".to_owned(),
            }),
        }
    }

    /// Every public key in PEM text, as kube reads `--service-account-key-file`:
    /// `PUBLIC KEY` and `CERTIFICATE` blocks, or else the public halves of its private
    /// keys. Keys other than ECDSA P-256 are an error, not skipped.
    pub fn parse_pem(text: &[u8]) -> Result<Vec<Self>, KeyError> {
        let sections = pem_sections(text)?;
        let mut keys = Vec::new();
        for (kind, der) in &sections {
            match kind {
                SectionKind::PublicKey => keys.push(Self::from_spki_der(der)?),
                SectionKind::Certificate => keys.push(Self::from_certificate_der(der)?),
                _ => {}
            }
        }
        if keys.is_empty() {
            for (kind, der) in &sections {
                if let Some(key) = private_key_from_section(*kind, der)? {
                    keys.push(key.public_key().clone());
                }
            }
        }
        if keys.is_empty() {
            return Err(KeyError::NoPublicKey);
        }
        Ok(keys)
    }

    /// The key of a DER X.509 certificate.
    fn from_certificate_der(der: &[u8]) -> Result<Self, KeyError> {
        let (_, certificate) =
            x509_parser::parse_x509_certificate(der).map_err(|e| KeyError::Certificate {
                detail: e.to_string(),
            })?;
        Self::from_spki_der(certificate.tbs_certificate.subject_pki.raw)
    }

    /// kube's key id: base64url (unpadded) SHA-256 of the DER SubjectPublicKeyInfo.
    pub fn key_id(&self) -> &str {
        &self.0.key_id
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0.point);
        der
    }

    /// The key as a `PUBLIC KEY` PEM block.
    pub fn to_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.spki_der())
    }

    /// The public JWK, as kube's JWKS lists it.
    pub fn jwk(&self) -> Jwk {
        let (x, y) = self.0.point[1..].split_at(P256_COORDINATE_LEN);
        Jwk {
            key_use: "sig",
            kty: "EC",
            kid: self.0.key_id.clone(),
            crv: "P-256",
            alg: ALGORITHM,
            x: URL_SAFE_NO_PAD.encode(x),
            y: URL_SAFE_NO_PAD.encode(y),
        }
    }

    /// True if `signature` (JOSE `r || s`, 64 bytes) is this key's ES256 signature of
    /// `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.0.point[..])
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("key_id", &self.0.key_id)
            .finish()
    }
}

/// A public JSON Web Key, with go-jose's field order (`use`, `kty`, `kid`, `crv`, `alg`,
/// `x`, `y`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwk {
    /// Always `sig`.
    #[serde(rename = "use")]
    pub key_use: &'static str,
    /// Always `EC`.
    pub kty: &'static str,
    /// kube's key id.
    pub kid: String,
    /// Always `P-256`.
    pub crv: &'static str,
    /// Always `ES256`.
    pub alg: &'static str,
    /// X coordinate, base64url.
    pub x: String,
    /// Y coordinate, base64url.
    pub y: String,
}

/// The private key tokens are signed with. Cheap to clone (shared); its `Debug` shows
/// only the key id.
#[derive(Clone)]
pub struct SigningKey(Arc<SigningKeyInner>);

struct SigningKeyInner {
    pair: EcdsaKeyPair,
    /// The PKCS#8 document, kept to write the key out again.
    pkcs8: Vec<u8>,
    public: PublicKey,
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError::Generate)?;
        Self::from_pkcs8_der(document.as_ref())
    }

    /// A key from a DER PKCS#8 document (with its public key, as OpenSSL, Go and ring
    /// write it).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                .map_err(|e| KeyError::Rejected {
                reason: e.to_string(),
            })?;
        let public = PublicKey::from_point(pair.public_key().as_ref())?;
        Ok(Self(Arc::new(SigningKeyInner {
            pair,
            pkcs8: der.to_vec(),
            public,
        })))
    }

    /// The first private key in PEM text: `PRIVATE KEY` (PKCS#8) or `EC PRIVATE KEY`
    /// (SEC 1, as `openssl ecparam -genkey` writes it).
    pub fn from_pem(text: &[u8]) -> Result<Self, KeyError> {
        for (kind, der) in pem_sections(text)? {
            if let Some(key) = private_key_from_section(kind, &der)? {
                return Ok(key);
            }
        }
        Err(KeyError::NoPrivateKey)
    }

    /// The key as a `PRIVATE KEY` (PKCS#8) PEM block. Secret: write it where only the
    /// control plane reads it (mode 0600).
    pub fn to_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.0.pkcs8)
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.0.public
    }

    /// kube's key id of the public half.
    pub fn key_id(&self) -> &str {
        self.0.public.key_id()
    }

    /// The ES256 signature of `message`, JOSE-encoded (`r || s`, 64 bytes).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let signature = self
            .0
            .pair
            .sign(&SystemRandom::new(), message)
            .map_err(|_| KeyError::Sign)?;
        Ok(signature.as_ref().to_vec())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

/// The keys tokens are verified with: the signing key's public half first, then the
/// extra ones (keys being rotated out), without duplicates. Cheap to clone.
#[derive(Debug, Clone)]
pub struct VerificationKeys(Arc<[PublicKey]>);

impl VerificationKeys {
    /// The signing key's public half and `extra`.
    pub fn new(signing: &SigningKey, extra: impl IntoIterator<Item = PublicKey>) -> Self {
        let mut keys = vec![signing.public_key().clone()];
        for key in extra {
            if !keys.iter().any(|k| k.key_id() == key.key_id()) {
                keys.push(key);
            }
        }
        Self(keys.into())
    }

    /// All keys, the signing key's first.
    pub fn keys(&self) -> &[PublicKey] {
        &self.0
    }

    /// The keys to try for a token: those with its `kid` if it has one (none if no key
    /// has that id), or else all of them, as kube's static key getter.
    pub fn candidates<'a>(
        &'a self,
        key_id: Option<&'a str>,
    ) -> impl Iterator<Item = &'a PublicKey> + 'a {
        self.0
            .iter()
            .filter(move |k| key_id.is_none_or(|id| k.key_id() == id))
    }
}

/// A private key from one PEM section, or `None` for sections that hold none.
fn private_key_from_section(kind: SectionKind, der: &[u8]) -> Result<Option<SigningKey>, KeyError> {
    match kind {
        SectionKind::PrivateKey => SigningKey::from_pkcs8_der(der).map(Some),
        SectionKind::EcPrivateKey => SigningKey::from_pkcs8_der(&pkcs8_from_sec1(der)).map(Some),
        SectionKind::RsaPrivateKey => Err(KeyError::Unsupported {
            what: "RSA PRIVATE KEY".to_owned(),
        }),
        _ => Ok(None),
    }
}

/// One PEM section, whatever its kind.
struct Section(SectionKind, Vec<u8>);

impl PemObject for Section {
    fn from_pem(kind: SectionKind, der: Vec<u8>) -> Option<Self> {
        Some(Self(kind, der))
    }
}

/// Every PEM section of `text` (sections of kinds the reader does not know are skipped).
fn pem_sections(text: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, KeyError> {
    Section::pem_slice_iter(text)
        .map(|section| {
            section
                .map(|Section(kind, der)| (kind, der))
                .map_err(|e: pem::Error| KeyError::Pem {
                    detail: e.to_string(),
                })
        })
        .collect()
}

/// Wraps a SEC 1 `ECPrivateKey` in a PKCS#8 `PrivateKeyInfo` for P-256 (RFC 5208/5915):
/// SEQUENCE { INTEGER 0, AlgorithmIdentifier, OCTET STRING { ECPrivateKey } }.
fn pkcs8_from_sec1(sec1: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(&P256_ALGORITHM_IDENTIFIER);
    body.push(0x04);
    push_der_length(&mut body, sec1.len());
    body.extend_from_slice(sec1);
    let mut der = vec![0x30];
    push_der_length(&mut der, body.len());
    der.extend_from_slice(&body);
    der
}

/// Appends a DER length (short form below 128, long form above).
fn push_der_length(out: &mut Vec<u8>, len: usize) {
    if let Ok(short) = u8::try_from(len)
        && short < 0x80
    {
        out.push(short);
        return;
    }
    let bytes = len.to_be_bytes();
    let significant: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    // At most size_of::<usize>() bytes, so the count fits the 7 low bits.
    out.push(0x80 | (significant.len() as u8));
    out.extend_from_slice(&significant);
}

/// A PEM block with 64-character lines.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut rest = body.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(PEM_LINE));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P-256 key written by `openssl ecparam -name prime256v1 -genkey -noout` (SEC 1).
    const OPENSSL_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIGkkxQiDaUAK3DjMHeC17g01/iQl0r/paCHT+DOIqUQPoAoGCCqGSM49
AwEHoUQDQgAEliAAHDiwoXSGKSFlLEAPbFDHfyxTFid+rKY8r8I18/tiJnLjSkKI
7/EkvZWxsQovRsC/ZAhrZ13cKDWHP7YDEQ==
-----END EC PRIVATE KEY-----
";
    /// Its public key from `openssl ec -pubout`.
    const OPENSSL_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEliAAHDiwoXSGKSFlLEAPbFDHfyxT
Fid+rKY8r8I18/tiJnLjSkKI7/EkvZWxsQovRsC/ZAhrZ13cKDWHP7YDEQ==
-----END PUBLIC KEY-----
";
    /// `openssl ec -pubout -outform DER | openssl dgst -sha256 -binary | base64url`.
    const OPENSSL_KEY_ID: &str = "xpuHLSPU1mjXeEx-AN6mMx_Yfa_Pz82Bp5ye_-7-D9Q";

    #[test]
    fn generated_key_round_trips_through_pem() {
        let key = SigningKey::generate().expect("generate");
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= PEM_LINE));
        let again = SigningKey::from_pem(pem.as_bytes()).expect("reload");
        assert_eq!(again.key_id(), key.key_id());
        let signature = again.sign(b"message").expect("sign");
        assert_eq!(signature.len(), 64);
        assert!(key.public_key().verify(b"message", &signature));
        assert!(!key.public_key().verify(b"messagf", &signature));
        let other = SigningKey::generate().expect("generate");
        assert!(!other.public_key().verify(b"message", &signature));
    }

    #[test]
    fn key_id_is_kubes_derivation() {
        let key = SigningKey::from_pem(OPENSSL_SEC1.as_bytes()).expect("SEC 1 key");
        assert_eq!(key.key_id(), OPENSSL_KEY_ID);
        assert_eq!(key.public_key().to_pem(), OPENSSL_PUBLIC);
        let public = PublicKey::parse_pem(OPENSSL_PUBLIC.as_bytes()).expect("public key");
        assert_eq!(public.len(), 1);
        assert_eq!(public[0].key_id(), OPENSSL_KEY_ID);
        // The SEC 1 key, rewritten as PKCS#8, reads back as the same key.
        let pkcs8 = SigningKey::from_pem(key.to_pem().as_bytes()).expect("PKCS#8");
        assert_eq!(pkcs8.key_id(), OPENSSL_KEY_ID);
    }

    #[test]
    fn jwk_carries_the_point() {
        let key = SigningKey::from_pem(OPENSSL_SEC1.as_bytes()).expect("key");
        let jwk = serde_json::to_value(key.public_key().jwk()).expect("json");
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], OPENSSL_KEY_ID);
        let x = URL_SAFE_NO_PAD
            .decode(jwk["x"].as_str().expect("x"))
            .expect("base64url x");
        let y = URL_SAFE_NO_PAD
            .decode(jwk["y"].as_str().expect("y"))
            .expect("base64url y");
        let der = key.public_key().spki_der();
        assert_eq!(&der[P256_SPKI_PREFIX.len() + 1..][..32], &x[..]);
        assert_eq!(&der[P256_SPKI_PREFIX.len() + 33..], &y[..]);
    }

    #[test]
    fn verification_keys_from_files_of_every_kind() {
        let key = SigningKey::from_pem(OPENSSL_SEC1.as_bytes()).expect("key");
        // A certificate of the key (rcgen signs it with the same key).
        let cert_key = rcgen::KeyPair::from_pem(&key.to_pem()).expect("rcgen key");
        let cert = rcgen::CertificateParams::new(vec!["sa".to_owned()])
            .expect("params")
            .self_signed(&cert_key)
            .expect("certificate");
        let from_cert = PublicKey::parse_pem(cert.pem().as_bytes()).expect("certificate key");
        assert_eq!(from_cert[0].key_id(), OPENSSL_KEY_ID);
        // A private key file gives its public half.
        let from_private = PublicKey::parse_pem(OPENSSL_SEC1.as_bytes()).expect("private");
        assert_eq!(from_private[0].key_id(), OPENSSL_KEY_ID);
        // Two public keys in one file.
        let second = SigningKey::generate().expect("generate");
        let both = format!("{OPENSSL_PUBLIC}{}", second.public_key().to_pem());
        let keys = PublicKey::parse_pem(both.as_bytes()).expect("two keys");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].key_id(), second.key_id());
    }

    #[test]
    fn bad_key_material_is_refused() {
        assert_eq!(
            PublicKey::parse_pem(b"no pem here"),
            Err(KeyError::NoPublicKey)
        );
        assert!(matches!(
            SigningKey::from_pem(OPENSSL_PUBLIC.as_bytes()),
            Err(KeyError::NoPrivateKey)
        ));
        let rsa = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(matches!(
            SigningKey::from_pem(rsa.as_bytes()),
            Err(KeyError::Unsupported { .. })
        ));
        // An RSA SubjectPublicKeyInfo (truncated; its prefix is what counts).
        let rsa_spki = [0x30, 0x82, 0x01, 0x22, 0x30, 0x0d, 0x06, 0x09];
        assert!(matches!(
            PublicKey::from_spki_der(&rsa_spki),
            Err(KeyError::Unsupported { .. })
        ));
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            SigningKey::from_pem(garbage.as_bytes()),
            Err(KeyError::Rejected { .. })
        ));
        assert!(PublicKey::from_point(&[0x02; 33]).is_err());
    }

    #[test]
    fn verification_keys_pick_by_key_id() {
        let signing = SigningKey::generate().expect("generate");
        let old = SigningKey::generate().expect("generate");
        let keys = VerificationKeys::new(
            &signing,
            [old.public_key().clone(), signing.public_key().clone()],
        );
        assert_eq!(keys.keys().len(), 2, "the duplicate is dropped");
        assert_eq!(keys.keys()[0].key_id(), signing.key_id());
        assert_eq!(keys.candidates(None).count(), 2);
        let by_id: Vec<_> = keys.candidates(Some(old.key_id())).collect();
        assert_eq!(by_id.len(), 1);
        assert_eq!(by_id[0].key_id(), old.key_id());
        assert_eq!(keys.candidates(Some("unknown")).count(), 0);
    }

    #[test]
    fn der_lengths() {
        let mut out = Vec::new();
        push_der_length(&mut out, 0x7f);
        push_der_length(&mut out, 0x80);
        push_der_length(&mut out, 0x1234);
        assert_eq!(out, [0x7f, 0x81, 0x80, 0x82, 0x12, 0x34]);
    }
}
