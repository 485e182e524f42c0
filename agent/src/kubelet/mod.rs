//! The kubelet half of the agent: watch the pods bound to this node and run one worker per
//! pod that turns its spec into a sandbox and containers on containerd and reports status
//! back, like kubelet's pod workers. Everything goes through the public API (watch pods with
//! `spec.nodeName=<node>`, patch `pods/status`, delete at the end of graceful termination).

pub mod container;
pub mod env;
pub mod lifecycle;
mod orphans;
pub mod pod_cgroup;
pub mod pod_dirs;
pub mod pod_dns;
pub mod probe;
pub mod runtime_class;
pub mod security;
pub mod start_queue;
pub mod status;
pub mod timing;
pub mod volumes;
mod worker;

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
    path::PathBuf,
    sync::Arc,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt,
        watcher::{self, Event},
    },
};
use tokio::sync::mpsc;

use crate::{
    network::{Cidr, ipam::Ipam, sandbox},
    runtime::{Runtime, registry::Fetcher},
};

/// Label on every container: the UID of its pod.
pub const LABEL_POD_UID: &str = "skiff.io/pod-uid";

/// Static settings of the kubelet.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// This node's name.
    pub node_name: String,
    /// This node's address (status.hostIP).
    pub host_ip: Ipv4Addr,
    /// The agent's state directory (pods, netns, IPAM).
    pub state_dir: PathBuf,
    /// The node's pod CIDR.
    pub pod_cidr: Cidr,
    /// The agent binary (run by containerd's shim as the log writer).
    pub agent_binary: PathBuf,
    /// cgroup parent of every pod, relative to each hierarchy (`/skiff/<node>`).
    pub cgroup_parent: String,
    /// Whether privileged containers may run.
    pub allow_privileged: bool,
    /// The OCI runtimes RuntimeClasses may name.
    pub runtime_handlers: runtime_class::RuntimeHandlers,
    /// The cluster DNS address and domain written into pods' resolv.conf.
    pub dns: pod_dns::ClusterDns,
    /// Containers without a seccomp profile run under RuntimeDefault (kubelet's
    /// `--seccomp-default`); else unconfined.
    pub seccomp_default: bool,
    /// Processes per pod (kubelet's `podPidsLimit`; `None`: unlimited).
    pub pod_max_pids: Option<i64>,
}

/// Told when a pod's host-side veth appears and when it goes (the datapath attaches its
/// per-pod program there).
pub trait PodVethHook: Send + Sync {
    /// The veth exists and is wired; no container of the pod runs yet.
    fn up(&self, veth: &str);
    /// The veth was removed.
    fn down(&self, veth: &str);
}

/// Everything pod workers share.
pub struct Kubelet {
    /// API client (the node's identity).
    pub client: Client,
    /// containerd in this node's namespace.
    pub runtime: Runtime,
    /// Image fetching through mirrors.
    pub fetcher: Fetcher,
    /// Pod addresses.
    pub ipam: Ipam,
    /// rtnetlink in the node namespace.
    pub netlink: rtnetlink::Handle,
    /// Settings.
    pub config: KubeletConfig,
    /// Events about pods (source kubelet, host = this node).
    pub recorder: skiff_events::Recorder,
    /// Services for the containers' environment variables (none: no Service variables).
    pub discovery: Option<Arc<crate::discovery::Discovery>>,
    /// Told about pod veths (none: no per-pod datapath).
    pub pod_veths: Option<Arc<dyn PodVethHook>>,
    /// How long pod starts and their steps take (on /metrics).
    pub timing: Arc<timing::PodStartMetrics>,
    /// Pod starts take turns (a few at once, first come first served).
    pub starts: start_queue::StartQueue,
}

/// A message to a pod worker.
#[derive(Debug)]
pub(crate) enum Message {
    /// The pod as the API now has it.
    Update(Box<Pod>),
    /// The pod is gone from the API.
    Gone,
    /// A probe changed its verdict.
    Probe {
        /// containerd ID of the probed container.
        id: String,
        /// Which probe.
        kind: probe::ProbeKind,
        /// Passing or failing.
        ok: bool,
        /// Why it failed.
        message: String,
    },
    /// A container's task exited.
    Exited {
        /// containerd ID.
        id: String,
        /// Exit status.
        code: u32,
        /// When (RFC 3339).
        at: Option<String>,
    },
}

impl Kubelet {
    /// Directory where pinned pod network namespaces live.
    pub fn netns_dir(&self) -> PathBuf {
        self.config.state_dir.join("netns")
    }

    /// Run forever: prepare the node network, then watch this node's pods and keep one
    /// worker per pod; once the first list is in, remove what is left of pods the API no
    /// longer has, and look for leftovers again every [`orphans::LEFTOVER_PASS`].
    pub async fn run(self: Arc<Self>) {
        if let Err(e) = sandbox::prepare_node(&self.netlink, self.config.pod_cidr.gateway()).await {
            tracing::error!(error = %e, "cannot prepare the node for pod networking");
        }
        let _ = std::fs::create_dir_all(self.netns_dir());
        self.runtime
            .remove_stale_image_views(&self.image_views_dir())
            .await;
        let pods: Api<Pod> = Api::all(self.client.clone());
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.config.node_name));
        let mut events = watcher::watcher(pods, config).default_backoff().boxed();
        let mut workers: HashMap<String, mpsc::UnboundedSender<Message>> = HashMap::new();
        let mut listed: HashSet<String> = HashSet::new();
        let mut collected_orphans = false;
        let mut leftover_pass = tokio::time::interval(orphans::LEFTOVER_PASS);
        leftover_pass.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                event = events.next() => match event {
                    Some(event) => event,
                    None => break,
                },
                _ = leftover_pass.tick() => {
                    if collected_orphans {
                        workers.retain(|_, tx| !tx.is_closed());
                        let live: HashSet<String> = workers.keys().cloned().collect();
                        self.collect_leftovers(&live);
                    }
                    continue;
                }
            };
            workers.retain(|_, tx| !tx.is_closed());
            match event {
                Ok(Event::Init) => listed.clear(),
                Ok(Event::InitApply(pod)) => {
                    listed.insert(pod.metadata.uid.clone().unwrap_or_default());
                    self.dispatch(&mut workers, pod);
                }
                Ok(Event::Apply(pod)) => self.dispatch(&mut workers, pod),
                Ok(Event::Delete(pod)) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if let Some(tx) = workers.get(&uid) {
                        let _ = tx.send(Message::Gone);
                    }
                }
                Ok(Event::InitDone) => {
                    for (uid, tx) in &workers {
                        if !listed.contains(uid) {
                            let _ = tx.send(Message::Gone);
                        }
                    }
                    if !collected_orphans {
                        collected_orphans = true;
                        // Noted before any later pod is dispatched, removed meanwhile.
                        let found = self.find_orphans(&listed).await;
                        let kubelet = self.clone();
                        tokio::spawn(async move { kubelet.remove_orphans(found).await });
                    }
                }
                Err(e) => tracing::debug!(error = %e, "pod watch interrupted; resuming"),
            }
        }
    }

    /// The agent's scratch directory for read-only views of images.
    pub fn image_views_dir(&self) -> PathBuf {
        self.config.state_dir.join("image-views")
    }

    fn dispatch(
        self: &Arc<Self>,
        workers: &mut HashMap<String, mpsc::UnboundedSender<Message>>,
        pod: Pod,
    ) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(tx) = workers.get(&uid) {
            let _ = tx.send(Message::Update(Box::new(pod)));
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        worker::spawn(self.clone(), pod, tx.clone(), rx);
        workers.insert(uid, tx);
    }
}
