//! One pod's worker: sandbox, volumes, init containers in order, app containers with
//! restart policy and back-off, status, and graceful termination. It adopts containers a
//! previous agent left running (same labels), so an agent restart restarts nothing.

mod container_start;
mod pod_sandbox;
mod pod_volumes;
mod termination;

use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::Value;
use tokio::{sync::mpsc, time::Instant};

use super::{
    Kubelet, LABEL_POD_UID, Message, container, lifecycle, pod_dns, probe,
    status::{self, ContainerRecord, PodFacts, State, Terminated},
    timing::Step,
    volumes,
};
use crate::{logs, runtime::containers::TaskState};

/// First restart delay after the immediate one; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// Back-off ceiling.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long resets its back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often a worker re-syncs without news.
const RESYNC: Duration = Duration::from_secs(10);

const LABEL_CONTAINER: &str = "skiff.io/container";
const LABEL_RESTART: &str = "skiff.io/restart-count";
const LABEL_STARTED: &str = "skiff.io/started-at";

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Per-container bookkeeping beyond what status shows.
struct Slot {
    record: ContainerRecord,
    spec: Container,
    index: usize,
    /// Not before this instant (back-off).
    next_start: Option<Instant>,
    backoff: Duration,
    pull_backoff: Duration,
    started: Option<Instant>,
    /// The running probers of the current run (dropped with it).
    probers: Option<tokio::task::JoinSet<()>>,
    /// Readiness from the readiness probe (`None`: no probe, ready while running).
    ready: Option<bool>,
}

struct Worker {
    kubelet: Arc<Kubelet>,
    pod: Pod,
    uid: String,
    name: String,
    namespace: String,
    pod_dir: PathBuf,
    netns: PathBuf,
    ip: Option<Ipv4Addr>,
    /// The OCI runtime of the pod's RuntimeClass, once resolved.
    oci_runtime: Option<super::runtime_class::RuntimeBinary>,
    blocked: Option<(String, String)>,
    volumes: Option<volumes::Prepared>,
    slots: Vec<Slot>,
    tx: mpsc::UnboundedSender<Message>,
    transitions: BTreeMap<&'static str, (bool, String)>,
    start_time: String,
    last_status: Option<Value>,
    wake: Option<Instant>,
    /// When the worker first saw the pod, until its start is recorded (`None` after that,
    /// and for a pod adopted from an earlier agent).
    starting_since: Option<Instant>,
    /// This pod's turn in the node's start queue, held while a sync starts something.
    turn: super::start_queue::Turn,
    /// The tasks keeping the pod's projected ServiceAccount tokens fresh (aborted when the
    /// worker drops them).
    token_refreshers: tokio::task::JoinSet<()>,
    /// Tokens issued by volume setup attempts, reused by the next attempt.
    token_cache: Arc<volumes::token_cache::CachingTokenSource>,
}

/// Start the worker of `pod`.
pub(crate) fn spawn(
    kubelet: Arc<Kubelet>,
    pod: Pod,
    tx: mpsc::UnboundedSender<Message>,
    rx: mpsc::UnboundedReceiver<Message>,
) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_dir = logs::pod_dir(&kubelet.config.state_dir, &namespace, &name, &uid);
    let netns = kubelet.netns_dir().join(&uid);
    let spec = pod.spec.clone().unwrap_or_default();
    let mut slots = Vec::new();
    for (init, list) in [
        (true, spec.init_containers.unwrap_or_default()),
        (false, spec.containers),
    ] {
        for (index, c) in list.into_iter().enumerate() {
            slots.push(Slot {
                record: ContainerRecord {
                    name: c.name.clone(),
                    init,
                    image: c.image.clone().unwrap_or_default(),
                    image_id: None,
                    id: None,
                    restart_count: 0,
                    state: State::Waiting {
                        reason: if init {
                            "PodInitializing".into()
                        } else {
                            "ContainerCreating".into()
                        },
                        message: None,
                    },
                    last_state: None,
                },
                spec: c,
                index,
                next_start: None,
                backoff: Duration::ZERO,
                pull_backoff: INITIAL_BACKOFF,
                started: None,
                probers: None,
                ready: None,
            });
        }
    }
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map_or_else(now, |t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    let token_cache = Arc::new(volumes::token_cache::CachingTokenSource::new(
        Arc::new(volumes::token::KubeTokenSource(kubelet.client.clone())),
        Arc::new(volumes::token::SystemClock),
    ));
    let worker = Worker {
        kubelet,
        pod,
        uid,
        name,
        namespace,
        pod_dir,
        netns,
        ip: None,
        oci_runtime: None,
        blocked: None,
        volumes: None,
        slots,
        tx,
        transitions: BTreeMap::new(),
        start_time,
        last_status: None,
        wake: None,
        starting_since: Some(Instant::now()),
        turn: None,
        token_refreshers: tokio::task::JoinSet::new(),
        token_cache,
    };
    tokio::spawn(worker.run(rx));
}

