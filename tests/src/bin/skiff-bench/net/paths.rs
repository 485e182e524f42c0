//! Each path measured with skiff-load from where its client sits, with the machine's CPU
//! time per request from /proc/stat.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use skiff_agent::datapath::programs::RunTimeStats;
use skiff_tests::{
    Lab,
    bare_node::{self, BareNode},
    bench::cpu_ticks,
    kube_proxy::{
        ServicePort,
        iptables::{self, Position},
        nftables,
    },
};

use super::{
    ebpf_cost,
    interval::floor_ratio_interval,
    pool::pool,
    workload::{CLIENT_POD, NAMESPACE, Workload, kube_proxy_settings},
};

/// Where a path's client runs.
enum Client<'a> {
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
fn measure(lab: &Lab, client: &Client, path: &str, mode: &str, args: &[&str]) -> Result<Value> {
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
enum Switch {
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
struct Job<'a> {
    path: String,
    mode: &'static str,
    /// The path this one is compared with (see [`floor_of`]).
    floor: Option<&'static str>,
    client: Client<'a>,
    switch: Switch,
    args: Vec<String>,
}

fn job<'a>(
    path: &str,
    ports: Ports,
    mode: &'static str,
    client: Client<'a>,
    switch: &Switch,
    args: &[&str],
) -> Job<'a> {
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    args.extend(["--local-ports".to_owned(), ports.range()]);
    Job {
        path: path.to_owned(),
        mode,
        floor: floor_of(path, mode),
        client,
        switch: switch.clone(),
        args,
    }
}

/// The floor of the Skiff node's TCP_RR and TCP_CRR: its direct path to the Service's
/// pods in turn.
const SPREAD_FLOOR_SKIFF: &str = "direct pod IPs in turn (Skiff node)";
/// The same floor, measured a second time as a path of its own (an A/A comparison: how far
/// a ratio moves when nothing differs but the slot it ran in).
const SPREAD_FLOOR_SKIFF_AGAIN: &str = "direct pod IPs in turn (Skiff node), again (A/A)";

/// The floor a path is compared with: the direct path from the same client, to the
/// Service's pods in turn where that was measured (TCP_RR, TCP_CRR), else to one pod.
/// Node ports are measured from the root namespace, which has no direct path of its own to
/// compare with. Every report row names its floor (`floor`), so the report renders ratios without
/// knowing the paths.
fn floor_of(path: &str, mode: &str) -> Option<&'static str> {
    let spread = matches!(mode, "tcp_rr" | "tcp_crr");
    if path.starts_with("Skiff") {
        Some(if spread {
            SPREAD_FLOOR_SKIFF
        } else {
            "direct pod IP (Skiff node)"
        })
    } else if path == SPREAD_FLOOR_SKIFF_AGAIN {
        Some(SPREAD_FLOOR_SKIFF)
    } else if path.starts_with("kube-proxy") {
        Some(if spread {
            "direct pod IPs in turn (bare node)"
        } else {
            "direct pod IP (bare node)"
        })
    } else {
        None
    }
}

/// Which slice of the kernel's default ephemeral range (32768–60999) a path's client
/// binds its local ports in: each path its own (skiff-load's `ports.rs` says why: paths
/// reaching the same backends through different addresses must not share wire tuples). A
/// kube-proxy path keeps its slice across scale points ("rule last of 6" and "rule last of
/// 1005" are one path).
#[derive(Clone, Copy)]
enum Ports {
    DirectSkiff,
    DirectBare,
    SpreadSkiff,
    SpreadBare,
    SpreadSkiffAgain,
    SocketLb,
    PerPacket,
    NodePortRemote,
    NodePortLocal,
    NodePortXdp,
    KubeProxyLast,
    KubeProxyMiddle,
    KubeProxyNodePort,
    KubeProxyNft,
    KubeProxyNftNodePort,
}

impl Ports {
    /// How many slices there are (one per variant).
    const SLICES: u16 = Self::KubeProxyNftNodePort as u16 + 1;

    /// `skiff-load --local-ports` for this slice.
    fn range(self) -> String {
        let width = (60999 - 32768 + 1) / Self::SLICES;
        let low = 32768 + width * self as u16;
        format!("{low}-{}", low + width - 1)
    }
}

