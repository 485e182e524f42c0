//! Pod status from what the worker knows: phase, conditions, IPs and container statuses,
//! rendered as the JSON kubelet would patch into `pods/status`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// A container's current state.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not running: why.
    Waiting {
        /// Reason (ContainerCreating, CrashLoopBackOff, ErrImagePull…).
        reason: String,
        /// Detail.
        message: Option<String>,
    },
    /// Running since.
    Running {
        /// RFC 3339.
        started_at: String,
    },
    /// Ended.
    Terminated(Terminated),
}

/// A finished run of a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    /// Exit code (137 after SIGKILL/OOM).
    pub exit_code: i32,
    /// Completed, Error, OOMKilled, StartError.
    pub reason: String,
    /// Detail.
    pub message: Option<String>,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub finished_at: Option<String>,
    /// `containerd://<id>`.
    pub container_id: Option<String>,
}

/// What the worker tracks per container.
#[derive(Debug, Clone)]
pub struct ContainerRecord {
    /// Container name.
    pub name: String,
    /// An init container.
    pub init: bool,
    /// Image as written in the spec.
    pub image: String,
    /// `<repo>@<digest>` once pulled.
    pub image_id: Option<String>,
    /// containerd ID of the current run.
    pub id: Option<String>,
    /// Restarts so far.
    pub restart_count: i32,
    /// Current state.
    pub state: State,
    /// The previous run, if any.
    pub last_state: Option<Terminated>,
}

impl ContainerRecord {
    /// True once an init container has succeeded.
    pub fn completed(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code == 0)
    }

    /// True while running.
    pub fn running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }
}

fn terminated_json(t: &Terminated) -> Value {
    let mut v = json!({"exitCode": t.exit_code, "reason": t.reason});
    if let Some(m) = &t.message {
        v["message"] = json!(m);
    }
    if let Some(s) = &t.started_at {
        v["startedAt"] = json!(s);
    }
    if let Some(f) = &t.finished_at {
        v["finishedAt"] = json!(f);
    }
    if let Some(c) = &t.container_id {
        v["containerID"] = json!(c);
    }
    v
}

fn container_status(record: &ContainerRecord, ready: bool) -> Value {
    let state = match &record.state {
        State::Waiting { reason, message } => {
            let mut w = json!({"reason": reason});
            if let Some(m) = message {
                w["message"] = json!(m);
            }
            json!({"waiting": w})
        }
        State::Running { started_at } => json!({"running": {"startedAt": started_at}}),
        State::Terminated(t) => json!({"terminated": terminated_json(t)}),
    };
    let mut status = json!({
        "name": record.name,
        "state": state,
        "lastState": record.last_state.as_ref().map_or(json!({}), |t| json!({"terminated": terminated_json(t)})),
        "ready": ready,
        "restartCount": record.restart_count,
        "image": record.image,
        "imageID": record.image_id.clone().unwrap_or_default(),
        "started": record.running(),
    });
    if let Some(id) = &record.id {
        status["containerID"] = json!(format!("containerd://{id}"));
    } else if let State::Terminated(Terminated {
        container_id: Some(c),
        ..
    }) = &record.state
    {
        status["containerID"] = json!(c);
    }
    status
}

/// Inputs of a pod status besides the containers.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    /// Node address.
    pub host_ip: String,
    /// Pod address, once the sandbox exists.
    pub pod_ip: Option<String>,
    /// When the worker first saw the pod.
    pub start_time: String,
    /// restartPolicy.
    pub restart_policy: String,
    /// Sandbox or volume problem to surface.
    pub blocked: Option<(String, String)>,
    /// Readiness of each running app container (by name); absent means ready when running.
    pub readiness: BTreeMap<String, bool>,
}

/// The pod phase kubelet would compute.
pub fn phase(records: &[ContainerRecord], restart_policy: &str) -> &'static str {
    let init_failed_for_good = records.iter().any(|r| {
        r.init
            && restart_policy == "Never"
            && matches!(&r.state, State::Terminated(t) if t.exit_code != 0)
    });
    if init_failed_for_good {
        return "Failed";
    }
    if records.iter().any(|r| r.init && !r.completed()) {
        return "Pending";
    }
    let apps: Vec<&ContainerRecord> = records.iter().filter(|r| !r.init).collect();
    let all_terminated = apps.iter().all(|r| matches!(r.state, State::Terminated(_)));
    let exit_codes: Vec<i32> = apps
        .iter()
        .filter_map(|r| match &r.state {
            State::Terminated(t) => Some(t.exit_code),
            _ => None,
        })
        .collect();
    if !apps.is_empty() && all_terminated {
        match restart_policy {
            "Never" => {
                return if exit_codes.iter().all(|c| *c == 0) {
                    "Succeeded"
                } else {
                    "Failed"
                };
            }
            "OnFailure" if exit_codes.iter().all(|c| *c == 0) => return "Succeeded",
            _ => {}
        }
    }
    let started = apps.iter().any(|r| {
        r.running()
            || r.restart_count > 0
            || matches!(r.state, State::Terminated(_))
            || r.last_state.is_some()
    });
    if started { "Running" } else { "Pending" }
}

