//! Starting one container of the pod: back-off, the image (giving the start turn up while
//! it is pulled), the runtime config, and the containerd calls, each step timed.

use std::{collections::HashMap, time::Duration};

use tokio::time::Instant;

use super::{
    INITIAL_BACKOFF, LABEL_CONTAINER, LABEL_POD_UID, LABEL_RESTART, LABEL_STARTED, MAX_BACKOFF,
    State, Step, Terminated, Worker, container, now, probe, watch_exit,
};
use crate::{
    logs,
    runtime::{
        containers::NewContainer,
        images::PullPolicy,
        spec::{self, BindMount},
    },
};

impl Worker {
    /// Credentials from the pod's imagePullSecrets (a secret that cannot be read is skipped
    /// with a warning, as kubelet does).
    async fn pull_credentials(&self) -> crate::runtime::credentials::Credentials {
        let mut credentials = crate::runtime::credentials::Credentials::default();
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(self.kubelet.client.clone(), &self.namespace);
        let refs = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default();
        for reference in refs {
            let name = reference.name;
            match secrets.get_opt(&name).await {
                Ok(Some(secret)) => {
                    let data = secret.data.unwrap_or_default();
                    let config = data
                        .get(".dockerconfigjson")
                        .or_else(|| data.get(".dockercfg"));
                    if let Some(config) = config
                        && let Err(e) = credentials.add_docker_config(&config.0)
                    {
                        tracing::warn!(pod = %self.name, secret = %name, error = %e, "unusable pull secret");
                    }
                }
                Ok(None) => {
                    tracing::warn!(pod = %self.name, secret = %name, "pull secret not found; pulling without it")
                }
                Err(e) => {
                    tracing::warn!(pod = %self.name, secret = %name, error = %e, "cannot read pull secret")
                }
            }
        }
        credentials
    }

    fn pod_files(&self) -> Vec<BindMount> {
        [
            ("etc-hosts", "/etc/hosts"),
            ("resolv.conf", "/etc/resolv.conf"),
            ("hostname", "/etc/hostname"),
        ]
        .into_iter()
        .map(|(file, destination)| BindMount {
            source: self.pod_dir.join(file),
            destination: destination.to_owned(),
            read_only: false,
        })
        .collect()
    }

    fn full_name(&self) -> String {
        format!("{}_{}({})", self.name, self.namespace, self.uid)
    }