/// TCP_RR, TCP_CRR, UDP_RR and stream against `ip` (ports 80/9000/53 of a Service, or
/// 8080/9000/9001 of a pod).
fn east_west<'a>(
    path: &str,
    ports: Ports,
    client: impl Fn() -> Client<'a>,
    switch: &Switch,
    ip: &str,
    pod: bool,
    seconds: f64,
) -> Vec<Job<'a>> {
    let (http, echo, udp) = if pod {
        (8080, 9000, 9001)
    } else {
        (80, 9000, 53)
    };
    let duration = format!("{seconds}");
    let target = |port: u16| format!("{ip}:{port}");
    let (http, echo, udp) = (target(http), target(echo), target(udp));
    vec![
        job(
            path,
            ports,
            "tcp_rr",
            client(),
            switch,
            &[
                "rr",
                "--target",
                &http,
                "--duration",
                &duration,
                "--reconnect-every",
                RECONNECT_EVERY,
            ],
        ),
        job(
            path,
            ports,
            "tcp_crr",
            client(),
            switch,
            &[
                "crr",
                "--target",
                &http,
                "--duration",
                &duration,
                "--connections",
                "2",
            ],
        ),
        job(
            path,
            ports,
            "udp_rr",
            client(),
            switch,
            &[
                "rr",
                "--protocol",
                "udp",
                "--target",
                &udp,
                "--duration",
                &duration,
                "--reconnect-every",
                RECONNECT_EVERY,
            ],
        ),
        job(
            path,
            ports,
            "stream",
            client(),
            switch,
            &[
                "stream",
                "--protocol",
                "echo",
                "--target",
                &echo,
                "--duration",
                &duration,
            ],
        ),
    ]
}

/// Exchanges per connection in TCP_RR and UDP_RR: a run opens a few hundred connections,
/// so a Service's run samples all its backends (one connection would measure one backend's
/// luck: pods differ by ±10% on this machine) and the spread floor cycles through them.
const RECONNECT_EVERY: &str = "200";

/// TCP_RR and TCP_CRR from `client` straight to every backend pod in turn: the floor with
/// the same spread over the same pods as the Service's.
fn spread_floor<'a>(
    path: &str,
    ports: Ports,
    client: impl Fn() -> Client<'a>,
    workload: &Workload,
    seconds: f64,
) -> Vec<Job<'a>> {
    let duration = format!("{seconds}");
    let targets: Vec<String> = workload
        .backends
        .iter()
        .map(|ip| format!("{ip}:8080"))
        .collect();
    let mut spread: Vec<&str> = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        spread.push(if i == 0 { "--target" } else { "--and-target" });
        spread.push(target);
    }
    let rr = [
        &[
            "rr",
            "--duration",
            &duration,
            "--reconnect-every",
            RECONNECT_EVERY,
        ][..],
        &spread,
    ]
    .concat();
    let crr = [
        &["crr", "--duration", &duration, "--connections", "2"][..],
        &spread,
    ]
    .concat();
    vec![
        job(path, ports, "tcp_rr", client(), &Switch::None, &rr),
        job(path, ports, "tcp_crr", client(), &Switch::None, &crr),
    ]
}

