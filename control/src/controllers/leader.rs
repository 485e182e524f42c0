//! Leader election through a coordination.k8s.io Lease (as kube-controller-manager does):
//! take the lease when it is free or expired, renew it, and step down when a renewal fails.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client, api::PostParams};
use serde_json::json;
use tracing::debug;

/// How long a lease is valid without renewal.
const LEASE_SECONDS: i64 = 15;
/// How often the leader renews.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often a follower retries.
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// One contender for a lease.
pub struct LeaderElection {
    leases: Api<Lease>,
    name: String,
    identity: String,
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn micro(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

impl LeaderElection {
    /// A contender for `namespace/name` as `identity`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: String) -> Self {
        Self {
            leases: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity,
        }
    }

    fn lease(&self, resource_version: Option<String>, acquired: Option<String>) -> Lease {
        let now = micro(now());
        serde_json::from_value(json!({
            "metadata": {"name": self.name, "resourceVersion": resource_version},
            "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": LEASE_SECONDS,
                     "acquireTime": acquired.unwrap_or_else(|| now.clone()), "renewTime": now},
        }))
        .unwrap_or_default()
    }

    /// One attempt: true if this contender holds the lease afterwards.
    async fn try_acquire_or_renew(&self) -> bool {
        match self.leases.get_opt(&self.name).await {
            Ok(None) => self
                .leases
                .create(&PostParams::default(), &self.lease(None, None))
                .await
                .is_ok(),
            Ok(Some(current)) => {
                let spec = current.spec.clone().unwrap_or_default();
                let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
                let expired = spec.renew_time.as_ref().is_none_or(|t| {
                    let duration = spec.lease_duration_seconds.map_or(LEASE_SECONDS, i64::from);
                    t.0.as_second() + duration < now().as_second()
                });
                if !mine && !expired {
                    return false;
                }
                let acquired = if mine {
                    spec.acquire_time.map(|t| micro(t.0))
                } else {
                    None
                };
                // Replace with the read resourceVersion: a racing contender gets 409.
                let lease = self.lease(current.metadata.resource_version.clone(), acquired);
                self.leases
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .is_ok()
            }
            Err(e) => {
                debug!(error = %e, "reading the leader lease failed");
                false
            }
        }
    }

    /// Wait until this contender leads.
    pub async fn acquire(&self) {
        while !self.try_acquire_or_renew().await {
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Keep renewing; return when leadership is lost.
    pub async fn hold(&self) {
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            if !self.try_acquire_or_renew().await {
                return;
            }
        }
    }
}
