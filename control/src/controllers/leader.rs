//! Leader election through a coordination.k8s.io Lease (as kube-controller-manager does):
//! take the lease when it is free or expired, renew it, and step down when a renewal fails.
//! A leader that stops cleanly hands the lease back (client-go's `ReleaseOnCancel`), so its
//! successor — often the same server restarted — takes over at once instead of waiting
//! out the lease.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client, api::PostParams};
use serde_json::json;
use tracing::{debug, info};

/// How long a lease is valid without renewal.
const LEASE_SECONDS: i64 = 15;
/// How often the leader renews.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often a follower retries.
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// Whether a lease held by someone else may be taken at `now`: no holder (released), or
/// not renewed within its duration.
fn is_free(spec: &k8s_openapi::api::coordination::v1::LeaseSpec, now: jiff::Timestamp) -> bool {
    if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
        return true;
    }
    spec.renew_time.as_ref().is_none_or(|t| {
        let duration = spec.lease_duration_seconds.map_or(LEASE_SECONDS, i64::from);
        t.0.as_second() + duration < now.as_second()
    })
}

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
                if !mine && !is_free(&spec, now()) {
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

    /// Hand the lease back if this contender holds it: the holder is cleared, so the next
    /// contender takes it on its first try. Best effort — a lease not released simply
    /// expires.
    pub async fn release(&self) {
        let Ok(Some(current)) = self.leases.get_opt(&self.name).await else {
            return;
        };
        let spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let mut lease = current;
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = None;
            spec.acquire_time = None;
            spec.lease_duration_seconds = Some(1);
        }
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!("released the leader lease"),
            Err(e) => debug!(error = %e, "releasing the leader lease failed"),
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

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::coordination::v1::LeaseSpec, apimachinery::pkg::apis::meta::v1::MicroTime,
    };

    use super::*;

    fn held(by: Option<&str>, renewed_seconds_ago: i64) -> (LeaseSpec, jiff::Timestamp) {
        let now = jiff::Timestamp::from_second(1_000_000).expect("a valid time");
        let renewed =
            jiff::Timestamp::from_second(1_000_000 - renewed_seconds_ago).expect("a valid time");
        let spec = LeaseSpec {
            holder_identity: by.map(str::to_owned),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        };
        (spec, now)
    }

    #[test]
    fn a_lease_renewed_within_its_duration_is_not_free() {
        let (spec, now) = held(Some("other"), 5);
        assert!(!is_free(&spec, now));
    }

    #[test]
    fn an_expired_lease_is_free() {
        let (spec, now) = held(Some("other"), 16);
        assert!(is_free(&spec, now));
    }

    #[test]
    fn a_released_lease_is_free_at_once() {
        for holder in [None, Some("")] {
            let (spec, now) = held(holder, 0);
            assert!(is_free(&spec, now), "holder {holder:?}");
        }
    }
}
