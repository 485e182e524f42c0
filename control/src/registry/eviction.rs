//! `pods/{name}/eviction`, as kube's `EvictionREST` (`pkg/registry/core/pod/storage/
//! eviction.go`): a pod that is not running (pending or finished) or already being deleted is
//! deleted without asking its budget; otherwise the one PodDisruptionBudget that selects it
//! must allow a disruption, which is taken from it — `disruptionsAllowed` decremented and the
//! pod recorded in `disruptedPods`, in one compare-and-swap write of the budget — before the
//! pod is deleted with the eviction's delete options. An unready pod may go without taking
//! from the budget when the budget is satisfied anyway (or its `unhealthyPodEvictionPolicy`
//! is `AlwaysAllow`), on condition that it is still unready when it is deleted.

use std::time::Duration;

use k8s_openapi::api::{core::v1::Pod, policy::v1::PodDisruptionBudget};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{DeleteOptions, Intent, Registry, RegistryError, Request};
use crate::{
    model::{
        ApiError,
        disruption::{is_pod_ready, selects, time, update_disruption_allowed_condition},
        error::Cause,
        meta,
    },
    resources,
};

/// The largest `disruptedPods` a budget may have before evictions under it are refused:
/// that many evictions not yet confirmed by the disruption controller means it is behind.
pub const MAX_DISRUPTED_PODS: usize = 2000;

/// The message of the 500 for a pod several budgets select.
pub const MORE_THAN_ONE_BUDGET: &str = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";

/// The message of the 429 for an eviction a budget does not allow (now).
pub const VIOLATES_BUDGET: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

/// How often, and how far apart, a conflict with another writer of the pod is retried
/// (kube's `EvictionsRetry`: 20 steps of 500 ms).
const CONFLICT_RETRIES: usize = 20;
const CONFLICT_BACKOFF: Duration = Duration::from_millis(500);

/// kube's `canIgnorePDB`: a pod that finished, has not started, or is already being deleted
/// is deleted without consulting its budget.
pub fn can_ignore_budget(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed" | "Pending"))
        || pod.metadata.deletion_timestamp.is_some()
}

/// kube's `shouldEnforceResourceVersion`: deleting a pod that may still become ready is
/// guarded by the resourceVersion that was judged (a pending pod that started meanwhile is
/// judged again).
pub fn should_enforce_resource_version(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

/// What a budget means for evicting one of its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// The pod is unready and may go without taking from the budget — if it is still the
    /// same (unready) pod when it is deleted.
    DeleteUnhealthy,
    /// The eviction takes one disruption from the budget.
    Decrement,
}

/// Whether evicting `pod` takes from `budget` (kube's check of readiness and
/// `unhealthyPodEvictionPolicy`).
pub fn guard(pod: &Pod, budget: &PodDisruptionBudget) -> Guard {
    if is_pod_ready(pod) {
        return Guard::Decrement;
    }
    let policy = budget
        .spec
        .as_ref()
        .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref());
    if policy == Some("AlwaysAllow") {
        return Guard::DeleteUnhealthy;
    }
    // IfHealthyBudget (the default): the application is not disrupted now, so removing a pod
    // that does not count as healthy does not disrupt it.
    let status = budget.status.clone().unwrap_or_default();
    if status.current_healthy >= status.desired_healthy && status.desired_healthy > 0 {
        Guard::DeleteUnhealthy
    } else {
        Guard::Decrement
    }
}

/// 429 TooManyRequests about `budget`, with its `DisruptionBudget` cause.
fn too_many_requests(cause: String, retry_after: u32) -> ApiError {
    let mut error = ApiError::too_many_requests(VIOLATES_BUDGET);
    error.details.retry_after = (retry_after > 0).then_some(retry_after);
    error.details.causes.push(Cause {
        reason: "DisruptionBudget".to_owned(),
        message: cause,
        field: String::new(),
    });
    error
}

/// kube's 429 for a budget the disruption controller has not caught up with.
fn still_processed(budget: &str) -> ApiError {
    too_many_requests(
        format!("The disruption budget {budget} is still being processed by the server."),
        10,
    )
}

