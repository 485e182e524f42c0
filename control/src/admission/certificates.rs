//! The admission plugins of CertificateSigningRequests, as kube-apiserver's:
//!
//! - requestor: on create, `spec.username`, `uid`, `groups` and `extra` are whoever asks
//!   (what the client wrote there is replaced), and `status` starts empty;
//! - CertificateApproval: changing the Approved/Denied conditions (the `approval`
//!   subresource) needs the `approve` verb on `signers` named for the request's signer
//!   (`kubernetes.io/kube-apiserver-client`, or the wildcard `kubernetes.io/*`);
//! - CertificateSigning: setting `status.certificate` needs `sign` on that signer;
//! - CertificateSubjectRestriction: a request to `kubernetes.io/kube-apiserver-client`
//!   may not name the `system:masters` group.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Attributes, Operation, Plugin};
use crate::{
    authz::{Attributes as AuthzAttributes, Authorizer},
    model::ApiError,
};

/// The client-certificate signer whose certificates authenticate to the API server.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// The CertificateSigningRequest plugins (one value: they share the authorizer).
pub struct CertificateAdmission {
    authorizer: Arc<dyn Authorizer>,
}

impl CertificateAdmission {
    /// The plugins, asking `authorizer` about `approve` and `sign`.
    pub fn new(authorizer: Arc<dyn Authorizer>) -> Self {
        Self { authorizer }
    }

    /// Ok if the user may `verb` the signer `signer` (or its domain's wildcard).
    fn may(&self, attributes: &Attributes<'_>, verb: &str, signer: &str) -> Result<(), ApiError> {
        let domain_wildcard = signer
            .split_once('/')
            .map(|(domain, _)| format!("{domain}/*"))
            .unwrap_or_default();
        for name in [signer, domain_wildcard.as_str()] {
            let ask = AuthzAttributes {
                user: attributes.user.clone(),
                verb: verb.to_owned(),
                resource_request: true,
                api_group: "certificates.k8s.io".to_owned(),
                api_version: "*".to_owned(),
                resource: "signers".to_owned(),
                name: name.to_owned(),
                ..AuthzAttributes::default()
            };
            if !name.is_empty() && self.authorizer.authorize(&ask).allowed() {
                return Ok(());
            }
        }
        Err(attributes.forbidden(&format!(
            "user not permitted to {verb} requests with signerName \"{signer}\""
        )))
    }
}

fn conditions(object: Option<&Value>) -> Vec<(String, String)> {
    object
        .and_then(|o| o.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| {
            matches!(
                c.get("type").and_then(Value::as_str),
                Some("Approved" | "Denied")
            )
        })
        .map(|c| {
            let text = |k: &str| {
                c.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            (text("type"), text("status"))
        })
        .collect()
}

fn signer(object: &Value) -> &str {
    object
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The organizations (O) of the request's subject.
fn organizations(object: &Value) -> Vec<String> {
    use base64::Engine as _;
    use x509_parser::prelude::FromDer;
    let Some(pem) = object
        .pointer("/spec/request")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
    else {
        return Vec::new();
    };
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(&pem) else {
        return Vec::new();
    };
    let Ok((_, request)) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
    else {
        return Vec::new();
    };
    request
        .certification_request_info
        .subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect()
}

#[async_trait]
impl Plugin for CertificateAdmission {
    fn name(&self) -> &'static str {
        "CertificateApproval"
    }

    async fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: &mut Value,
        _old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if attributes.operation != Operation::Create
            || !attributes.is("certificates.k8s.io", "certificatesigningrequests")
        {
            return Ok(());
        }
        let user = attributes.user;
        object["spec"]["username"] = json!(user.name);
        object["spec"]["uid"] = json!(user.uid);
        object["spec"]["groups"] = json!(user.groups);
        object["spec"]["extra"] = json!(user.extra);
        if let Some(map) = object.as_object_mut() {
            map.remove("status");
        }
        Ok(())
    }

    async fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: &Value,
        old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let resource = attributes.resource;
        if resource.group != "certificates.k8s.io"
            || resource.plural != "certificatesigningrequests"
        {
            return Ok(());
        }
        let signer = signer(object);
        match (attributes.operation, attributes.subresource) {
            (Operation::Create, "") => {
                if signer == CLIENT_SIGNER
                    && organizations(object).iter().any(|o| o == "system:masters")
                {
                    return Err(attributes.forbidden(&format!(
                        "use of {CLIENT_SIGNER} signer with system:masters group is not allowed"
                    )));
                }
                Ok(())
            }
            (Operation::Update, "approval") if conditions(Some(object)) != conditions(old) => {
                self.may(attributes, "approve", signer)
            }
            (Operation::Update, "status") => {
                let certificate =
                    |o: Option<&Value>| o.and_then(|o| o.pointer("/status/certificate")).cloned();
                if certificate(Some(object)) != certificate(old) {
                    self.may(attributes, "sign", signer)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
