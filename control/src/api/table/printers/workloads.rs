//! Cells of workload kinds: pods, deployments, replica sets, stateful sets, daemon sets,
//! jobs, cron jobs.

use serde_json::{Value, json};

use super::{created, list, n, name, or_none, s, selector};
use crate::api::table::{age, human_duration};
use crate::model::meta;

/// kube's pod STATUS column.
pub(super) fn pod_status(o: &Value) -> String {
    let mut reason = s(o, "status.reason").to_owned();
    if reason.is_empty() {
        reason = s(o, "status.phase").to_owned();
    }
    let init = list(o, "status.initContainerStatuses");
    let init_total = list(o, "spec.initContainers").len();
    let mut initializing = false;
    for (i, c) in init.iter().enumerate() {
        let terminated = c.get("state").and_then(|s| s.get("terminated"));
        if terminated.is_some_and(|t| n(t, "exitCode") == 0) {
            continue;
        }
        initializing = true;
        reason = match (terminated, c.get("state").and_then(|s| s.get("waiting"))) {
            (Some(t), _) if !s(t, "reason").is_empty() => format!("Init:{}", s(t, "reason")),
            (Some(t), _) => format!("Init:ExitCode:{}", n(t, "exitCode")),
            (None, Some(w))
                if !s(w, "reason").is_empty() && s(w, "reason") != "PodInitializing" =>
            {
                format!("Init:{}", s(w, "reason"))
            }
            _ => format!("Init:{i}/{init_total}"),
        };
        break;
    }
    if !initializing {
        let mut running = false;
        for c in list(o, "status.containerStatuses").iter().rev() {
            let state = c.get("state");
            if let Some(w) = state
                .and_then(|s| s.get("waiting"))
                .filter(|w| !s(w, "reason").is_empty())
            {
                reason = s(w, "reason").to_owned();
            } else if let Some(t) = state.and_then(|s| s.get("terminated")) {
                reason = if !s(t, "reason").is_empty() {
                    s(t, "reason").to_owned()
                } else if n(t, "signal") != 0 {
                    format!("Signal:{}", n(t, "signal"))
                } else {
                    format!("ExitCode:{}", n(t, "exitCode"))
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && state.and_then(|s| s.get("running")).is_some()
            {
                running = true;
            }
        }
        if reason == "Completed" && running {
            reason = "Running".to_owned();
        }
    }
    if !meta::meta_str(o, "deletionTimestamp").is_empty() && s(o, "status.reason") != "NodeLost" {
        reason = "Terminating".to_owned();
    }
    reason
}

pub(super) fn pod(o: &Value) -> Vec<Value> {
    let statuses = list(o, "status.containerStatuses");
    let total = list(o, "spec.containers").len();
    let ready = statuses
        .iter()
        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .chain(list(o, "status.initContainerStatuses"))
        .map(|c| n(c, "restartCount"))
        .sum();
    let last_restart = statuses
        .iter()
        .filter_map(|c| {
            c.get("lastState")
                .and_then(|l| l.get("terminated"))
                .map(|t| s(t, "finishedAt"))
        })
        .filter(|t| !t.is_empty())
        .max();
    let restarts = match last_restart {
        Some(at) if restarts > 0 => format!("{restarts} ({} ago)", age(at)),
        _ => restarts.to_string(),
    };
    let gates = list(o, "spec.readinessGates");
    let gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let true_gates = gates
            .iter()
            .filter(|g| {
                list(o, "status.conditions")
                    .iter()
                    .any(|c| s(c, "type") == s(g, "conditionType") && s(c, "status") == "True")
            })
            .count();
        format!("{true_gates}/{}", gates.len())
    };
    vec![
        name(o),
        json!(format!("{ready}/{total}")),
        json!(pod_status(o)),
        json!(restarts),
        created(o),
        or_none(s(o, "status.podIP").to_owned()),
        or_none(s(o, "spec.nodeName").to_owned()),
        or_none(s(o, "status.nominatedNodeName").to_owned()),
        json!(gates),
    ]
}

pub(super) fn deployment(o: &Value) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(o.pointer("/spec/template/spec").unwrap_or(&Value::Null));
    vec![
        name(o),
        json!(format!(
            "{}/{}",
            n(o, "status.readyReplicas"),
            n(o, "spec.replicas")
        )),
        json!(n(o, "status.updatedReplicas")),
        json!(n(o, "status.availableReplicas")),
        created(o),
        containers,
        images,
        json!(selector(o.pointer("/spec/selector"))),
    ]
}

