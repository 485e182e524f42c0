//! The ReplicaSet controller: keep `spec.replicas` active pods matching the selector, owned
//! by the set (adopting matching orphans), deleting surplus pods in kube's order, and report
//! replicas / ready / available in status. ReplicationControllers are served by the same
//! generic reconcile through the [`Replicated`] view of their kind.

use super::drive::{Context, Error};
use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::ReplicaSet,
        core::v1::{Pod, PodTemplateSpec, ReplicationController},
    },
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::json;

use super::workload::{
    controller_ref, create_pod, deletion_rank, is_active, is_available, is_ready, owned_pods,
    pod_from_template, status_differs,
};
use skiff_events::reference;

/// Most pods created or deleted in one pass (kube's burstReplicas).
const BURST: usize = 500;

/// What the controller needs of a replicated object (ReplicaSet or ReplicationController).
pub trait Replicated:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + serde::Serialize
    + Send
    + Sync
    + 'static
{
    /// `apps/v1` or `v1`.
    const API_VERSION: &'static str;
    /// The kind.
    const KIND: &'static str;
    /// spec.replicas.
    fn replicas(&self) -> i32;
    /// The selector as a LabelSelector (an RC's map becomes matchLabels).
    fn selector(&self) -> LabelSelector;
    /// The pod template.
    fn template(&self) -> Option<PodTemplateSpec>;
    /// spec.minReadySeconds.
    fn min_ready_seconds(&self) -> i32;
    /// The current status as JSON.
    fn status_json(&self) -> serde_json::Value;
}

impl Replicated for ReplicaSet {
    const API_VERSION: &'static str = "apps/v1";
    const KIND: &'static str = "ReplicaSet";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn selector(&self) -> LabelSelector {
        self.spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default()
    }
    fn template(&self) -> Option<PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.clone())
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
}

impl Replicated for ReplicationController {
    const API_VERSION: &'static str = "v1";
    const KIND: &'static str = "ReplicationController";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn selector(&self) -> LabelSelector {
        // An RC without a selector selects its template's labels.
        let labels = self
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .or_else(|| self.template()?.metadata?.labels);
        LabelSelector {
            match_labels: labels,
            match_expressions: None,
        }
    }
    fn template(&self) -> Option<PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.clone())
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
}

/// Run the controller (ReplicaSets and ReplicationControllers) until aborted.
pub async fn run(client: Client) {
    tokio::join!(
        run_for::<ReplicaSet>(client.clone(), "replicaset-controller"),
        run_for::<ReplicationController>(client, "replicationcontroller-controller"),
    );
}

async fn run_for<K: Replicated>(client: Client, component: &'static str) {
    let sets: Api<K> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let ctx = Context::new(client, component);
    let controller =
        Controller::new(sets, watcher::Config::default()).owns(pods, watcher::Config::default());
    super::drive::drive(
        controller,
        component,
        Duration::from_secs(2),
        reconcile::<K>,
        ctx,
    )
    .await;
}

async fn reconcile<K: Replicated>(set: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let selector = set.selector();
    let meta = set.meta();
    let owner = controller_ref(K::API_VERSION, K::KIND, meta);
    let deleting = meta.deletion_timestamp.is_some();
    let pods = owned_pods(&ctx.client, &namespace, &selector, &owner, !deleting).await?;
    let mut active: Vec<Pod> = pods.into_iter().filter(is_active).collect();
    let wanted = usize::try_from(set.replicas().max(0)).unwrap_or(0);
    let set_ref = reference(K::API_VERSION, K::KIND, meta);
    let mut failure = None;
    if !deleting && active.len() < wanted {
        let template = set.template().unwrap_or_default();
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
    let pods = owned_pods(&ctx.client, &namespace, &selector, &owner, false).await?;
    let active: Vec<&Pod> = pods.iter().filter(|p| is_active(p)).collect();
    let now = jiff::Timestamp::now();
    let min_ready = set.min_ready_seconds();
    let template_labels = set
        .template()
        .and_then(|t| t.metadata)
        .and_then(|m| m.labels)
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
        "observedGeneration": meta.generation,
    });
    if let Some(message) = failure {
        status["conditions"] = json!([{
            "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": message, "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }]);
    }
    let current = set.status_json();
    let changed = status_differs(&current, &status);
    if changed {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
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
