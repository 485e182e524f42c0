//! `cargo xtask bench net`: a fresh 3-node lab on release builds, `skiff-bench net` against
//! it, and the Markdown of its report (paths beside their floors, targets with verdicts,
//! programming cost).

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{
    cmd::workspace_root,
    lab::{self, Layout},
};

/// Bring up 3 nodes, run the benchmark, tear down; the report.
pub fn run(layout: &Layout, quick: bool) -> Result<Value> {
    if lab::down::anything_left(layout) {
        lab::teardown(layout)?;
    }
    lab::bring_up(layout, 3, false)?;
    let result = run_on(layout, 3, quick, "release");
    let down = lab::teardown(layout);
    let report = result?;
    down?;
    Ok(report)
}

/// `skiff-bench net` against the running lab of `layout` (binaries of `profile`).
pub fn run_on(layout: &Layout, nodes: usize, quick: bool, profile: &str) -> Result<Value> {
    let mut cmd = Command::new(layout.bin("skiff-bench"));
    cmd.arg("net");
    if quick {
        cmd.arg("--quick");
    }
    let xtask = std::env::current_exe().context("locating xtask")?;
    cmd.env("SKIFF_LAB_DIR", &layout.root)
        .env("SKIFF_LAB_NODES", nodes.to_string())
        .env("SKIFF_XTASK_BIN", xtask)
        .env(
            "SKIFF_BIN_DIR",
            workspace_root().join("target").join(profile),
        )
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped());
    let out = cmd.output().context("running skiff-bench net")?;
    let parsed = serde_json::from_slice::<Value>(&out.stdout);
    if !out.status.success() {
        // An incomplete run still printed the scale points it measured; the caller writes
        // them and then fails (see `ensure_complete`).
        return match parsed {
            Ok(report) if !report["incomplete"].is_null() => Ok(report),
            _ => bail!("skiff-bench net failed ({})", out.status),
        };
    }
    parsed.context("skiff-bench net printed no JSON")
}

/// Fail if `net` is the report of a run that stopped early (after it has been written).
pub fn ensure_complete(net: &Value) -> Result<()> {
    match net["incomplete"].as_str() {
        Some(why) => bail!(
            "the network benchmark is incomplete ({why}); the report holds the scale points \
             measured before"
        ),
        None => Ok(()),
    }
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// skiff-bench's A/A row: the Skiff node's floor measured a second time as a path.
const A_A: &str = "direct pod IPs in turn (Skiff node), again (A/A)";

/// The row of `path`/`mode` among `rows`.
fn find<'a>(rows: &'a [Value], path: &str, mode: &str) -> Option<&'a Value> {
    rows.iter()
        .find(|r| r["path"].as_str() == Some(path) && r["mode"].as_str() == Some(mode))
}

/// The row `row` is compared with: the one its `floor` names (skiff-bench decides which
/// path is whose floor), measured in the same mode at the same scale point.
fn floor_row<'a>(rows: &'a [Value], row: &Value) -> Option<&'a Value> {
    let floor = row["floor"].as_str()?;
    find(rows, floor, row["mode"].as_str()?)
}

/// `row`'s `field` against its floor's: both pooled over their rounds (every request of
/// every round in one distribution; a Skiff path's rounds alternate with its floor's, so
/// drift of the machine hits both alike; a kube-proxy row's rounds come after its floor's,
/// once its rules are loaded).
fn floor_ratio(row: &Value, floor: &Value, field: &str) -> f64 {
    number(&row[field]) / number(&floor[field])
}

