//! Pod start latency on one node: create → phase Running with the image already present,
//! one pod at a time and 30 at once, then the agent's RSS while it runs 100 pods. Pods are
//! bound to the node directly (spec.nodeName), so the figures are the kubelet path: API
//! watch → sandbox → container → status patch → API watch.

use std::{
    collections::HashMap,
    path::PathBuf,
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
    ensure_namespace, rss_mib, status_mib,
};

const NAMESPACE: &str = "bench-pods";
/// Tagged (not :latest), so the default pull policy is IfNotPresent: no registry round trip.
const IMAGE: &str = "docker.io/skiff/echo:v2";

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
pub async fn run(kubeconfig: &PathBuf, node: &str, agent_pid: u32, quick: bool) -> Result<Value> {
    let client = client(kubeconfig)
        .await
        .context("connecting to the lab API server")?;
    ensure_namespace(&client, NAMESPACE).await?;
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let seen = watch_running(pods.clone());
    let (serial, rounds, resident) = if quick { (5, 1, 30) } else { (30, 3, 100) };

    // Warm-up: the image lands on the node (pulled through the mirror once). Every timed
    // batch starts on a quiet node.
    let mut settled = Duration::ZERO;
    start_batch(&pods, &seen, node, &["warm".to_owned()]).await?;
    clear(&pods, &mut settled).await?;

    let mut rows: Vec<Row> = Vec::new();
    let started = Instant::now();
    let mut one = Latency::new();
    for i in 0..serial {
        let batch = start_batch(&pods, &seen, node, &[format!("one-{i}")]).await?;
        one.merge(&batch);
    }
    rows.push(one.row(
        &format!("pod start, 1 at a time ({serial} pods)"),
        started.elapsed(),
    ));
    clear(&pods, &mut settled).await?;

    let started = Instant::now();
    let settled_before = settled;
    let mut burst = Latency::new();
    let mut burst_cpu = CpuPerPod::default();
    for round in 0..rounds {
        let names: Vec<String> = (0..30).map(|i| format!("burst-{round}-{i}")).collect();
        let before = CpuSnapshot::take(agent_pid);
        burst.merge(&start_batch(&pods, &seen, node, &names).await?);
        burst_cpu.add(&CpuSnapshot::take(agent_pid).per_pod_since(&before, names.len()));
        clear(&pods, &mut settled).await?;
    }
    rows.push(burst.row(
        &format!("pod start, 30 at once ({rounds} rounds)"),
        started.elapsed().saturating_sub(settled - settled_before),
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
        "agent_rss_mib": {"idle": rss_idle, "with_pods": rss_full, "with_pods_anon": anon_full, "with_pods_file": file_full},
    }))
}
