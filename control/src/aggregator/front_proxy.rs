//! The front proxy's identity, as kube-apiserver's `--proxy-client-cert-file` and
//! `--requestheader-*` flags set it up: a front-proxy CA (kept in etcd beside the cluster
//! CA, created once by whichever replica starts first), a client certificate
//! `front-proxy-client` issued by it to each replica, and the
//! `kube-system/extension-apiserver-authentication` ConfigMap that tells extension API
//! servers (metrics-server, prometheus-adapter…) to trust that certificate and the
//! `X-Remote-User`/`X-Remote-Group`/`X-Remote-Extra-` headers it sends.

use serde_json::json;

use crate::{
    pki::{Ca, Pem, PkiError},
    store::{Store, StoreError},
};

/// etcd key of the front-proxy CA.
const FRONT_PROXY_CA_KEY: &str = "/skiff/pki/front-proxy-ca";
/// The CN of the proxy's client certificate (kubeadm's), the only name extension servers
/// are told to accept.
pub const CLIENT_NAME: &str = "front-proxy-client";
/// Header naming the user a proxied request acts for.
pub const USER_HEADER: &str = "X-Remote-User";
/// Header naming one group of that user (repeated).
pub const GROUP_HEADER: &str = "X-Remote-Group";
/// Prefix of the headers carrying the user's extra attributes.
pub const EXTRA_PREFIX: &str = "X-Remote-Extra-";

/// Load (or create) the front-proxy CA and issue this replica's client certificate.
pub async fn client_identity(store: &Store) -> Result<(Ca, Pem), PkiError> {
    let ca = Ca::load_or_create_at(store, FRONT_PROXY_CA_KEY, "front-proxy-ca").await?;
    let client = ca.client(CLIENT_NAME, &[])?;
    Ok((ca, client))
}

/// Create `kube-system/extension-apiserver-authentication` unless it exists: the client CA
/// (`cluster_ca`) and the request-header settings naming `front_proxy_ca`.
pub async fn publish_authentication(
    store: &Store,
    cluster_ca: &str,
    front_proxy_ca: &str,
) -> Result<(), StoreError> {
    let list = |v: &str| json!([v]).to_string();
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {
            "client-ca-file": cluster_ca,
            "requestheader-client-ca-file": front_proxy_ca,
            "requestheader-allowed-names": list(CLIENT_NAME),
            "requestheader-username-headers": list(USER_HEADER),
            "requestheader-group-headers": list(GROUP_HEADER),
            "requestheader-extra-headers-prefix": list(EXTRA_PREFIX),
        },
    });
    crate::bootstrap::ensure(store, "", "v1", "configmaps", config_map).await
}