    /// Start slot `i` unless it is backing off.
    pub(super) async fn start(&mut self, i: usize) {
        let full_name = self.full_name();
        let now_instant = Instant::now();
        if let Some(at) = self.slots[i].next_start
            && at > now_instant
        {
            let slot = &mut self.slots[i];
            let image = slot.record.image.clone();
            slot.record.state =
                match &slot.record.state {
                    State::Waiting { reason, message }
                        if reason == "ErrImagePull" || reason == "ImagePullBackOff" =>
                    {
                        State::Waiting {
                            reason: "ImagePullBackOff".into(),
                            message: Some(format!(
                                "Back-off pulling image \"{image}\": {}",
                                message.as_deref().unwrap_or_default().trim_start_matches(
                                    &format!("Back-off pulling image \"{image}\": ")
                                )
                            )),
                        }
                    }
                    State::Waiting { reason, message }
                        if reason == "CreateContainerConfigError"
                            || reason == "CreateContainerError" =>
                    {
                        State::Waiting {
                            reason: reason.clone(),
                            message: message.clone(),
                        }
                    }
                    _ => State::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: Some(format!(
                            "back-off {}s restarting failed container={} pod={full_name}",
                            slot.backoff.as_secs(),
                            slot.record.name
                        )),
                    },
                };
            self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
            return;
        }
        let spec = self.slots[i].spec.clone();
        let image_name = spec.image.clone().unwrap_or_default();
        let policy = PullPolicy::from_spec(spec.image_pull_policy.as_deref(), &image_name);
        // A pull can take minutes: the next pod starts meanwhile, and this one queues
        // again once its image is there.
        let pulling = !self.kubelet.runtime.image_is_ready(&image_name, policy);
        let had_turn = self.turn.is_some();
        if pulling {
            self.turn = None;
        }
        let credentials = self.pull_credentials().await;
        let ensure = self.kubelet.runtime.ensure_image(
            &image_name,
            policy,
            &self.kubelet.fetcher,
            &credentials,
        );
        let image = self.kubelet.timing.timed(Step::Image, ensure).await;
        if pulling && had_turn && image.is_ok() {
            self.turn = self.kubelet.starts.turn().await;
        }
        let image = match image {
            Ok(image) => image,
            Err(e) => {
                let slot = &mut self.slots[i];
                let reason = "ErrImagePull";
                let message = e.to_string();
                tracing::warn!(pod = %self.name, container = %slot.record.name, error = %e, "image pull failed");
                slot.record.state = State::Waiting {
                    reason: reason.into(),
                    message: Some(message),
                };
                slot.next_start = Some(now_instant + slot.pull_backoff);
                self.wake = Some(now_instant + slot.pull_backoff);
                slot.pull_backoff = (slot.pull_backoff * 2).min(MAX_BACKOFF);
                return;
            }
        };
        self.slots[i].pull_backoff = INITIAL_BACKOFF;
        self.slots[i].record.image_id = Some(image.image_id.clone());
        let restart = if self.slots[i].record.last_state.is_some()
            || matches!(self.slots[i].record.state, State::Terminated(_))
        {
            self.slots[i].record.restart_count + 1
        } else {
            self.slots[i].record.restart_count
        };
        let kind = if self.slots[i].record.init { "i" } else { "c" };
        let uid_hex: String = self
            .uid
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(16)
            .collect();
        let id = format!("{uid_hex}-{kind}{}-{restart}", self.slots[i].index);
        let cgroups_path = format!("{}/pod{}/{id}", self.kubelet.config.cgroup_parent, self.uid);
        let prepared = self.volumes.clone().unwrap_or_default();
        let files = self.pod_files();
        let build = container::build(
            &self.kubelet,
            &self.pod,
            &spec,
            &image,
            &prepared,
            &files,
            &self.pod_dir,
            cgroups_path,
        );
        let config = self.kubelet.timing.timed(Step::Config, build).await;
        let mut config = match config {
            Ok(c) => c,
            Err(e) => {
                let slot = &mut self.slots[i];
                let repeated = matches!(
                    &slot.record.state,
                    State::Waiting { reason, message }
                        if reason == e.reason() && message.as_deref() == Some(e.message())
                );
                if !repeated {
                    // kubelet's event for a container it could not create.
                    tracing::warn!(pod = %self.name, container = %slot.record.name, error = %e, "container not created");
                    let pod_ref = skiff_events::reference("v1", "Pod", &self.pod.metadata);
                    self.kubelet
                        .recorder
                        .record(&pod_ref, "Warning", "Failed", &format!("Error: {e}"))
                        .await;
                }
                let slot = &mut self.slots[i];
                slot.record.state = State::Waiting {
                    reason: e.reason().into(),
                    message: Some(e.message().to_owned()),
                };
                slot.next_start = Some(now_instant + Duration::from_secs(5));
                self.wake = Some(now_instant + Duration::from_secs(5));
                return;
            }
        };
        config.netns.clone_from(&self.netns);
        let log_file = logs::container_file(&self.pod_dir, &self.slots[i].record.name, restart);
        let started_at = now();
        let labels = HashMap::from([
            (LABEL_POD_UID.to_owned(), self.uid.clone()),
            ("skiff.io/pod-name".to_owned(), self.name.clone()),
            ("skiff.io/pod-namespace".to_owned(), self.namespace.clone()),
            (
                LABEL_CONTAINER.to_owned(),
                self.slots[i].record.name.clone(),
            ),
            (LABEL_RESTART.to_owned(), restart.to_string()),
            (LABEL_STARTED.to_owned(), started_at.clone()),
            ("skiff.io/image-id".to_owned(), image.image_id.clone()),
        ]);
        let new = NewContainer {
            id: id.clone(),
            image: image.name.clone(),
            chain_id: image.chain_id.clone(),
            spec: spec::build(&config),
            labels,
            log_uri: logs::shim_uri(&self.kubelet.config.agent_binary, &log_file),
            runtime_binary: self.oci_runtime.clone().flatten(),
        };
        if let Some(dir) = log_file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let result = self.kubelet.runtime.run_container(&new).await;
        let slot = &mut self.slots[i];
        if let State::Terminated(previous) = &slot.record.state {
            slot.record.last_state = Some(previous.clone());
        }
        slot.record.restart_count = restart;
        match result {
            Ok(started) => {
                let timing = &self.kubelet.timing;
                timing.step(Step::ContainerCreate, started.took.container_create);
                timing.step(Step::SnapshotPrepare, started.took.snapshot_prepare);
                timing.step(Step::TaskCreate, started.took.task_create);
                timing.step(Step::TaskStart, started.took.task_start);
                let pid = started.pid;
                tracing::info!(pod = %self.name, container = %slot.record.name, pid, "container started");
                slot.record.id = Some(id.clone());
                slot.record.state = State::Running { started_at };
                slot.started = Some(Instant::now());
                slot.next_start = None;
                if let Some(ip) = self.ip {
                    slot.ready = slot.spec.readiness_probe.as_ref().map(|_| false);
                    slot.probers = Some(probe::start(
                        &self.kubelet.runtime,
                        &self.tx,
                        &id,
                        &slot.spec,
                        ip,
                    ));
                }
                watch_exit(&self.kubelet, &self.tx, id);
            }
            Err(e) => {
                tracing::warn!(pod = %self.name, container = %slot.record.name, error = %e, "container failed to start");
                // The image may have been removed under us: look it up again next time.
                self.kubelet.runtime.cache_image(&image.name, None);
                let _ = self.kubelet.runtime.remove_container(&id).await;
                slot.record.id = None;
                slot.record.state = State::Terminated(Terminated {
                    exit_code: 128,
                    reason: "StartError".into(),
                    message: Some(e.to_string()),
                    started_at: Some(started_at),
                    finished_at: Some(now()),
                    container_id: Some(format!("containerd://{id}")),
                });
                Self::schedule_restart(slot, &mut self.wake);
            }
        }
    }
}
