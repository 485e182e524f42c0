//! skiff-agent daemon: enters the node's network namespace, loads the eBPF datapath and
//! attaches the socket LB at the node's pod cgroup parent, registers the node, runs the pods
//! bound to it, and serves the node HTTP API until SIGTERM: over TLS with client
//! certificates (container logs, exec, /healthz, /metrics) and, if asked, plain /healthz and
//! /metrics on a second address.
//!
//! Two helper modes share the binary: `skiff-agent log-shim FILE` (run by containerd's shim
//! to write a container's output in CRI format) and `skiff-agent images import FILE.tar`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context, Result};
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use clap::{Parser, Subcommand};
use skiff_agent::{
    datapath::{
        self, Datapath, MapSizes, Settings,
        attach::XdpAttach,
        conntrack_gc::{self, StateCapacities},
        desired::NodeView,
        inspect,
        maps::StateMaps,
        pods::PodAttach,
        sockets::UdpTerminator,
        sync::{self as datapath_sync, Capacities, FullMapEvents, Programmer},
        table::{MaglevSettings, Table},
    },
    discovery::{Discovery, DiscoveryConfig},
    kubelet::{Kubelet, KubeletConfig},
    logs,
    metrics::Metrics,
    netns,
    network::{Cidr, ipam::Ipam, node_routes},
    node::{self, HostFacts, NodeConfig},
    runtime::{
        Runtime,
        registry::{Fetcher, RegistryConfig},
    },
    server,
};
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

/// Command line of skiff-agent.
#[derive(Parser, Debug)]
#[command(
    name = "skiff-agent",
    version,
    about = "Skiff node agent helper modes (run without a subcommand for the daemon)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a container's stdout/stderr (fds 3 and 4) to FILE in CRI log format; started
    /// by containerd's shim, not by hand.
    LogShim {
        /// Log file.
        file: PathBuf,
    },
    /// Manage images in this node's containerd namespace.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// Inspect the Service datapath of a node: frontends, backends, conntrack, Maglev,
    /// counters, live events (`monitor`) and one flow's path (`trace`).
    Bpf {
        #[command(flatten)]
        target: inspect::Target,
        #[command(subcommand)]
        command: inspect::Command,
    },
}

#[derive(Subcommand, Debug)]
enum ImagesCommand {
    /// Import the images of an OCI archive (air-gapped nodes).
    Import {
        /// The archive (`cargo xtask images` writes them to target/images/).
        file: PathBuf,
        /// containerd namespace (the node name).
        #[arg(long, env = "SKIFF_NODE_NAME")]
        namespace: String,
        /// containerd socket.
        #[arg(long, default_value = "/run/containerd/containerd.sock")]
        containerd: PathBuf,
    },
}

