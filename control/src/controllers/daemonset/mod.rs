//! The DaemonSet controller: one pod per eligible node (nodeSelector and required node
//! affinity match, taints tolerated — with the tolerations kube adds to daemon pods), bound
//! to its node through node affinity on `metadata.name`; the template's history is kept in
//! ControllerRevisions ([`super::history`]) and pods carry their revision's hash; rolling
//! updates replace pods of other revisions within `maxUnavailable`, or surge with `maxSurge`
//! ([`update`]); status counts as kube reports them.

mod update;

use super::drive::{Context, Error};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::{ControllerRevision, DaemonSet},
    core::v1::{
        Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
        Toleration,
    },
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    runtime::{Controller, WatchStreamExt, controller::Action, watcher},
};
use serde_json::json;

use super::{
    history::{self, POD_REVISION_LABEL, Style},
    workload::{
        controller_ref, create_pod, is_active, is_available, is_ready, owned_pods,
        pod_from_template, status_differs,
    },
};
use crate::scheduler::{cache::NodeInfo, predicates};
use skiff_events::reference;

/// The pod label kube puts the DaemonSet's generation in when it creates a pod.
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// Run the controller until aborted.
pub async fn run(client: Client) {
    let sets: Api<DaemonSet> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let node_changes = watcher::watcher(nodes, watcher::Config::default())
        .default_backoff()
        .map(|_| ());
    let ctx = Context::new(client, "daemonset-controller");
    let controller = Controller::new(sets, watcher::Config::default())
        .owns(pods, watcher::Config::default())
        .owns(
            Api::<ControllerRevision>::all(ctx.client.clone()),
            watcher::Config::default(),
        )
        .reconcile_all_on(node_changes);
    super::drive::drive(
        controller,
        "daemonset",
        Duration::from_secs(2),
        reconcile,
        ctx,
    )
    .await;
}

/// The tolerations kube adds to every daemon pod.
fn daemon_tolerations() -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.to_owned()),
        operator: Some("Exists".to_owned()),
        effect: Some(effect.to_owned()),
        ..Toleration::default()
    };
    vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
}

/// Node affinity that binds a pod to `node` (kube's daemon pods are scheduled this way).
fn pinned_to(node: &str) -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".to_owned(),
                        operator: "In".to_owned(),
                        values: Some(vec![node.to_owned()]),
                    }]),
                    match_expressions: None,
                }],
            }),
            preferred_during_scheduling_ignored_during_execution: None,
        }),
        ..Affinity::default()
    }
}

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .or_else(|| {
            let term = pod
                .spec
                .as_ref()?
                .affinity
                .as_ref()?
                .node_affinity
                .as_ref()?
                .required_during_scheduling_ignored_during_execution
                .as_ref()?
                .node_selector_terms
                .first()?
                .clone();
            term.match_fields?.first()?.values.clone()?.first().cloned()
        })
        .unwrap_or_default()
}