/// The status object for `pods/status`; `transitions` keeps each condition's last change
/// time across calls.
pub fn render(
    records: &[ContainerRecord],
    facts: &PodFacts,
    transitions: &mut BTreeMap<&'static str, (bool, String)>,
    now: &str,
) -> Value {
    let phase = phase(records, &facts.restart_policy);
    let ready_of =
        |r: &ContainerRecord| r.running() && facts.readiness.get(&r.name).copied().unwrap_or(true);
    let initialized = records
        .iter()
        .filter(|r| r.init)
        .all(ContainerRecord::completed);
    let apps: Vec<&ContainerRecord> = records.iter().filter(|r| !r.init).collect();
    let containers_ready = !apps.is_empty() && apps.iter().all(|r| ready_of(r));
    let sandbox_ready = facts.pod_ip.is_some();
    let mut conditions = Vec::new();
    let mut condition = |kind: &'static str, value: bool, reason: Option<&str>| {
        let entry = transitions
            .entry(kind)
            .or_insert_with(|| (value, now.to_owned()));
        if entry.0 != value {
            *entry = (value, now.to_owned());
        }
        let mut c = json!({
            "type": kind,
            "status": if value { "True" } else { "False" },
            "lastProbeTime": null,
            "lastTransitionTime": entry.1,
        });
        if let Some(reason) = reason.filter(|_| !value) {
            c["reason"] = json!(reason);
        }
        conditions.push(c);
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    condition("PodReadyToStartContainers", sandbox_ready, None);
    condition("Initialized", initialized, Some("ContainersNotInitialized"));
    condition(
        "Ready",
        containers_ready && !terminal,
        Some(if terminal {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        }),
    );
    condition(
        "ContainersReady",
        containers_ready && !terminal,
        Some(if terminal {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        }),
    );
    condition("PodScheduled", true, None);
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": facts.host_ip,
        "hostIPs": [{"ip": facts.host_ip}],
        "startTime": facts.start_time,
        "containerStatuses": apps.iter().map(|r| container_status(r, ready_of(r))).collect::<Vec<_>>(),
    });
    let inits: Vec<Value> = records
        .iter()
        .filter(|r| r.init)
        .map(|r| container_status(r, r.completed()))
        .collect();
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(inits);
    }
    if let Some(ip) = &facts.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if let Some((reason, message)) = &facts.blocked {
        status["reason"] = json!(reason);
        status["message"] = json!(message);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(init: bool, state: State) -> ContainerRecord {
        ContainerRecord {
            name: "c".into(),
            init,
            image: "busybox".into(),
            image_id: None,
            id: None,
            restart_count: 0,
            state,
            last_state: None,
        }
    }

    fn done(code: i32) -> State {
        State::Terminated(Terminated {
            exit_code: code,
            reason: if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            message: None,
            started_at: None,
            finished_at: None,
            container_id: None,
        })
    }

    #[test]
    fn phases_follow_kubelet() {
        let waiting = State::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        };
        let running = State::Running {
            started_at: "t".into(),
        };
        assert_eq!(
            phase(&[record(false, waiting.clone())], "Always"),
            "Pending"
        );
        assert_eq!(
            phase(&[record(false, running.clone())], "Always"),
            "Running"
        );
        assert_eq!(
            phase(&[record(true, running), record(false, waiting)], "Always"),
            "Pending"
        );
        assert_eq!(phase(&[record(false, done(0))], "Never"), "Succeeded");
        assert_eq!(phase(&[record(false, done(1))], "Never"), "Failed");
        assert_eq!(phase(&[record(false, done(0))], "OnFailure"), "Succeeded");
        assert_eq!(phase(&[record(false, done(1))], "Always"), "Running");
        assert_eq!(
            phase(&[record(true, done(1)), record(false, done(0))], "Never"),
            "Failed"
        );
    }

    #[test]
    fn conditions_keep_their_transition_time() {
        let running = State::Running {
            started_at: "t".into(),
        };
        let facts = PodFacts {
            host_ip: "172.30.0.11".into(),
            pod_ip: Some("10.244.1.2".into()),
            restart_policy: "Always".into(),
            ..PodFacts::default()
        };
        let mut transitions = BTreeMap::new();
        let first = render(
            &[record(false, running.clone())],
            &facts,
            &mut transitions,
            "t1",
        );
        let second = render(&[record(false, running)], &facts, &mut transitions, "t2");
        assert_eq!(first["conditions"], second["conditions"]);
        assert_eq!(second["containerStatuses"][0]["ready"], true);
        assert_eq!(second["podIP"], "10.244.1.2");
    }
}
