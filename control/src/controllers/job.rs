//! The Job controller: run pods to `completions` successes with at most `parallelism` at
//! once (Indexed jobs: one pod per completion index, with `JOB_COMPLETION_INDEX`), retry
//! failures up to `backoffLimit` with an exponential delay, stop at
//! `activeDeadlineSeconds`, and report Complete/Failed conditions; finished jobs are
//! deleted after `ttlSecondsAfterFinished`.

use super::drive::{Context, Error};
use std::{collections::BTreeSet, sync::Arc, time::Duration};

use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::{Value, json};

use super::workload::{controller_ref, create_pod, is_ready, owned_pods, pod_from_template};
use skiff_events::reference;

/// Annotation and label carrying an Indexed job pod's index.
const INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// Run the controller until aborted.
pub async fn run(client: Client) {
    let jobs: Api<Job> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let ctx = Context::new(client, "job-controller");
    let controller =
        Controller::new(jobs, watcher::Config::default()).owns(pods, watcher::Config::default());
    super::drive::drive(controller, "job", Duration::from_secs(2), reconcile, ctx).await;
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn index_of(pod: &Pod) -> Option<i32> {
    pod.annotations().get(INDEX).and_then(|i| i.parse().ok())
}

fn stamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn finished_at(pod: &Pod) -> Option<jiff::Timestamp> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .filter_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
        .max()
}