/// Flags of the daemon.
#[derive(Parser, Debug)]
#[command(
    name = "skiff-agent",
    version,
    about = "Skiff node agent: kubelet and eBPF Service datapath (helper modes: log-shim, images, bpf)"
)]
struct Args {
    /// Name of this node.
    #[arg(long, env = "SKIFF_NODE_NAME")]
    node_name: String,
    /// Network namespace (under /run/netns) to run in; the host namespace if absent.
    #[arg(long)]
    netns: Option<String>,
    /// cgroup2 directory that is the parent of every pod cgroup on this node; the socket LB
    /// attaches here.
    #[arg(long)]
    cgroup: PathBuf,
    /// bpffs directory where maps and links are pinned (survive agent restarts).
    #[arg(long)]
    bpffs_dir: PathBuf,
    /// Address of the node HTTP API (/healthz, /metrics).
    #[arg(long, default_value = "127.0.0.1:10250")]
    listen: SocketAddr,
    /// Directory for this agent's state.
    #[arg(long)]
    state_dir: PathBuf,
    /// Kubeconfig to reach the API server (the node's own client certificate).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// containerd socket.
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    containerd: PathBuf,
    /// Pod CIDR to claim if the Node has none.
    #[arg(long)]
    pod_cidr: Option<String>,
    /// Maximum pods on this node.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Registry mirrors (k3s registries.yaml format).
    #[arg(long)]
    registry_config: Option<PathBuf>,
    /// Allow privileged containers.
    #[arg(long)]
    allow_privileged: bool,
    /// Pod starts (sandbox and containers) run at most this many at once, first come first
    /// served (default: four per CPU; 0: all at once).
    #[arg(long)]
    parallel_pod_starts: Option<usize>,
    /// Plain-HTTP address for /healthz and /metrics only (kubelet's healthz port, 10248).
    #[arg(long)]
    healthz_listen: Option<SocketAddr>,
    /// The cluster DNS address: the node-local resolver answers on it (pods' resolv.conf
    /// points there).
    #[arg(long, default_value = "10.96.0.10")]
    cluster_dns: std::net::Ipv4Addr,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Upstream DNS server for names outside the cluster domain (none: they are REFUSED).
    #[arg(long)]
    dns_upstream: Option<SocketAddr>,
    /// Interface on which this node answers (ARP) for LoadBalancer addresses it is chosen
    /// to announce; empty: never.
    #[arg(long, default_value = "eth0")]
    announce_interface: String,
    /// The underlay interface: NodePort, LoadBalancer and externalIP traffic arrives here
    /// (tc and XDP attach to it); empty: none.
    #[arg(long, default_value = "eth0")]
    external_interface: String,
    /// Translate Service addresses at the socket (connect/sendmsg) for in-cluster clients;
    /// `false` sends east-west traffic through the per-packet tc path instead.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    socket_lb: bool,
    /// NodePort/LoadBalancer acceleration on the underlay interface: `xdp` or `none` (tc
    /// only). Switchable live with `skiff-agent bpf config --xdp on|off`.
    #[arg(long, value_enum, default_value_t = Acceleration::None)]
    nodeport_acceleration: Acceleration,
    /// XDP attach mode: `best` (native where the driver has it, generic otherwise) or
    /// `generic`.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Best)]
    xdp_mode: XdpModeArg,
    /// Source address of hairpin flows (a pod reaching itself through its Service).
    #[arg(long, default_value = "169.254.42.1")]
    hairpin_address: std::net::Ipv4Addr,
    /// Maglev table size M (a prime; the same on every node).
    #[arg(long, default_value_t = skiff_ebpf_common::maglev::MAGLEV_DEFAULT_TABLE_SIZE)]
    maglev_table_size: u32,
    /// Maglev hash seed (the same on every node).
    #[arg(long, default_value_t = skiff_agent::datapath::maglev::DEFAULT_SEED)]
    maglev_hash_seed: u64,
    /// Capacity of the services map (frontend entries plus one slot per backend).
    #[arg(long, default_value_t = skiff_ebpf_common::lb::SERVICES_MAX_ENTRIES)]
    bpf_services_max: u32,
    /// Capacity of the backends map.
    #[arg(long, default_value_t = skiff_ebpf_common::lb::BACKENDS_MAX_ENTRIES)]
    bpf_backends_max: u32,
    /// Capacity of the conntrack map (two entries per flow); default: from the host's memory.
    #[arg(long)]
    bpf_ct_max: Option<u32>,
    /// Capacity of the ClientIP affinity map.
    #[arg(long, default_value_t = skiff_ebpf_common::affinity::AFFINITY_MAX_ENTRIES)]
    bpf_affinity_max: u32,
    /// Capacity of the socket reverse-translation map.
    #[arg(long, default_value_t = skiff_ebpf_common::sock::SOCK_REV_NAT_MAX_ENTRIES)]
    bpf_sock_rev_max: u32,
}

/// NodePort acceleration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Acceleration {
    /// tc only.
    None,
    /// XDP on the underlay interface.
    Xdp,
}

/// XDP attach mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum XdpModeArg {
    /// Native where possible.
    Best,
    /// Generic (skb) mode.
    Generic,
}

struct AppState {
    node: String,
    metrics: Arc<Metrics>,
    /// The kernel-written maps (decision counters for /metrics).
    state_maps: Arc<std::sync::Mutex<StateMaps>>,
}

fn main() -> Result<()> {
    let helper = std::env::args()
        .nth(1)
        .is_some_and(|a| a == "log-shim" || a == "images" || a == "bpf");
    if helper {
        return run_helper(Cli::parse().command);
    }
    let args = Args::parse();
    // Few malloc arenas: the agent's threads are few and mostly idle, and every extra arena
    // holds on to freed memory (RSS is one of the agent's targets).
    // SAFETY: mallopt is called before any other thread exists and only tunes glibc malloc.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    // setns affects the calling thread only; do it before any other thread exists.
    if let Some(ns) = &args.netns {
        netns::enter(ns)?;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Typed k8s-openapi values nest deeply in unoptimised builds (see skiff-control).
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(args))
}

