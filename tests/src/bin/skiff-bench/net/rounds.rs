//! Running the measurements: where a path's client runs, one skiff-load run with the
//! machine's CPU time and the eBPF time per request around it, the runtime switches a path
//! needs, and the rounds every path runs in (A B B A order, pooled, with intervals).

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use skiff_tests::{Lab, bare_node::BareNode, bench::cpu_ticks};

use super::{
    ebpf_cost,
    interval::floor_ratio_interval,
    pool::pool,
    workload::{CLIENT_POD, NAMESPACE},
};

/// Where a path's client runs.
pub enum Client<'a> {
    /// The Skiff client pod (its network namespace and cgroup).
    SkiffPod(&'a (std::path::PathBuf, std::path::PathBuf)),
    /// The bare node's pod.
    BarePod(&'a BareNode),
    /// The root namespace (outside every node).
    Root,
}

/// Clock ticks per second (`USER_HZ`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// skiff-load with `args`, run from where `client` sits: its JSON report.
fn load(lab: &Lab, client: &Client, args: &[&str]) -> Result<Value> {
    let report = match client {
        Client::SkiffPod((netns, cgroup)) => lab
            .spawn_load_in_sandbox(
                netns,
                cgroup,
                &format!("pod {NAMESPACE}/{CLIENT_POD}"),
                args,
            )
            .finish(),
        Client::Root => lab.load_from_root(args),
        Client::BarePod(bare) => {
            let out = skiff_tests::process::output(
                bare.in_pod(&lab.bin("skiff-load").to_string_lossy())
                    .args(args),
            );
            if out.code != 0 {
                bail!(
                    "skiff-load {} in the bare pod: {}",
                    args.join(" "),
                    out.stderr
                );
            }
            serde_json::from_str(out.stdout.trim()).context("skiff-load printed no report")?
        }
    };
    Ok(report)
}

/// One measurement row.
pub fn measure(lab: &Lab, client: &Client, path: &str, mode: &str, args: &[&str]) -> Result<Value> {
    let programs_before = ebpf_cost::snapshot(lab);
    let (busy_before, _) = cpu_ticks();
    let report = load(lab, client, args)?;
    let (busy_after, _) = cpu_ticks();
    let programs_after = ebpf_cost::snapshot(lab);
    let ok = report["ok"].as_u64().unwrap_or(0);
    let ebpf = ebpf_cost::per_request(&programs_before, &programs_after, ok);
    let cpu_seconds = busy_after.saturating_sub(busy_before) as f64 / ticks_per_second();
    let latency = &report["latency_us"];
    Ok(json!({
        "path": path,
        "mode": mode,
        "requests": ok,
        "errors": report["failed"],
        "p50_us": latency["p50"],
        "p90_us": latency["p90"],
        "p99_us": latency["p99"],
        "p999_us": latency["p999"],
        "per_second": report["per_second"],
        "bits_per_second": report["bits_per_second"],
        "cpu_us_per_request": if ok > 0 { cpu_seconds * 1e6 / ok as f64 } else { 0.0 },
        "ebpf_ns_per_request": ebpf["ebpf_ns_per_request"],
        "ebpf_by_program": ebpf["ebpf_by_program"],
        "seconds": report["seconds"],
        "histogram_ns": report["histogram_ns"],
    }))
}

/// A runtime switch a path needs on a node while it is measured.
#[derive(Clone)]
pub enum Switch {
    /// Nothing to switch.
    None,
    /// The socket LB off on this node (east-west through tc).
    PerPacket(String),
    /// XDP acceleration on for this node.
    Xdp(String),
}

impl Switch {
    fn set(&self, lab: &Lab, on: bool) {
        match self {
            Self::None => {}
            Self::PerPacket(node) => {
                lab.bpf(
                    node,
                    &["config", "--socket-lb", if on { "off" } else { "on" }],
                );
            }
            Self::Xdp(node) => {
                lab.bpf(node, &["config", "--xdp", if on { "on" } else { "off" }]);
            }
        }
    }
}

/// One measurement to repeat.
pub struct Job<'a> {
    /// The path's name in the report.
    pub path: String,
    /// `tcp_rr`, `tcp_crr`, `udp_rr` or `stream`.
    pub mode: &'static str,
    /// The path this one is compared with (`paths::floor_of`).
    pub floor: Option<&'static str>,
    /// Where skiff-load runs.
    pub client: Client<'a>,
    /// What to switch on while it runs.
    pub switch: Switch,
    /// skiff-load's arguments.
    pub args: Vec<String>,
}

/// Rounds run before the measured ones and thrown away: the first connections after a
/// pause meet cold caches, a just-changed switch and backends that have idled.
pub const WARM_UP_ROUNDS: usize = 1;

/// Run `jobs` `rounds` times (after [`WARM_UP_ROUNDS`] unrecorded ones), one mode after the
/// other so a path runs right beside its floor, in the order of `jobs` on even rounds and
/// backwards on odd ones (A B B A: drift of the machine within a round hits every path
/// alike). Short rounds, many of them, so that whatever else the machine does lands in
/// every path's slices and not in one path's run. Per path and mode the rounds are pooled
/// into one distribution (see [`pool`]); a row whose floor ran in the same rounds carries
/// the bootstrap interval of its ratios to it (`floor_interval`).
pub fn run_rounds(lab: &Lab, jobs: &mut [Job], rounds: usize) -> Result<Vec<Value>> {
    const MODES: [&str; 4] = ["tcp_rr", "tcp_crr", "udp_rr", "stream"];
    jobs.sort_by_key(|job| MODES.iter().position(|m| *m == job.mode));
    let mut runs: Vec<Vec<Value>> = jobs.iter().map(|_| Vec::new()).collect();
    let rounds = rounds.max(1);
    for round in 0..WARM_UP_ROUNDS + rounds {
        let recorded = round >= WARM_UP_ROUNDS;
        for mode in MODES {
            let mut order: Vec<usize> = (0..jobs.len()).filter(|&i| jobs[i].mode == mode).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let job = &jobs[i];
                job.switch.set(lab, true);
                let args: Vec<&str> = job.args.iter().map(String::as_str).collect();
                let row = measure(lab, &job.client, &job.path, job.mode, &args);
                job.switch.set(lab, false);
                let row = row?;
                if recorded {
                    runs[i].push(row);
                }
            }
        }
    }
    let rows = jobs
        .iter()
        .zip(&runs)
        .map(|(job, own)| {
            let mut row = pool(own);
            row["floor"] = json!(job.floor);
            let floor_runs = job.floor.and_then(|floor| {
                jobs.iter()
                    .position(|j| j.path == floor && j.mode == job.mode)
                    .map(|at| &runs[at])
            });
            if let Some(interval) = floor_runs.and_then(|f| floor_ratio_interval(own, f)) {
                row["floor_interval"] = interval;
            }
            row
        })
        .collect();
    Ok(rows)
}
