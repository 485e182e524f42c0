//! Connections from the API server to node agents (pods/log, pods/exec): TLS with the API
//! server's own client certificate (`kube-apiserver-kubelet-client`, group system:masters),
//! which the agents require, and the agent's serving certificate verified against the
//! cluster CA for the node's address (kube-apiserver with `--kubelet-certificate-authority`):
//! logs and exec never go to an impostor on a node's address.

use std::sync::Arc;

use rustls::{
    ClientConfig,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::pki::Pem;

/// The TLS client configuration presenting `identity` to agents and trusting agents
/// whose serving certificates `ca_pem` signed.
pub fn config(ca_pem: &str, identity: &Pem) -> anyhow::Result<Arc<ClientConfig>> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(identity.cert.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(identity.key.as_bytes())?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Open a TLS connection to the agent at `address` (`ip:port`).
pub async fn connect(
    config: &Arc<ClientConfig>,
    address: &str,
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        TcpStream::connect(address),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS to the agent: {e}"))
}
