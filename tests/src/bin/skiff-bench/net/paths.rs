//! Which paths are measured, from where, against which floor, and in which port slice;
//! `rounds.rs` runs them.

use anyhow::{Result, bail};
use serde_json::{Value, json};
use skiff_agent::datapath::programs::RunTimeStats;
use skiff_tests::{
    Lab,
    bare_node::{self, BareNode},
    kube_proxy::{
        ServicePort,
        iptables::{self, Position},
        nftables,
    },
};

use super::{
    rounds::{Client, Job, Switch, measure, run_rounds},
    workload::{Workload, kube_proxy_settings},
};

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
