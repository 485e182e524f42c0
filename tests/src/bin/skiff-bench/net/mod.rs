//! `skiff-bench net`: the Service datapath side by side with kube-proxy's iptables rules
//! and the bare path, in one run on this machine.
//!
//! The measured Service has 10 echo pods on nodes 2 and 3; the clients sit on node 1 (a pod)
//! and on a node without Skiff (the bare node, `bare_node`), so every path crosses the same
//! hops: client pod → its node → underlay → a backend's node → backend pod. Paths:
//! - direct pod IP from the Skiff pod and from the bare pod (the floors);
//! - the cluster IP through the socket LB, through the per-packet tc path (socket LB off on
//!   node 1), and through kube-proxy's rules on the bare node with the measured Service's
//!   rule last in `KUBE-SERVICES` (worst case) and in the middle (median), and through
//!   kube-proxy's nftables mode on the same node (one verdict-map lookup, no position);
//! - node ports from the root namespace: Skiff tc (remote backends, SNAT), Skiff tc and XDP
//!   on a node with local backends (`externalTrafficPolicy: Local`), and kube-proxy's
//!   (iptables and nftables) on the bare node.
//!
//! At 1, 1,000 and 10,000 Services (fillers of 10 endpoints each that serve nothing), each
//! path runs TCP_RR (latency), TCP_CRR (connections/s), UDP_RR (cluster IPs) and a bulk
//! stream, with CPU time per request from /proc/stat. Programming cost: Skiff's map update
//! for one Service or endpoint on a scratch datapath with N Services, against
//! `iptables-restore` and `nft -f`, full and partial syncs; and API write → every node's
//! datapath answering.

mod ebpf_cost;
mod etcd_disk;
mod interval;
mod paths;
mod pool;
mod programming;
mod rounds;
mod workload;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use skiff_tests::{Lab, bare_node::BareNode};

use crate::client;

/// Sizes and durations of one run.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Service counts of the scale axis.
    pub sizes: &'static [usize],
    /// Seconds per latency/rate measurement.
    pub seconds: f64,
    /// Repetitions of each programming measurement.
    pub repetitions: usize,
    /// Rounds of every path measurement (medians are reported).
    pub rounds: usize,
}

/// Many short rounds rather than a few long ones: a burst of other work on the machine
/// then lands in several paths' slices instead of in one path's run.
const FULL: Plan = Plan {
    sizes: &[1, 1_000, 10_000],
    seconds: 0.8,
    repetitions: 15,
    // Even, so A B B A ends with as many rounds backwards as forwards.
    rounds: 16,
};

const QUICK: Plan = Plan {
    sizes: &[1, 1_000],
    seconds: 0.5,
    repetitions: 3,
    rounds: 2,
};

/// The machine counts as quiet below this share of its CPU in use (over half a second).
const QUIET: f64 = 0.15;
/// The longest wait for a quiet machine before a scale point's paths run anyway.
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Run the benchmark against the lab described in the environment.
pub async fn run(quick: bool) -> Result<Value> {
    let plan = if quick { QUICK } else { FULL };
    let lab =
        Lab::from_env().context("no lab in the environment (run through cargo xtask bench net)")?;
    anyhow::ensure!(lab.nodes.len() >= 3, "the network benchmark needs 3 nodes");
    let client = client(&lab.kubeconfig()).await?;
    let workload = workload::set_up(&lab, &client).await?;
    let bare = BareNode::create(&lab).map_err(anyhow::Error::msg)?;
    let cross_check = paths::cross_check(&lab, &bare, &workload, plan.seconds.max(3.0))?;
    let mut scale = Vec::new();
    let mut incomplete = None;
    let mut have = 1;
    for &size in plan.sizes {
        eprintln!("skiff-bench net: {size} Services");
        match scale_point(&lab, &client, &bare, &workload, &mut have, size, plan).await {
            Ok(point) => scale.push(point),
            Err(e) => {
                // The points measured so far still make a report.
                eprintln!("skiff-bench net: stopped at {size} Services: {e:#}");
                incomplete = Some(format!("stopped at {size} Services: {e:#}"));
                break;
            }
        }
    }
    drop(bare);
    workload::tear_down(&client).await;
    Ok(json!({
        "incomplete": incomplete,
        "quick": quick,
        "plan": {"sizes": plan.sizes, "seconds": plan.seconds, "repetitions": plan.repetitions, "rounds": plan.rounds, "warm_up_rounds": rounds::WARM_UP_ROUNDS},
        "iptables_backend": skiff_tests::bare_node::IPTABLES,
        "nftables_table": skiff_tests::kube_proxy::nftables::TABLE,
        "topology": {
            "backends": "10 skiff/echo pods on skiff-node-2 and skiff-node-3",
            "skiff_client": "a pod on skiff-node-1",
            "bare_client": "a pod namespace behind skiff-node-bare (no Skiff, kube-proxy's iptables or nftables rules)",
            "node_port_client": "the root namespace",
        },
        "cross_check": cross_check,
        "scale": scale,
    }))
}

/// Fill up to `size` Services (from `have`), then measure every path and the programming
/// cost at that scale.
async fn scale_point(
    lab: &Lab,
    client: &kube::Client,
    bare: &BareNode,
    workload: &workload::Workload,
    have: &mut usize,
    size: usize,
    plan: Plan,
) -> Result<Value> {
    workload::fillers(client, *have, size).await?;
    *have = size.max(*have);
    workload::wait_programmed(lab, size)?;
    let services = workload::kube_proxy_services(client).await?;
    // The fillers' aftermath (EndpointSlices written, agents syncing, etcd compacting) and
    // the lab's own start are not any path's cost.
    let settled = skiff_tests::bench::settle(QUIET, SETTLE_LIMIT).await;
    let paths = paths::measure_all(lab, bare, workload, &services, plan.seconds, plan.rounds)?;
    let programming = programming::measure(
        lab,
        client,
        bare,
        &services,
        &paths["nftables_full_sync"],
        size,
        plan,
    )
    .await?;
    Ok(json!({
        "services": size,
        "settle": {"quiet_below": QUIET, "seconds_waited": settled.as_secs_f64()},
        "paths": paths,
        "programming": programming,
    }))
}
