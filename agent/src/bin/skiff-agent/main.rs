//! skiff-agent daemon: enters the node's network namespace, loads the eBPF datapath and
//! attaches the socket LB at the node's pod cgroup parent, registers the node, runs the pods
//! bound to it, and serves the node HTTP API until SIGTERM: over TLS with client
//! certificates (container logs, exec, /healthz, /metrics) and, if asked, plain /healthz and
//! /metrics on a second address.
//!
//! Two helper modes share the binary: `skiff-agent log-shim FILE` (run by containerd's shim
//! to write a container's output in CRI format) and `skiff-agent images import FILE.tar`.
//!
//! Modules: `cli` (flags and helper modes), `cluster` (API client, Node registration,
//! kubelet start-up); the rest is the `skiff_agent` library.

mod cli;
mod cluster;

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context, Result};
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use clap::Parser;
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
    kubelet::runtime_class::RuntimeHandlers,
    logs,
    metrics::Metrics,
    netns,
    runtime::Runtime,
    server,
};
use tracing::info;

use crate::{
    cli::{Acceleration, Args, Cli, Command, ImagesCommand, XdpModeArg},
    cluster::{api_client, cluster_ca, node_config, node_lifecycle, start_kubelet},
};

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
    skiff_daemon::init_logging();
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
    // The pods' directories hold their volumes (secrets, tokens) and logs: 0750.
    skiff_agent::kubelet::pod_dirs::prepare(&args.state_dir).with_context(|| {
        format!(
            "preparing the pods' directory in {}",
            args.state_dir.display()
        )
    })?;
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
            // Decided once: the Node advertises what the kubelet runs.
            let handlers = RuntimeHandlers::new(&args.runtime_handlers);
            let node = node_config(&args, &handlers).await;
            tokio::spawn(node_lifecycle(client.clone(), node));
            match start_kubelet(&args, handlers, client, state.metrics.clone(), pods).await {
                Ok(kubelet) => {
                    runtime = Some(kubelet.runtime.clone());
                    tokio::spawn(skiff_agent::kubelet::volumes::local_path::reclaim(
                        kubelet.client.clone(),
                        args.node_name.clone(),
                        skiff_agent::kubelet::volumes::local_path::root(&args.state_dir),
                    ));
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
            let serving = match (&args.tls_cert_file, &args.tls_private_key_file) {
                (Some(cert), Some(key)) => skiff_agent::tls::Serving::Files { cert, key },
                _ => skiff_agent::tls::Serving::SelfSigned(&names),
            };
            let config = skiff_agent::tls::server_config(&ca, serving)?;
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
    skiff_daemon::shutdown_signal().await;
    let _ = stop_tx.send(true);
    for server in servers {
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
    // The datapath stays pinned: established connections keep working while the agent is down.
    drop(datapath);
    info!("stopped");
    Ok(())
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
