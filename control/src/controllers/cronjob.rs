//! The CronJob controller: at each scheduled time (in `timeZone` or the schedule's `TZ=`)
//! create a Job from the template, named `<cronjob>-<minutes since epoch>`, honouring
//! concurrencyPolicy (Allow, Forbid, Replace), startingDeadlineSeconds and suspend; keep
//! the successful and failed history limits; report active jobs and lastScheduleTime.

use super::drive::{Context, Error};
use std::{sync::Arc, time::Duration};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::json;

use super::{
    cron::Schedule,
    workload::{controller_ref, controller_uid},
};
use skiff_events::reference;

/// Run the controller until aborted.
pub async fn run(client: Client) {
    let cronjobs: Api<CronJob> = Api::all(client.clone());
    let jobs: Api<Job> = Api::all(client.clone());
    let ctx = Context::new(client, "cronjob-controller");
    let controller = Controller::new(cronjobs, watcher::Config::default())
        .owns(jobs, watcher::Config::default());
    super::drive::drive(
        controller,
        "cronjob",
        Duration::from_secs(5),
        reconcile,
        ctx,
    )
    .await;
}

fn finished(job: &Job) -> Option<(bool, jiff::Timestamp)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let c = conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    Some((
        c.type_ == "Complete",
        c.last_transition_time
            .as_ref()
            .map_or_else(jiff::Timestamp::now, |t| t.0),
    ))
}

fn stamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

async fn reconcile(cronjob: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    if cronjob.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = cronjob.namespace().unwrap_or_default();
    let name = cronjob.name_any();
    let spec = cronjob.spec.clone().unwrap_or_default();
    let cron_ref = reference("batch/v1", "CronJob", &cronjob.metadata);
    let schedule = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            ctx.recorder
                .record(
                    &cron_ref,
                    "Warning",
                    "UnparseableSchedule",
                    &format!("unparseable schedule {:?}: {e}", spec.schedule),
                )
                .await;
            return Ok(Action::await_change());
        }
    };
    let zone_name = spec
        .time_zone
        .clone()
        .or_else(|| schedule.time_zone.clone());
    let tz = match zone_name.as_deref() {
        None => jiff::tz::TimeZone::system(),
        Some(zone) => match jiff::tz::TimeZone::get(zone) {
            Ok(tz) => tz,
            Err(e) => {
                ctx.recorder
                    .record(
                        &cron_ref,
                        "Warning",
                        "UnknownTimeZone",
                        &format!("invalid timeZone {zone:?}: {e}"),
                    )
                    .await;
                return Ok(Action::await_change());
            }
        },
    };
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let uid = cronjob.metadata.uid.clone().unwrap_or_default();
    let mut jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| controller_uid(&j.metadata) == Some(uid.as_str()))
        .collect();
    jobs.sort_by_key(|j| j.creation_timestamp().map(|t| t.0.as_second()));
    let now = jiff::Timestamp::now();

    // History limits.
    for (successful, limit) in [
        (true, spec.successful_jobs_history_limit.unwrap_or(3)),
        (false, spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let done: Vec<&Job> = jobs
            .iter()
            .filter(|j| finished(j).is_some_and(|(ok, _)| ok == successful))
            .collect();
        let surplus = done
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        for job in done.iter().take(surplus) {
            let _ = jobs_api
                .delete(&job.name_any(), &DeleteParams::background())
                .await;
            ctx.recorder
                .record(
                    &cron_ref,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted job {}", job.name_any()),
                )
                .await;
        }
    }
    let mut active: Vec<&Job> = jobs
        .iter()
        .filter(|j| finished(j).is_none() && j.metadata.deletion_timestamp.is_none())
        .collect();

    // The most recent missed time, if any, and whether it is still within its deadline.
    let last = cronjob
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref().map(|t| t.0))
        .or_else(|| cronjob.creation_timestamp().map(|t| t.0))
        .unwrap_or(now);
    let window = spec
        .starting_deadline_seconds
        .map_or(100 * 24 * 60, |d| d / 60 + 1)
        .max(1);
    let (due, _) = schedule.latest(last, now, &tz, window);
    let mut last_schedule = None;
    if let Some(due) = due
        && spec.suspend != Some(true)
    {
        let late = now.duration_since(due).as_secs();
        let in_time = spec.starting_deadline_seconds.is_none_or(|d| late <= d);
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if !in_time {
            ctx.recorder
                .record(
                    &cron_ref,
                    "Warning",
                    "MissSchedule",
                    &format!("Missed scheduled time to start a job: {}", stamp(due)),
                )
                .await;
            last_schedule = Some(due);
        } else if policy == "Forbid" && !active.is_empty() {
            ctx.recorder.record(&cron_ref, "Normal", "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid").await;
        } else {
            if policy == "Replace" {
                for job in &active {
                    let _ = jobs_api
                        .delete(&job.name_any(), &DeleteParams::background())
                        .await;
                    ctx.recorder
                        .record(
                            &cron_ref,
                            "Normal",
                            "SuccessfulDelete",
                            &format!("Deleted job {}", job.name_any()),
                        )
                        .await;
                }
                active.clear();
            }
            let job_name = format!("{name}-{}", due.as_second() / 60);
            let template = spec.job_template.clone();
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.extend(std::iter::empty::<(String, String)>());
            let mut annotations = template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.clone())
                .unwrap_or_default();
            annotations.insert(
                "batch.kubernetes.io/cronjob-scheduled-timestamp".to_owned(),
                due.to_string(),
            );
            let job: Job = serde_json::from_value(json!({
                "metadata": {"name": job_name, "namespace": namespace, "labels": labels, "annotations": annotations,
                             "ownerReferences": [controller_ref("batch/v1", "CronJob", &cronjob.metadata)]},
                "spec": template.spec,
            }))
            .unwrap_or_default();
            match jobs_api.create(&PostParams::default(), &job).await {
                Ok(_) => {
                    ctx.recorder
                        .record(
                            &cron_ref,
                            "Normal",
                            "SuccessfulCreate",
                            &format!("Created job {job_name}"),
                        )
                        .await;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            last_schedule = Some(due);
        }
    }
    let active_refs: Vec<serde_json::Value> = jobs
        .iter()
        .filter(|j| finished(j).is_none() && j.metadata.deletion_timestamp.is_none())
        .map(|j| json!({"apiVersion": "batch/v1", "kind": "Job", "name": j.name_any(), "namespace": namespace, "uid": j.metadata.uid}))
        .collect();
    let mut status = json!({"active": active_refs});
    if let Some(t) = last_schedule {
        status["lastScheduleTime"] = json!(stamp(t));
    }
    if let Some(t) = jobs
        .iter()
        .filter_map(|j| finished(j).filter(|(ok, _)| *ok).map(|(_, t)| t))
        .max()
    {
        status["lastSuccessfulTime"] = json!(stamp(t));
    }
    let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await?;
    // Wake at the next scheduled time (and now and then for job completions).
    let wait = schedule
        .next(now, &tz)
        .map_or(60, |next| next.duration_since(now).as_secs().clamp(1, 60));
    Ok(Action::requeue(Duration::from_secs(
        u64::try_from(wait).unwrap_or(60),
    )))
}
