//! The disruption controller (kube's `pkg/controller/disruption`): keeps each
//! PodDisruptionBudget's status — expected pods, current and desired healthy, disruptions
//! allowed, the `DisruptionAllowed` condition and the `disruptedPods` the eviction
//! subresource records — in line with the pods its selector picks, so that evictions
//! (`kubectl drain`) respect the budget.
//!
//! Watch caches hold the budgets, the pods and the four workload kinds whose scale a budget
//! may need; a pod change enqueues the budgets that select the pod before or after the change;
//! one kube-runtime controller reconciles each budget key (deduplicated, retried). A status is
//! written — PUT `…/status` with the cached resourceVersion, as kube does — only when it
//! differs from the stored one, so a quiet cluster writes nothing.

pub mod scale;
pub mod status;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet, StatefulSet},
    core::v1::{Pod, ReplicationController},
    policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus},
};
use kube::{
    Api, Client, ResourceExt,
    api::PostParams,
    runtime::{
        WatchStreamExt,
        controller::Action,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use skiff_events::{Recorder, reference};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tracing::{debug, warn};

use self::{
    scale::{Finder, ScaleError},
    status::{CountError, Counts},
};
use super::drive::{self, feed};
use crate::model::{disruption::selects, selector::LabelSelector};

/// The reporting component of the controller's events (kube's disruption controller reports
/// as `controllermanager`).
const COMPONENT: &str = "controllermanager";

/// How soon a budget whose status could not be computed is looked at again (a pod or budget
/// change brings it back sooner).
const FAILED_RESYNC: Duration = Duration::from_secs(30);

/// Why a budget's status cannot be computed (the controller then writes its fail-safe status).
#[derive(Debug, thiserror::Error)]
enum SyncError {
    /// The budget's selector is not a valid label selector.
    #[error("invalid selector: {0}")]
    Selector(String),
    /// The pods' controllers or their scale cannot be found.
    #[error(transparent)]
    Scale(#[from] ScaleError),
    /// `minAvailable` / `maxUnavailable` do not scale.
    #[error(transparent)]
    Count(#[from] CountError),
    /// Writing the status failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// What every reconcile shares: the client, the caches, events.
struct Shared {
    client: Client,
    recorder: Recorder,
    pods: Store<Pod>,
    finder: Finder,
}

/// Run the controller until aborted.
pub async fn run(client: Client) {
    let (budgets, budgets_w) = reflector::store::<PodDisruptionBudget>();
    let (pods, pods_w) = reflector::store::<Pod>();
    let (controllers, controllers_w) = reflector::store::<ReplicationController>();
    let (replica_sets, replica_sets_w) = reflector::store::<ReplicaSet>();
    let (deployments, deployments_w) = reflector::store::<Deployment>();
    let (stateful_sets, stateful_sets_w) = reflector::store::<StatefulSet>();
    let mut watches = tokio::task::JoinSet::new();
    watches.spawn(cache(Api::all(client.clone()), controllers_w));
    watches.spawn(cache(Api::all(client.clone()), replica_sets_w));
    watches.spawn(cache(Api::all(client.clone()), deployments_w));
    watches.spawn(cache(Api::all(client.clone()), stateful_sets_w));
    let (enqueue, queued) = mpsc::unbounded_channel::<ObjectRef<PodDisruptionBudget>>();
    {
        let budgets = budgets.clone();
        let pods_seen = pods.clone();
        let stream = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(pods_w)
            .touched_objects();
        // Labels each pod had when last seen: a relabelled pod concerns the budgets that
        // selected it before, too.
        let mut labels_of: HashMap<ObjectRef<Pod>, BTreeMap<String, String>> = HashMap::new();
        watches.spawn(feed("disruption", stream, move |pod: Pod| {
            let key = ObjectRef::from_obj(&pod);
            let labels = pod.labels().clone();
            let before = if pods_seen.get(&key).is_some() {
                labels_of.insert(key, labels.clone())
            } else {
                labels_of.remove(&key)
            };
            let namespace = pod.namespace().unwrap_or_default();
            for budget in budgets.state() {
                if budget.namespace().as_deref() != Some(namespace.as_str()) {
                    continue;
                }
                let selected =
                    |labels: &BTreeMap<String, String>| selects(&budget, labels).unwrap_or(false);
                if selected(&labels) || before.as_ref().is_some_and(selected) {
                    let _ = enqueue.send(ObjectRef::from_obj(budget.as_ref()));
                }
            }
        }));
    }
    for ready in [
        pods.wait_until_ready().await,
        controllers.wait_until_ready().await,
        replica_sets.wait_until_ready().await,
        deployments.wait_until_ready().await,
        stateful_sets.wait_until_ready().await,
    ] {
        if ready.is_err() {
            warn!("disruption controller: a watch ended before its cache was ready");
            return;
        }
    }
    // Every budget change (its cache updated first) and every pod change that concerns a
    // budget queue the budget's key.
    let budget_changes = watcher(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(budgets_w)
    .touched_objects()
    .map_ok(|budget| ObjectRef::from_obj(&budget));
    let pod_changes = UnboundedReceiverStream::new(queued).map(Ok::<_, watcher::Error>);
    let queue = futures::stream::select(budget_changes, pod_changes);
    let shared = Arc::new(Shared {
        recorder: Recorder::new(client.clone(), COMPONENT),
        finder: Finder {
            client: client.clone(),
            controllers,
            replica_sets,
            deployments,
            stateful_sets,
        },
        pods,
        client,
    });
    drive::drive_queue(
        budgets,
        queue,
        "disruption",
        Duration::from_secs(1),
        reconcile,
        shared,
    )
    .await;
    // `watches` goes with this future: the cache watches stop with the controller.
}

/// Keep `writer`'s cache of every `K` up to date.
async fn cache<K>(api: Api<K>, writer: reflector::store::Writer<K>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    feed("disruption", stream, |_: K| {}).await;
}

async fn reconcile(
    budget: Arc<PodDisruptionBudget>,
    shared: Arc<Shared>,
) -> Result<Action, drive::Error> {
    let now = jiff::Timestamp::now();
    match shared.sync(&budget, now).await {
        Ok(action) => Ok(action),
        // A lost race on the budget is retried as it is, without the fail-safe status.
        Err(SyncError::Kube(e)) if is_conflict(&e) => Err(e.into()),
        Err(e) => {
            debug!(budget = %budget.name_any(), error = %e, "cannot compute the budget's status");
            shared.fail_safe(&budget, &e, now).await?;
            Ok(Action::requeue(FAILED_RESYNC))
        }
    }
}

/// A 409 from the API server.
fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

impl Shared {
    /// kube's `trySync`: compute the status from the caches and write it if it changed.
    async fn sync(
        &self,
        budget: &PodDisruptionBudget,
        now: jiff::Timestamp,
    ) -> Result<Action, SyncError> {
        let namespace = budget.namespace().unwrap_or_default();
        let spec = budget.spec.as_ref();
        // Validate the selector once; `selects` below then cannot fail.
        if let Some(selector) = spec.and_then(|s| s.selector.as_ref()) {
            LabelSelector::from_api(selector).map_err(SyncError::Selector)?;
        }
        let pods: Vec<Arc<Pod>> = self.pods.state_filter(|pod| {
            pod.namespace().as_deref() == Some(namespace.as_str())
                && selects(budget, pod.labels()).unwrap_or(false)
        });
        let pods: Vec<&Pod> = pods.iter().map(AsRef::as_ref).collect();
        let (counts, unmanaged) = if status::needs_scale(spec) {
            let expected = self.finder.expected_scale(&pods).await?;
            (
                status::counts(spec, pods.len(), Some(expected.total))?,
                expected.unmanaged,
            )
        } else {
            (status::counts(spec, pods.len(), None)?, Vec::new())
        };
        let disrupted = status::disrupted_pods(budget, &pods, now);
        let healthy = status::count_healthy(&pods, &disrupted.pods, now);
        let recheck = disrupted.recheck;
        if let Some(new) = status::desired_status(budget, healthy, counts, disrupted.pods, now) {
            self.report(budget, &pods, counts, &unmanaged, &disrupted.not_deleted)
                .await;
            self.write(budget, new).await?;
        }
        Ok(match recheck {
            Some(at) => {
                let wait = at.duration_since(now).unsigned_abs();
                Action::requeue(wait.max(Duration::from_secs(1)))
            }
            None => Action::await_change(),
        })
    }

    /// The events kube's controller records while syncing, recorded here only with a status
    /// change (kube records them at every sync; Skiff's recorder does not aggregate).
    async fn report(
        &self,
        budget: &PodDisruptionBudget,
        pods: &[&Pod],
        counts: Counts,
        unmanaged: &[String],
        not_deleted: &[String],
    ) {
        let budget_ref = reference("policy/v1", "PodDisruptionBudget", &budget.metadata);
        if pods.is_empty() {
            self.recorder
                .record(&budget_ref, "Normal", "NoPods", "No matching pods found")
                .await;
        }
        if !unmanaged.is_empty() {
            let selector = budget
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .map(crate::controllers::workload::selector_query)
                .unwrap_or_default();
            let message = format!(
                "Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. \
                 As a result, the status of the PDB cannot be calculated correctly, which may result in undefined \
                 behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an \
                 integer value."
            );
            self.recorder
                .record(&budget_ref, "Warning", "UnmanagedPods", &message)
                .await;
        }
        for name in not_deleted {
            let Some(pod) = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
            else {
                continue;
            };
            let message = format!(
                "Pod was expected by PDB {}/{} to be deleted but it wasn't",
                budget.namespace().unwrap_or_default(),
                budget.name_any()
            );
            self.recorder
                .record(
                    &reference("v1", "Pod", &pod.metadata),
                    "Warning",
                    "NotDeleted",
                    &message,
                )
                .await;
        }
        debug!(
            budget = %budget.name_any(),
            expected = counts.expected,
            desired = counts.desired_healthy,
            "budget status changes"
        );
    }

    /// kube's `failSafe`: no disruption allowed, with the reason, when the status cannot be
    /// computed (written only if that is news).
    async fn fail_safe(
        &self,
        budget: &PodDisruptionBudget,
        error: &SyncError,
        now: jiff::Timestamp,
    ) -> Result<(), kube::Error> {
        let why = error.to_string();
        let Some(new) = status::fail_safe_status(budget, &why, now) else {
            return Ok(());
        };
        if matches!(error, SyncError::Scale(_) | SyncError::Count(_)) {
            let message = format!("Failed to calculate the number of expected pods: {why}");
            let budget_ref = reference("policy/v1", "PodDisruptionBudget", &budget.metadata);
            self.recorder
                .record(
                    &budget_ref,
                    "Warning",
                    "CalculateExpectedPodCountFailed",
                    &message,
                )
                .await;
        }
        self.write(budget, new).await
    }

    /// PUT the budget's status, guarded by the cached resourceVersion (a stale cache is a 409,
    /// and the budget is synced again).
    async fn write(
        &self,
        budget: &PodDisruptionBudget,
        new: PodDisruptionBudgetStatus,
    ) -> Result<(), kube::Error> {
        let namespace = budget.namespace().unwrap_or_default();
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &namespace);
        let mut updated = budget.clone();
        updated.status = Some(new);
        api.replace_status(&budget.name_any(), &PostParams::default(), &updated)
            .await
            .map(drop)
    }
}
