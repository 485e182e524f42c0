//! Each path measured with skiff-load from where its client sits, with the machine's CPU
//! time per request from /proc/stat.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use skiff_tests::{
    Lab,
    bare_node::{self, BareNode},
    kube_proxy::{self, Position, ServicePort},
};

use super::workload::{CLIENT_POD, NAMESPACE, Workload};

/// Where a path's client runs.
enum Client<'a> {
    /// The Skiff client pod.
    SkiffPod,
    /// The bare node's pod.
    BarePod(&'a BareNode),
    /// The root namespace (outside every node).
    Root,
}

/// Busy and total CPU time of the machine so far, in clock ticks.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Clock ticks per second (`USER_HZ`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

fn load(lab: &Lab, client: &Client, args: &[&str]) -> Result<Value> {
    let report = match client {
        Client::SkiffPod => lab.load_in_pod(NAMESPACE, CLIENT_POD, args),
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
    let (busy_before, _) = cpu_ticks();
    let report = load(lab, client, args)?;
    let (busy_after, _) = cpu_ticks();
    let ok = report["ok"].as_u64().unwrap_or(0);
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
    }))
}

/// TCP_RR, TCP_CRR, UDP_RR and stream against `ip` (ports 80/9000/53 of a Service, or
/// 8080/9000/9001 of a pod).
fn east_west(
    lab: &Lab,
    client: &Client,
    path: &str,
    ip: &str,
    pod: bool,
    seconds: f64,
) -> Result<Vec<Value>> {
    let (http, echo, udp) = if pod {
        (8080, 9000, 9001)
    } else {
        (80, 9000, 53)
    };
    let duration = format!("{seconds}");
    let target = |port: u16| format!("{ip}:{port}");
    let (http, echo, udp) = (target(http), target(echo), target(udp));
    Ok(vec![
        measure(
            lab,
            client,
            path,
            "tcp_rr",
            &["rr", "--target", &http, "--duration", &duration],
        )?,
        measure(
            lab,
            client,
            path,
            "tcp_crr",
            &[
                "crr",
                "--target",
                &http,
                "--duration",
                &duration,
                "--connections",
                "2",
            ],
        )?,
        measure(
            lab,
            client,
            path,
            "udp_rr",
            &[
                "rr",
                "--protocol",
                "udp",
                "--target",
                &udp,
                "--duration",
                &duration,
            ],
        )?,
        measure(
            lab,
            client,
            path,
            "stream",
            &[
                "stream",
                "--protocol",
                "echo",
                "--target",
                &echo,
                "--duration",
                &duration,
            ],
        )?,
    ])
}

/// TCP_RR and TCP_CRR from outside against a node port.
fn north_south(
    lab: &Lab,
    client: &Client,
    path: &str,
    target: &str,
    seconds: f64,
) -> Result<Vec<Value>> {
    let duration = format!("{seconds}");
    Ok(vec![
        measure(
            lab,
            client,
            path,
            "tcp_rr",
            &["rr", "--target", target, "--duration", &duration],
        )?,
        measure(
            lab,
            client,
            path,
            "tcp_crr",
            &[
                "crr",
                "--target",
                target,
                "--duration",
                &duration,
                "--connections",
                "2",
            ],
        )?,
    ])
}

fn kube_proxy_settings() -> kube_proxy::Settings {
    kube_proxy::Settings {
        cluster_cidr: "10.244.0.0/16".to_owned(),
    }
}

/// Every path at the current number of Services.
pub fn measure_all(
    lab: &Lab,
    bare: &BareNode,
    workload: &Workload,
    services: &(Vec<ServicePort>, usize),
    seconds: f64,
) -> Result<Value> {
    let (ports, measured) = services;
    let client_node = workload.client_node.name.clone();
    let vip = workload.vip.to_string();
    let backend = workload.backend.to_string();
    let mut rows = Vec::new();
    rows.extend(east_west(
        lab,
        &Client::SkiffPod,
        "direct pod IP (Skiff node)",
        &backend,
        true,
        seconds,
    )?);
    rows.extend(east_west(
        lab,
        &Client::BarePod(bare),
        "direct pod IP (bare node)",
        &backend,
        true,
        seconds,
    )?);
    rows.extend(east_west(
        lab,
        &Client::SkiffPod,
        "Skiff socket LB",
        &vip,
        false,
        seconds,
    )?);
    lab.bpf(&client_node, &["config", "--socket-lb", "off"]);
    let tc = east_west(
        lab,
        &Client::SkiffPod,
        "Skiff tc (per packet)",
        &vip,
        false,
        seconds,
    );
    lab.bpf(&client_node, &["config", "--socket-lb", "on"]);
    rows.extend(tc?);
    let mut restores = Vec::new();
    for (position, name) in [(Position::Last, "last"), (Position::Middle, "middle")] {
        let rules = kube_proxy::full_restore(ports, *measured, position, &kube_proxy_settings());
        bare.flush();
        let took = bare.restore(&rules, true).map_err(anyhow::Error::msg)?;
        restores.push(json!({"position": name, "rules": rules.lines().count(), "seconds": took.as_secs_f64()}));
        let path = format!("kube-proxy iptables (rule {name} of {})", ports.len());
        rows.extend(east_west(
            lab,
            &Client::BarePod(bare),
            &path,
            &vip,
            false,
            seconds,
        )?);
        if position == Position::Last {
            let target = format!("{}:{}", bare_node::ADDRESS, workload.node_port);
            rows.extend(north_south(
                lab,
                &Client::Root,
                "NodePort, kube-proxy iptables (remote backends, masquerade)",
                &target,
                seconds,
            )?);
        }
    }
    let remote = format!("{}:{}", workload.client_node.address, workload.node_port);
    rows.extend(north_south(
        lab,
        &Client::Root,
        "NodePort, Skiff tc (remote backends, SNAT)",
        &remote,
        seconds,
    )?);
    let local = format!("{}:{}", workload.backend_node.address, workload.local_port);
    rows.extend(north_south(
        lab,
        &Client::Root,
        "NodePort, Skiff tc (eTP=Local, local backends)",
        &local,
        seconds,
    )?);
    let backend_node = workload.backend_node.name.clone();
    lab.bpf(&backend_node, &["config", "--xdp", "on"]);
    let xdp = north_south(
        lab,
        &Client::Root,
        "NodePort, Skiff XDP (eTP=Local, local backends)",
        &local,
        seconds,
    );
    lab.bpf(&backend_node, &["config", "--xdp", "off"]);
    rows.extend(xdp?);
    Ok(json!({"rows": rows, "iptables_full_restore": restores}))
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