/// Ranges of indexes as kube writes completedIndexes: "0-2,4".
fn compress(indexes: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let spec = job.spec.clone().unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let job_ref = reference("batch/v1", "Job", &job.metadata);
    let now = jiff::Timestamp::now();
    let conditions = status.conditions.clone().unwrap_or_default();
    let finished = conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True");

    // Finished: only the TTL is left to act on.
    if finished.is_some() || job.metadata.deletion_timestamp.is_some() {
        if let (Some(ttl), Some(done)) =
            (
                spec.ttl_seconds_after_finished,
                status.completion_time.as_ref().map(|t| t.0).or_else(|| {
                    finished.and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
                }),
            )
        {
            let expires = done + jiff::SignedDuration::from_secs(i64::from(ttl));
            if expires <= now {
                jobs.delete(&name, &DeleteParams::background()).await?;
                return Ok(Action::await_change());
            }
            let wait = expires.duration_since(now).as_secs().max(1);
            return Ok(Action::requeue(Duration::from_secs(
                u64::try_from(wait).unwrap_or(1),
            )));
        }
        return Ok(Action::await_change());
    }

    let selector = spec.selector.clone().unwrap_or_default();
    let owner = controller_ref("batch/v1", "Job", &job.metadata);
    let pods = owned_pods(&ctx.client, &namespace, &selector, &owner, true).await?;
    let active: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            !matches!(phase(p), "Succeeded" | "Failed") && p.metadata.deletion_timestamp.is_none()
        })
        .collect();
    let succeeded_pods: Vec<&Pod> = pods.iter().filter(|p| phase(p) == "Succeeded").collect();
    let failed_pods: Vec<&Pod> = pods.iter().filter(|p| phase(p) == "Failed").collect();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions.unwrap_or(1);
    let parallelism = if spec.suspend == Some(true) {
        0
    } else {
        spec.parallelism.unwrap_or(1)
    };
    let completed_indexes: BTreeSet<i32> =
        succeeded_pods.iter().filter_map(|p| index_of(p)).collect();
    let succeeded = if indexed {
        i32::try_from(completed_indexes.len()).unwrap_or(0)
    } else {
        i32::try_from(succeeded_pods.len())
            .unwrap_or(0)
            .max(status.succeeded.unwrap_or(0))
    };
    let failed = i32::try_from(failed_pods.len())
        .unwrap_or(0)
        .max(status.failed.unwrap_or(0));
    let start_time = status.start_time.as_ref().map_or(now, |t| t.0);

    // Terminal conditions.
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let deadline_passed = spec
        .active_deadline_seconds
        // A deadline past the end of time never passes.
        .is_some_and(|d| {
            start_time
                .checked_add(jiff::SignedDuration::from_secs(d))
                .is_ok_and(|end| end <= now)
        });
    let failure = if failed > backoff_limit {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit".to_owned(),
        ))
    } else if deadline_passed {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline".to_owned(),
        ))
    } else {
        None
    };
    let complete = failure.is_none() && succeeded >= completions;
    let mut new_status = json!({
        "active": 0,
        "succeeded": succeeded,
        "failed": failed,
        "ready": active.iter().filter(|p| is_ready(p)).count(),
        "startTime": stamp(start_time),
    });
    if indexed {
        new_status["completedIndexes"] = json!(compress(&completed_indexes));
    }
    if failure.is_some() || complete {
        for pod in &active {
            let _ = pods_api
                .delete(&pod.name_any(), &DeleteParams::default())
                .await;
        }
        let mut conditions: Vec<Value> = Vec::new();
        if let Some((reason, message)) = &failure {
            conditions.push(json!({"type": "FailureTarget", "status": "True", "reason": reason, "message": message,
                                   "lastProbeTime": stamp(now), "lastTransitionTime": stamp(now)}));
            conditions.push(
                json!({"type": "Failed", "status": "True", "reason": reason, "message": message,
                                   "lastProbeTime": stamp(now), "lastTransitionTime": stamp(now)}),
            );
            ctx.recorder
                .record(&job_ref, "Warning", reason, message)
                .await;
        } else {
            conditions.push(json!({"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                                   "message": "Reached expected number of succeeded pods",
                                   "lastProbeTime": stamp(now), "lastTransitionTime": stamp(now)}));
            conditions.push(
                json!({"type": "Complete", "status": "True", "reason": "CompletionsReached",
                                   "message": "Reached expected number of succeeded pods",
                                   "lastProbeTime": stamp(now), "lastTransitionTime": stamp(now)}),
            );
            new_status["completionTime"] = json!(stamp(now));
            ctx.recorder
                .record(&job_ref, "Normal", "Completed", "Job completed")
                .await;
        }
        new_status["conditions"] = json!(conditions);
        jobs.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": new_status})),
        )
        .await?;
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    // Back off after failures: 10 s doubling, at most 6 minutes, from the last failure.
    let mut wait = None;
    if failed > 0 {
        let delay = Duration::from_secs(10u64.saturating_mul(1 << (failed - 1).clamp(0, 6)))
            .min(Duration::from_secs(360));
        if let Some(last) = failed_pods.iter().filter_map(|p| finished_at(p)).max() {
            let ready_at = last + jiff::SignedDuration::try_from(delay).unwrap_or_default();
            if ready_at > now {
                wait = Some(Duration::from_secs(
                    u64::try_from(ready_at.duration_since(now).as_secs().max(1)).unwrap_or(1),
                ));
            }
        }
    }
    // Start pods up to parallelism, never beyond the completions still needed.
    let mut created = 0;
    if wait.is_none() {
        let template = spec.template.clone();
        let active_count = i32::try_from(active.len()).unwrap_or(0);
        if indexed {
            let running: BTreeSet<i32> = active.iter().filter_map(|p| index_of(p)).collect();
            let todo: Vec<i32> = (0..completions)
                .filter(|i| !completed_indexes.contains(i) && !running.contains(i))
                .take(usize::try_from((parallelism - active_count).max(0)).unwrap_or(0))
                .collect();
            for index in todo {
                let mut pod = pod_from_template(
                    &template,
                    owner.clone(),
                    &namespace,
                    &format!("{name}-{index}-"),
                    None,
                );
                pod.metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(INDEX.to_owned(), index.to_string());
                pod.metadata
                    .labels
                    .get_or_insert_default()
                    .insert(INDEX.to_owned(), index.to_string());
                if let Some(spec) = pod.spec.as_mut() {
                    spec.hostname = Some(format!("{name}-{index}"));
                    for c in spec
                        .containers
                        .iter_mut()
                        .chain(spec.init_containers.iter_mut().flatten())
                    {
                        c.env.get_or_insert_default().push(serde_json::from_value(json!({
                            "name": "JOB_COMPLETION_INDEX",
                            "valueFrom": {"fieldRef": {"fieldPath": format!("metadata.annotations['{INDEX}']")}},
                        })).unwrap_or_default());
                    }
                }
                if create_pod(&ctx.client, &pod).await.is_ok() {
                    created += 1;
                }
            }
        } else {
            let want = parallelism.min(completions - succeeded).max(0);
            for _ in active_count..want {
                let pod = pod_from_template(
                    &template,
                    owner.clone(),
                    &namespace,
                    &format!("{name}-"),
                    None,
                );
                match create_pod(&ctx.client, &pod).await {
                    Ok(pod_name) => {
                        created += 1;
                        ctx.recorder
                            .record(
                                &job_ref,
                                "Normal",
                                "SuccessfulCreate",
                                &format!("Created pod: {pod_name}"),
                            )
                            .await;
                    }
                    Err(e) => {
                        ctx.recorder
                            .record(
                                &job_ref,
                                "Warning",
                                "FailedCreate",
                                &format!("Error creating: {e}"),
                            )
                            .await;
                    }
                }
            }
        }
    }
    new_status["active"] = json!(active.len() + created);
    let current = serde_json::to_value(&job.status).unwrap_or_default();
    if super::workload::status_differs(&current, &new_status) {
        jobs.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": new_status})),
        )
        .await?;
    }
    if let Some(deadline) = spec.active_deadline_seconds
        && let Ok(end) = start_time.checked_add(jiff::SignedDuration::from_secs(deadline))
    {
        let left = end.duration_since(now).as_secs().max(1);
        let left = Duration::from_secs(u64::try_from(left).unwrap_or(1));
        return Ok(Action::requeue(wait.map_or(left, |w| w.min(left))));
    }
    Ok(Action::requeue(wait.unwrap_or(Duration::from_secs(60))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_are_ranges() {
        let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(compress(&set), "0-2,4,6-7");
        assert_eq!(compress(&BTreeSet::new()), "");
    }
}