/// How a wait for a start turn ended.
enum Waited {
    /// The pod's turn came.
    Turn(super::start_queue::Turn),
    /// The pod is gone from the API.
    Gone,
    /// The pod was deleted (it terminates; nothing is started).
    Terminating,
}

impl Worker {
    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".to_owned())
    }

    fn terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Message>) {
        tracing::info!(pod = %format!("{}/{}", self.namespace, self.name), "pod worker started");
        self.adopt().await;
        let mut gone = false;
        loop {
            if gone || self.terminating() {
                self.terminate(&mut rx, gone).await;
                return;
            }
            if self.wants_start() {
                match self.wait_for_turn(&mut rx).await {
                    Waited::Turn(turn) => self.turn = turn,
                    Waited::Gone => {
                        gone = true;
                        continue;
                    }
                    Waited::Terminating => continue,
                }
            }
            self.sync_now().await;
            self.turn = None;
            self.note_started();
            self.publish().await;
            let deadline = self.wake.take().unwrap_or_else(|| Instant::now() + RESYNC);
            tokio::select! {
                message = rx.recv() => gone = !self.receive(message).await,
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Handle one message of the pod's channel; `false` once the pod is gone.
    async fn receive(&mut self, message: Option<Message>) -> bool {
        match message {
            Some(Message::Update(pod)) => self.pod = *pod,
            Some(Message::Gone) | None => return false,
            Some(Message::Exited { id, code, at }) => self.exited(&id, code, at).await,
            Some(Message::Probe {
                id,
                kind,
                ok,
                message,
            }) => self.probed(&id, kind, ok, &message).await,
        }
        true
    }

    /// Wait for this pod's turn in the node's start queue. Messages arriving meanwhile are
    /// handled without losing the place in the queue; a pod deleted while it waits starts
    /// nothing.
    async fn wait_for_turn(&mut self, rx: &mut mpsc::UnboundedReceiver<Message>) -> Waited {
        let starts = self.kubelet.starts.clone();
        let turn = starts.turn();
        tokio::pin!(turn);
        loop {
            tokio::select! {
                turn = &mut turn => return Waited::Turn(turn),
                message = rx.recv() => {
                    if !self.receive(message).await {
                        return Waited::Gone;
                    }
                    if self.terminating() {
                        return Waited::Terminating;
                    }
                }
            }
        }
    }

    /// Record the pod's start once every app container runs.
    fn note_started(&mut self) {
        let Some(since) = self.starting_since else {
            return;
        };
        let running = self
            .slots
            .iter()
            .filter(|s| !s.record.init)
            .all(|s| matches!(s.record.state, State::Running { .. }));
        if running {
            self.kubelet.timing.pod_started(since.elapsed());
            self.starting_since = None;
        }
    }

    /// Take over containers a previous agent started for this pod.
    async fn adopt(&mut self) {
        let filter = format!("labels.\"{LABEL_POD_UID}\"=={}", self.uid);
        let existing = match self.kubelet.runtime.list_containers(&filter).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(pod = %self.name, error = %e, "cannot list containers to adopt");
                return;
            }
        };
        if !existing.is_empty() {
            self.starting_since = None;
        }
        if !existing.is_empty()
            && crate::network::netns::is_pinned(&self.netns)
            && let Ok(ip) = self.kubelet.ipam.allocate(&self.uid).await
        {
            self.ip = Some(ip);
        }
        for found in existing {
            let Some(slot) = self
                .slots
                .iter_mut()
                .find(|s| found.labels.get(LABEL_CONTAINER) == Some(&s.record.name))
            else {
                let _ = self.kubelet.runtime.remove_container(&found.id).await;
                continue;
            };
            slot.record.restart_count = found
                .labels
                .get(LABEL_RESTART)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            slot.record.image_id = found.labels.get("skiff.io/image-id").cloned();
            let started_at = found
                .labels
                .get(LABEL_STARTED)
                .cloned()
                .or(found.created_at);
            match self.kubelet.runtime.task_state(&found.id).await {
                Ok(TaskState::Running(_)) => {
                    slot.record.id = Some(found.id.clone());
                    slot.record.state = State::Running {
                        started_at: started_at.unwrap_or_else(now),
                    };
                    slot.started = Some(Instant::now());
                    if let Some(ip) = self.ip {
                        slot.ready = slot.spec.readiness_probe.as_ref().map(|_| false);
                        slot.probers = Some(probe::start(
                            &self.kubelet.runtime,
                            &self.tx,
                            &found.id,
                            &slot.spec,
                            ip,
                        ));
                    }
                    watch_exit(&self.kubelet, &self.tx, found.id.clone());
                    tracing::info!(pod = %self.name, container = %slot.record.name, "adopted running container");
                }
                Ok(TaskState::Exited(code, at)) => {
                    slot.record.id = Some(found.id.clone());
                    slot.record.state = State::Running {
                        started_at: started_at.unwrap_or_else(now),
                    };
                    let _ = self.tx.send(Message::Exited {
                        id: found.id,
                        code,
                        at,
                    });
                }
                _ => {
                    let _ = self.kubelet.runtime.remove_container(&found.id).await;
                }
            }
        }
    }

    /// Whether a sync would create something: the sandbox, or a container it is time to
    /// start (not backing off).
    fn wants_start(&self) -> bool {
        let now = Instant::now();
        self.ip.is_none()
            || !crate::network::netns::is_pinned(&self.netns)
            || self
                .due_slots()
                .into_iter()
                .any(|i| self.slots[i].next_start.is_none_or(|at| at <= now))
    }

    /// The slots a sync starts, in order: the first init container not done yet (none
    /// while one runs, or once one failed under restartPolicy Never), else every app
    /// container the restart policy wants running.
    fn due_slots(&self) -> Vec<usize> {
        let policy = self.restart_policy();
        for (i, slot) in self.slots.iter().enumerate() {
            if !slot.record.init {
                continue;
            }
            match &slot.record.state {
                State::Terminated(t) if t.exit_code == 0 => continue,
                State::Running { .. } => return Vec::new(),
                State::Terminated(_) if policy == "Never" => return Vec::new(),
                _ => return vec![i],
            }
        }
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| {
                !slot.record.init
                    && match &slot.record.state {
                        State::Running { .. } => false,
                        State::Waiting { .. } => true,
                        State::Terminated(t) => match policy.as_str() {
                            "Never" => false,
                            "OnFailure" => t.exit_code != 0,
                            _ => true,
                        },
                    }
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Bring the pod's containerd state toward its spec (holding a start turn when
    /// something is to be started, see [`Worker::wait_for_turn`]).
    async fn sync_now(&mut self) {
        if !self.ensure_sandbox().await {
            return;
        }
        if !self.ensure_volumes().await {
            return;
        }
        // Init containers one at a time, in order; then the app containers.
        for i in self.due_slots() {
            self.start(i).await;
        }
    }

    fn schedule_restart(slot: &mut Slot, wake: &mut Option<Instant>) {
        let ran_long = slot.started.is_some_and(|s| s.elapsed() > BACKOFF_RESET);
        slot.backoff = if ran_long || slot.backoff.is_zero() && slot.record.restart_count == 0 {
            Duration::ZERO
        } else if slot.backoff.is_zero() {
            INITIAL_BACKOFF
        } else {
            (slot.backoff * 2).min(MAX_BACKOFF)
        };
        let at = Instant::now() + slot.backoff;
        slot.next_start = Some(at);
        *wake = Some(wake.map_or(at, |w| w.min(at)));
    }

    /// A container exited: record why, remove it, schedule its restart.
    async fn exited(&mut self, id: &str, code: u32, at: Option<String>) {
        let Some(i) = self
            .slots
            .iter()
            .position(|s| s.record.id.as_deref() == Some(id))
        else {
            return;
        };
        let cgroup = format!("{}/pod{}/{id}", self.kubelet.config.cgroup_parent, self.uid);
        let oom = oom_killed(&cgroup);
        if let Err(e) = self.kubelet.runtime.remove_container(id).await {
            tracing::warn!(container = id, error = %e, "cannot remove exited container");
        }
        let slot = &mut self.slots[i];
        let exit_code = i32::try_from(code).unwrap_or(255);
        let reason = if oom {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        let started_at = match &slot.record.state {
            State::Running { started_at } => Some(started_at.clone()),
            _ => None,
        };
        tracing::info!(pod = %self.name, container = %slot.record.name, exit_code, reason, "container exited");
        slot.record.id = None;
        slot.probers = None;
        slot.ready = None;
        slot.record.state = State::Terminated(Terminated {
            exit_code,
            reason: reason.into(),
            message: None,
            started_at,
            finished_at: Some(at.unwrap_or_else(now)),
            container_id: Some(format!("containerd://{id}")),
        });
        Self::schedule_restart(slot, &mut self.wake);
    }

    /// A probe verdict: readiness flips Ready; a failed liveness or startup probe restarts
    /// the container (SIGTERM, then SIGKILL after the grace period).
    async fn probed(&mut self, id: &str, kind: probe::ProbeKind, ok: bool, message: &str) {
        let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.record.id.as_deref() == Some(id))
        else {
            return;
        };
        let pod_ref = skiff_events::reference("v1", "Pod", &self.pod.metadata);
        if !ok {
            self.kubelet
                .recorder
                .record(
                    &pod_ref,
                    "Warning",
                    "Unhealthy",
                    &format!("{} probe failed: {message}", kind.name()),
                )
                .await;
        }
        if kind == probe::ProbeKind::Readiness {
            slot.ready = Some(ok);
            return;
        }
        if ok {
            return;
        }
        let container = slot.record.name.clone();
        self.kubelet
            .recorder
            .record(
                &pod_ref,
                "Normal",
                "Killing",
                &format!(
                    "Container {container} failed {} probe, will be restarted",
                    kind.name().to_lowercase()
                ),
            )
            .await;
        let grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0);
        let runtime = self.kubelet.runtime.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let _ = runtime.kill(&id, 15).await;
            tokio::time::sleep(Duration::from_secs(u64::try_from(grace).unwrap_or(30))).await;
            let _ = runtime.kill(&id, 9).await;
        });
    }

    /// Patch pods/status when it changed.
    async fn publish(&mut self) {
        let records: Vec<ContainerRecord> = self.slots.iter().map(|s| s.record.clone()).collect();
        let facts = PodFacts {
            host_ip: self.kubelet.config.host_ip.to_string(),
            pod_ip: self.ip.map(|ip| ip.to_string()),
            start_time: self.start_time.clone(),
            restart_policy: self.restart_policy(),
            blocked: self.blocked.clone(),
            readiness: self
                .slots
                .iter()
                .filter_map(|s| s.ready.map(|r| (s.record.name.clone(), r)))
                .collect(),
        };
        let status = status::render(&records, &facts, &mut self.transitions, &now());
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let pods: Api<Pod> = Api::namespaced(self.kubelet.client.clone(), &self.namespace);
        let patch = serde_json::json!({"status": status});
        match pods
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.last_status = Some(status),
            Err(e) => {
                tracing::debug!(pod = %self.name, error = %e, "status patch failed; retrying");
                self.wake = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }
}

