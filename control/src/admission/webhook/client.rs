//! Calling a webhook over HTTPS: its URL, or an endpoint of its Service (see
//! [`ServiceEndpoints`]), with TLS verified
//! against the webhook's caBundle (the system's roots without one) for the name
//! `<service>.<namespace>.svc`, as kube does.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{CallError, Caller, Hook};
use crate::{service_endpoints::ServiceEndpoints, store::Store};

/// The largest answer read from a webhook.
const MAX_RESPONSE: usize = 3 * 1024 * 1024;

/// Where one call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` to connect to.
    pub address: String,
    /// The name the server's certificate must carry.
    pub server_name: String,
    /// The Host header.
    pub host: String,
    /// Path and query (`/validate?timeout=10s`).
    pub path: String,
}

/// The production caller: HTTPS to the URL or to one of the Service's endpoints.
pub struct HttpsCaller {
    endpoints: ServiceEndpoints,
    /// TLS configurations by caBundle (most webhooks share few bundles).
    tls: Mutex<HashMap<Vec<u8>, Arc<ClientConfig>>>,
}

impl HttpsCaller {
    /// A caller reading Services and EndpointSlices from `store`'s watch caches.
    pub fn new(store: &Arc<Store>) -> Self {
        Self {
            endpoints: ServiceEndpoints::new(store),
            tls: Mutex::new(HashMap::new()),
        }
    }

    /// Where `hook` is called now.
    pub fn target(&self, hook: &Hook) -> Result<Target, CallError> {
        let query = format!("timeout={}s", hook.timeout.as_secs());
        let post = |m: &str| CallError::Failed(format!("Post \"{}\": {m}", hook.url()));
        if let Some(url) = &hook.client_config.url {
            let uri: hyper::Uri = url
                .parse()
                .map_err(|e| post(&format!("invalid URL: {e}")))?;
            let host = uri.host().ok_or_else(|| post("no host in URL"))?;
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(443);
            let path = uri.path();
            return Ok(Target {
                address: if bare.contains(':') {
                    format!("[{bare}]:{port}")
                } else {
                    format!("{bare}:{port}")
                },
                server_name: bare.to_owned(),
                host: uri.authority().map_or(host, |a| a.as_str()).to_owned(),
                path: format!("{path}?{query}"),
            });
        }
        let Some(service) = &hook.client_config.service else {
            return Err(CallError::Failed(
                "no url or service in clientConfig".to_owned(),
            ));
        };
        let port = service.port.unwrap_or(443);
        let address = self
            .endpoints
            .resolve(&service.namespace, &service.name, port)
            .map_err(|e| post(&e.to_string()))?;
        let server_name = format!("{}.{}.svc", service.name, service.namespace);
        Ok(Target {
            address,
            host: format!("{server_name}:{port}"),
            server_name,
            path: format!("{}?{query}", service.path.as_deref().unwrap_or("/")),
        })
    }

    /// The TLS configuration trusting `ca_bundle` (PEM), or the system's roots.
    fn tls_config(&self, ca_bundle: Option<&[u8]>) -> Result<Arc<ClientConfig>, CallError> {
        let key = ca_bundle.unwrap_or_default().to_vec();
        let mut configs = self.tls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(config) = configs.get(&key) {
            return Ok(Arc::clone(config));
        }
        let config = tls_config(ca_bundle).map_err(CallError::Failed)?;
        // Bundles come from objects users write: keep the map bounded.
        if configs.len() > 64 {
            configs.clear();
        }
        configs.insert(key, Arc::clone(&config));
        Ok(config)
    }
}

