//! The node API's TLS listener: a serving certificate signed by the cluster CA (or, without
//! one, a self-signed certificate as kubelet makes by default) and client certificates required, signed by the cluster CA. Callers are then
//! authorized by identity: the API server's `kube-apiserver-kubelet-client` and members of
//! `system:masters` may use the pod endpoints; any other authenticated caller gets 403.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::Request, http::StatusCode, response::IntoResponse};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Where the serving certificate comes from.
pub enum Serving<'a> {
    /// A certificate (chain) and key in PEM files, as kubelet's --tls-cert-file and
    /// --tls-private-key-file (signed by the cluster CA, so the API server can verify it).
    Files {
        /// The certificate chain.
        cert: &'a std::path::Path,
        /// The private key.
        key: &'a std::path::Path,
    },
    /// A fresh self-signed certificate for these names (IPs or DNS names), as kubelet makes
    /// one when given none; an API server that verifies agents will refuse it.
    SelfSigned(&'a [String]),
}

/// The TLS configuration: the serving certificate, client certificates required and
/// verified against `client_ca_pem`.
pub fn server_config(
    client_ca_pem: &str,
    serving: Serving<'_>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let (chain, key) = match serving {
        Serving::Files { cert, key } => {
            let cert_pem = std::fs::read(cert)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", cert.display()))?;
            let key_pem = std::fs::read(key)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", key.display()))?;
            let chain = CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<Vec<_>, _>>()?;
            (chain, PrivateKeyDer::from_pem_slice(&key_pem)?)
        }
        Serving::SelfSigned(names) => {
            let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
            let chain = vec![certified.cert.der().clone()];
            let key =
                PrivateKeyDer::from_pem_slice(certified.signing_key.serialize_pem().as_bytes())?;
            (chain, key)
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether a verified client certificate may use the node API (CN and O of its subject).
pub fn authorized(cert: &CertificateDer<'_>) -> Result<(), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("unreadable client certificate: {e}"))?;
    let subject = parsed.subject();
    let common_name = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .next()
        .unwrap_or_default()
        .to_owned();
    let masters = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .any(|o| o == "system:masters");
    if masters || common_name == "kube-apiserver-kubelet-client" {
        Ok(())
    } else {
        Err(format!("User \"{common_name}\" cannot access the node API"))
    }
}

/// Serve `app` over TLS until `shutdown` resolves; unauthorized callers get 403.
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(config);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                return tracing::debug!(%peer, "TLS handshake failed");
            };
            let verdict = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map_or_else(|| Err("no client certificate".to_owned()), authorized);
            let app = match verdict {
                Ok(()) => app,
                Err(why) => Router::new().fallback(move || {
                    let why = why.clone();
                    async move { (StatusCode::FORBIDDEN, why).into_response() }
                }),
            };
            serve_connection(TokioIo::new(tls), app, peer).await;
        });
    }
}

async fn serve_connection<I>(io: I, app: Router, peer: SocketAddr)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        app.clone().oneshot(request.map(axum::body::Body::new))
    });
    if let Err(e) = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(io, service)
        .await
    {
        tracing::debug!(%peer, error = %e, "node API connection ended with an error");
    }
}
