//! The built-in signers (kube-controller-manager's csrsigning controller): an approved
//! CertificateSigningRequest for `kubernetes.io/kube-apiserver-client`,
//! `kubernetes.io/kube-apiserver-client-kubelet` or `kubernetes.io/kubelet-serving` is
//! checked against its signer's rules and signed by the cluster CA — valid from five
//! minutes ago (clock skew) for `spec.expirationSeconds`, at most a year — or marked
//! `Failed` with the rule it breaks. Requests for other signers are left to their signers;
//! denied, failed and already issued ones are never touched.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::{
    ByteString,
    api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition},
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use rcgen::{ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use tracing::{info, warn};

use crate::pki::Pem;

/// The signers this controller signs for.
pub const SIGNERS: &[&str] = &[
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kubelet-serving",
];
/// The longest validity issued (kube's --cluster-signing-duration default, a year).
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far back certificates are valid from (kube backdates by five minutes).
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// What a request asks for, as the signer rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// Subject common name.
    pub common_name: String,
    /// Subject organizations.
    pub organizations: Vec<String>,
    /// DNS and IP subject alternative names.
    pub names: usize,
    /// Email and URI subject alternative names.
    pub other_names: usize,
    /// `spec.usages`.
    pub usages: Vec<String>,
}

/// Why `signer` may not sign `requested` (kube's wording), if it may not.
pub fn refusal(signer: &str, requested: &Requested) -> Option<String> {
    let usages_within = |allowed: &[&str], required: &str| -> Option<String> {
        if let Some(bad) = requested
            .usages
            .iter()
            .find(|u| !allowed.contains(&u.as_str()))
        {
            return Some(format!("usage \"{bad}\" is not allowed, only {allowed:?}"));
        }
        if !requested.usages.iter().any(|u| u == required) {
            return Some(format!("missing required usage \"{required}\""));
        }
        None
    };
    if requested.organizations.len() > 1 {
        return Some("more than one organization (O) in the subject is not supported".to_owned());
    }
    match signer {
        "kubernetes.io/kube-apiserver-client" => {
            if requested.common_name.is_empty() {
                return Some("subject common name (CN) must not be empty".to_owned());
            }
            usages_within(
                &["digital signature", "key encipherment", "client auth"],
                "client auth",
            )
        }
        "kubernetes.io/kube-apiserver-client-kubelet" | "kubernetes.io/kubelet-serving" => {
            if requested.organizations != ["system:nodes"] {
                return Some("subject organization is not system:nodes".to_owned());
            }
            if !requested.common_name.starts_with("system:node:") {
                return Some("subject common name does not begin with system:node:".to_owned());
            }
            if requested.other_names > 0 {
                return Some("email and URI subjectAltNames are not allowed".to_owned());
            }
            if signer.ends_with("-kubelet") {
                if requested.names > 0 {
                    return Some("DNS and IP subjectAltNames are not allowed".to_owned());
                }
                usages_within(
                    &["digital signature", "key encipherment", "client auth"],
                    "client auth",
                )
            } else {
                if requested.names == 0 {
                    return Some("DNS or IP subjectAltName is required".to_owned());
                }
                usages_within(
                    &["digital signature", "key encipherment", "server auth"],
                    "server auth",
                )
            }
        }
        other => Some(format!("signer {other} is not a built-in signer")),
    }
}

fn key_usage(usage: &str) -> Option<KeyUsagePurpose> {
    Some(match usage {
        "digital signature" => KeyUsagePurpose::DigitalSignature,
        "key encipherment" => KeyUsagePurpose::KeyEncipherment,
        _ => return None,
    })
}

fn extended_usage(usage: &str) -> Option<ExtendedKeyUsagePurpose> {
    Some(match usage {
        "client auth" => ExtendedKeyUsagePurpose::ClientAuth,
        "server auth" => ExtendedKeyUsagePurpose::ServerAuth,
        _ => return None,
    })
}

/// Read what `csr` asks for: its parsed request and the rule view of it.
fn requested(
    csr: &CertificateSigningRequest,
) -> Result<(rcgen::CertificateSigningRequestParams, Requested), String> {
    use x509_parser::prelude::FromDer;
    let parsed = crate::resources::certificates::parse_request(&csr.spec.request.0)?;
    let (_, block) =
        x509_parser::pem::parse_x509_pem(&csr.spec.request.0).map_err(|e| e.to_string())?;
    let (_, request) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| e.to_string())?;
    let subject = &request.certification_request_info.subject;
    let common_name = subject
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .next()
        .unwrap_or_default()
        .to_owned();
    let organizations = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    let sans = &parsed.params.subject_alt_names;
    let names = sans
        .iter()
        .filter(|s| matches!(s, SanType::DnsName(_) | SanType::IpAddress(_)))
        .count();
    Ok((
        parsed.clone(),
        Requested {
            common_name,
            organizations,
            names,
            other_names: sans.len() - names,
            usages: csr.spec.usages.clone().unwrap_or_default(),
        },
    ))
}

/// Sign `csr` with `ca`: the PEM certificate, or why it may not be signed.
pub fn sign(csr: &CertificateSigningRequest, ca: &Pem) -> Result<String, String> {
    let (mut request, wanted) = requested(csr)?;
    if let Some(why) = refusal(&csr.spec.signer_name, &wanted) {
        return Err(why);
    }
    let lifetime = csr
        .spec
        .expiration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(MAX_DURATION, Duration::from_secs)
        .min(MAX_DURATION);
    let now = time::OffsetDateTime::now_utc();
    let params = &mut request.params;
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = wanted.usages.iter().filter_map(|u| key_usage(u)).collect();
    params.extended_key_usages = wanted
        .usages
        .iter()
        .filter_map(|u| extended_usage(u))
        .collect();
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::from_pem(&ca.key).map_err(|e| format!("the cluster CA key: {e}"))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert, key).map_err(|e| format!("the cluster CA: {e}"))?;
    let certificate = request.signed_by(&issuer).map_err(|e| e.to_string())?;
    Ok(certificate.pem())
}

