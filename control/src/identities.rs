//! The identities skiff-control's own clients act with: a client certificate from the
//! cluster CA per identity (kube's names — `system:kube-controller-manager`,
//! `system:kube-scheduler`, and each controller's ServiceAccount
//! `system:serviceaccount:kube-system:<controller>`), so each is authorized by its own
//! roles, never as `system:masters`.

use std::collections::BTreeMap;

use kube::Client;

use crate::{
    authz::{rbac::bootstrap::controller_user_name, skiff_policy::CONTROLLER_ACCOUNTS},
    controllers::Clients,
    model::user::SERVICE_ACCOUNTS,
    pki::{self, Ca},
};

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Issuing the certificate failed.
    #[error("issuing a certificate for {user}: {source}")]
    Certificate {
        /// The identity.
        user: String,
        /// What failed.
        source: pki::PkiError,
    },
    /// Building the client failed.
    #[error("a client for {user}: {message}")]
    Client {
        /// The identity.
        user: String,
        /// What failed.
        message: String,
    },
}

/// A client of `server` acting as `user` in `groups`.
pub async fn client(
    server: &str,
    ca: &Ca,
    user: &str,
    groups: &[String],
) -> Result<Client, IdentityError> {
    let pem = ca
        .client(user, groups)
        .map_err(|source| IdentityError::Certificate {
            user: user.to_owned(),
            source,
        })?;
    let failed = |message: String| IdentityError::Client {
        user: user.to_owned(),
        message,
    };
    let text = pki::kubeconfig(server, &ca.pem, user, &pem);
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&text).map_err(|e| failed(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| failed(e.to_string()))?;
    Client::try_from(config).map_err(|e| failed(e.to_string()))
}

/// The controllers', the scheduler's and leader election's clients of `server`.
pub async fn controller_clients(server: &str, ca: &Ca) -> Result<Clients, IdentityError> {
    let manager = client(server, ca, "system:kube-controller-manager", &[]).await?;
    let scheduler = client(server, ca, "system:kube-scheduler", &[]).await?;
    let groups = vec![
        SERVICE_ACCOUNTS.to_owned(),
        format!("{SERVICE_ACCOUNTS}:kube-system"),
    ];
    let mut controllers = BTreeMap::new();
    for account in CONTROLLER_ACCOUNTS {
        let user = controller_user_name(account);
        controllers.insert(
            (*account).to_owned(),
            client(server, ca, &user, &groups).await?,
        );
    }
    Ok(Clients {
        manager,
        scheduler,
        controllers,
    })
}