/// The helper modes: the log shim containerd starts per container, image import, and
/// datapath inspection.
fn run_helper(command: Command) -> Result<()> {
    match command {
        Command::Bpf { target, command } => {
            inspect::run(&target, command).context("inspecting the datapath")
        }
        Command::LogShim { file } => {
            logs::run_shim(&file).with_context(|| format!("writing {}", file.display()))
        }
        Command::Images {
            command:
                ImagesCommand::Import {
                    file,
                    namespace,
                    containerd,
                },
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?
            .block_on(async {
                let runtime = Runtime::connect(&containerd, &namespace).await?;
                let names = runtime
                    .import_archive(&file)
                    .await
                    .with_context(|| format!("importing {}", file.display()))?;
                for name in names {
                    println!("imported {name}");
                }
                anyhow::Ok(())
            }),
    }
}

async fn run(args: Args) -> Result<()> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating state directory {}", args.state_dir.display()))?;
    if !datapath::maglev::valid_table_size(args.maglev_table_size) {
        anyhow::bail!(
            "--maglev-table-size {} is not usable: give a prime of at least 251 (the default is {})",
            args.maglev_table_size,
            skiff_ebpf_common::maglev::MAGLEV_DEFAULT_TABLE_SIZE
        );
    }
    let node_address = match args.listen.ip() {
        std::net::IpAddr::V4(ip) => ip,
        std::net::IpAddr::V6(_) => std::net::Ipv4Addr::LOCALHOST,
    };
    let sizes = MapSizes {
        services: args.bpf_services_max,
        backends: args.bpf_backends_max,
        conntrack: args
            .bpf_ct_max
            .unwrap_or_else(|| MapSizes::conntrack_for_memory(host_memory_bytes())),
        affinity: args.bpf_affinity_max,
        sock_rev_nat: args.bpf_sock_rev_max,
    };
    let (datapath, mut maps) =
        Datapath::load(Some(&args.bpffs_dir), &sizes).context("loading the eBPF datapath")?;
    // Loading parsed the kernel's BTF (megabytes, freed again): hand the freed heap back
    // now rather than at the first trim.
    skiff_agent::heap::release_free();
    tokio::spawn(skiff_agent::heap::keep_trimmed(Duration::from_secs(10)));
    datapath::configure(
        &mut maps,
        &Settings {
            socket_lb: args.socket_lb,
            xdp: args.nodeport_acceleration == Acceleration::Xdp,
            node_address,
            hairpin_address: args.hairpin_address,
            maglev_table_size: args.maglev_table_size,
        },
    )
    .context("writing the datapath configuration")?;
    let datapath = Arc::new(std::sync::Mutex::new(datapath));
    {
        let mut loaded = datapath
            .lock()
            .map_err(|_| anyhow::anyhow!("datapath lock poisoned"))?;
        loaded
            .attach_socket_lb(&args.cgroup)
            .with_context(|| format!("attaching the socket LB to {}", args.cgroup.display()))?;
        if !args.external_interface.is_empty() {
            let mode = match args.xdp_mode {
                XdpModeArg::Best => XdpAttach::Best,
                XdpModeArg::Generic => XdpAttach::Generic,
            };
            loaded
                .attach_external(&args.external_interface, mode)
                .with_context(|| format!("attaching tc and XDP to {}", args.external_interface))?;
        }
    }
    let pods = Arc::new(PodAttach::new(datapath.clone()));
    pods.reattach_existing();
    let metrics = Arc::new(Metrics::default());
    metrics.socket_lb_attached.store(1, Ordering::Relaxed);
    info!(
        node = %args.node_name,
        cgroup = %args.cgroup.display(),
        pins = %args.bpffs_dir.display(),
        socket_lb = args.socket_lb,
        external = %args.external_interface,
        acceleration = ?args.nodeport_acceleration,
        "datapath attached"
    );
    let state_maps = Arc::new(std::sync::Mutex::new(maps.state));
    tokio::spawn(conntrack_gc::run(
        state_maps.clone(),
        StateCapacities {
            conntrack: sizes.conntrack,
            affinity: sizes.affinity,
            sock_rev_nat: sizes.sock_rev_nat,
        },
        metrics.datapath.clone(),
        Duration::from_secs(30),
    ));
    let table = Table::load(
        maps.lb,
        MaglevSettings {
            table_size: args.maglev_table_size,
            seed: args.maglev_hash_seed,
        },
    )
    .context("reading the programmed datapath back")?;
    let programmer = Programmer::new(
        table,
        NodeView {
            name: args.node_name.clone(),
            addresses: vec![node_address],
            reserved: vec![args.cluster_dns],
        },
        Capacities {
            services: sizes.services,
            backends: sizes.backends,
            maglev: skiff_ebpf_common::maglev::MAGLEV_MAX_TABLES,
        },
    );
    let state = Arc::new(AppState {
        node: args.node_name.clone(),
        metrics: metrics.clone(),
        state_maps,
    });

    let mut runtime = None;
    match &args.kubeconfig {
        Some(path) => {
            let client = api_client(path).await;
            tokio::spawn(node_lifecycle(client.clone(), node_config(&args).await));
            match start_kubelet(&args, client, state.metrics.clone(), pods).await {
                Ok(kubelet) => {
                    runtime = Some(kubelet.runtime.clone());
                    if let Some(discovery) = &kubelet.discovery {
                        tokio::spawn(datapath_sync::run(
                            discovery.view(),
                            programmer,
                            metrics.datapath.clone(),
                            Box::new(UdpTerminator::new(&kubelet.netns_dir())),
                            Some(FullMapEvents::new(
                                skiff_events::Recorder::on_host(
                                    kubelet.client.clone(),
                                    "skiff-datapath",
                                    &args.node_name,
                                ),
                                &args.node_name,
                            )),
                        ));
                    }
                }
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    "the kubelet could not start; this node runs no pods"
                ),
            }
        }
        None => info!("no --kubeconfig: not registering with an API server"),
    }

    let health = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(serve_metrics))
        .with_state(state);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut servers = Vec::new();
    // Plain HTTP: /healthz and /metrics only (kubelet's healthz port).
    if let Some(addr) = args.healthz_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        info!(listen = %addr, "health and metrics serving (plain HTTP)");
        let app = health.clone();
        let rx = stop_rx.clone();
        servers.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped(rx))
                .await;
        }));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    match (runtime, &args.kubeconfig) {
        // With the kubelet: the node API over TLS, callers authenticated by the cluster CA.
        (Some(runtime), Some(kubeconfig)) => {
            let ca =
                cluster_ca(kubeconfig).context("reading the cluster CA from the kubeconfig")?;
            let names = vec![args.listen.ip().to_string(), args.node_name.clone()];
            let config = skiff_agent::tls::server_config(&ca, &names)?;
            let app = health.merge(server::routes(server::NodeApi {
                state_dir: args.state_dir.clone(),
                runtime: Some(runtime),
            }));
            info!(listen = %args.listen, "node API serving (TLS, client certificates required)");
            let rx = stop_rx.clone();
            servers.push(tokio::spawn(skiff_agent::tls::serve(
                listener,
                config,
                app,
                stopped(rx),
            )));
        }
        _ => {
            info!(listen = %args.listen, "node API serving health only (no kubelet)");
            let rx = stop_rx.clone();
            servers.push(tokio::spawn(async move {
                let _ = axum::serve(listener, health)
                    .with_graceful_shutdown(stopped(rx))
                    .await;
            }));
        }
    }
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    for server in servers {
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
    // The datapath stays pinned: established connections keep working while the agent is down.
    drop(datapath);
    info!("stopped");
    Ok(())
}

