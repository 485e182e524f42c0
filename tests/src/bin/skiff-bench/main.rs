//! skiff-bench: load against a running Skiff lab, printed as JSON for `cargo xtask bench`.
//!
//! `skiff-bench api`: pod create/get/list latency and throughput at 1k and 10k pods,
//! etcd's own put/get latency as the floor, watch event delivery to many watchers, and the
//! API server's RSS.
//! `skiff-bench sched`: scheduling throughput over 100 and 1,000 simulated nodes.
//! `skiff-bench pods`: pod start latency (create → Running, image present) one at a time and
//! 30 at once on a node, beside containerd + runc alone starting the same image, and the
//! agent's RSS with 100 pods.
//! `skiff-bench net`: the Service datapath beside kube-proxy's iptables rules and the bare
//! path (latency, connection rate, throughput, CPU per request, programming cost) at 1,
//! 1,000 and 10,000 Services; traffic only to the lab's addresses.
//! Requests go only to the lab's API server and etcd on this machine.

mod authz;
mod cpu;
mod custom;
mod net;
mod pods;
mod runtime_floor;
mod sched;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::{
    Api, Client,
    api::{ListParams, PostParams, WatchEvent, WatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::{Value, json};
use skiff_tests::bench::{Latency, Row};

#[derive(Parser)]
#[command(name = "skiff-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// API server benchmark.
    Api {
        /// Lab kubeconfig.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// etcd URL (for the floor measurement).
        #[arg(long, default_value = skiff_tests::ETCD_URL)]
        etcd: String,
        /// etcd's PKI directory (the client certificate of the floor measurement).
        #[arg(long)]
        etcd_pki: Option<PathBuf>,
        /// Pid of skiff-control (for RSS).
        #[arg(long)]
        control_pid: u32,
        /// A kubeconfig of an ordinary user (not in system:masters) for the authorization
        /// benchmark; without it, that part is skipped.
        #[arg(long)]
        user_kubeconfig: Option<PathBuf>,
        /// URL of a second API server on the same etcd with authorization off
        /// (`--authorization-mode AlwaysAllow`), the comparison's other side.
        #[arg(long)]
        authz_off_server: Option<String>,
        /// Smaller sizes for a smoke run.
        #[arg(long)]
        quick: bool,
    },
    /// Scheduler throughput with simulated nodes.
    Sched {
        /// Lab kubeconfig.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Pid of skiff-control (for RSS).
        #[arg(long)]
        control_pid: u32,
        /// Smaller sizes for a smoke run.
        #[arg(long)]
        quick: bool,
    },
    /// Pod start benchmark against one node's agent.
    Pods {
        /// Lab kubeconfig.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// The node to start pods on.
        #[arg(long)]
        node: String,
        /// Pid of that node's skiff-agent (for RSS).
        #[arg(long)]
        agent_pid: u32,
        /// containerd's socket (the floor starts containers there directly).
        #[arg(long)]
        containerd: PathBuf,
        /// The OCI archive of docker.io/skiff/echo (the floor's image).
        #[arg(long)]
        echo_archive: PathBuf,
        /// Smaller sizes for a smoke run.
        #[arg(long)]
        quick: bool,
    },
    /// The Service datapath against kube-proxy's iptables rules and the bare path (the lab
    /// is described by SKIFF_LAB_DIR, SKIFF_LAB_NODES, SKIFF_BIN_DIR).
    Net {
        /// Smaller sizes for a smoke run.
        #[arg(long)]
        quick: bool,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    raise_open_files_limit();
    match Cli::parse().command {
        Command::Api {
            kubeconfig,
            etcd,
            etcd_pki,
            control_pid,
            user_kubeconfig,
            authz_off_server,
            quick,
        } => {
            let etcd = (etcd.as_str(), etcd_pki.as_deref());
            let mut report = api(&kubeconfig, etcd, control_pid, quick).await?;
            if let (Some(user_kubeconfig), Some(off)) = (user_kubeconfig, authz_off_server) {
                let admin = client(&kubeconfig).await?;
                let rbac = client(&user_kubeconfig).await?;
                let open = client_of(&user_kubeconfig, &off).await?;
                let user = user_name(&user_kubeconfig)?;
                report["authz"] = authz::run(&admin, &user, &rbac, &open, quick).await?;
            }
            report["custom"] = custom::run(&client(&kubeconfig).await?, quick).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Sched {
            kubeconfig,
            control_pid,
            quick,
        } => {
            let report = sched::run(&kubeconfig, control_pid, quick).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Pods {
            kubeconfig,
            node,
            agent_pid,
            containerd,
            echo_archive,
            quick,
        } => {
            let floor = pods::FloorSource {
                containerd: &containerd,
                archive: &echo_archive,
            };
            let report = pods::run(&kubeconfig, &node, agent_pid, &floor, quick).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Net { quick } => {
            let report = net::run(quick).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let Some(why) = report["incomplete"].as_str() {
                anyhow::bail!("the network benchmark is incomplete: {why}");
            }
        }
    }
    Ok(())
}

/// Many watchers need many sockets.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

async fn client(path: &PathBuf) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    // Benchmarks count failures; they must not hide them behind retries.
    config.default_retry = false;
    Ok(Client::try_from(config)?)
}

/// A client from `path` talking to `server` instead of the kubeconfig's.
async fn client_of(path: &PathBuf, server: &str) -> Result<Client> {
    let mut kubeconfig = Kubeconfig::read_from(path)?;
    for cluster in &mut kubeconfig.clusters {
        if let Some(c) = cluster.cluster.as_mut() {
            c.server = Some(server.to_owned());
        }
    }
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.default_retry = false;
    Ok(Client::try_from(config)?)
}

/// The user a kubeconfig's current context names.
fn user_name(path: &PathBuf) -> Result<String> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    kubeconfig
        .auth_infos
        .first()
        .map(|a| a.name.clone())
        .context("the kubeconfig names no user")
}

/// Resident memory of `pid` in MiB (VmRSS: its own heap and stacks, plus the pages of its
/// binary it touched, which other processes of the same binary share).
fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// A memory figure of `/proc/<pid>/status` (`VmRSS:`, `RssAnon:`, `RssFile:`), in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("bench-{i:05}"), "labels": {"app": "bench", "shard": format!("s{}", i % 10)}},
        // A scheduler name nobody serves: these pods measure the API server and must stay
        // unscheduled (no agent starts 10,000 containers).
        "spec": {"schedulerName": "skiff-bench-unscheduled",
                 "containers": [{"name": "c", "image": "skiff/echo:latest", "ports": [{"containerPort": 8080}],
                                  "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    }))
    .expect("static pod")
}

async fn ensure_namespace(client: &Client, name: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Create pods `from..to` with `concurrency` requests in flight.
async fn create_pods(
    pods: &Api<Pod>,
    from: usize,
    to: usize,
    concurrency: usize,
) -> (Latency, Duration) {
    let started = Instant::now();
    let results: Vec<Latency> = stream::iter(from..to)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let mut latency = Latency::new();
                let t = Instant::now();
                match pods.create(&PostParams::default(), &pod(i)).await {
                    Ok(_) => latency.record(t.elapsed()),
                    Err(_) => latency.error(),
                }
                latency
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut all = Latency::new();
    for l in &results {
        all.merge(l);
    }
    (all, started.elapsed())
}

async fn measure_lists(
    pods: &Api<Pod>,
    rounds: usize,
    params: &ListParams,
) -> (Latency, Duration, usize) {
    let started = Instant::now();
    let mut latency = Latency::new();
    let mut seen = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let mut count = 0;
        let mut params = params.clone();
        let mut ok = true;
        loop {
            match pods.list(&params).await {
                Ok(list) => {
                    count += list.items.len();
                    match list.metadata.continue_ {
                        Some(token) if !token.is_empty() => params = params.continue_token(&token),
                        _ => break,
                    }
                }
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            latency.record(t.elapsed());
            seen = count;
        } else {
            latency.error();
        }
    }
    (latency, started.elapsed(), seen)
}

async fn measure_gets(pods: &Api<Pod>, total: usize, rounds: usize) -> (Latency, Duration) {
    let started = Instant::now();
    let mut latency = Latency::new();
    for i in 0..rounds {
        let name = format!("bench-{:05}", (i * 7919) % total);
        let t = Instant::now();
        match pods.get(&name).await {
            Ok(_) => latency.record(t.elapsed()),
            Err(_) => latency.error(),
        }
    }
    (latency, started.elapsed())
}

async fn etcd_floor(
    (url, pki): (&str, Option<&std::path::Path>),
    rounds: usize,
) -> Result<(Row, Row)> {
    let options = pki.map(skiff_tests::etcd_options);
    let mut etcd = etcd_client::Client::connect([url], options).await?;
    let value = serde_json::to_vec(&pod(0))?;
    let (mut put, mut get) = (Latency::new(), Latency::new());
    let started = Instant::now();
    for i in 0..rounds {
        let t = Instant::now();
        etcd.put(format!("/skiff-bench/floor/{i}"), value.clone(), None)
            .await?;
        put.record(t.elapsed());
    }
    let put_elapsed = started.elapsed();
    let started = Instant::now();
    for i in 0..rounds {
        let t = Instant::now();
        etcd.get(format!("/skiff-bench/floor/{i}"), None).await?;
        get.record(t.elapsed());
    }
    let get_elapsed = started.elapsed();
    etcd.delete(
        "/skiff-bench/floor/",
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await?;
    Ok((
        put.row("etcd put (floor, sequential)", put_elapsed),
        get.row("etcd get (floor, sequential)", get_elapsed),
    ))
}

/// Event delivery to `watchers` concurrent watches while `events` objects are created.
async fn watch_fanout(client: &Client, ns: &str, watchers: usize, events: usize) -> Result<Row> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let current = maps
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let written: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(watchers);
    for _ in 0..watchers {
        let maps = maps.clone();
        let written = Arc::clone(&written);
        let version = current.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut latency = Latency::new();
            let params = WatchParams::default().timeout(120);
            let Ok(stream) = maps.watch(&params, &version).await else {
                latency.error();
                let _ = ready.send(()).await;
                return latency;
            };
            let _ = ready.send(()).await;
            let mut stream = std::pin::pin!(stream);
            let mut seen = 0;
            while let Some(event) = stream.next().await {
                if let Ok(WatchEvent::Added(cm)) = event {
                    let now = Instant::now();
                    let name = cm.metadata.name.unwrap_or_default();
                    let sent = written.lock().map(|w| w.get(&name).copied()).ok().flatten();
                    if let Some(sent) = sent {
                        latency.record(now.saturating_duration_since(sent));
                    }
                    seen += 1;
                    if seen == events {
                        break;
                    }
                }
            }
            latency
        }));
    }
    drop(ready_tx);
    for _ in 0..watchers {
        ready_rx.recv().await;
    }
    // Give the last watch requests time to be registered by the server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    for i in 0..events {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("fanout-{i}")}, "data": {"i": i.to_string()}}),
        )?;
        // The clock starts when the write is sent: write + delivery, an upper bound of the
        // delivery latency that counts every event (some arrive before the writer's ack).
        if let Ok(mut w) = written.lock() {
            w.insert(format!("fanout-{i}"), Instant::now());
        }
        let _ = maps.create(&PostParams::default(), &cm).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut all = Latency::new();
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(60), task).await {
            Ok(Ok(latency)) => all.merge(&latency),
            _ => all.error(),
        }
    }
    Ok(all.row(
        &format!("watch event delivery to {watchers} watchers ({events} events, from write start)"),
        started.elapsed(),
    ))
}

