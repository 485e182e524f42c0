//! Joining the cluster: the API client, Node registration and heartbeats, and the kubelet
//! with its containerd connection, IPAM, mirrors and Service discovery.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use skiff_agent::{
    datapath::pods::PodAttach,
    discovery::{Discovery, DiscoveryConfig},
    kubelet::{Kubelet, KubeletConfig, runtime_class::RuntimeHandlers},
    metrics::Metrics,
    network::{Cidr, ipam::Ipam, node_routes},
    node::{self, HostFacts, NodeConfig},
    runtime::{
        Runtime,
        registry::{Fetcher, RegistryConfig},
    },
};
use tracing::info;

use crate::cli::Args;

/// The cluster CA (PEM) from a kubeconfig's certificate-authority-data.
pub fn cluster_ca(kubeconfig: &Path) -> Result<String> {
    use base64::Engine as _;
    let config = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let data = config
        .clusters
        .iter()
        .find_map(|c| c.cluster.as_ref()?.certificate_authority_data.clone())
        .context("the kubeconfig has no certificate-authority-data")?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .context("certificate-authority-data is not base64")?;
    String::from_utf8(pem).context("certificate-authority-data is not PEM text")
}

/// How this node presents itself to the API server.
pub async fn node_config(args: &Args, handlers: &RuntimeHandlers) -> NodeConfig {
    let address = match args.listen.ip() {
        std::net::IpAddr::V4(ip) => ip,
        std::net::IpAddr::V6(_) => std::net::Ipv4Addr::LOCALHOST,
    };
    NodeConfig {
        name: args.node_name.clone(),
        address,
        pod_cidr: args.pod_cidr.clone(),
        max_pods: args.max_pods,
        runtime_version: runtime_version(&args.containerd).await,
        runtime_handlers: handlers.names().map(str::to_owned).collect(),
        local_path_dir: skiff_agent::kubelet::volumes::local_path::root(&args.state_dir)
            .display()
            .to_string(),
    }
}

/// `containerd://<version>` from the runtime itself.
pub async fn runtime_version(socket: &Path) -> String {
    let version = async {
        let channel = containerd_client::connect(socket).await.ok()?;
        let reply = containerd_client::services::v1::version_client::VersionClient::new(channel)
            .version(())
            .await
            .ok()?;
        Some(reply.into_inner().version)
    };
    match tokio::time::timeout(Duration::from_secs(3), version).await {
        Ok(Some(v)) => format!("containerd://{v}"),
        _ => "containerd://unknown".to_owned(),
    }
}

