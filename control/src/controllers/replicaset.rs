//! The ReplicaSet controller: keep `spec.replicas` active pods matching the selector, owned
//! by the set (adopting matching orphans), deleting surplus pods in kube's order, and report
//! replicas / ready / available in status. ReplicationControllers are served by the same
//! logic through their own kind.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Pod};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::json;

use super::workload::{
    controller_ref, create_pod, deletion_rank, is_active, is_available, is_ready, owned_pods,
    pod_from_template, status_differs,
};
use skiff_events::{Recorder, reference};

/// Most pods created or deleted in one pass (kube's burstReplicas).
const BURST: usize = 500;

/// Errors that make a reconcile retry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: Client,
    recorder: Recorder,
}

/// Run the controller until aborted.
pub async fn run(client: Client) {
    let sets: Api<ReplicaSet> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), "replicaset-controller"),
        client,
    });
    Controller::new(sets, watcher::Config::default())
        .owns(pods, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "replicaset reconcile failed");
            }
        })
        .await;
}

fn error_policy(_set: Arc<ReplicaSet>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(%error, "replicaset sync failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(set: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let spec = set.spec.clone().unwrap_or_default();
    let owner = controller_ref("apps/v1", "ReplicaSet", &set.metadata);
    let deleting = set.metadata.deletion_timestamp.is_some();
    let pods = owned_pods(&ctx.client, &namespace, &spec.selector, &owner, !deleting).await?;
    let mut active: Vec<Pod> = pods.into_iter().filter(is_active).collect();
    let wanted = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
    let set_ref = reference("apps/v1", "ReplicaSet", &set.metadata);
    let mut failure = None;
    if !deleting && active.len() < wanted {
        let template = spec.template.clone().unwrap_or_default();
        let missing = (wanted - active.len()).min(BURST);
        let pod = pod_from_template(
            &template,
            owner.clone(),
            &namespace,
            &format!("{name}-"),
            None,
        );
        let creations =
            futures::future::join_all((0..missing).map(|_| create_pod(&ctx.client, &pod))).await;
        for created in creations {
            match created {
                Ok(pod_name) => {
                    ctx.recorder
                        .record(
                            &set_ref,
                            "Normal",
                            "SuccessfulCreate",
                            &format!("Created pod: {pod_name}"),
                        )
                        .await;
                }
                Err(e) => {
                    let message = format!("Error creating: {e}");
                    ctx.recorder
                        .record(&set_ref, "Warning", "FailedCreate", &message)
                        .await;
                    failure = Some(message);
                }
            }
        }
    } else if active.len() > wanted {
        active.sort_by_key(deletion_rank);
        let surplus = (active.len() - wanted).min(BURST);
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
        for pod in active.iter().take(surplus) {
            let pod_name = pod.name_any();
            match api.delete(&pod_name, &DeleteParams::default()).await {
                Ok(_) => {
                    ctx.recorder
                        .record(
                            &set_ref,
                            "Normal",
                            "SuccessfulDelete",
                            &format!("Deleted pod: {pod_name}"),
                        )
                        .await;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    // Status from what exists now (as kube does, after this pass's changes).
    let pods = owned_pods(&ctx.client, &namespace, &spec.selector, &owner, false).await?;
    let active: Vec<&Pod> = pods.iter().filter(|p| is_active(p)).collect();
    let now = jiff::Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let labels = p.labels();
            template_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .count();
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| is_available(p, min_ready, now))
        .count();
    let mut status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": set.metadata.generation,
    });
    if let Some(message) = failure {
        status["conditions"] = json!([{
            "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": message, "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }]);
    }
    let current = serde_json::to_value(&set.status).unwrap_or_default();
    let changed = status_differs(&current, &status);
    if changed {
        let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    // Pods that are ready but not yet available need another look after minReadySeconds.
    if ready > available && min_ready > 0 {
        return Ok(Action::requeue(Duration::from_secs(
            u64::try_from(min_ready).unwrap_or(1),
        )));
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}
