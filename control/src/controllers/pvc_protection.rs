//! The PVC protection controller (kube's `pvc-protection-controller`): a claim being deleted
//! keeps its `kubernetes.io/pvc-protection` finalizer (added at creation by the
//! StorageObjectInUseProtection admission plugin) while a pod that is not finished uses it,
//! so the data is not reclaimed under a running pod; once no such pod is left the finalizer
//! is removed and the claim goes.
//!
//! Caches hold claims and pods; a change of either wakes a pass over the claims being
//! deleted. Before a finalizer is removed the pods of the claim's namespace are listed live
//! (kube asks the API server too), so a pod the cache has not seen yet still protects it.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, PostParams},
    runtime::reflector::{self, Store},
};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::drive::cache_waking;
use crate::model::storage::{PVC_PROTECTION, pod_uses_claim};

/// A pass runs at least this often.
const RESYNC: Duration = Duration::from_secs(30);
const NAME: &str = "pvc-protection";

/// True if `pod` still holds its claims (it has not finished).
fn holds_claims(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// True if `claim` waits for this controller: being deleted, with the finalizer.
fn protected_and_deleted(claim: &PersistentVolumeClaim) -> bool {
    claim.metadata.deletion_timestamp.is_some()
        && claim.finalizers().iter().any(|f| f == PVC_PROTECTION)
}

/// True if some pod of `pods` (any namespace) in the claim's namespace uses it.
fn in_use<'a>(claim: &PersistentVolumeClaim, pods: impl IntoIterator<Item = &'a Pod>) -> bool {
    let namespace = claim.namespace();
    let name = claim.name_any();
    pods.into_iter()
        .any(|p| p.namespace() == namespace && holds_claims(p) && pod_uses_claim(p, &name))
}

/// Run the controller until aborted.
pub async fn run(client: Client) {
    let (claims, claims_w) = reflector::store::<PersistentVolumeClaim>();
    let (pods, pods_w) = reflector::store::<Pod>();
    let wake = Arc::new(Notify::new());
    let mut watches = tokio::task::JoinSet::new();
    watches.spawn(cache_waking(
        NAME,
        Api::all(client.clone()),
        claims_w,
        Arc::clone(&wake),
    ));
    watches.spawn(cache_waking(
        NAME,
        Api::all(client.clone()),
        pods_w,
        Arc::clone(&wake),
    ));
    if claims.wait_until_ready().await.is_err() || pods.wait_until_ready().await.is_err() {
        warn!("pvc protection controller: a watch ended before its cache was ready");
        return;
    }
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            () = wake.notified() => {}
            _ = tick.tick() => {}
        }
        let _ = super::metrics::instrumented(NAME, pass(&client, &claims, &pods)).await;
    }
}

/// Release every deleted claim no pod uses any more.
async fn pass(
    client: &Client,
    claims: &Store<PersistentVolumeClaim>,
    pods: &Store<Pod>,
) -> Result<(), kube::Error> {
    let cached: Vec<Arc<Pod>> = pods.state();
    for claim in claims.state() {
        if !protected_and_deleted(&claim) || in_use(&claim, cached.iter().map(AsRef::as_ref)) {
            continue;
        }
        let namespace = claim.namespace().unwrap_or_default();
        let live = Api::<Pod>::namespaced(client.clone(), &namespace)
            .list(&ListParams::default())
            .await?;
        if in_use(&claim, &live.items) {
            continue;
        }
        let mut released = (*claim).clone();
        released
            .metadata
            .finalizers
            .get_or_insert_with(Vec::new)
            .retain(|f| f != PVC_PROTECTION);
        let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace);
        match api
            .replace(&claim.name_any(), &PostParams::default(), &released)
            .await
        {
            Ok(_) => {
                info!(claim = %format!("{namespace}/{}", claim.name_any()), "claim no longer in use: released")
            }
            Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => {
                debug!(claim = %claim.name_any(), "claim changed; next pass");
            }
            Err(e) => warn!(error = %e, "cannot remove the pvc-protection finalizer"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_deleted_claim_is_held_while_a_running_pod_uses_it() {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "ns", "finalizers": [PVC_PROTECTION],
                         "deletionTimestamp": "2025-01-01T00:00:00Z"},
        }))
        .expect("claim");
        assert!(protected_and_deleted(&claim));
        let pod = |namespace: &str, phase: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": namespace},
                "spec": {"containers": [], "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]},
                "status": {"phase": phase},
            }))
            .expect("pod")
        };
        assert!(in_use(&claim, &[pod("ns", "Running")]));
        assert!(!in_use(&claim, &[pod("ns", "Succeeded")]));
        assert!(!in_use(&claim, &[pod("other", "Running")]));
    }
}