fn is_true(csr: &CertificateSigningRequest, type_: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Whether this controller has something to do with `csr`.
fn wants_signing(csr: &CertificateSigningRequest) -> bool {
    SIGNERS.contains(&csr.spec.signer_name.as_str())
        && is_true(csr, "Approved")
        && !is_true(csr, "Denied")
        && !is_true(csr, "Failed")
        && csr
            .status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .is_none_or(|c| c.0.is_empty())
}

async fn reconcile(client: &Client, ca: &Pem) -> Result<(), kube::Error> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    for csr in api.list(&ListParams::default()).await?.items {
        if !wants_signing(&csr) {
            continue;
        }
        let name = csr.metadata.name.clone().unwrap_or_default();
        let mut updated = csr.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        match sign(&csr, ca) {
            Ok(pem) => status.certificate = Some(ByteString(pem.into_bytes())),
            Err(why) => {
                warn!(csr = %name, %why, "refusing to sign");
                let now = Some(Time(jiff::Timestamp::now()));
                status.conditions.get_or_insert_with(Vec::new).push(
                    CertificateSigningRequestCondition {
                        type_: "Failed".to_owned(),
                        status: "True".to_owned(),
                        reason: Some("SignerValidationFailure".to_owned()),
                        message: Some(why),
                        last_transition_time: now.clone(),
                        last_update_time: now,
                    },
                );
            }
        }
        match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {
                info!(csr = %name, signer = %csr.spec.signer_name, "certificate signing request handled")
            }
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Run until aborted, signing with the cluster CA `ca`.
pub async fn run(client: Client, ca: Pem) {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        match events.next().await {
            None => return,
            Some(Err(e)) => {
                warn!(error = %e, "watching CertificateSigningRequests failed");
                continue;
            }
            Some(Ok(_)) => {}
        }
        while let Some(Some(_)) = futures::FutureExt::now_or_never(events.next()) {}
        let pass = super::metrics::instrumented("csrsigning", reconcile(&client, &ca));
        if let Err(e) = pass.await {
            warn!(error = %e, "CertificateSigningRequest pass failed");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(cn: &str, o: &[&str], names: usize, usages: &[&str]) -> Requested {
        Requested {
            common_name: cn.to_owned(),
            organizations: o.iter().map(|s| (*s).to_owned()).collect(),
            names,
            other_names: 0,
            usages: usages.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn each_signer_signs_only_what_its_rules_allow() {
        let client = "kubernetes.io/kube-apiserver-client";
        assert_eq!(
            refusal(
                client,
                &wanted("alice", &["dev"], 0, &["client auth", "digital signature"])
            ),
            None
        );
        assert!(refusal(client, &wanted("alice", &[], 0, &["server auth"])).is_some());
        assert!(refusal(client, &wanted("alice", &["a", "b"], 0, &["client auth"])).is_some());
        let kubelet = "kubernetes.io/kube-apiserver-client-kubelet";
        assert_eq!(
            refusal(
                kubelet,
                &wanted("system:node:n1", &["system:nodes"], 0, &["client auth"])
            ),
            None
        );
        assert!(
            refusal(
                kubelet,
                &wanted("alice", &["system:nodes"], 0, &["client auth"])
            )
            .is_some()
        );
        assert!(
            refusal(
                kubelet,
                &wanted("system:node:n1", &["system:nodes"], 1, &["client auth"])
            )
            .is_some()
        );
        let serving = "kubernetes.io/kubelet-serving";
        assert_eq!(
            refusal(
                serving,
                &wanted("system:node:n1", &["system:nodes"], 2, &["server auth"])
            ),
            None
        );
        assert!(
            refusal(
                serving,
                &wanted("system:node:n1", &["system:nodes"], 0, &["server auth"])
            )
            .is_some()
        );
        assert!(refusal("example.com/mine", &wanted("x", &[], 0, &["client auth"])).is_some());
    }

    #[test]
    fn an_approved_request_is_signed_by_the_cluster_ca() {
        let ca = crate::pki::Ca::generate_named("test-ca").expect("a CA");
        let key = KeyPair::generate().expect("a key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "dev");
        let request = params
            .serialize_request(&key)
            .expect("a CSR")
            .pem()
            .expect("PEM");
        let csr: CertificateSigningRequest = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "alice"},
            "spec": {"request": base64_of(&request), "signerName": "kubernetes.io/kube-apiserver-client",
                     "usages": ["client auth", "digital signature"], "expirationSeconds": 3600},
            "status": {"conditions": [{"type": "Approved", "status": "True"}]}}))
        .expect("a CSR object");
        assert!(wants_signing(&csr));
        let pem = sign(&csr, &ca.pem).expect("signed");
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
        let cert = block.parse_x509().expect("a certificate");
        let cn: Vec<&str> = cert
            .subject()
            .iter_common_name()
            .filter_map(|c| c.as_str().ok())
            .collect();
        assert_eq!(cn, ["alice"]);
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(lifetime, 3600 + 300);
        let mut server = csr.clone();
        server.spec.usages = Some(vec!["server auth".to_owned()]);
        assert!(
            sign(&server, &ca.pem)
                .expect_err("refused")
                .contains("server auth")
        );
    }

    fn base64_of(text: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(text)
    }
}
