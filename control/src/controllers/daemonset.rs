//! The DaemonSet controller: one pod per eligible node (nodeSelector and required node
//! affinity match, taints tolerated — with the tolerations kube adds to daemon pods), bound
//! to its node through node affinity on `metadata.name`; rolling updates replace pods of an
//! old template at most `maxUnavailable` at a time; status counts as kube reports them.

use super::drive::{Context, Error};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Node, Pod, Toleration},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    runtime::{Controller, WatchStreamExt, controller::Action, watcher},
};
use serde_json::json;

use super::{
    deployment::{template_hash, without_defaults},
    workload::{
        controller_ref, create_pod, is_active, is_available, is_ready, owned_pods,
        pod_from_template, status_differs,
    },
};
use crate::scheduler::{cache::NodeInfo, predicates};
use skiff_events::reference;

const HASH_LABEL: &str = "controller-revision-hash";

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
    let template_value =
        without_defaults(&serde_json::to_value(&spec.template).unwrap_or_default());
    let hash = template_hash(&template_value, 0);
    let mut template = spec.template.clone();
    template
        .metadata
        .get_or_insert_default()
        .labels
        .get_or_insert_default()
        .insert(HASH_LABEL.to_owned(), hash.clone());
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
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut changed = false;
    // Missing daemons: create; surplus or misplaced ones: delete.
    for node in &eligible {
        if by_node.get(node).is_none_or(Vec::is_empty) {
            let mut pod = pod_from_template(
                &template,
                owner.clone(),
                &namespace,
                &format!("{name}-"),
                None,
            );
            if let Some(pod_spec) = pod.spec.as_mut() {
                pod_spec.affinity = Some(serde_json::from_value(json!({"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                    ]}}})).unwrap_or_default());
            }
            match create_pod(&ctx.client, &pod).await {
                Ok(pod_name) => {
                    changed = true;
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
    }
    for (node, node_pods) in &by_node {
        let surplus: Vec<&&Pod> = if eligible.contains(node) {
            node_pods.iter().skip(1).collect()
        } else {
            node_pods.iter().collect()
        };
        for pod in surplus {
            let _ = api.delete(&pod.name_any(), &DeleteParams::default()).await;
            changed = true;
        }
    }
    // Rolling update: replace old-template pods, keeping at most maxUnavailable down.
    let now = jiff::Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let on_delete = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete");
    if !on_delete {
        let max_unavailable = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.as_ref())
            .map_or(1, |v| match v {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => *n,
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(p) => {
                    let percent: f64 = p.trim_end_matches('%').parse().unwrap_or(0.0);
                    ((eligible.len() as f64) * percent / 100.0).floor() as i32
                }
            })
            .max(1);
        let unavailable = eligible
            .iter()
            .filter(|n| {
                by_node
                    .get(*n)
                    .and_then(|p| p.first())
                    .is_none_or(|p| !is_available(p, min_ready, now))
            })
            .count();
        let mut budget = usize::try_from(max_unavailable)
            .unwrap_or(1)
            .saturating_sub(unavailable);
        for node in &eligible {
            let Some(pod) = by_node.get(node).and_then(|p| p.first()) else {
                continue;
            };
            let old = pod.labels().get(HASH_LABEL) != Some(&hash);
            if old && (budget > 0 || !is_available(pod, min_ready, now)) {
                let _ = api.delete(&pod.name_any(), &DeleteParams::default()).await;
                changed = true;
                budget = budget.saturating_sub(1);
            }
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
        "updatedNumberScheduled": scheduled.iter().filter(|p| p.labels().get(HASH_LABEL) == Some(&hash)).count(),
        "observedGeneration": set.metadata.generation,
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