/// TCP_RR and TCP_CRR from outside against a node port.
fn north_south<'a>(
    path: &str,
    ports: Ports,
    switch: &Switch,
    target: &str,
    seconds: f64,
) -> Vec<Job<'a>> {
    let duration = format!("{seconds}");
    vec![
        job(
            path,
            ports,
            "tcp_rr",
            Client::Root,
            switch,
            &["rr", "--target", target, "--duration", &duration],
        ),
        job(
            path,
            ports,
            "tcp_crr",
            Client::Root,
            switch,
            &[
                "crr",
                "--target",
                target,
                "--duration",
                &duration,
                "--connections",
                "2",
            ],
        ),
    ]
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
fn run_rounds(lab: &Lab, jobs: &mut [Job], rounds: usize) -> Result<Vec<Value>> {
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

/// Every path at the current number of Services, each `rounds` times. Leaves kube-proxy's
/// nftables table loaded on the bare node when it loaded (see `programming::measure`).
pub fn measure_all(
    lab: &Lab,
    bare: &BareNode,
    workload: &Workload,
    services: &(Vec<ServicePort>, usize),
    seconds: f64,
    rounds: usize,
) -> Result<Value> {
    // The kernel counts program runs only while this is held; it costs every path that
    // runs Skiff's programs the same two clock reads per program run.
    let _counting = RunTimeStats::enable()
        .inspect_err(|e| eprintln!("warning: no eBPF time per request: {e}"))
        .ok();
    let (ports, measured) = services;
    let vip = workload.vip.to_string();
    let backend = workload.backend.to_string();
    let none = Switch::None;
    let per_packet = Switch::PerPacket(workload.client_node.name.clone());
    let xdp = Switch::Xdp(workload.backend_node.name.clone());
    let mut jobs = Vec::new();
    jobs.extend(east_west(
        "direct pod IP (Skiff node)",
        Ports::DirectSkiff,
        || Client::SkiffPod(&workload.client_sandbox),
        &none,
        &backend,
        true,
        seconds,
    ));
    jobs.extend(spread_floor(
        SPREAD_FLOOR_SKIFF,
        Ports::SpreadSkiff,
        || Client::SkiffPod(&workload.client_sandbox),
        workload,
        seconds,
    ));
    jobs.extend(east_west(
        "Skiff socket LB",
        Ports::SocketLb,
        || Client::SkiffPod(&workload.client_sandbox),
        &none,
        &vip,
        false,
        seconds,
    ));
    jobs.extend(east_west(
        "Skiff tc (per packet)",
        Ports::PerPacket,
        || Client::SkiffPod(&workload.client_sandbox),
        &per_packet,
        &vip,
        false,
        seconds,
    ));
    // The A/A row after the Skiff paths, so they run between the floor and its copy.
    jobs.extend(spread_floor(
        SPREAD_FLOOR_SKIFF_AGAIN,
        Ports::SpreadSkiffAgain,
        || Client::SkiffPod(&workload.client_sandbox),
        workload,
        seconds,
    ));
    let remote = format!("{}:{}", workload.client_node.address, workload.node_port);
    jobs.extend(north_south(
        "NodePort, Skiff tc (remote backends, SNAT)",
        Ports::NodePortRemote,
        &none,
        &remote,
        seconds,
    ));
    let local = format!("{}:{}", workload.backend_node.address, workload.local_port);
    jobs.extend(north_south(
        "NodePort, Skiff tc (eTP=Local, local backends)",
        Ports::NodePortLocal,
        &none,
        &local,
        seconds,
    ));
    jobs.extend(north_south(
        "NodePort, Skiff XDP (eTP=Local, local backends)",
        Ports::NodePortXdp,
        &xdp,
        &local,
        seconds,
    ));
    // The bare node's floors last: the Skiff paths run right after their own floor.
    jobs.extend(east_west(
        "direct pod IP (bare node)",
        Ports::DirectBare,
        || Client::BarePod(bare),
        &none,
        &backend,
        true,
        seconds,
    ));
    jobs.extend(spread_floor(
        "direct pod IPs in turn (bare node)",
        Ports::SpreadBare,
        || Client::BarePod(bare),
        workload,
        seconds,
    ));
    // The bare floors are bare: no rules left from the last scale point's kube-proxy rows
    // or programming runs (a direct connection would walk every KUBE-SERVICES rule).
    bare.flush();
    anyhow::ensure!(
        bare.is_bare(),
        "the bare node still holds kube-proxy rules after a flush; its floors would not be bare"
    );
    let mut rows = run_rounds(lab, &mut jobs, rounds)?;
    let mut restores = Vec::new();
    for (position, name, slice) in [
        (Position::Last, "last", Ports::KubeProxyLast),
        (Position::Middle, "middle", Ports::KubeProxyMiddle),
    ] {
        let rules = iptables::first_restore(ports, *measured, position, &kube_proxy_settings());
        bare.flush();
        let took = bare.restore(&rules, true).map_err(anyhow::Error::msg)?;
        restores.push(json!({"position": name, "rules": rules.lines().count(), "seconds": took.as_secs_f64(), "backend": bare_node::IPTABLES}));
        let path = format!("kube-proxy iptables (rule {name} of {})", ports.len());
        let mut jobs = east_west(
            &path,
            slice,
            || Client::BarePod(bare),
            &none,
            &vip,
            false,
            seconds,
        );
        if position == Position::Last {
            let target = format!("{}:{}", bare_node::ADDRESS, workload.node_port);
            jobs.extend(north_south(
                "NodePort, kube-proxy iptables (remote backends, masquerade)",
                Ports::KubeProxyNodePort,
                &none,
                &target,
                seconds,
            ));
        }
        rows.extend(run_rounds(lab, &mut jobs, rounds)?);
    }
    let nft = nftables_rows(lab, bare, workload, ports, seconds, rounds);
    let nftables_load = match nft {
        Ok((nft_rows, load)) => {
            rows.extend(nft_rows);
            load
        }
        // The other rows still make a report; the row's absence says why.
        Err(e) => {
            eprintln!("skiff-bench net: no kube-proxy nftables rows: {e:#}");
            json!({"error": format!("{e:#}")})
        }
    };
    // The nftables table stays: the programming measurement times partial syncs on it,
    // then removes it.
    Ok(
        json!({"rows": rows, "iptables_full_restore": restores, "nftables_full_sync": nftables_load}),
    )
}

/// kube-proxy's nftables mode on the bare node: its full sync loaded with `nft -f` (the
/// iptables rules flushed first), then the cluster IP and the node port through it. The
/// rows and the load (lines, seconds); the table stays loaded.
fn nftables_rows(
    lab: &Lab,
    bare: &BareNode,
    workload: &Workload,
    ports: &[ServicePort],
    seconds: f64,
    rounds: usize,
) -> Result<(Vec<Value>, Value)> {
    let ruleset = nftables::full_sync(ports, &kube_proxy_settings());
    bare.flush();
    let took = bare.nft_load(&ruleset).map_err(anyhow::Error::msg)?;
    let load = json!({"lines": ruleset.lines().count(), "seconds": took.as_secs_f64(), "services": ports.len()});
    let none = Switch::None;
    let vip = workload.vip.to_string();
    let mut jobs = east_west(
        &format!("kube-proxy nftables ({} Services)", ports.len()),
        Ports::KubeProxyNft,
        || Client::BarePod(bare),
        &none,
        &vip,
        false,
        seconds,
    );
    let target = format!("{}:{}", bare_node::ADDRESS, workload.node_port);
    jobs.extend(north_south(
        "NodePort, kube-proxy nftables (remote backends, masquerade)",
        Ports::KubeProxyNftNodePort,
        &none,
        &target,
        seconds,
    ));
    match run_rounds(lab, &mut jobs, rounds) {
        Ok(rows) => Ok((rows, load)),
        // The load still counts (and the table is still there for the partial syncs).
        Err(e) => {
            eprintln!("skiff-bench net: kube-proxy nftables rows failed: {e:#}");
            let mut load = load;
            load["rows_error"] = json!(format!("{e:#}"));
            Ok((Vec::new(), load))
        }
    }
}

/// One figure measured twice: skiff-load's TCP_RR and wrk (Debian's) on the same path.
pub fn cross_check(lab: &Lab, bare: &BareNode, workload: &Workload, seconds: f64) -> Result<Value> {
    let url = format!("http://{}:8080/", workload.backend);
    let duration = format!("{}s", seconds.ceil() as u64);
    let out = skiff_tests::process::output(bare.in_pod("wrk").args([
        "-t1",
        "-c1",
        "-d",
        &duration,
        "--latency",
        &url,
    ]));
    if out.code != 0 {
        bail!(
            "wrk failed (is it installed? cargo xtask setup): {}",
            out.stderr
        );
    }
    let find = |prefix: &str| -> Option<String> {
        out.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
    };
    let target = format!("{}:8080", workload.backend);
    let ours = measure(
        lab,
        &Client::BarePod(bare),
        "direct pod IP (bare node)",
        "tcp_rr",
        &[
            "rr",
            "--target",
            &target,
            "--duration",
            &format!("{}", seconds.ceil()),
        ],
    )?;
    Ok(json!({
        "path": "direct pod IP (bare node), HTTP keep-alive, 1 connection",
        "wrk_requests_per_second": find("Requests/sec:").and_then(|v| v.parse::<f64>().ok()),
        "wrk_p50": find("50%"),
        "wrk_p99": find("99%"),
        "skiff_load_requests_per_second": ours["per_second"],
        "skiff_load_p50_us": ours["p50_us"],
        "skiff_load_p99_us": ours["p99_us"],
    }))
}
