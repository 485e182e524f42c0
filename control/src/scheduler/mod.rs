//! The scheduler: watch pods without a node and nodes, filter and score with an in-memory
//! cache, bind through `pods/binding`. A pod that fits nowhere gets PodScheduled=False
//! (reason Unschedulable) and a FailedScheduling event with kube-scheduler's message, and is
//! retried whenever nodes or bound pods change; a pod of higher priority may first evict
//! lower-priority ones to make room ([`preemption`]).

pub mod cache;
pub mod predicates;
pub mod preemption;
pub mod score;
pub mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::{
    core::v1::{Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::StorageClass,
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{
        WatchStreamExt,
        watcher::{self, Event},
    },
};
use serde_json::json;
use tokio::task::JoinSet;

use cache::{Cache, bound};
use skiff_events::{Recorder, reference};

/// The scheduler name pods select by default.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// Bindings in flight at once.
const MAX_IN_FLIGHT: usize = 64;

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn wants_scheduling(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.node_name.as_deref().unwrap_or_default().is_empty()
        && spec.scheduler_name.as_deref().unwrap_or(DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER
        && pod.metadata.deletion_timestamp.is_none()
        && !is_terminal(pod)
}

/// Outcome of one binding attempt.
enum Bound {
    Ok,
    /// Bound elsewhere already, or gone.
    Stale,
    /// Failed; retry later.
    Failed(String),
}

/// The scheduler state of one leader term.
struct Scheduler {
    client: Client,
    cache: Cache,
    /// Pods waiting for a node, by UID.
    pending: BTreeMap<String, Pod>,
    /// Last FailedScheduling message per pod (events only when it changes).
    reported: HashMap<String, String>,
    /// Something changed that may let pending pods fit.
    retry: bool,
    /// Where the next node search starts (round robin over the cache).
    next_start: usize,
    recorder: Recorder,
    /// Pods that preempted, by UID: the node they were nominated to and their victims
    /// (no second preemption while a victim is still there).
    nominated: HashMap<String, preemption::Plan>,
    /// Claims, volumes and classes, for the pods that use claims.
    volumes: volumes::VolumeCache,
}

/// Why a pod fits nowhere.
struct Unschedulable {
    /// kube-scheduler's message.
    message: String,
    /// Whether evicting lower-priority pods could help (not for missing or unbound claims).
    preemptible: bool,
}

/// Run until aborted (the caller aborts when leadership is lost).
pub async fn run(client: Client) {
    let mut scheduler = Scheduler {
        recorder: Recorder::new(client.clone(), DEFAULT_SCHEDULER),
        client: client.clone(),
        cache: Cache::default(),
        pending: BTreeMap::new(),
        reported: HashMap::new(),
        retry: false,
        next_start: 0,
        nominated: HashMap::new(),
        volumes: volumes::VolumeCache::default(),
    };
    let mut nodes = watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut pods = watcher::watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut claims = watcher::watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    let mut pvs = watcher::watcher(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    let mut classes = watcher::watcher(
        Api::<StorageClass>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    let mut in_flight: JoinSet<(String, String, Bound)> = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            Some(event) = nodes.next() => scheduler.on_node(event),
            Some(event) = pods.next() => scheduler.on_pod(event),
            Some(event) = claims.next() => {
                scheduler.retry |= event.is_ok_and(|e| volumes::apply(&mut scheduler.volumes.claims, e));
            }
            Some(event) = pvs.next() => {
                scheduler.retry |= event.is_ok_and(|e| volumes::apply(&mut scheduler.volumes.volumes, e));
            }
            Some(event) = classes.next() => {
                scheduler.retry |= event.is_ok_and(|e| volumes::apply(&mut scheduler.volumes.classes, e));
            }
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Ok((uid, node, outcome)) = done {
                    scheduler.on_bound(&uid, &node, outcome);
                }
            }
            _ = tick.tick() => scheduler.retry = true,
        }
        // Drain whatever else arrived before deciding, so one decision sees the freshest cache.
        scheduler.schedule_pending(&mut in_flight).await;
        crate::controllers::metrics::set_gauge(
            "scheduler_pending_pods",
            i64::try_from(scheduler.pending.len()).unwrap_or(i64::MAX),
        );
    }
}

impl Scheduler {
    fn on_node(&mut self, event: Result<Event<Node>, watcher::Error>) {
        match event {
            Ok(Event::Apply(node) | Event::InitApply(node)) => {
                self.cache.upsert_node(&node);
                self.retry = true;
            }
            Ok(Event::Delete(node)) => {
                self.cache
                    .remove_node(node.metadata.name.as_deref().unwrap_or_default());
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "node watch interrupted"),
        }
    }

    fn on_pod(&mut self, event: Result<Event<Pod>, watcher::Error>) {
        match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let node = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default();
                if !node.is_empty() {
                    self.pending.remove(&uid);
                    self.nominated.remove(&uid);
                    if is_terminal(&pod) {
                        self.retry |= self.cache.remove_pod(&uid);
                    } else {
                        self.cache.add_pod(&uid, bound(&pod, &node));
                    }
                } else if wants_scheduling(&pod) {
                    self.pending.insert(uid, pod);
                } else {
                    self.pending.remove(&uid);
                }
            }
            Ok(Event::Delete(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                self.pending.remove(&uid);
                self.reported.remove(&uid);
                self.nominated.remove(&uid);
                self.retry |= self.cache.remove_pod(&uid);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "pod watch interrupted"),
        }
    }

    fn on_bound(&mut self, uid: &str, node: &str, outcome: Bound) {
        match outcome {
            Bound::Ok => {
                self.reported.remove(uid);
            }
            Bound::Stale => {
                self.cache.remove_pod(uid);
            }
            Bound::Failed(e) => {
                tracing::warn!(pod_uid = uid, node, error = %e, "binding failed; will retry");
                self.cache.remove_pod(uid);
                self.retry = true;
            }
        }
    }

    /// Place every pending pod that has not been tried since the last change.
    async fn schedule_pending(&mut self, in_flight: &mut JoinSet<(String, String, Bound)>) {
        let fresh: Vec<String> = self
            .pending
            .keys()
            .filter(|uid| self.retry || !self.reported.contains_key(*uid))
            .cloned()
            .collect();
        self.retry = false;
        for uid in fresh {
            if in_flight.len() >= MAX_IN_FLIGHT {
                self.retry = true;
                break;
            }
            let Some(pod) = self.pending.get(&uid).cloned() else {
                continue;
            };
            let Some(decision) = isolated(&uid, || self.choose(&pod)) else {
                // A bug, not the pod's fault: it stays pending and is retried with the
                // others; every other pod is still scheduled.
                self.reported.insert(uid.clone(), String::new());
                continue;
            };
            match decision {
                Ok((node, claims)) => {
                    self.pending.remove(&uid);
                    // Assume the binding so the next decision sees this pod's requests.
                    self.cache.add_pod(&uid, bound(&pod, &node));
                    let client = self.client.clone();
                    let recorder = self.recorder.clone();
                    in_flight.spawn(async move {
                        let outcome = match bind_claims(&client, &claims, &node).await {
                            Ok(()) => bind(&client, &pod, &node).await,
                            Err(e) => Bound::Failed(e),
                        };
                        if matches!(outcome, Bound::Ok) {
                            let pod_ref = reference("v1", "Pod", &pod.metadata);
                            let message = format!(
                                "Successfully assigned {}/{} to {node}",
                                pod.metadata.namespace.clone().unwrap_or_default(),
                                pod.metadata.name.clone().unwrap_or_default()
                            );
                            recorder
                                .record(&pod_ref, "Normal", "Scheduled", &message)
                                .await;
                        }
                        (uid, node, outcome)
                    });
                }
                Err(Unschedulable {
                    message,
                    preemptible,
                }) => {
                    if preemptible {
                        self.preempt_for(&pod).await;
                    }
                    if self.reported.get(&uid) != Some(&message) {
                        self.reported.insert(uid.clone(), message.clone());
                        self.unschedulable(&pod, &message).await;
                    }
                }
            }
        }
    }

    /// The best node for `pod`, or kube-scheduler's explanation of why none fits. As
    /// kube-scheduler does on large clusters, the search stops once enough feasible nodes
    /// were found (percentageOfNodesToScore's adaptive default: 50 % minus 1 % per 125
    /// nodes, at least 5 % and at least 100 nodes), starting where the last search stopped.
    /// Claims of a WaitForFirstConsumer class come back with the node, to be bound for it
    /// before the pod is ([`volumes`]).
    fn choose(&mut self, pod: &Pod) -> Result<(String, volumes::PodVolumes), Unschedulable> {
        let total = self.cache.nodes.len();
        let claims = volumes::pre_filter(pod, &self.volumes).map_err(|why| Unschedulable {
            message: format!("0/{total} nodes are available: {why}."),
            preemptible: false,
        })?;
        let needs = predicates::PodNeeds::of(pod);
        let owner = bound(pod, "").owner;
        let percent = (50usize.saturating_sub(total / 125)).max(5);
        let enough = (total.saturating_mul(percent) / 100)
            .max(100)
            .min(total.max(1));
        let mut failures = Vec::new();
        let mut feasible = 0;
        let mut best: Option<(i64, &str)> = None;
        let start = self.next_start % total.max(1);
        let mut visited = 0;
        for node in self
            .cache
            .nodes
            .values()
            .skip(start)
            .chain(self.cache.nodes.values().take(start))
        {
            visited += 1;
            let mut reasons = predicates::filter(pod, &needs, node, &self.cache);
            reasons.extend(volumes::filter(&claims, node));
            if reasons.is_empty() {
                feasible += 1;
                let s = score::score(node, needs.requests, owner.as_deref(), &self.cache);
                if best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, &node.name));
                }
                if feasible >= enough {
                    break;
                }
            } else {
                failures.push(reasons);
            }
        }
        let chosen = best.map(|(_, n)| n.to_owned());
        self.next_start = (start + visited) % total.max(1);
        chosen
            .map(|node| (node, claims.clone()))
            .ok_or_else(|| Unschedulable {
                message: predicates::summary(total, &failures),
                preemptible: !claims.unbound_immediate,
            })
    }

    /// Evict lower-priority pods to make room for `pod` if that can make it fit (once: not
    /// again while the victims of its last preemption are still there). It is then
    /// nominated to the node (`status.nominatedNodeName`) and scheduled when room is free.
    async fn preempt_for(&mut self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(plan) = self.nominated.get(&uid)
            && plan.victims.iter().any(|v| self.cache.pods.contains_key(v))
        {
            return;
        }
        let Some(plan) = isolated(&uid, || preemption::plan(pod, &self.cache)).flatten() else {
            return;
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        tracing::info!(pod = %format!("{namespace}/{name}"), node = %plan.node,
                       victims = plan.victims.len(), "preempting lower-priority pods");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let nominate = json!({"status": {"nominatedNodeName": plan.node}});
        if let Err(e) = pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&nominate))
            .await
        {
            tracing::debug!(pod = %name, error = %e, "cannot nominate the pod");
        }
        for victim in &plan.victims {
            let Some(bound) = self.cache.pods.get(victim).cloned() else {
                continue;
            };
            let victims: Api<Pod> = Api::namespaced(self.client.clone(), &bound.namespace);
            match victims.delete(&bound.name, &DeleteParams::default()).await {
                Ok(_) => {
                    let victim_ref = ObjectReference {
                        api_version: Some("v1".to_owned()),
                        kind: Some("Pod".to_owned()),
                        name: Some(bound.name.clone()),
                        namespace: Some(bound.namespace.clone()),
                        uid: Some(victim.clone()),
                        ..ObjectReference::default()
                    };
                    let message = format!("Preempted by pod {uid} on node {}", plan.node);
                    self.recorder
                        .record(&victim_ref, "Normal", "Preempted", &message)
                        .await;
                }
                Err(e) => {
                    tracing::warn!(victim = %bound.name, error = %e, "cannot preempt a pod");
                }
            }
        }
        self.nominated.insert(uid, plan);
    }

    async fn unschedulable(&self, pod: &Pod, message: &str) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        tracing::info!(pod = %format!("{namespace}/{name}"), %message, "pod does not fit any node");
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let status = json!({"status": {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": null, "lastTransitionTime": now,
        }]}});
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(e) = pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            tracing::debug!(pod = %name, error = %e, "cannot mark the pod unschedulable");
        }
        self.recorder
            .record(
                &reference("v1", "Pod", &pod.metadata),
                "Warning",
                "FailedScheduling",
                message,
            )
            .await;
    }
}