/// Wait for a container's task to exit and tell the worker (retrying through containerd
/// restarts).
fn watch_exit(kubelet: &Arc<Kubelet>, tx: &mpsc::UnboundedSender<Message>, id: String) {
    let runtime = kubelet.runtime.clone();
    let tx = tx.clone();
    tokio::spawn(async move {
        loop {
            match runtime.wait(&id).await {
                Ok((code, at)) => {
                    let _ = tx.send(Message::Exited { id, code, at });
                    return;
                }
                Err(e) if e.is_not_found() => {
                    let _ = tx.send(Message::Exited {
                        id,
                        code: 255,
                        at: None,
                    });
                    return;
                }
                Err(e) => {
                    if tx.is_closed() {
                        return;
                    }
                    tracing::debug!(container = %id, error = %e, "waiting on the task failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

/// Whether the kernel OOM-killed something in this container's memory cgroup.
fn oom_killed(cgroup: &str) -> bool {
    let relative = cgroup.trim_start_matches('/');
    let candidates = [
        PathBuf::from("/sys/fs/cgroup/memory")
            .join(relative)
            .join("memory.oom_control"),
        PathBuf::from("/sys/fs/cgroup")
            .join(relative)
            .join("memory.events"),
        PathBuf::from("/sys/fs/cgroup/unified")
            .join(relative)
            .join("memory.events"),
    ];
    candidates.iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines().any(|line| {
                line.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
}