/// An API client from the kubeconfig, retrying until the file is readable.
pub async fn api_client(kubeconfig: &Path) -> kube::Client {
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = async {
            let kubeconfig =
                kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
            let options = kube::config::KubeConfigOptions::default();
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| e.to_string())?;
            kube::Client::try_from(config).map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(client) => return client,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build an API client from the kubeconfig yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Connect to containerd, load IPAM and mirrors, and start the pod workers and node routes.
pub async fn start_kubelet(
    args: &Args,
    runtime_handlers: RuntimeHandlers,
    client: kube::Client,
    metrics: Arc<Metrics>,
    pod_veths: Arc<PodAttach>,
) -> Result<Arc<Kubelet>> {
    let cidr_text = args
        .pod_cidr
        .clone()
        .context("no --pod-cidr: the kubelet needs this node's pod CIDR")?;
    let pod_cidr = Cidr::parse(&cidr_text)?;
    let runtime = connect_runtime(&args.containerd, &args.node_name).await?;
    let registries = RegistryConfig::load(args.registry_config.as_deref())?;
    let ipam = Ipam::load(pod_cidr, args.state_dir.join("ipam.json"))?;
    let (connection, netlink, _) =
        rtnetlink::new_connection().context("opening a netlink socket")?;
    tokio::spawn(connection);
    let host_ip = match args.listen.ip() {
        std::net::IpAddr::V4(ip) => ip,
        std::net::IpAddr::V6(_) => std::net::Ipv4Addr::LOCALHOST,
    };
    let cgroup_parent = cgroup_parent(&args.cgroup);
    let discovery = Discovery::start(
        client.clone(),
        DiscoveryConfig {
            domain: args.cluster_domain.clone(),
            dns_ip: args.cluster_dns,
            upstream: args.dns_upstream,
            announce: (!args.announce_interface.is_empty()).then(|| {
                skiff_agent::discovery::announce::Announcer {
                    node_name: args.node_name.clone(),
                    interface: args.announce_interface.clone(),
                    record: args.state_dir.join("lb-announced"),
                }
            }),
        },
        netlink.clone(),
        metrics.clone(),
    );
    let parallel_starts = args.parallel_pod_starts.unwrap_or_else(|| {
        4 * std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    let kubelet = Arc::new(Kubelet {
        timing: metrics.pod_start.clone(),
        starts: skiff_agent::kubelet::start_queue::StartQueue::new(parallel_starts),
        discovery: Some(discovery),
        pod_veths: Some(pod_veths),
        recorder: skiff_events::Recorder::on_host(client.clone(), "kubelet", &args.node_name),
        client: client.clone(),
        runtime,
        fetcher: Fetcher::new(registries),
        ipam,
        netlink: netlink.clone(),
        config: KubeletConfig {
            node_name: args.node_name.clone(),
            host_ip,
            state_dir: args.state_dir.clone(),
            pod_cidr,
            agent_binary: std::env::current_exe().context("locating the agent binary")?,
            cgroup_parent,
            allow_privileged: args.allow_privileged,
            runtime_handlers,
            dns: skiff_agent::kubelet::pod_dns::ClusterDns {
                server: args.cluster_dns,
                domain: args.cluster_domain.clone(),
            },
            seccomp_default: args.seccomp_default,
            pod_max_pids: (args.pod_max_pids > 0).then_some(args.pod_max_pids),
        },
    });
    tokio::spawn(kubelet.clone().run());
    tokio::spawn(node_routes::sync(client, netlink, args.node_name.clone()));
    Ok(kubelet)
}

/// How long the agent waits for containerd at start before giving up on the kubelet.
pub const CONTAINERD_WAIT: Duration = Duration::from_secs(60);

/// Connect to containerd, retrying with back-off while it is starting or restarting (once
/// connected, the gRPC channel reconnects by itself).
pub async fn connect_runtime(socket: &Path, namespace: &str) -> Result<Runtime> {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match Runtime::connect(socket, namespace).await {
            Ok(runtime) => return Ok(runtime),
            Err(e) if started.elapsed() < CONTAINERD_WAIT => {
                tracing::warn!(error = %e, socket = %socket.display(), "containerd is not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "containerd at {} did not answer for {} s",
                        socket.display(),
                        CONTAINERD_WAIT.as_secs()
                    )
                });
            }
        }
    }
}

/// The pod cgroup parent relative to the hierarchy roots: `/sys/fs/cgroup/unified/skiff/n1`
/// → `/skiff/n1`.
pub fn cgroup_parent(cgroup2_dir: &Path) -> String {
    for root in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if let Ok(rest) = cgroup2_dir.strip_prefix(root) {
            return format!("/{}", rest.display());
        }
    }
    format!("/{}", cgroup2_dir.display())
}

/// Register the Node (retrying until the API server answers), then heartbeat forever.
pub async fn node_lifecycle(client: kube::Client, config: NodeConfig) {
    let facts = HostFacts::read();
    let mut delay = Duration::from_millis(200);
    loop {
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        match node::register(&client, &config, &facts, &now).await {
            Ok(node) => {
                info!(node = %config.name, "registered with the API server");
                let uid = node.metadata.uid.unwrap_or_default();
                node::heartbeat(client, config, uid).await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "node registration failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}
