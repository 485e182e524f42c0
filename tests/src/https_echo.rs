//! skiff/echo in its HTTPS mode behind a ClusterIP Service, as the webhook and aggregation
//! tests deploy it: a test CA, a serving certificate for `<service>.<namespace>.svc`, a
//! kubernetes.io/tls Secret, a Deployment and the Service (port 443 → 8443).

use base64::Engine;
use serde_json::json;

use crate::Lab;

/// A CA and a serving certificate for a Service, PEM-encoded.
pub struct Certificates {
    /// The CA certificate (what a caBundle carries).
    pub ca: String,
    /// The serving certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl Certificates {
    /// A fresh CA and a certificate for `<service>.<namespace>.svc[.cluster.local]`.
    pub fn for_service(service: &str, namespace: &str) -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "skiff e2e test CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let ca_pem = ca.pem();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("issuer");
        let key = rcgen::KeyPair::generate().expect("key");
        let names = vec![
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ];
        let cert = rcgen::CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("serving certificate");
        Self {
            ca: ca_pem,
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// The CA, base64-encoded as a caBundle field holds it.
    pub fn ca_bundle(&self) -> String {
        b64(&self.ca)
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The server's manifest (a List): a Secret, a Deployment of skiff/echo with
/// `ADMISSION_TLS_DIR` and a Service named `service`, selecting `app=<service>`.
pub fn manifest(service: &str, namespace: &str, certificates: &Certificates) -> String {
    let secret_name = format!("{service}-tls");
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": secret_name, "namespace": namespace},
        "data": {"tls.crt": b64(&certificates.cert), "tls.key": b64(&certificates.key)}});
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": service, "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": service}},
            "template": {"metadata": {"labels": {"app": service}},
                "spec": {"containers": [{"name": "echo", "image": "skiff/echo",
                    "env": [{"name": "ADMISSION_TLS_DIR", "value": "/tls"}],
                    "ports": [{"name": "https", "containerPort": 8443}],
                    "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
                    "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": true}]}],
                    "volumes": [{"name": "tls", "secret": {"secretName": secret_name}}]}}}});
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": service, "namespace": namespace},
        "spec": {"selector": {"app": service},
                 "ports": [{"name": "https", "port": 443, "targetPort": "https"}]}});
    json!({"apiVersion": "v1", "kind": "List", "items": [secret, deployment, service]}).to_string()
}

/// Deploy the server and wait until its Service has a ready endpoint.
pub fn deploy(lab: &Lab, service: &str, namespace: &str, certificates: &Certificates) {
    lab.apply(namespace, &manifest(service, namespace, certificates));
    lab.kubectl_ok(&[
        "rollout",
        "status",
        "-n",
        namespace,
        &format!("deployment/{service}"),
        "--timeout=90s",
    ]);
    lab.eventually(
        "the server's endpoint",
        std::time::Duration::from_secs(30),
        || {
            let ready = lab.jsonpath(
                namespace,
                &format!("endpointslices -l kubernetes.io/service-name={service}"),
                "{.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
            );
            if ready.trim().is_empty() {
                Err("no ready endpoint".to_owned())
            } else {
                Ok(())
            }
        },
    );
}