pub(super) fn replica_set(o: &Value) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(o.pointer("/spec/template/spec").unwrap_or(&Value::Null));
    vec![
        name(o),
        json!(n(o, "spec.replicas")),
        json!(n(o, "status.replicas")),
        json!(n(o, "status.readyReplicas")),
        created(o),
        containers,
        images,
        json!(selector(o.pointer("/spec/selector"))),
    ]
}

pub(super) fn stateful_set(o: &Value) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(o.pointer("/spec/template/spec").unwrap_or(&Value::Null));
    vec![
        name(o),
        json!(format!(
            "{}/{}",
            n(o, "status.readyReplicas"),
            n(o, "spec.replicas")
        )),
        created(o),
        containers,
        images,
    ]
}

pub(super) fn daemon_set(o: &Value) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(o.pointer("/spec/template/spec").unwrap_or(&Value::Null));
    vec![
        name(o),
        json!(n(o, "status.desiredNumberScheduled")),
        json!(n(o, "status.currentNumberScheduled")),
        json!(n(o, "status.numberReady")),
        json!(n(o, "status.updatedNumberScheduled")),
        json!(n(o, "status.numberAvailable")),
        or_none(selector(o.pointer("/spec/template/spec/nodeSelector"))),
        created(o),
        containers,
        images,
        json!(selector(o.pointer("/spec/selector"))),
    ]
}

pub(super) fn condition_true(o: &Value, kind: &str) -> bool {
    list(o, "status.conditions")
        .iter()
        .any(|c| s(c, "type") == kind && s(c, "status") == "True")
}

pub(super) fn job(o: &Value) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(o.pointer("/spec/template/spec").unwrap_or(&Value::Null));
    let status = if condition_true(o, "Complete") {
        "Complete"
    } else if condition_true(o, "Failed") {
        "Failed"
    } else if condition_true(o, "FailureTarget") {
        "FailureTarget"
    } else if o.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        "Suspended"
    } else {
        "Running"
    };
    let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{}/{c}", n(o, "status.succeeded")),
        None => format!(
            "{}/1 of {}",
            n(o, "status.succeeded"),
            n(o, "spec.parallelism").max(1)
        ),
    };
    let start = s(o, "status.startTime");
    let duration = match (
        start.parse::<jiff::Timestamp>(),
        s(o, "status.completionTime").parse::<jiff::Timestamp>(),
    ) {
        (Ok(a), Ok(b)) => human_duration(b.as_second() - a.as_second()),
        (Ok(_), Err(_)) => age(start),
        _ => String::new(),
    };
    vec![
        name(o),
        json!(status),
        json!(completions),
        json!(duration),
        created(o),
        containers,
        images,
        json!(selector(o.pointer("/spec/selector"))),
    ]
}

pub(super) fn cron_job(o: &Value) -> Vec<Value> {
    let (containers, images) = containers_and_images(
        o.pointer("/spec/jobTemplate/spec/template/spec")
            .unwrap_or(&Value::Null),
    );
    let last = s(o, "status.lastScheduleTime");
    vec![
        name(o),
        json!(s(o, "spec.schedule")),
        or_none(s(o, "spec.timeZone").to_owned()),
        json!(
            o.pointer("/spec/suspend")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        ),
        json!(list(o, "status.active").len()),
        json!(if last.is_empty() {
            "<none>".to_owned()
        } else {
            age(last)
        }),
        created(o),
        containers,
        images,
        json!(selector(o.pointer("/spec/jobTemplate/spec/selector"))),
    ]
}

pub(super) fn containers_and_images(template_spec: &Value) -> (Value, Value) {
    let containers = list(template_spec, "containers");
    let names: Vec<&str> = containers.iter().map(|c| s(c, "name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}
