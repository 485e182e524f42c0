//! Pod start latency on one node: create → phase Running with the image already present,
//! one pod at a time and 30 at once, then the agent's RSS while it runs 100 pods. Pods are
//! bound to the node directly (spec.nodeName), so the figures are the kubelet path: API
//! watch → sandbox → container → status patch → API watch. Beside each, in the same run and
//! in turns with it, the floor: the same image's containers started through containerd +
//! runc alone ([`RuntimeFloor`]).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use skiff_tests::bench::{Latency, Row, settle};

use super::{
    client,
    cpu::{CpuPerPod, CpuSnapshot},
    ensure_namespace, rss_mib,
    runtime_floor::{RuntimeFloor, StepLatencies},
    status_mib,
};

const NAMESPACE: &str = "bench-pods";
/// Tagged (not :latest), so the default pull policy is IfNotPresent: no registry round trip.
const IMAGE: &str = "docker.io/skiff/echo:v2";
/// The same image (`:v2` is a second tag of it) as the lab's archive names it, for the
/// floor.
const FLOOR_IMAGE: &str = "docker.io/skiff/echo:latest";

/// Where the floor's containerd and image come from.
pub struct FloorSource<'a> {
    /// containerd's socket.
    pub containerd: &'a Path,
    /// An OCI archive holding [`FLOOR_IMAGE`].
    pub archive: &'a Path,
}

fn pod(name: &str, node: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench-pods"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2,
                 "containers": [{"name": "echo", "image": IMAGE}]},
    }))?)
}

/// When each pod was first seen Running.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

fn watch_running(pods: Api<Pod>) -> Seen {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        let mut events = watcher(pods, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(event) = events.next().await {
            let Ok(pod) = event else { continue };
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running
                && let Some(name) = pod.metadata.name
                && let Ok(mut seen) = record.lock()
            {
                seen.entry(name).or_insert_with(Instant::now);
            }
        }
    });
    seen
}