async fn api(
    kubeconfig: &PathBuf,
    etcd: (&str, Option<&std::path::Path>),
    control_pid: u32,
    quick: bool,
) -> Result<Value> {
    let client = client(kubeconfig)
        .await
        .context("connecting to the lab API server")?;
    let (small, large, watchers, events) = if quick {
        (1_000, 2_000, 200, 20)
    } else {
        (1_000, 10_000, 1_000, 50)
    };
    let ns = "bench-api";
    ensure_namespace(&client, ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut rows: Vec<Row> = Vec::new();
    let rss_start = rss_mib(control_pid);

    let (put, get) = etcd_floor(etcd, 500).await?;
    rows.push(put);
    rows.push(get);

    let (create_small, took) = create_pods(&pods, 0, small, 8).await;
    rows.push(create_small.row(&format!("create pod (0→{small}, 8 in flight)"), took));
    let (gets, took) = measure_gets(&pods, small, 500).await;
    rows.push(gets.row(&format!("get pod ({small} pods)"), took));
    let (lists, took, seen) = measure_lists(&pods, 10, &ListParams::default()).await;
    rows.push(lists.row(&format!("list {seen} pods (one response)"), took));
    let (paged, took, seen) = measure_lists(&pods, 5, &ListParams::default().limit(500)).await;
    rows.push(paged.row(&format!("list {seen} pods (kubectl chunks of 500)"), took));

    let (create_large, took) = create_pods(&pods, small, large, 32).await;
    rows.push(create_large.row(&format!("create pod ({small}→{large}, 32 in flight)"), took));
    let (gets, took) = measure_gets(&pods, large, 500).await;
    rows.push(gets.row(&format!("get pod ({large} pods)"), took));
    let (lists, took, seen) = measure_lists(&pods, 10, &ListParams::default()).await;
    rows.push(lists.row(&format!("list {seen} pods (one response)"), took));
    let (selected, took, _) =
        measure_lists(&pods, 10, &ListParams::default().labels("shard=s3")).await;
    rows.push(selected.row(
        &format!(
            "list with labelSelector shard=s3 ({} of {large} pods)",
            large / 10
        ),
        took,
    ));
    let (paged, took, seen) = measure_lists(&pods, 3, &ListParams::default().limit(500)).await;
    rows.push(paged.row(&format!("list {seen} pods (kubectl chunks of 500)"), took));
    let rss_large = rss_mib(control_pid);

    ensure_namespace(&client, "bench-watch").await?;
    rows.push(watch_fanout(&client, "bench-watch", watchers, events).await?);
    let rss_watch = rss_mib(control_pid);

    Ok(json!({
        "sizes": {"small": small, "large": large, "watchers": watchers, "events": events, "quick": quick},
        "rows": rows,
        "rss_mib": {"start": rss_start, "after_large": rss_large, "after_watchers": rss_watch},
    }))
}
