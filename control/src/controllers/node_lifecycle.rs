//! The node lifecycle controller: a node whose Lease in kube-node-lease has not been renewed
//! for the grace period gets Ready=Unknown ("Kubelet stopped posting node status.") and the
//! `node.kubernetes.io/unreachable` NoSchedule and NoExecute taints; once the Lease is fresh
//! again they are removed. Pods on a node with a NoExecute taint they do not tolerate — or
//! tolerate only for `tolerationSeconds` that have passed since the taint was added — are
//! deleted (they turn Terminating), so their controllers create replacements elsewhere.

use std::{collections::HashMap, time::Duration};

use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{Node, Pod, Taint},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde_json::json;

use skiff_events::{Recorder, reference};

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// How often nodes are looked at.
const MONITOR_PERIOD: Duration = Duration::from_secs(2);

fn stamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Run until aborted; `grace` is how long a Lease may go unrenewed.
pub async fn run(client: Client, grace: Duration) {
    let recorder = Recorder::new(client.clone(), "node-controller");
    let mut ticker = tokio::time::interval(MONITOR_PERIOD);
    // When this controller first saw each node (a fresh leader gives nodes a full grace).
    let mut first_seen: HashMap<String, jiff::Timestamp> = HashMap::new();
    loop {
        ticker.tick().await;
        if let Err(e) = pass(&client, &recorder, grace, &mut first_seen).await {
            tracing::debug!(error = %e, "node lifecycle pass failed");
        }
    }
}

async fn pass(
    client: &Client,
    recorder: &Recorder,
    grace: Duration,
    first_seen: &mut HashMap<String, jiff::Timestamp>,
) -> Result<(), kube::Error> {
    let now = jiff::Timestamp::now();
    let nodes_api: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renewed: HashMap<String, jiff::Timestamp> = leases
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|l| Some((l.name_any(), l.spec?.renew_time?.0)))
        .collect();
    let grace =
        jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::from_secs(40));
    for node in nodes_api.list(&ListParams::default()).await?.items {
        let name = node.name_any();
        let seen = *first_seen.entry(name.clone()).or_insert(now);
        let last = renewed.get(&name).copied().unwrap_or(seen).max(seen);
        let stale = last + grace < now;
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let tainted = taints.iter().any(|t| t.key == UNREACHABLE);
        if stale && !tainted {
            mark_unreachable(&nodes_api, &node, taints, now).await?;
            recorder
                .record(
                    &reference("v1", "Node", &node.metadata),
                    "Normal",
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                )
                .await;
            tracing::warn!(node = %name, "node lease expired: marked unreachable");
        } else if !stale && tainted {
            let kept: Vec<Taint> = taints
                .into_iter()
                .filter(|t| t.key != UNREACHABLE)
                .collect();
            nodes_api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"taints": kept}})),
                )
                .await?;
            recorder
                .record(
                    &reference("v1", "Node", &node.metadata),
                    "Normal",
                    "NodeReady",
                    &format!("Node {name} status is now: NodeReady"),
                )
                .await;
            tracing::info!(node = %name, "node lease renewed: unreachable taints removed");
        }
        if stale || tainted {
            evict(client, recorder, &node, now).await?;
        }
    }
    Ok(())
}

async fn mark_unreachable(
    nodes: &Api<Node>,
    node: &Node,
    mut taints: Vec<Taint>,
    now: jiff::Timestamp,
) -> Result<(), kube::Error> {
    let name = node.name_any();
    for effect in ["NoSchedule", "NoExecute"] {
        taints.push(
            serde_json::from_value(
                json!({"key": UNREACHABLE, "effect": effect, "timeAdded": stamp(now)}),
            )
            .unwrap_or_default(),
        );
    }
    nodes
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"taints": taints}})),
        )
        .await?;
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for c in conditions.iter_mut().filter(|c| c.type_ == "Ready") {
        c.status = "Unknown".to_owned();
        c.reason = Some("NodeStatusUnknown".to_owned());
        c.message = Some("Kubelet stopped posting node status.".to_owned());
        c.last_transition_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
    }
    nodes
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": conditions}})),
        )
        .await?;
    Ok(())
}

/// Delete pods whose toleration of the node's NoExecute taints has run out.
async fn evict(
    client: &Client,
    recorder: &Recorder,
    node: &Node,
    now: jiff::Timestamp,
) -> Result<(), kube::Error> {
    let name = node.name_any();
    let taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.effect == "NoExecute")
        .collect();
    if taints.is_empty() {
        return Ok(());
    }
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
        .await?;
    for pod in on_node
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        let expired = taints.iter().any(|taint| {
            let added = taint.time_added.as_ref().map_or(now, |t| t.0);
            let matching: Vec<_> = tolerations
                .iter()
                .filter(|t| crate::scheduler::predicates::tolerated(taint, std::slice::from_ref(t)))
                .collect();
            if matching.is_empty() {
                return true;
            }
            // Tolerated forever unless every matching toleration has a time limit.
            let limit = matching
                .iter()
                .map(|t| t.toleration_seconds)
                .collect::<Option<Vec<i64>>>();
            limit.is_some_and(|secs| {
                let shortest = secs.into_iter().min().unwrap_or(0).max(0);
                added
                    .checked_add(jiff::SignedDuration::from_secs(shortest))
                    .is_ok_and(|end| end <= now)
            })
        });
        if expired {
            let namespace = pod.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            if api
                .delete(&pod.name_any(), &DeleteParams::default())
                .await
                .is_ok()
            {
                recorder
                    .record(
                        &reference("v1", "Pod", &pod.metadata),
                        "Normal",
                        "TaintManagerEviction",
                        &format!("Marking for deletion Pod {namespace}/{}", pod.name_any()),
                    )
                    .await;
            }
        }
    }
    Ok(())
}
