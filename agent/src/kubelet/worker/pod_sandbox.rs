//! A pod's sandbox, made once before its first container: the OCI runtime its RuntimeClass
//! names, then the network namespace with its veth, address and routes, the files every
//! container mounts (/etc/hosts, resolv.conf, hostname), and the pod cgroup's pids limit.
//! A sandbox that cannot be made is reported as kubelet does (FailedCreatePodSandBox) and
//! tried again in a while.

use std::{net::Ipv4Addr, time::Duration};

use tokio::time::Instant;

use super::{Step, Worker, pod_dns};
use crate::{kubelet::pod_dirs, network::sandbox};

impl Worker {
    /// Resolve the pod's runtime and set up its network namespace if either is missing;
    /// false (reported) if the sandbox cannot be made now.
    pub(super) async fn ensure_sandbox(&mut self) -> bool {
        if self.oci_runtime.is_none() {
            let kubelet = self.kubelet.clone();
            let class = self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.runtime_class_name.as_deref());
            match kubelet
                .config
                .runtime_handlers
                .resolve(&kubelet.client, class)
                .await
            {
                Ok(binary) => self.oci_runtime = Some(binary),
                Err(message) => {
                    self.sandbox_failed(message).await;
                    return false;
                }
            }
        }
        if self.ip.is_none() || !crate::network::netns::is_pinned(&self.netns) {
            let kubelet = self.kubelet.clone();
            let sandbox = kubelet
                .timing
                .timed(Step::Sandbox, self.set_up_sandbox())
                .await;
            match sandbox {
                Ok(ip) => {
                    self.ip = Some(ip);
                    self.blocked = None;
                }
                Err(message) => {
                    self.sandbox_failed(message).await;
                    return false;
                }
            }
        }
        true
    }

    /// The pod's sandbox cannot be made: say why (status and, when the reason is new, a
    /// Warning event, as kubelet's FailedCreatePodSandBox) and try again in a while.
    async fn sandbox_failed(&mut self, message: String) {
        tracing::warn!(pod = %self.name, %message, "pod sandbox failed");
        let reason = "FailedCreatePodSandBox";
        let known = self
            .blocked
            .as_ref()
            .is_some_and(|(r, m)| r == reason && *m == message);
        if !known {
            let pod_ref = skiff_events::reference("v1", "Pod", &self.pod.metadata);
            self.kubelet
                .recorder
                .record(
                    &pod_ref,
                    "Warning",
                    reason,
                    &format!("Failed to create pod sandbox: {message}"),
                )
                .await;
        }
        self.blocked = Some((reason.into(), message));
        self.wake = Some(Instant::now() + Duration::from_secs(5));
    }

    async fn set_up_sandbox(&mut self) -> Result<Ipv4Addr, String> {
        let ip = self
            .kubelet
            .ipam
            .allocate(&self.uid)
            .await
            .map_err(|e| e.to_string())?;
        let gateway = self.kubelet.config.pod_cidr.gateway();
        sandbox::set_up(&self.kubelet.netlink, &self.netns, &self.uid, ip, gateway)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(hook) = &self.kubelet.pod_veths {
            hook.up(&sandbox::host_veth(&self.uid));
        }
        if let Some(pods) = self.pod_dir.parent() {
            pod_dirs::create_private_dir(pods)
                .map_err(|e| format!("creating {}: {e}", pods.display()))?;
        }
        pod_dirs::create_private_dir(&self.pod_dir)
            .map_err(|e| format!("creating {}: {e}", self.pod_dir.display()))?;
        let dns = &self.kubelet.config.dns;
        let node_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let hosts = pod_dns::hosts(&self.pod, ip, dns);
        let resolv = pod_dns::resolv_conf(&self.pod, dns, &node_resolv);
        for (file, text) in [
            ("etc-hosts", hosts),
            ("resolv.conf", resolv),
            ("hostname", format!("{}\n", pod_dns::hostname(&self.pod))),
        ] {
            std::fs::write(self.pod_dir.join(file), text).map_err(|e| e.to_string())?;
        }
        if let Some(limit) = self.kubelet.config.pod_max_pids {
            let root = std::path::Path::new(super::super::pod_cgroup::CGROUP_ROOT);
            if let Err(e) = super::super::pod_cgroup::limit_pids(
                root,
                &self.kubelet.config.cgroup_parent,
                &self.uid,
                limit,
            ) {
                // Each container still gets the limit from its OCI spec.
                tracing::warn!(pod = %self.name, error = %e, "cannot limit the pod's processes in its cgroup");
            }
        }
        tracing::info!(pod = %self.name, %ip, "pod sandbox ready");
        Ok(ip)
    }
}