async fn wait_running(seen: &Seen, name: &str, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(at) = seen.lock().ok().and_then(|s| s.get(name).copied()) {
            return Some(at);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// Start `names` at once; latency of each from its own create call.
async fn start_batch(
    pods: &Api<Pod>,
    seen: &Seen,
    node: &str,
    names: &[String],
) -> Result<Latency> {
    let mut latency = Latency::new();
    let starts = futures::future::join_all(names.iter().map(|name| async move {
        let started = Instant::now();
        let created = pods.create(&PostParams::default(), &pod(name, node)?).await;
        anyhow::Ok((name.clone(), started, created.is_ok()))
    }))
    .await;
    for start in starts {
        let (name, started, ok) = start?;
        if !ok {
            latency.error();
            continue;
        }
        match wait_running(seen, &name, Duration::from_secs(120)).await {
            Some(at) => latency.record(at.saturating_duration_since(started)),
            None => latency.error(),
        }
    }
    Ok(latency)
}

/// Below this share of the CPU in use the node counts as quiet.
const QUIET: f64 = 0.25;
/// Longest wait for quiet.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// Delete every bench pod, wait until the API has none, then until the machine is quiet
/// (the kernel destroys the pods' network namespaces after they are gone); the time that
/// took is added to `settled`.
async fn clear(pods: &Api<Pod>, settled: &mut Duration) -> Result<()> {
    delete_all(pods).await?;
    *settled += settle(QUIET, SETTLE_LIMIT).await;
    Ok(())
}

async fn delete_all(pods: &Api<Pod>) -> Result<()> {
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=bench-pods"),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if pods
            .list(&ListParams::default().labels("app=bench-pods"))
            .await?
            .items
            .is_empty()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("bench pods were not deleted within 3 minutes")
}

/// The pods benchmark.
pub async fn run(
    kubeconfig: &PathBuf,
    node: &str,
    agent_pid: u32,
    floor: &FloorSource<'_>,
    quick: bool,
) -> Result<Value> {
    let client = client(kubeconfig)
        .await
        .context("connecting to the lab API server")?;
    ensure_namespace(&client, NAMESPACE).await?;
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let seen = watch_running(pods.clone());
    let floor = RuntimeFloor::prepare(floor.containerd, floor.archive, FLOOR_IMAGE)
        .await
        .context("preparing the containerd + runc floor")?;
    let (serial, rounds, resident) = if quick { (5, 1, 30) } else { (30, 3, 100) };

    // Warm-up: the image lands on the node (pulled through the mirror once), and the floor
    // starts one container. Every timed batch starts on a quiet node.
    let mut settled = Duration::ZERO;
    start_batch(&pods, &seen, node, &["warm".to_owned()]).await?;
    clear(&pods, &mut settled).await?;
    let warm = ["floor-warm".to_owned()];
    floor
        .start_batch(&warm, &mut StepLatencies::default())
        .await;
    floor.remove(&warm).await?;

    // One at a time, the floor and Skiff in turns.
    let mut rows: Vec<Row> = Vec::new();
    let (mut skiff_time, mut floor_time) = (Duration::ZERO, Duration::ZERO);
    let (mut one, mut floor_one) = (Latency::new(), Latency::new());
    for i in 0..serial {
        let started = Instant::now();
        let name = [format!("floor-one-{i}")];
        floor_one.merge(
            &floor
                .start_batch(&name, &mut StepLatencies::default())
                .await,
        );
        floor_time += started.elapsed();
        floor.remove(&name).await?;
        let started = Instant::now();
        one.merge(&start_batch(&pods, &seen, node, &[format!("one-{i}")]).await?);
        skiff_time += started.elapsed();
    }
    rows.push(floor_one.row(
        &format!("containerd + runc alone (floor), 1 at a time ({serial} containers)"),
        floor_time,
    ));
    rows.push(one.row(
        &format!("pod start, 1 at a time ({serial} pods)"),
        skiff_time,
    ));
    clear(&pods, &mut settled).await?;

    // 30 at once, the floor and Skiff in turns, each on a quiet node.
    let (mut skiff_time, mut floor_time) = (Duration::ZERO, Duration::ZERO);
    let (mut burst, mut floor_burst) = (Latency::new(), Latency::new());
    let (mut burst_cpu, mut floor_cpu) = (CpuPerPod::default(), CpuPerPod::default());
    let mut floor_steps = StepLatencies::default();
    for round in 0..rounds {
        let names: Vec<String> = (0..30).map(|i| format!("floor-{round}-{i}")).collect();
        let before = CpuSnapshot::take(agent_pid);
        let started = Instant::now();
        floor_burst.merge(&floor.start_batch(&names, &mut floor_steps).await);
        floor_time += started.elapsed();
        floor_cpu.add(&CpuSnapshot::take(agent_pid).per_pod_since(&before, names.len()));
        floor.remove(&names).await?;
        settled += settle(QUIET, SETTLE_LIMIT).await;

        let names: Vec<String> = (0..30).map(|i| format!("burst-{round}-{i}")).collect();
        let before = CpuSnapshot::take(agent_pid);
        let started = Instant::now();
        burst.merge(&start_batch(&pods, &seen, node, &names).await?);
        skiff_time += started.elapsed();
        burst_cpu.add(&CpuSnapshot::take(agent_pid).per_pod_since(&before, names.len()));
        clear(&pods, &mut settled).await?;
    }
    rows.push(floor_burst.row(
        &format!("containerd + runc alone (floor), 30 at once ({rounds} rounds)"),
        floor_time,
    ));
    rows.push(burst.row(
        &format!("pod start, 30 at once ({rounds} rounds)"),
        skiff_time,
    ));

    let rss_idle = rss_mib(agent_pid);
    let names: Vec<String> = (0..resident).map(|i| format!("resident-{i}")).collect();
    let started = Instant::now();
    let mut fill = Latency::new();
    for chunk in names.chunks(25) {
        fill.merge(&start_batch(&pods, &seen, node, chunk).await?);
    }
    rows.push(fill.row(
        &format!("pod start while filling to {resident} pods (25 at once)"),
        started.elapsed(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_full = rss_mib(agent_pid);
    let anon_full = status_mib(agent_pid, "RssAnon:");
    let file_full = status_mib(agent_pid, "RssFile:");
    delete_all(&pods).await?;
    Ok(json!({
        "node": node,
        "sizes": {"serial": serial, "burst": 30, "rounds": rounds, "resident": resident, "quick": quick},
        "rows": rows,
        "settle": {"quiet_below": QUIET, "seconds_waited": settled.as_secs_f64()},
        "burst_cpu_ms_per_pod": burst_cpu.to_json(),
        "floor_burst_cpu_ms_per_container": floor_cpu.to_json(),
        "floor_burst_steps": floor_steps.to_json(),
        "agent_rss_mib": {"idle": rss_idle, "with_pods": rss_full, "with_pods_anon": anon_full, "with_pods_file": file_full},
    }))
}