async fn reconcile(set: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let spec = set.spec.clone().unwrap_or_default();
    let owner = controller_ref("apps/v1", "DaemonSet", &set.metadata);
    let set_ref = reference("apps/v1", "DaemonSet", &set.metadata);
    let mut template = spec.template.clone();
    if let Some(pod_spec) = template.spec.as_mut() {
        let tolerations = pod_spec.tolerations.get_or_insert_default();
        for t in daemon_tolerations() {
            if !tolerations
                .iter()
                .any(|x| x.key == t.key && x.effect == t.effect)
            {
                tolerations.push(t);
            }
        }
    }
    let probe_pod = Pod {
        metadata: template.metadata.clone().unwrap_or_default(),
        spec: template.spec.clone(),
        status: None,
    };
    let nodes = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let eligible: Vec<String> = nodes
        .iter()
        .map(NodeInfo::from_node)
        .filter(|node| {
            // Only placement rules decide eligibility; resources are the scheduler's business.
            let mut roomy = node.clone();
            roomy.allocatable = crate::scheduler::cache::Resources {
                cpu: i128::MAX,
                memory: i128::MAX,
            };
            roomy.max_pods = i64::MAX;
            predicates::filter(
                &probe_pod,
                &predicates::PodNeeds::of(&probe_pod),
                &roomy,
                &crate::scheduler::cache::Cache::default(),
            )
            .is_empty()
        })
        .map(|n| n.name)
        .collect();
    let pods = owned_pods(&ctx.client, &namespace, &spec.selector, &owner, true).await?;
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods.iter().filter(|p| is_active(p)) {
        by_node.entry(node_of(pod)).or_default().push(pod);
    }
    for node_pods in by_node.values_mut() {
        node_pods.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    }
    // The history first: the update revision names the pods to create.
    let live: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.labels().get(POD_REVISION_LABEL).cloned())
        .collect();
    let status = set.status.clone().unwrap_or_default();
    let synced = history::sync(
        &ctx.client,
        &history::Owner {
            meta: &set.metadata,
            reference: owner.clone(),
            selector: &spec.selector,
            template: &spec.template,
            history_limit: spec.revision_history_limit.unwrap_or(10),
            collision_count: status.collision_count.unwrap_or(0),
            style: Style::DaemonSet,
        },
        &BTreeSet::new(),
        &live,
    )
    .await?;
    let hash = Style::DaemonSet.pod_label(&synced.update);
    let labels = template
        .metadata
        .get_or_insert_default()
        .labels
        .get_or_insert_default();
    labels.insert(POD_REVISION_LABEL.to_owned(), hash.clone());
    labels.insert(
        TEMPLATE_GENERATION_LABEL.to_owned(),
        set.metadata.generation.unwrap_or(0).to_string(),
    );
    let now = jiff::Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let is_new = |p: &Pod| p.labels().get(POD_REVISION_LABEL) == Some(&hash);
    let available = |p: &Pod| is_available(p, min_ready, now);
    let plan = update::plan(
        &update::View {
            eligible: &eligible,
            by_node: &by_node,
            is_new: &is_new,
            available: &available,
        },
        update::budget(spec.update_strategy.as_ref(), eligible.len()),
    );
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let changed = !plan.create_on.is_empty() || !plan.delete.is_empty();
    for node in &plan.create_on {
        let mut pod = pod_from_template(
            &template,
            owner.clone(),
            &namespace,
            &format!("{name}-"),
            None,
        );
        if let Some(pod_spec) = pod.spec.as_mut() {
            pod_spec.affinity = Some(pinned_to(node));
        }
        match create_pod(&ctx.client, &pod).await {
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
                ctx.recorder
                    .record(
                        &set_ref,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {e}"),
                    )
                    .await
            }
        }
    }
    for pod_name in &plan.delete {
        match api.delete(pod_name, &DeleteParams::default()).await {
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
    // Status.
    let scheduled: Vec<&Pod> = eligible
        .iter()
        .filter_map(|n| by_node.get(n).and_then(|p| p.first()).copied())
        .collect();
    let status = json!({
        "desiredNumberScheduled": eligible.len(),
        "currentNumberScheduled": scheduled.len(),
        "numberMisscheduled": by_node.keys().filter(|n| !eligible.contains(n)).count(),
        "numberReady": scheduled.iter().filter(|p| is_ready(p)).count(),
        "numberAvailable": scheduled.iter().filter(|p| is_available(p, min_ready, now)).count(),
        "numberUnavailable": eligible.len() - scheduled.iter().filter(|p| is_available(p, min_ready, now)).count(),
        "updatedNumberScheduled": scheduled.iter().filter(|p| is_new(p)).count(),
        "observedGeneration": set.metadata.generation,
        "collisionCount": (synced.collision_count > 0).then_some(synced.collision_count),
    });
    let current = serde_json::to_value(&set.status).unwrap_or_default();
    if status_differs(&current, &status) {
        let sets: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &namespace);
        sets.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(Action::requeue(Duration::from_secs(if changed {
        2
    } else {
        60
    })))
}
