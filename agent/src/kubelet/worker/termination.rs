//! A pod's end: preStop hooks, SIGTERM, the grace period, SIGKILL, and everything the pod
//! held on the node (containers, volumes, sandbox, address, cgroups, files) before the
//! final delete from the API.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{DeleteParams, Preconditions},
};
use tokio::{sync::mpsc, time::Instant};

use super::{LABEL_POD_UID, Message, Worker, lifecycle};
use crate::{
    kubelet::{pod_cgroup, pod_dirs},
    network::sandbox,
};

impl Worker {
    /// Run the preStop hooks of every running container, side by side, until they finish
    /// or the grace period's `deadline`; failures are reported as kubelet reports them.
    async fn run_pre_stop_hooks(&mut self, deadline: Instant) {
        let limit = deadline.saturating_duration_since(Instant::now());
        let mut hooks = Vec::new();
        for slot in &self.slots {
            let (Some(id), Some(handler)) =
                (slot.record.id.clone(), lifecycle::pre_stop(&slot.spec))
            else {
                continue;
            };
            let runtime = self.kubelet.runtime.clone();
            let container = slot.spec.clone();
            let handler = handler.clone();
            let pod_ip = self.ip;
            hooks.push(tokio::spawn(async move {
                let result =
                    lifecycle::run(&runtime, &container, &id, pod_ip, &handler, limit).await;
                (container.name, result)
            }));
        }
        let pod_ref = skiff_events::reference("v1", "Pod", &self.pod.metadata);
        for hook in hooks {
            let Ok((container, result)) = hook.await else {
                continue;
            };
            if let Err(message) = result {
                tracing::warn!(pod = %self.name, %container, %message, "preStop hook failed");
                self.kubelet
                    .recorder
                    .record(
                        &pod_ref,
                        "Warning",
                        "FailedPreStopHook",
                        &format!("PreStopHook failed: {message}"),
                    )
                    .await;
            }
        }
    }

    /// Stop every container (SIGTERM, grace period, SIGKILL), remove the sandbox, and
    /// finish the deletion in the API unless the pod is already gone.
    pub(super) async fn terminate(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Message>,
        gone: bool,
    ) {
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| self.pod.spec.as_ref()?.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0);
        tracing::info!(pod = %self.name, grace, "terminating pod");
        // A grace period past what a clock can hold is waited out as a year.
        let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(30));
        let now = Instant::now();
        let deadline = now
            .checked_add(grace)
            .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
            .unwrap_or(now);
        self.run_pre_stop_hooks(deadline).await;
        let running: Vec<String> = self
            .slots
            .iter()
            .filter_map(|s| s.record.id.clone())
            .collect();
        for id in &running {
            let _ = self.kubelet.runtime.kill(id, 15).await;
        }
        while self.slots.iter().any(|s| s.record.id.is_some()) {
            tokio::select! {
                message = rx.recv() => match message {
                    Some(Message::Exited { id, code, at }) => self.exited(&id, code, at).await,
                    Some(Message::Update(pod)) => self.pod = *pod,
                    Some(Message::Gone | Message::Probe { .. }) => {}
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        for id in self
            .slots
            .iter()
            .filter_map(|s| s.record.id.clone())
            .collect::<Vec<_>>()
        {
            let _ = self.kubelet.runtime.kill(&id, 9).await;
            let _ =
                tokio::time::timeout(Duration::from_secs(5), self.kubelet.runtime.wait(&id)).await;
            let _ = self.kubelet.runtime.remove_container(&id).await;
        }
        // Anything else labelled with this pod (e.g. from a crashed start).
        let filter = format!("labels.\"{LABEL_POD_UID}\"=={}", self.uid);
        for left in self
            .kubelet
            .runtime
            .list_containers(&filter)
            .await
            .unwrap_or_default()
        {
            let _ = self.kubelet.runtime.kill(&left.id, 9).await;
            let _ = self.kubelet.runtime.remove_container(&left.id).await;
        }
        // The containers read their projected tokens through preStop and the grace
        // period: keep them fresh until nothing runs.
        self.token_refreshers.abort_all();
        if let Err(e) = sandbox::tear_down(&self.kubelet.netlink, &self.netns, &self.uid).await {
            tracing::warn!(pod = %self.name, error = %e, "cannot remove the pod sandbox");
        }
        if let Some(hook) = &self.kubelet.pod_veths {
            hook.down(&sandbox::host_veth(&self.uid));
        }
        let _ = self.kubelet.ipam.release(&self.uid).await;
        let cgroup_root = std::path::Path::new(pod_cgroup::CGROUP_ROOT);
        if !pod_cgroup::remove(cgroup_root, &self.kubelet.config.cgroup_parent, &self.uid) {
            tracing::warn!(pod = %self.name, "the pod's cgroup could not be removed; the kubelet tries again later");
        }
        if !pod_dirs::remove(&self.pod_dir) {
            // Removing through a mount left in place would delete what it shows; the
            // kubelet's periodic pass over leftover pod directories tries again.
            tracing::warn!(pod = %self.name, dir = %self.pod_dir.display(), "a volume mount could not be undone; the pod's directory is kept for now");
        }
        if !gone {
            let pods: Api<Pod> = Api::namespaced(self.kubelet.client.clone(), &self.namespace);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(e) = pods.delete(&self.name, &params).await {
                tracing::debug!(pod = %self.name, error = %e, "final delete failed (already gone?)");
            }
        }
        tracing::info!(pod = %self.name, "pod terminated");
    }
}