/// Run one pod's scheduling decision, containing a panic in it: a pod that trips a bug
/// must not take the scheduler (and every other pod's scheduling) down with it. None if it
/// panicked (logged).
fn isolated<T>(uid: &str, decide: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(decide)) {
        Ok(decision) => Some(decision),
        Err(panic) => {
            let what = crate::controllers::panic_message(panic.as_ref());
            tracing::error!(pod_uid = uid, panic = %what, "scheduling the pod panicked; it stays pending");
            None
        }
    }
}

/// How long the scheduler waits for the PV controller to bind a pod's claims
/// (kube-scheduler's `bindTimeoutSeconds` is 600; the lab's provisioner answers at once).
const CLAIM_BIND_TIMEOUT: Duration = Duration::from_secs(120);

/// kube's VolumeBinding PreBind: write the chosen node on each unbound claim of a
/// WaitForFirstConsumer class (`volume.kubernetes.io/selected-node`), then wait until the
/// PV controller has bound them all; Err(why) if it does not in time.
async fn bind_claims(
    client: &Client,
    claims: &volumes::PodVolumes,
    node: &str,
) -> Result<(), String> {
    let selected = crate::model::storage::SELECTED_NODE;
    for (namespace, name) in claims.delayed_claims() {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
        let patch = json!({"metadata": {"annotations": {selected: node}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("selecting node {node} for claim {namespace}/{name}: {e}"))?;
    }
    let deadline = tokio::time::Instant::now() + CLAIM_BIND_TIMEOUT;
    for (namespace, name) in claims.delayed_claims() {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
        loop {
            let claim = api
                .get(&name)
                .await
                .map_err(|e| format!("reading claim {namespace}/{name}: {e}"))?;
            let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
            if phase == Some("Bound") {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "binding volumes: timed out waiting for claim {namespace}/{name} to be bound"
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

/// POST pods/{name}/binding.
async fn bind(client: &Client, pod: &Pod, node: &str) -> Bound {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    match pods
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => Bound::Ok,
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => Bound::Stale,
        Err(e) => Bound::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_decision_is_contained() {
        assert_eq!(isolated("u1", || 7), Some(7));
        let panicked: Option<i32> = isolated("u2", || panic!("a bug in a predicate"));
        assert_eq!(panicked, None);
    }
}
