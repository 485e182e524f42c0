//! Pod start latency on one node: create → phase Running with the image already present,
//! one pod at a time and 30 at once, then the agent's RSS while it runs 100 pods. Pods are
//! bound to the node directly (spec.nodeName), so the figures are the kubelet path: API
//! watch → sandbox → container → status patch → API watch. Beside each, in the same run and
//! in turns with it, the floor: the same image's containers started through containerd +
//! runc alone ([`RuntimeFloor`]); and where crun is installed, both again with crun (pods
//! with a RuntimeClass whose handler is `crun`). Each timed batch starts on a quiet node
//! (the kernel destroys the earlier pods' network namespaces after they are gone).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::{core::v1::Pod, node::v1::RuntimeClass};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use skiff_agent::kubelet::runtime_class::RuntimeHandlers;
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

fn pod(name: &str, node: &str, class: Option<&str>) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench-pods"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2,
                 "runtimeClassName": class,
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

/// Start `names` at once (with RuntimeClass `class`); latency of each from its own create
/// call.
async fn start_batch(
    pods: &Api<Pod>,
    seen: &Seen,
    node: &str,
    names: &[String],
    class: Option<&str>,
) -> Result<Latency> {
    let mut latency = Latency::new();
    let starts = futures::future::join_all(names.iter().map(|name| async move {
        let started = Instant::now();
        let created = pods
            .create(&PostParams::default(), &pod(name, node, class)?)
            .await;
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

/// How a variant starts its workload.
enum Starter {
    /// Pods through Skiff, with this RuntimeClass (`None`: none, so runc).
    Pods(Option<&'static str>),
    /// Containers through containerd and an OCI runtime alone.
    Floor(Box<RuntimeFloor>),
}

/// One way of starting the workload, and what it measured.
struct Variant {
    /// How its rows begin (`pod start`, `containerd + runc alone (floor)`).
    label: String,
    /// What it starts, singular (`pod`, `container`).
    unit: &'static str,
    /// Prefix of its objects' names.
    prefix: &'static str,
    starter: Starter,
    serial: Latency,
    serial_time: Duration,
    burst: Latency,
    burst_time: Duration,
    cpu: CpuPerPod,
    steps: StepLatencies,
}

impl Variant {
    fn new(label: &str, unit: &'static str, prefix: &'static str, starter: Starter) -> Self {
        Self {
            label: label.to_owned(),
            unit,
            prefix,
            starter,
            serial: Latency::new(),
            serial_time: Duration::ZERO,
            burst: Latency::new(),
            burst_time: Duration::ZERO,
            cpu: CpuPerPod::default(),
            steps: StepLatencies::default(),
        }
    }

    /// Start `names` at once; the latency of each. A floor's containerd calls count in
    /// [`Variant::steps`] only for the 30-at-once batches (`burst`).
    async fn start(&mut self, bench: &PodBench, names: &[String], burst: bool) -> Result<Latency> {
        let mut elsewhere = StepLatencies::default();
        let steps = if burst {
            &mut self.steps
        } else {
            &mut elsewhere
        };
        match &self.starter {
            Starter::Pods(class) => {
                start_batch(&bench.pods, &bench.seen, &bench.node, names, *class).await
            }
            Starter::Floor(floor) => Ok(floor.start_batch(names, steps).await),
        }
    }

    /// Remove what was started (`names`; pods: every bench pod) and wait for a quiet node.
    async fn clear(
        &self,
        bench: &PodBench,
        names: &[String],
        settled: &mut Duration,
    ) -> Result<()> {
        match &self.starter {
            Starter::Pods(_) => delete_all(&bench.pods).await?,
            Starter::Floor(floor) => floor.remove(names).await?,
        }
        *settled += settle(QUIET, SETTLE_LIMIT).await;
        Ok(())
    }
}

/// Where the pods go.
struct PodBench {
    pods: Api<Pod>,
    seen: Seen,
    node: String,
}

/// The RuntimeClass of the crun rows.
const CRUN_CLASS: &str = "crun";

/// Make the RuntimeClass `name` (handler `name`) unless it exists.
async fn ensure_runtime_class(client: &kube::Client, name: &str) -> Result<()> {
    let classes: Api<RuntimeClass> = Api::all(client.clone());
    if classes.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let class: RuntimeClass =
        serde_json::from_value(json!({"metadata": {"name": name}, "handler": name}))?;
    classes.create(&PostParams::default(), &class).await?;
    Ok(())
}

/// The pods benchmark: each variant (Skiff's pods and the bare floor, with runc and, where
/// installed, crun) one at a time and 30 at once, in turns; then the agent's RSS while
/// 100 pods run.
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
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let bench = PodBench {
        seen: watch_running(pods.clone()),
        pods,
        node: node.to_owned(),
    };
    let runc_floor = RuntimeFloor::prepare(floor.containerd, floor.archive, FLOOR_IMAGE)
        .await
        .context("preparing the containerd + runc floor")?;
    // crun where this host's agents offer it (installed, and cgroups it accepts).
    let crun = RuntimeHandlers::new(&[])
        .binary(CRUN_CLASS)
        .cloned()
        .flatten();
    let mut variants = Vec::new();
    if let Some(crun) = &crun {
        ensure_runtime_class(&client, CRUN_CLASS)
            .await
            .context("creating the RuntimeClass crun")?;
        variants.push(Variant::new(
            "containerd + crun alone (floor)",
            "container",
            "floor-crun",
            Starter::Floor(Box::new(runc_floor.with_oci_runtime(crun))),
        ));
        variants.push(Variant::new(
            "pod start with RuntimeClass crun",
            "pod",
            "crun",
            Starter::Pods(Some(CRUN_CLASS)),
        ));
    }
    variants.insert(
        0,
        Variant::new(
            "containerd + runc alone (floor)",
            "container",
            "floor",
            Starter::Floor(Box::new(runc_floor)),
        ),
    );
    variants.insert(
        1,
        Variant::new("pod start", "pod", "pod", Starter::Pods(None)),
    );
    let (serial, rounds, resident) = if quick { (5, 1, 30) } else { (30, 3, 100) };

    // Warm-up: the image lands on the node (pulled through the mirror once) and every
    // variant starts once. Every timed batch starts on a quiet node.
    let mut settled = Duration::ZERO;
    for variant in &mut variants {
        let warm = [format!("{}-warm", variant.prefix)];
        variant.start(&bench, &warm, false).await?;
        variant.clear(&bench, &warm, &mut settled).await?;
    }
    let mut rows: Vec<Row> = Vec::new();

    // One at a time, the variants in turns.
    for i in 0..serial {
        for variant in &mut variants {
            let name = [format!("{}-one-{i}", variant.prefix)];
            let started = Instant::now();
            let latency = variant.start(&bench, &name, false).await?;
            variant.serial_time += started.elapsed();
            variant.serial.merge(&latency);
            if let Starter::Floor(floor) = &variant.starter {
                floor.remove(&name).await?;
            }
        }
    }
    for variant in &variants {
        rows.push(variant.serial.row(
            &format!(
                "{}, 1 at a time ({serial} {}s)",
                variant.label, variant.unit
            ),
            variant.serial_time,
        ));
    }
    delete_all(&bench.pods).await?;
    settled += settle(QUIET, SETTLE_LIMIT).await;

    // 30 at once, the variants in turns, each on a quiet node.
    for round in 0..rounds {
        for variant in &mut variants {
            let names: Vec<String> = (0..30)
                .map(|i| format!("{}-{round}-{i}", variant.prefix))
                .collect();
            let before = CpuSnapshot::take(agent_pid);
            let started = Instant::now();
            let latency = variant.start(&bench, &names, true).await?;
            variant.burst_time += started.elapsed();
            variant.burst.merge(&latency);
            let cpu = CpuSnapshot::take(agent_pid).per_pod_since(&before, names.len());
            variant.cpu.add(&cpu);
            variant.clear(&bench, &names, &mut settled).await?;
        }
    }
    for variant in &variants {
        rows.push(variant.burst.row(
            &format!("{}, 30 at once ({rounds} rounds)", variant.label),
            variant.burst_time,
        ));
    }

    let rss_idle = rss_mib(agent_pid);
    let names: Vec<String> = (0..resident).map(|i| format!("resident-{i}")).collect();
    let started = Instant::now();
    let mut fill = Latency::new();
    for chunk in names.chunks(25) {
        fill.merge(&start_batch(&bench.pods, &bench.seen, node, chunk, None).await?);
    }
    rows.push(fill.row(
        &format!("pod start while filling to {resident} pods (25 at once)"),
        started.elapsed(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_full = rss_mib(agent_pid);
    let anon_full = status_mib(agent_pid, "RssAnon:");
    let file_full = status_mib(agent_pid, "RssFile:");
    delete_all(&bench.pods).await?;
    let burst_cpu: Vec<Value> = variants
        .iter()
        .map(|v| json!({"label": v.label, "unit": v.unit, "cpu": v.cpu.to_json()}))
        .collect();
    let burst_steps: Vec<Value> = variants
        .iter()
        .filter(|v| matches!(v.starter, Starter::Floor(_)))
        .map(|v| json!({"label": v.label, "steps": v.steps.to_json()}))
        .collect();
    Ok(json!({
        "node": node,
        "sizes": {"serial": serial, "burst": 30, "rounds": rounds, "resident": resident, "quick": quick},
        "crun": crun,
        "rows": rows,
        "settle": {"quiet_below": QUIET, "seconds_waited": settled.as_secs_f64()},
        "burst_cpu": burst_cpu,
        "burst_steps": burst_steps,
        "agent_rss_mib": {"idle": rss_idle, "with_pods": rss_full, "with_pods_anon": anon_full, "with_pods_file": file_full},
    }))
}
