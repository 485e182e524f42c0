//! A webhook server for the end-to-end tests, as an operator's chart ships one: skiff/echo
//! in its HTTPS admission mode (admission reviews on /validate and /mutate, conversion
//! reviews on /convert) with a serving certificate from a Secret, behind a ClusterIP
//! Service, and the CA that webhook configurations name in caBundle.

use base64::Engine;
use serde_json::json;

/// The webhook's Service name.
pub const SERVICE: &str = "hook";

/// A CA and a serving certificate for `<service>.<namespace>.svc`: (CA PEM, cert PEM, key PEM).
pub fn certificates(namespace: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "skiff e2e webhook CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let ca_pem = ca.pem();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("issuer");
    let key = rcgen::KeyPair::generate().expect("key");
    let names = vec![
        format!("{SERVICE}.{namespace}.svc"),
        format!("{SERVICE}.{namespace}.svc.cluster.local"),
    ];
    let cert = rcgen::CertificateParams::new(names)
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("serving certificate");
    (ca_pem, cert.pem(), key.serialize_pem())
}

/// `text` in base64 (caBundle, Secret data).
pub fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The webhook server: a Secret, a Deployment of skiff/echo in admission mode, a Service.
pub fn server(namespace: &str, cert: &str, key: &str) -> String {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "hook-tls", "namespace": namespace},
        "data": {"tls.crt": b64(cert), "tls.key": b64(key)}});
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": SERVICE, "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": SERVICE}},
            "template": {"metadata": {"labels": {"app": SERVICE}},
                "spec": {"containers": [{"name": "echo", "image": "skiff/echo",
                    "env": [{"name": "ADMISSION_TLS_DIR", "value": "/tls"}],
                    "ports": [{"name": "https", "containerPort": 8443}],
                    "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
                    "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": true}]}],
                    "volumes": [{"name": "tls", "secret": {"secretName": "hook-tls"}}]}}}});
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": namespace},
        "spec": {"selector": {"app": SERVICE},
                 "ports": [{"name": "https", "port": 443, "targetPort": "https"}]}});
    json!({"apiVersion": "v1", "kind": "List", "items": [secret, deployment, service]}).to_string()
}