/// The roots a server certificate is checked against: the PEM certificates of
/// `ca_bundle`, or the system's roots when there is none.
pub fn roots(ca_bundle: Option<&[u8]>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_bundle.filter(|b| !b.is_empty()) {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("invalid caBundle: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("invalid caBundle: {e}"))?;
            }
            if roots.is_empty() {
                return Err("invalid caBundle: no PEM certificate in it".to_owned());
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(roots)
}

/// A TLS client configuration trusting the PEM certificates of `ca_bundle` (the system's
/// roots if it is empty).
pub fn tls_config(ca_bundle: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca_bundle)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// POST `body` to `target` over TLS with `config`; the answer's status and body.
pub async fn post(
    config: Arc<ClientConfig>,
    target: &Target,
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    let tcp = TcpStream::connect(&target.address)
        .await
        .map_err(|e| format!("dial tcp {}: {e}", target.address))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(target.server_name.clone()).map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    // The connection ends when `sender` is dropped (the call done, or timed out).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::post(target.path.as_str())
        .header(hyper::header::HOST, target.host.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok((status, body))
}

#[async_trait]
impl Caller for HttpsCaller {
    async fn call(&self, hook: &Hook, review: &Value) -> Result<Value, CallError> {
        if hook.client_config.service.is_some() {
            self.endpoints.synced().await;
        }
        let target = self.target(hook)?;
        let config = self.tls_config(
            hook.client_config
                .ca_bundle
                .as_ref()
                .map(|b| b.0.as_slice()),
        )?;
        let body = serde_json::to_vec(review).map_err(|e| CallError::Failed(e.to_string()))?;
        let url = hook.url();
        let (status, answer) = post(config, &target, body)
            .await
            .map_err(|e| CallError::Failed(format!("Post \"{url}\": {e}")))?;
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&answer);
            let text: String = text.chars().take(256).collect();
            return Err(CallError::Failed(format!(
                "the server responded with the status code {status}: {text}"
            )));
        }
        serde_json::from_slice(&answer).map_err(|e| {
            CallError::BadResponse(format!("failed to decode the webhook's answer: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rustls::{ServerConfig, pki_types::PrivateKeyDer};
    use serde_json::json;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::{admission::webhook::validating_hooks, store::object_key};

    /// A one-shot HTTPS server on 127.0.0.1 answering `answer` to one request; its CA PEM,
    /// its port and the request it got.
    async fn serve_once(answer: Value) -> (String, u16, tokio::task::JoinHandle<String>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let pem = cert.pem();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
            )
            .expect("server config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut tls = acceptor.accept(tcp).await.expect("tls");
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = tls.read(&mut buf).await.expect("read");
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .and_then(|l| l.trim().parse().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let body = answer.to_string();
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            tls.write_all(reply.as_bytes()).await.expect("write");
            tls.shutdown().await.ok();
            String::from_utf8_lossy(&got).into_owned()
        });
        (pem, port, task)
    }

    fn hook(url: &str, ca: &str) -> Hook {
        let configuration = serde_json::from_value(json!({
            "metadata": {"name": "c"},
            "webhooks": [{"name": "v.example.com", "sideEffects": "None",
                          "admissionReviewVersions": ["v1"], "timeoutSeconds": 5,
                          "clientConfig": {"url": url, "caBundle": base64_of(ca)},
                          "rules": []}]}))
        .expect("configuration");
        validating_hooks(vec![configuration]).remove(0)
    }

    fn base64_of(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[tokio::test]
    async fn a_review_goes_over_tls_verified_against_the_ca_bundle() {
        let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                            "response": {"uid": "u", "allowed": true}});
        let (pem, port, server) = serve_once(answer.clone()).await;
        let store = Store::in_memory();
        let caller = HttpsCaller::new(&store);
        let hook = hook(&format!("https://127.0.0.1:{port}/check"), &pem);
        let got = caller
            .call(&hook, &json!({"request": {"uid": "u"}}))
            .await
            .expect("called");
        assert_eq!(got, answer);
        let request = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("in time")
            .expect("served");
        assert!(
            request.starts_with("POST /check?timeout=5s HTTP/1.1"),
            "{request}"
        );
        assert!(request.contains("\"uid\":\"u\""), "{request}");

        // Another CA: the certificate is refused.
        let (_, port, _server) = serve_once(answer).await;
        let other = rcgen::CertificateParams::new(vec!["x".to_owned()])
            .expect("params")
            .self_signed(&rcgen::KeyPair::generate().expect("key"))
            .expect("cert")
            .pem();
        let hook = self::hook(&format!("https://127.0.0.1:{port}/check"), &other);
        let error = caller.call(&hook, &json!({})).await.expect_err("untrusted");
        assert!(error.to_string().contains("tls:"), "{error}");
    }

    #[tokio::test]
    async fn services_resolve_to_a_ready_endpoint_of_their_port() {
        let store = Store::in_memory();
        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "hook", "namespace": "ns"},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]}});
        store
            .create(&object_key("", "services", "ns", "hook"), &service)
            .await
            .expect("service");
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "hook-abc", "namespace": "ns",
                         "labels": {"kubernetes.io/service-name": "hook"}},
            "addressType": "IPv4",
            "ports": [{"name": "https", "port": 8443, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.1.7"], "conditions": {"ready": true}},
                          {"addresses": ["10.244.1.8"], "conditions": {"ready": false}}]});
        store
            .create(
                &object_key("discovery.k8s.io", "endpointslices", "ns", "hook-abc"),
                &slice,
            )
            .await
            .expect("slice");
        let caller = HttpsCaller::new(&store);
        let revision = store.current_revision().await.expect("revision");
        caller
            .endpoints
            .wait_for(revision, Duration::from_secs(5))
            .await;
        let configuration = serde_json::from_value(json!({
            "metadata": {"name": "c"},
            "webhooks": [{"name": "v.example.com", "sideEffects": "None",
                          "admissionReviewVersions": ["v1"],
                          "clientConfig": {"service": {"name": "hook", "namespace": "ns",
                                                       "path": "/validate", "port": 443}}}]}))
        .expect("configuration");
        let hook = validating_hooks(vec![configuration]).remove(0);
        let target = caller.target(&hook).expect("resolved");
        assert_eq!(target.address, "10.244.1.7:8443");
        assert_eq!(target.server_name, "hook.ns.svc");
        assert_eq!(target.path, "/validate?timeout=10s");
        let mut missing = hook.clone();
        if let Some(s) = missing.client_config.service.as_mut() {
            s.name = "gone".to_owned();
        }
        let error = caller.target(&missing).expect_err("no service");
        assert!(
            error.to_string().contains("service \"gone\" not found"),
            "{error}"
        );
    }
}
