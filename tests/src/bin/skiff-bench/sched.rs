//! Scheduling throughput: simulated nodes (Node objects with fresh Leases, no agents) and
//! many pending pods; the clock runs from the moment the nodes become schedulable until the
//! last pod is bound, as kube-scheduler's scheduler_perf measures it.

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use futures::{StreamExt, stream};
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{Node, Pod},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};

use super::{client, ensure_namespace, rss_mib};

const NAMESPACE: &str = "bench-sched";
const LABEL: &str = "skiff.io/simulated";
const HOLD_TAINT: &str = "skiff.io/bench-hold";

fn seconds_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn micro_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

async fn create_nodes(client: &Client, count: usize) -> Result<Vec<String>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let names: Vec<String> = (0..count).map(|i| format!("sim-node-{i:04}")).collect();
    let results: Vec<Result<()>> = stream::iter(names.clone())
        .map(|name| {
            let (nodes, leases) = (nodes.clone(), leases.clone());
            async move {
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {LABEL: "true", "kubernetes.io/hostname": name}},
                    "spec": {"taints": [{"key": HOLD_TAINT, "effect": "NoSchedule"}]},
                }))?;
                let _ = nodes.create(&PostParams::default(), &node).await;
                let status = json!({"status": {
                    "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                    "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "simulated",
                                    "lastHeartbeatTime": seconds_now(), "lastTransitionTime": seconds_now()}],
                }});
                nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
                let lease: Lease = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()},
                }))?;
                let _ = leases.create(&PostParams::default(), &lease).await;
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(names)
}

/// Keep every simulated node's Lease fresh (every 10 s, as agents do) until aborted.
fn renew_leases(client: Client, names: Vec<String>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        loop {
            let patch = json!({"spec": {"renewTime": micro_now()}});
            stream::iter(names.clone())
                .for_each_concurrent(16, |name| {
                    let (leases, patch) = (leases.clone(), patch.clone());
                    async move {
                        let _ = leases
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await;
                    }
                })
                .await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    })
}

async fn cleanup(client: &Client, names: &[String]) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default(),
    )
    .await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    stream::iter(names.to_vec())
        .for_each_concurrent(32, |name| {
            let (nodes, leases) = (nodes.clone(), leases.clone());
            async move {
                let _ = nodes.delete(&name, &DeleteParams::default()).await;
                let _ = leases.delete(&name, &DeleteParams::default()).await;
            }
        })
        .await;
    Ok(())
}

/// One measurement: `nodes` simulated nodes, `pods` pending pods.
async fn measure(client: &Client, nodes: usize, pods: usize, control_pid: u32) -> Result<Value> {
    let names = create_nodes(client, nodes)
        .await
        .context("creating simulated nodes")?;
    let renewer = renew_leases(client.clone(), names.clone());
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    // Count bindings as the watch reports them.
    let bound: Arc<Mutex<(HashSet<String>, Option<Instant>)>> = Arc::default();
    let watcher_task = {
        let bound = bound.clone();
        let api = api.clone();
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(event) = events.next().await {
                let Ok(pod) = event else { continue };
                let assigned = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                if assigned
                    && let (Some(name), Ok(mut b)) = (pod.metadata.name, bound.lock())
                    && b.0.insert(name)
                {
                    b.1 = Some(Instant::now());
                }
            }
        })
    };
    let created_started = Instant::now();
    let created: usize = stream::iter(0..pods)
        .map(|i| {
            let api = api.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("p-{nodes}-{i:05}"), "labels": {"app": "bench-sched"}},
                    "spec": {"nodeSelector": {LABEL: "true"},
                             "containers": [{"name": "c", "image": "skiff/echo:v2",
                                             "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
                }))
                .ok()?;
                api.create(&PostParams::default(), &pod).await.ok().map(|_| ())
            }
        })
        .buffer_unordered(64)
        .filter_map(|r| async move { r })
        .count()
        .await;
    let create_secs = created_started.elapsed().as_secs_f64();
    // Release the nodes: the clock starts now.
    let nodes_api: Api<Node> = Api::all(client.clone());
    let started = Instant::now();
    stream::iter(names.clone())
        .for_each_concurrent(32, |name| {
            let nodes_api = nodes_api.clone();
            async move {
                let _ = nodes_api
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"spec": {"taints": null}})),
                    )
                    .await;
            }
        })
        .await;
    let deadline = started + Duration::from_secs(600);
    loop {
        let (count, last) = bound.lock().map(|b| (b.0.len(), b.1)).unwrap_or((0, None));
        if count >= created || Instant::now() > deadline {
            let took = last
                .map_or(started.elapsed(), |l| l.saturating_duration_since(started))
                .as_secs_f64();
            renewer.abort();
            watcher_task.abort();
            let rss = rss_mib(control_pid);
            cleanup(client, &names).await?;
            return Ok(json!({
                "nodes": nodes, "pods": created, "bound": count,
                "seconds": took, "pods_per_second": count as f64 / took.max(1e-9),
                "create_seconds": create_secs, "control_rss_mib": rss,
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The sched benchmark at each node count.
pub async fn run(kubeconfig: &PathBuf, control_pid: u32, quick: bool) -> Result<Value> {
    let client = client(kubeconfig)
        .await
        .context("connecting to the lab API server")?;
    ensure_namespace(&client, NAMESPACE).await?;
    let (node_counts, pods): (&[usize], usize) = if quick {
        (&[100], 1_000)
    } else {
        (&[100, 1_000], 10_000)
    };
    let mut runs = Vec::new();
    for &nodes in node_counts {
        runs.push(measure(&client, nodes, pods, control_pid).await?);
    }
    Ok(json!({"runs": runs, "quick": quick}))
}
