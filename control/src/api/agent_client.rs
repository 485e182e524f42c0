//! Connections from the API server to node agents (pods/log, pods/exec): TLS with the API
//! server's own client certificate (`kube-apiserver-kubelet-client`, group system:masters),
//! which the agents require. As kube-apiserver does without
//! `--kubelet-certificate-authority`, the agents' self-signed serving certificates are not
//! verified; the channel is encrypted and the agent authenticates the API server.

use std::sync::Arc;

use rustls::{
    ClientConfig,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::pki::Pem;

/// The TLS client configuration presenting `identity` to agents.
pub fn config(identity: &Pem) -> anyhow::Result<Arc<ClientConfig>> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(identity.cert.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(identity.key.as_bytes())?;
    Ok(skiff_tls::unverified_server_config(Some((chain, key)))?)
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