/// `row`'s 95 % bootstrap interval of its `field` ratio to the floor, as `[low, high]`
/// text; empty when the row has none (its floor ran in other rounds).
fn interval(row: &Value, field: &str) -> String {
    let bounds = &row["floor_interval"][field];
    match (bounds[0].as_f64(), bounds[1].as_f64()) {
        (Some(low), Some(high)) => format!("{low:.3}–{high:.3}"),
        _ => String::new(),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn paths_table(md: &mut String, rows: &[Value]) {
    md.push_str(
        "| path | mode | p50 µs | p90 µs | p99 µs | p99.9 µs | per s | Mbit/s | CPU µs/req | eBPF ns/req | × floor p50 | × floor p99 | × floor rate | errors |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let path = row["path"].as_str().unwrap_or_default();
        let mode = row["mode"].as_str().unwrap_or_default();
        let floor = floor_row(rows, row);
        let ratio = |field: &str| {
            floor.map_or_else(String::new, |f| {
                format!("{:.3}", floor_ratio(row, f, field))
            })
        };
        let mbit = number(&row["bits_per_second"]) / 1e6;
        md.push_str(&format!(
            "| {path} | {mode} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {:.1} | {:.0} | {} | {} | {} | {} |\n",
            number(&row["p50_us"]),
            number(&row["p90_us"]),
            number(&row["p99_us"]),
            number(&row["p999_us"]),
            number(&row["per_second"]),
            if mbit > 0.0 {
                format!("{mbit:.0}")
            } else {
                String::new()
            },
            number(&row["cpu_us_per_request"]),
            number(&row["ebpf_ns_per_request"]),
            ratio("p50_us"),
            ratio("p99_us"),
            ratio("per_second"),
            row["errors"],
        ));
    }
}

/// Where each path's eBPF time goes: per program, runs per request × nanoseconds per run.
fn ebpf_table(md: &mut String, rows: &[Value]) {
    let mut lines = String::new();
    for row in rows {
        let Some(programs) = row["ebpf_by_program"].as_object().filter(|p| !p.is_empty()) else {
            continue;
        };
        let parts: Vec<String> = programs
            .iter()
            .map(|(name, cost)| {
                let runs = number(&cost["runs_per_request"]);
                let ns = number(&cost["ns_per_request"]);
                let per_run = if runs > 0.0 { ns / runs } else { 0.0 };
                format!("{name} {runs:.2} × {per_run:.0} ns")
            })
            .collect();
        lines.push_str(&format!(
            "| {} | {} | {:.0} | {} |\n",
            row["path"].as_str().unwrap_or_default(),
            row["mode"].as_str().unwrap_or_default(),
            number(&row["ebpf_ns_per_request"]),
            parts.join("; ")
        ));
    }
    if lines.is_empty() {
        return;
    }
    md.push_str(
        "\neBPF time per request (kernel run-time statistics of every node's programs, \
         runs per request × ns per run):\n\n\
         | path | mode | eBPF ns/req | by program |\n|---|---|---:|---|\n",
    );
    md.push_str(&lines);
}

/// The targets of the issue, checked at one scale point.
fn targets(md: &mut String, services: u64, rows: &[Value], programming: &Value) {
    // (measured ratio, its 95 % interval) of `path`'s `field`.
    let ratio = |path: &str, mode: &str, field: &str| match find(rows, path, mode) {
        Some(row) => (
            floor_row(rows, row).map_or(f64::NAN, |floor| floor_ratio(row, floor, field)),
            interval(row, field),
        ),
        None => (f64::NAN, String::new()),
    };
    md.push_str(&format!(
        "\n| target at {services} Services | measured | 95 % interval | verdict |\n|---|---|---|---|\n"
    ));
    let checks: [(&str, &str, &str, &str, f64, bool); 5] = [
        (
            "socket LB p50 ≤ 1.03× direct",
            "Skiff socket LB",
            "tcp_rr",
            "p50_us",
            1.03,
            true,
        ),
        (
            "socket LB p99 ≤ 1.03× direct",
            "Skiff socket LB",
            "tcp_rr",
            "p99_us",
            1.03,
            true,
        ),
        (
            "socket LB connection rate ≥ 0.97× direct",
            "Skiff socket LB",
            "tcp_crr",
            "per_second",
            0.97,
            false,
        ),
        (
            "tc p50 ≤ 1.10× direct",
            "Skiff tc (per packet)",
            "tcp_rr",
            "p50_us",
            1.10,
            true,
        ),
        (
            "tc p99 ≤ 1.10× direct",
            "Skiff tc (per packet)",
            "tcp_rr",
            "p99_us",
            1.10,
            true,
        ),
    ];
    for (target, path, mode, field, bound, at_most) in checks {
        let (measured, interval) = ratio(path, mode, field);
        let ok = if at_most {
            measured <= bound
        } else {
            measured >= bound
        };
        md.push_str(&format!(
            "| {target} | {measured:.3}× | {interval} | {} |\n",
            verdict(ok)
        ));
    }
    // The floor against itself: how far these ratios move when nothing differs.
    for (field, label) in [("p50_us", "p50"), ("p99_us", "p99")] {
        let (measured, interval) = ratio(A_A, "tcp_rr", field);
        if measured.is_finite() {
            md.push_str(&format!(
                "| (the floor measured again, A/A: TCP_RR {label}) | {measured:.3}× | {interval} | |\n"
            ));
        }
    }
    let add = programming["skiff_maps"]["operations"]
        .as_array()
        .and_then(|ops| ops.first())
        .map_or(f64::NAN, |op| number(&op["p50_us"]));
    let end_to_end = number(&programming["end_to_end"]["p99_us"]) / 1000.0;
    if services >= 10_000 {
        md.push_str(&format!(
            "| adding one Service with {services} present ≤ 1 ms of datapath update | {:.3} ms | {} |\n",
            add / 1000.0,
            verdict(add <= 1000.0)
        ));
    }
    md.push_str(&format!(
        "| API write → datapath on all nodes p99 ≤ 50 ms | {end_to_end:.1} ms | {} |\n",
        verdict(end_to_end <= 50.0)
    ));
}

fn programming_table(md: &mut String, scale: &[Value]) {
    md.push_str(
        "\n### Programming cost\n\n| Services | operation | p50 | p99 | samples |\n|---:|---|---:|---:|---:|\n",
    );
    for point in scale {
        let services = &point["services"];
        let programming = &point["programming"];
        // (operation, prefix of its label)
        let mut operations: Vec<(&Value, &str)> = Vec::new();
        for (group, prefix) in [
            ("skiff_maps", "Skiff maps: "),
            ("iptables", ""),
            ("nftables", ""),
        ] {
            operations.extend(
                programming[group]["operations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|op| (op, prefix)),
            );
        }
        operations.push((&programming["end_to_end"], ""));
        // Where the end-to-end time goes: the control plane's part (until the
        // EndpointSlice reaches a watcher) and the node's (from there to an answer).
        operations.extend(
            programming["end_to_end_parts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|op| (op, "… ")),
        );
        for (op, prefix) in operations {
            let name = op["operation"].as_str().unwrap_or_default();
            let label = format!("{prefix}{name}");
            let format = |us: f64| {
                if us >= 1000.0 {
                    format!("{:.2} ms", us / 1000.0)
                } else {
                    format!("{us:.1} µs")
                }
            };
            md.push_str(&format!(
                "| {services} | {label} | {} | {} | {} |\n",
                format(number(&op["p50_us"])),
                format(number(&op["p99_us"])),
                op["samples"],
            ));
        }
        // etcd's disk meanwhile: every sample holds two etcd commits.
        let fsync = &programming["end_to_end"]["etcd_disk"]["wal_fsync"];
        if !fsync.is_null() {
            // `p50_ms: {at_most | above}`; reports of 2026-12-02 05:05 had `p50_ms_at_most`.
            let quantile = |h: &Value, q: &str| -> Value {
                match h.get(format!("{q}_ms_at_most")) {
                    Some(ms) => json!({"at_most": ms}),
                    None => h[format!("{q}_ms")].clone(),
                }
            };
            let bound = |v: &Value| match (v["at_most"].as_f64(), v["above"].as_f64()) {
                (Some(ms), _) => format!("≤ {ms} ms"),
                (None, Some(ms)) => format!("> {ms} ms"),
                _ => "—".to_owned(),
            };
            md.push_str(&format!(
                "| {services} | … etcd WAL fsyncs meanwhile (bucket bounds) | {} | {} | {} |\n",
                bound(&quantile(fsync, "p50")),
                bound(&quantile(fsync, "p99")),
                fsync["operations"],
            ));
        }
        md.push_str(&format!(
            "| {services} | (iptables rules in the full restore) | {} | | |\n",
            programming["iptables"]["rules"]
        ));
        if let Some(lines) = programming["nftables"]["lines"].as_u64() {
            md.push_str(&format!(
                "| {services} | (`nft -f` lines in the full sync) | {lines} | | |\n"
            ));
        }
        if let Some(error) = programming["nftables"]["error"].as_str() {
            md.push_str(&format!(
                "| {services} | nftables: not measured ({error}) | | | |\n"
            ));
        }
    }
}

/// The network section of report.md.
pub fn markdown(net: &Value) -> String {
    let mut md = String::from("\n## Service datapath (`cargo xtask bench net`)\n\n");
    let topology = &net["topology"];
    md.push_str(&format!(
        "Backends: {}. Skiff client: {}. kube-proxy client: {}. NodePort client: {}. Every path \
         crosses the same hops (client pod → its node → underlay → backend node → pod). The \
         kube-proxy rows are kube-proxy v1.33's iptables rules generated from the same \
         Services and EndpointSlices, loaded with `iptables-restore` into a node without Skiff; \
         \"rule last\" puts the measured Service's `KUBE-SERVICES` rule after every other \
         Service's (worst case), \"middle\" half way (median). The kube-proxy nftables rows \
         are its nftables mode's table (one `service-ips` verdict map, so no rule position), \
         loaded with `nft -f` into the same node once the iptables rules are flushed. Ratios compare each path with \
         the direct path from the same client: for TCP_RR and TCP_CRR the direct path to the \
         Service's pods in turn (\"direct pod IPs in turn\"; east-west RR runs reconnect every 200 \
         exchanges, so Service and floor alike sample every backend), else to one pod. Each \
         path has its own client port range, so no path meets another's TIME_WAIT; TCP_CRR \
         servers close first, as HTTP servers do. Every path runs in {rounds} rounds of \
         {seconds} s, beside the others of its mode and in reverse order every other round \
         (A B B A); percentiles and rates pool all rounds' requests, CPU and eBPF time are \
         medians of the rounds. The kube-proxy rows run after the Skiff rows (their rules \
         are loaded then), so their floors were measured minutes before them. CPU is the \
         whole machine's busy time per request. A target's 95 % interval comes from a \
         paired bootstrap over the rounds (a round of the path and the same round of its \
         floor drawn together, 2,000 resamples); the Skiff node's floor is also measured \
         a second time as a path of its own (A/A), whose ratio shows how far a ratio moves \
         when nothing differs.\n",
        topology["backends"].as_str().unwrap_or_default(),
        topology["skiff_client"].as_str().unwrap_or_default(),
        topology["bare_client"].as_str().unwrap_or_default(),
        topology["node_port_client"].as_str().unwrap_or_default(),
        rounds = net["plan"]["rounds"],
        seconds = net["plan"]["seconds"],
    ));
    if let Some(why) = net["incomplete"].as_str() {
        md.push_str(&format!(
            "\n**Incomplete run** ({why}): only the scale points below were measured.\n"
        ));
    }
    let check = &net["cross_check"];
    md.push_str(&format!(
        "\nCross-check ({}): wrk {} req/s, p50 {}, p99 {}; skiff-load {:.0} req/s, p50 {} µs, p99 {} µs.\n",
        check["path"].as_str().unwrap_or_default(),
        check["wrk_requests_per_second"],
        check["wrk_p50"].as_str().unwrap_or("?"),
        check["wrk_p99"].as_str().unwrap_or("?"),
        number(&check["skiff_load_requests_per_second"]),
        check["skiff_load_p50_us"],
        check["skiff_load_p99_us"],
    ));
    let scale = net["scale"].as_array().cloned().unwrap_or_default();
    for point in &scale {
        let services = point["services"].as_u64().unwrap_or(0);
        let rows = point["paths"]["rows"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        md.push_str(&format!("\n### {services} Services\n\n"));
        paths_table(&mut md, &rows);
        let nft = &point["paths"]["nftables_full_sync"];
        if let Some(error) = nft["error"].as_str() {
            md.push_str(&format!("\nNo kube-proxy nftables rows: {error}\n"));
        } else if let Some(seconds) = nft["seconds"].as_f64() {
            md.push_str(&format!(
                "\nkube-proxy nftables: its full sync ({} lines of `nft -f`) loaded in {seconds:.2} s.\n",
                nft["lines"]
            ));
            if let Some(error) = nft["rows_error"].as_str() {
                md.push_str(&format!(
                    "Its rows were not measured after the load: {error}\n"
                ));
            }
        }
        ebpf_table(&mut md, &rows);
        targets(&mut md, services, &rows, &point["programming"]);
    }
    programming_table(&mut md, &scale);
    md.push_str(
        "\nPlots: `latency_vs_services.png` (TCP_RR p50 and p99 per path against the number of \
         Services), `programming_vs_services.png` (time to program one Service against the \
         number of Services).\n",
    );
    if net["quick"].as_bool() == Some(true) {
        md.push_str("\n`--quick` run: short measurements and fewer sizes; a smoke test, not a measurement.\n");
    }
    md
}
