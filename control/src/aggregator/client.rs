//! Talking to an extension API server: TLS as kube-aggregator does (the APIService's
//! caBundle for `<service>.<namespace>.svc`, or no check at all with
//! `insecureSkipTLSVerify`), presenting the front-proxy client certificate, over one HTTP/1
//! connection per request.

use std::{sync::Arc, time::Duration};

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::{
    ClientConfig,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::apiservice::Backend;
use crate::pki::Pem;

/// How long connecting and the TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The TLS client configuration for `backend`, presenting `identity`.
pub fn tls_config(backend: &Backend, identity: &Pem) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(identity.cert.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("front-proxy client certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key.as_bytes())
        .map_err(|e| format!("front-proxy client key: {e}"))?;
    if backend.insecure {
        // insecureSkipTLSVerify: no chain or name check; handshake signatures still are.
        return skiff_tls::unverified_server_config(Some((chain, key)))
            .map_err(|e| format!("front-proxy client certificate: {e}"));
    }
    let bundle = Some(backend.ca_bundle.as_slice());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(crate::admission::webhook::client::roots(bundle)?)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("front-proxy client certificate: {e}"))?;
    Ok(Arc::new(config))
}

/// Send `request` to `address` over TLS for `server_name`; the response streams from the
/// connection, which lives as long as its body is read.
pub async fn send<B>(
    config: Arc<ClientConfig>,
    address: &str,
    server_name: &str,
    request: hyper::Request<B>,
) -> Result<hyper::Response<Incoming>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let connect = async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| format!("dial tcp {address}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))
    };
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| format!("dial tcp {address}: i/o timeout"))??;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}