/// kube's `checkAndDecrement`: take one disruption from `budget` for `pod` (recording the pod
/// in `disruptedPods` unless `dry_run`), or say why not.
pub fn check_and_decrement(
    budget: &mut PodDisruptionBudget,
    pod: &str,
    dry_run: bool,
    now: jiff::Timestamp,
) -> Result<(), ApiError> {
    let name = budget.metadata.name.clone().unwrap_or_default();
    let generation = budget.metadata.generation.unwrap_or(0);
    let status = budget.status.get_or_insert_with(Default::default);
    if status.observed_generation.unwrap_or(0) < generation {
        return Err(still_processed(&name));
    }
    let forbidden =
        |why: &str| ApiError::admission_forbidden("policy", "poddisruptionbudget", &name, why);
    if status.disruptions_allowed < 0 {
        return Err(forbidden("pdb disruptions allowed is negative"));
    }
    if status.disrupted_pods.as_ref().map_or(0, |d| d.len()) > MAX_DISRUPTED_PODS {
        return Err(forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if status.disruptions_allowed == 0 {
        return Err(too_many_requests(
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                status.desired_healthy, status.current_healthy
            ),
            0,
        ));
    }
    status.disruptions_allowed -= 1;
    if status.disruptions_allowed == 0 {
        update_disruption_allowed_condition(status, now);
    }
    if !dry_run {
        status
            .disrupted_pods
            .get_or_insert_with(Default::default)
            .insert(pod.to_owned(), time(now));
    }
    Ok(())
}

/// An object as its typed form (stored objects always are one).
fn typed<K: DeserializeOwned>(object: &Value, what: &str) -> Result<K, RegistryError> {
    serde_json::from_value(object.clone())
        .map_err(|e| ApiError::internal(format!("stored {what} does not decode: {e}")).into())
}

/// A 409 of any kind (a lost race, a failed precondition).
fn is_conflict(error: &RegistryError) -> bool {
    error.to_api_error().code == 409
}

impl Registry {
    /// `pods/{name}/eviction`: evict the pod `request` names with `options` (the eviction's
    /// `deleteOptions`; the request's dry run applies to the budget too).
    pub async fn evict(
        &self,
        request: &Request<'_>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<(), RegistryError> {
        let pods = Request {
            subresource: "",
            ..*request
        };
        // A pod that may go without its budget is deleted now (the first conflict with
        // another writer of the pod is judged again, unless the client named a
        // resourceVersion itself).
        let mut attempts = 0;
        let (stored, pod) = loop {
            let stored = self.get(&pods, name).await?;
            let pod: Pod = typed(&stored, "pod")?;
            if !can_ignore_budget(&pod) {
                break (stored, pod);
            }
            let mut guarded = options.clone();
            if should_enforce_resource_version(&pod) && guarded.resource_version.is_none() {
                guarded.resource_version = Some(meta::resource_version(&stored).to_owned());
            }
            match self.delete(&pods, name, &guarded).await {
                Err(e)
                    if is_conflict(&e)
                        && options.resource_version.is_none()
                        && attempts + 1 < CONFLICT_RETRIES =>
                {
                    attempts += 1;
                    tokio::time::sleep(CONFLICT_BACKOFF).await;
                }
                done => return done.map(drop),
            }
        };
        let mut budgets = self.budgets_of(request, &pod).await?;
        let budget = match budgets.len() {
            0 => None,
            1 => budgets.pop(),
            _ => return Err(ApiError::failure(500, MORE_THAN_ONE_BUDGET).into()),
        };
        let mut guarded = options.clone();
        let mut unhealthy = false;
        if let Some(budget) = &budget {
            match guard(&pod, budget) {
                Guard::DeleteUnhealthy => {
                    // Deleted only if it has not become ready since.
                    unhealthy = true;
                    guarded.resource_version = Some(meta::resource_version(&stored).to_owned());
                }
                Guard::Decrement => self.take_disruption(request, budget, name).await?,
            }
        }
        match self.delete(&pods, name, &guarded).await {
            Err(e) if is_conflict(&e) && unhealthy && options.resource_version.is_none() => {
                let budget = budget.and_then(|b| b.metadata.name).unwrap_or_default();
                Err(still_processed(&budget).into())
            }
            done => done.map(drop),
        }
    }

    /// The budgets of the pod's namespace that select it (budgets with invalid selectors
    /// select nothing).
    async fn budgets_of(
        &self,
        request: &Request<'_>,
        pod: &Pod,
    ) -> Result<Vec<PodDisruptionBudget>, RegistryError> {
        let info = budgets_resource()?;
        let prefix = format!("{}{}/", info.prefix(), request.namespace);
        let page = self
            .store
            .list_page(&prefix, &prefix, 0, 0)
            .await
            .map_err(|e| RegistryError::storage(info, "", e))?;
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let mut selecting = Vec::new();
        for object in &page.objects {
            let budget: PodDisruptionBudget = typed(object, "PodDisruptionBudget")?;
            if selects(&budget, &labels).unwrap_or(false) {
                selecting.push(budget);
            }
        }
        Ok(selecting)
    }

    /// Take one disruption from `budget` for the pod `pod` with a compare-and-swap write of
    /// the budget's status (re-read and judged again when another writer got there first).
    /// A dry run writes nothing.
    async fn take_disruption(
        &self,
        request: &Request<'_>,
        budget: &PodDisruptionBudget,
        pod: &str,
    ) -> Result<(), RegistryError> {
        let budgets = Request {
            resource: budgets_resource()?,
            subresource: "status",
            ..*request
        };
        let name = budget.metadata.name.clone().unwrap_or_default();
        let now = jiff::Timestamp::now();
        self.guaranteed_update(&budgets, &name, |current| {
            let mut budget: PodDisruptionBudget = typed(current, "PodDisruptionBudget")?;
            check_and_decrement(&mut budget, pod, request.dry_run, now)?;
            if request.dry_run {
                return Ok(Intent::Keep);
            }
            let mut updated = current.clone();
            updated["status"] = serde_json::to_value(&budget.status)
                .map_err(|e| ApiError::internal(format!("encoding a budget's status: {e}")))?;
            Ok(Intent::Write(updated))
        })
        .await
        .map(drop)
    }
}

/// policy/v1 poddisruptionbudgets.
fn budgets_resource() -> Result<&'static resources::ResourceInfo, RegistryError> {
    resources::find("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("poddisruptionbudgets are not served").into())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(phase: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"},
            "status": {"phase": phase,
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}))
        .expect("pod")
    }

    fn budget(spec: Value, status: Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": "web", "generation": 1},
            "spec": spec, "status": status}))
        .expect("budget")
    }

    #[test]
    fn pending_finished_and_deleting_pods_skip_the_budget() {
        assert!(can_ignore_budget(&pod("Pending", false)));
        assert!(can_ignore_budget(&pod("Succeeded", false)));
        assert!(can_ignore_budget(&pod("Failed", false)));
        assert!(!can_ignore_budget(&pod("Running", true)));
        let mut deleting = pod("Running", true);
        deleting.metadata.deletion_timestamp = Some(time(jiff::Timestamp::now()));
        assert!(can_ignore_budget(&deleting));
        assert!(!should_enforce_resource_version(&deleting));
        assert!(should_enforce_resource_version(&pod("Pending", false)));
        assert!(!should_enforce_resource_version(&pod("Failed", false)));
    }

    #[test]
    fn unready_pods_go_when_the_budget_is_healthy_or_always_allowed() {
        let healthy = json!({"currentHealthy": 2, "desiredHealthy": 2, "disruptionsAllowed": 0,
            "expectedPods": 3, "observedGeneration": 1});
        let short = json!({"currentHealthy": 1, "desiredHealthy": 2, "disruptionsAllowed": 0,
            "expectedPods": 3, "observedGeneration": 1});
        let unready = pod("Running", false);
        assert_eq!(
            guard(
                &unready,
                &budget(json!({"minAvailable": 2}), healthy.clone())
            ),
            Guard::DeleteUnhealthy
        );
        assert_eq!(
            guard(&unready, &budget(json!({"minAvailable": 2}), short.clone())),
            Guard::Decrement
        );
        assert_eq!(
            guard(
                &unready,
                &budget(
                    json!({"minAvailable": 2, "unhealthyPodEvictionPolicy": "AlwaysAllow"}),
                    short
                )
            ),
            Guard::DeleteUnhealthy
        );
        assert_eq!(
            guard(
                &pod("Running", true),
                &budget(json!({"minAvailable": 2}), healthy)
            ),
            Guard::Decrement
        );
    }

    #[test]
    fn a_budget_with_room_gives_one_disruption_and_records_the_pod() {
        let now = jiff::Timestamp::from_second(1_700_000_000).expect("time");
        let mut pdb = budget(
            json!({"minAvailable": 1}),
            json!({"currentHealthy": 2, "desiredHealthy": 1, "disruptionsAllowed": 1,
                   "expectedPods": 2, "observedGeneration": 1,
                   "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                                   "message": "", "lastTransitionTime": "2023-01-01T00:00:00Z"}]}),
        );
        check_and_decrement(&mut pdb, "p", false, now).expect("allowed");
        let status = pdb.status.clone().expect("status");
        assert_eq!(status.disruptions_allowed, 0);
        assert_eq!(
            status.disrupted_pods.expect("recorded").get("p"),
            Some(&time(now))
        );
        let condition = &status.conditions.expect("conditions")[0];
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", "InsufficientPods")
        );
        // Now there is no room left.
        let refused = check_and_decrement(&mut pdb, "q", false, now).expect_err("refused");
        assert_eq!((refused.code, refused.reason), (429, "TooManyRequests"));
        assert_eq!(refused.message, VIOLATES_BUDGET);
        assert_eq!(refused.details.causes[0].reason, "DisruptionBudget");
        assert_eq!(
            refused.details.causes[0].message,
            "The disruption budget web needs 1 healthy pods and has 2 currently"
        );
        assert_eq!(refused.details.retry_after, None);
    }

    #[test]
    fn a_dry_run_records_nothing() {
        let mut pdb = budget(
            json!({"minAvailable": 1}),
            json!({"currentHealthy": 3, "desiredHealthy": 1, "disruptionsAllowed": 2,
                   "expectedPods": 3, "observedGeneration": 1}),
        );
        check_and_decrement(&mut pdb, "p", true, jiff::Timestamp::now()).expect("allowed");
        let status = pdb.status.expect("status");
        assert_eq!(status.disruptions_allowed, 1);
        assert_eq!(status.disrupted_pods, None);
    }

    #[test]
    fn a_budget_behind_its_spec_or_broken_refuses() {
        let now = jiff::Timestamp::now();
        let mut behind = budget(
            json!({"minAvailable": 1}),
            json!({"currentHealthy": 3, "desiredHealthy": 1, "disruptionsAllowed": 2,
                   "expectedPods": 3, "observedGeneration": 1}),
        );
        behind.metadata.generation = Some(2);
        let refused = check_and_decrement(&mut behind, "p", false, now).expect_err("behind");
        assert_eq!(refused.code, 429);
        assert_eq!(refused.details.retry_after, Some(10));
        assert_eq!(
            refused.details.causes[0].message,
            "The disruption budget web is still being processed by the server."
        );
        let mut negative = budget(
            json!({"minAvailable": 1}),
            json!({"currentHealthy": 3, "desiredHealthy": 1, "disruptionsAllowed": -1,
                   "expectedPods": 3, "observedGeneration": 1}),
        );
        let refused = check_and_decrement(&mut negative, "p", false, now).expect_err("negative");
        assert_eq!(refused.code, 403);
        assert_eq!(
            refused.message,
            "poddisruptionbudget.policy \"web\" is forbidden: pdb disruptions allowed is negative"
        );
    }
}
