//! The cluster CA and the certificates it issues.
//!
//! The CA is generated on first start and stored in etcd (created once with a
//! compare-and-swap, so racing replicas agree on one CA); every replica then issues its own
//! serving certificate, and `skiff-control kubeconfig` issues client certificates whose
//! CN is the user and O the groups, as Kubernetes does.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::store::{Store, StoreError};

/// etcd key of the CA.
const CA_KEY: &str = "/skiff/pki/ca";

/// Errors of the PKI.
#[derive(Debug, Error)]
pub enum PkiError {
    /// Generating or parsing a certificate failed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// Reading or writing the CA in etcd failed.
    #[error("storing the CA: {0}")]
    Store(#[from] StoreError),
    /// The stored CA is unreadable.
    #[error("the CA stored in etcd at {CA_KEY} is unreadable: {0}")]
    Corrupt(String),
}

/// How long issued certificates (client and serving) are valid: a year, as kubeadm's.
pub const CERTIFICATE_DAYS: i64 = 365;

/// Year, month and day `offset` days from today (UTC).
fn day_from_today(offset: i64) -> (i32, u8, u8) {
    let date = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date()
        .checked_add(jiff::Span::new().days(offset))
        .unwrap_or_else(|_| jiff::civil::date(2036, 1, 1));
    (
        i32::from(date.year()),
        u8::try_from(date.month()).unwrap_or(1),
        u8::try_from(date.day()).unwrap_or(1),
    )
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pem {
    /// Certificate.
    pub cert: String,
    /// Private key.
    pub key: String,
}

/// The cluster CA.
pub struct Ca {
    /// CA certificate and key.
    pub pem: Pem,
}

impl Ca {
    /// Load the CA from etcd, creating it if this is the first start of the cluster.
    pub async fn load_or_create(store: &Store) -> Result<Self, PkiError> {
        Self::load_or_create_at(store, CA_KEY, "skiff-ca").await
    }

    /// Load the CA stored at etcd key `key`, creating one named `common_name` there if
    /// there is none (the cluster CA; the front-proxy CA of API aggregation).
    pub async fn load_or_create_at(
        store: &Store,
        key: &str,
        common_name: &str,
    ) -> Result<Self, PkiError> {
        match store.get(key).await {
            Ok(value) => return Self::from_value(&value),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let fresh = Self::generate_named(common_name)?;
        let value =
            serde_json::to_value(&fresh.pem).map_err(|e| PkiError::Corrupt(e.to_string()))?;
        match store.create(key, &value).await {
            Ok(_) => Ok(fresh),
            // Another replica won the race: use its CA.
            Err(StoreError::AlreadyExists) => Self::from_value(&store.get(key).await?),
            Err(e) => Err(e.into()),
        }
    }

    fn from_value(value: &serde_json::Value) -> Result<Self, PkiError> {
        let mut value = value.clone();
        if let Some(map) = value.as_object_mut() {
            map.remove("metadata");
        }
        let pem: Pem =
            serde_json::from_value(value).map_err(|e| PkiError::Corrupt(e.to_string()))?;
        Ok(Self { pem })
    }

    /// A new self-signed CA named `common_name` (the cluster CA is `skiff-ca`; etcd's own
    /// CA is another, kept on disk, since the cluster CA lives in etcd).
    pub fn generate_named(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            pem: Pem {
                cert: cert.pem(),
                key: key.serialize_pem(),
            },
        })
    }

    fn issue(&self, mut params: CertificateParams) -> Result<Pem, PkiError> {
        // Valid from yesterday (clock skew) for CERTIFICATE_DAYS.
        let (year, month, day) = day_from_today(-1);
        params.not_before = rcgen::date_time_ymd(year, month, day);
        let (year, month, day) = day_from_today(CERTIFICATE_DAYS);
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let ca_key = KeyPair::from_pem(&self.pem.key)?;
        let issuer = Issuer::from_ca_cert_pem(&self.pem.cert, ca_key)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// A CA from its certificate and key.
    pub fn from_pem(pem: Pem) -> Self {
        Self { pem }
    }

    /// A certificate for `names` usable by a server and, toward its peers, as a client
    /// (etcd members present one certificate both ways).
    pub fn peer(&self, common_name: &str, names: &[String]) -> Result<Pem, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = san(names)?;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.issue(params)
    }

    /// A serving certificate for the API server, valid for `names` (DNS names or IPs).
    pub fn serving(&self, names: &[String]) -> Result<Pem, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.subject_alt_names = san(names)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.issue(params)
    }

    /// A client certificate: CN = user, O = each group.
    pub fn client(&self, user: &str, groups: &[String]) -> Result<Pem, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group.as_str());
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.issue(params)
    }
}

/// Subject alternative names: IP addresses as such, the rest as DNS names.
fn san(names: &[String]) -> Result<Vec<SanType>, PkiError> {
    Ok(names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?)
}

/// A kubeconfig for `user` at `server`, trusting `ca` and presenting `client`.
pub fn kubeconfig(server: &str, ca: &Pem, user: &str, client: &Pem) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         contexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: {user}\ncurrent-context: skiff\n\
         users:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = b64(&ca.cert),
        cert = b64(&client.cert),
        key = b64(&client.key),
    )
}