/// The cluster CA (PEM) from a kubeconfig's certificate-authority-data.
fn cluster_ca(kubeconfig: &Path) -> Result<String> {
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
async fn node_config(args: &Args) -> NodeConfig {
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
    }
}

/// `containerd://<version>` from the runtime itself.
async fn runtime_version(socket: &Path) -> String {
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
async fn api_client(kubeconfig: &Path) -> kube::Client {
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
async fn start_kubelet(
    args: &Args,
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
            dns: skiff_agent::kubelet::pod_dns::ClusterDns {
                server: args.cluster_dns,
                domain: args.cluster_domain.clone(),
            },
        },
    });
    tokio::spawn(kubelet.clone().run());
    tokio::spawn(node_routes::sync(client, netlink, args.node_name.clone()));
    Ok(kubelet)
}

/// How long the agent waits for containerd at start before giving up on the kubelet.
const CONTAINERD_WAIT: Duration = Duration::from_secs(60);

/// Connect to containerd, retrying with back-off while it is starting or restarting (once
/// connected, the gRPC channel reconnects by itself).
async fn connect_runtime(socket: &Path, namespace: &str) -> Result<Runtime> {
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
fn cgroup_parent(cgroup2_dir: &Path) -> String {
    for root in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if let Ok(rest) = cgroup2_dir.strip_prefix(root) {
            return format!("/{}", rest.display());
        }
    }
    format!("/{}", cgroup2_dir.display())
}

/// Register the Node (retrying until the API server answers), then heartbeat forever.
async fn node_lifecycle(client: kube::Client, config: NodeConfig) {
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

async fn serve_metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    state.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
    let text = match state.state_maps.lock() {
        Ok(maps) => state.metrics.render(&state.node, Some(&maps)),
        Err(_) => state.metrics.render(&state.node, None),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Physical memory of the host (sizes the conntrack map).
fn host_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(8 << 30, |kib| kib * 1024)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received, shutting down"),
    }
}
