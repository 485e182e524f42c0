//! certificates.k8s.io/v1 CertificateSigningRequest: a PKCS#10 request for a signer
//! (`kubernetes.io/kube-apiserver-client`, `…-client-kubelet`, `kubernetes.io/kubelet-serving`
//! or any other), approved or denied through the `approval` subresource and signed through
//! `status`. Validation is kube's `ValidateCertificateSigningRequest`: a parseable request
//! whose signature checks out, a qualified signer name, known usages, an expiration of at
//! least ten minutes, and conditions that never contradict (Approved and Denied) nor
//! disappear once set.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use crate::{
    model::validation::{ErrorList, FieldError, qualified_name},
    resources::strategy::Kind,
};

/// The key usages a request may ask for (kube's `KeyUsage` values).
pub const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];
/// The condition types with a meaning of their own.
const APPROVED: &str = "Approved";
const DENIED: &str = "Denied";
const CONDITION_STATUSES: &[&str] = &["True", "False", "Unknown"];
/// The shortest validity a request may ask for (kube's 10 minutes).
const MIN_EXPIRATION_SECONDS: i32 = 600;

/// The PEM text of a request, if it is one: Err(why) otherwise.
pub fn parse_request(bytes: &[u8]) -> Result<rcgen::CertificateSigningRequestParams, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "PEM block type must be CERTIFICATE REQUEST".to_owned())?;
    if !text.contains("-----BEGIN CERTIFICATE REQUEST-----") {
        return Err("PEM block type must be CERTIFICATE REQUEST".to_owned());
    }
    rcgen::CertificateSigningRequestParams::from_pem(text)
        .map_err(|e| format!("the certificate request is invalid: {e}"))
}

fn condition_types(csr: &CertificateSigningRequest) -> Vec<(&str, &str)> {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect()
}

impl Kind for CertificateSigningRequest {
    fn default_fields(&mut self) {
        if self.spec.usages.is_none() {
            self.spec.usages = Some(vec![
                "digital signature".to_owned(),
                "key encipherment".to_owned(),
            ]);
        }
    }

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        let spec = &self.spec;
        if let Err(why) = parse_request(&spec.request.0) {
            errors.push(FieldError::invalid("spec.request", "[]byte{...}", why));
        }
        if spec.signer_name.is_empty() {
            errors.push(FieldError::required("spec.signerName", ""));
        } else if !spec.signer_name.contains('/') {
            errors.push(FieldError::invalid(
                "spec.signerName",
                &spec.signer_name,
                "must be a fully qualified domain and path of the form 'example.com/signer-name'",
            ));
        } else if let Some(domain) = spec.signer_name.split('/').next()
            && let Some(why) = qualified_name(domain)
        {
            errors.push(FieldError::invalid(
                "spec.signerName",
                &spec.signer_name,
                why,
            ));
        }
        if let Some(seconds) = spec.expiration_seconds
            && seconds < MIN_EXPIRATION_SECONDS
        {
            errors.push(FieldError::invalid(
                "spec.expirationSeconds",
                seconds,
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
        for (i, usage) in spec.usages.iter().flatten().enumerate() {
            if !USAGES.contains(&usage.as_str()) {
                errors.push(FieldError::not_supported(
                    format!("spec.usages[{i}]"),
                    usage,
                    USAGES,
                ));
            }
        }
        let conditions = condition_types(self);
        for (i, (type_, status)) in conditions.iter().enumerate() {
            if type_.is_empty() {
                errors.push(FieldError::required(
                    format!("status.conditions[{i}].type"),
                    "",
                ));
            }
            if !CONDITION_STATUSES.contains(status) {
                errors.push(FieldError::not_supported(
                    format!("status.conditions[{i}].status"),
                    status,
                    CONDITION_STATUSES,
                ));
            }
            if conditions[..i].iter().any(|(t, _)| t == type_) {
                errors.push(FieldError::duplicate(
                    format!("status.conditions[{i}].type"),
                    type_,
                ));
            }
        }
        let has = |conditions: &[(&str, &str)], wanted: &str| {
            conditions.iter().any(|(t, s)| *t == wanted && *s == "True")
        };
        if has(&conditions, APPROVED) && has(&conditions, DENIED) {
            errors.push(FieldError::invalid(
                "status.conditions",
                DENIED,
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
        if let Some(certificate) = self.status.as_ref().and_then(|s| s.certificate.as_ref())
            && !certificate.0.is_empty()
            && !String::from_utf8_lossy(&certificate.0).contains("-----BEGIN CERTIFICATE-----")
        {
            errors.push(FieldError::invalid(
                "status.certificate",
                "<certificate data>",
                "must contain at least one CERTIFICATE PEM block",
            ));
        }
        if let Some(old) = old {
            if self.spec != old.spec {
                errors.push(FieldError::forbidden("spec", "field is immutable"));
            }
            let before = condition_types(old);
            for wanted in [APPROVED, DENIED, "Failed"] {
                if has(&before, wanted) && !has(&conditions, wanted) {
                    errors.push(FieldError::forbidden(
                        "status.conditions",
                        format!("updates may not remove a condition of type \"{wanted}\""),
                    ));
                }
            }
            let old_certificate = old.status.as_ref().and_then(|s| s.certificate.as_ref());
            let certificate = self.status.as_ref().and_then(|s| s.certificate.as_ref());
            if old_certificate.is_some_and(|c| !c.0.is_empty()) && certificate != old_certificate {
                errors.push(FieldError::forbidden(
                    "status.certificate",
                    "updates may not modify existing certificate content",
                ));
            }
        }
    }
}
