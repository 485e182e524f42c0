//! `cargo xtask bench [net|api|pods|sched|all] [--quick]`: benchmarks against a lab running
//! release builds, written to target/bench/<timestamp>/report.json and report.md (and PNG
//! plots for the network suite) with each figure beside its target and its floor (the
//! same operation straight on etcd; the bare network path).

mod net;
mod plots;

use std::process::Command;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::{
    cmd::{Progress, cargo, command, output, run_cmd, workspace_root},
    host,
    lab::{self, Layout, Record},
    setup,
};

/// Which benchmarks.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Suite {
    /// The Service datapath beside kube-proxy's iptables rules and the bare path, at 1,
    /// 1,000 and 10,000 Services; programming cost (3 nodes).
    Net,
    /// The API server: create/get/list/watch at 1k and 10k pods, watch fan-out, RSS.
    Api,
    /// The agent: pod start latency (1 and 30 at once), agent RSS with 100 pods.
    Pods,
    /// The scheduler: pods bound per second over 100 and 1,000 simulated nodes.
    Sched,
    /// Everything available.
    All,
}

/// Arguments of `cargo xtask bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Which benchmarks to run.
    #[arg(value_enum, default_value = "all")]
    pub suite: Suite,
    /// Smaller sizes, for a smoke run (under 5 minutes).
    #[arg(long)]
    pub quick: bool,
    /// `net` only: measure the lab already up (`cargo xtask up`, debug builds, 3 nodes)
    /// instead of a fresh one on release builds — for trying the benchmark, not for figures.
    #[arg(long)]
    pub current_lab: bool,
    /// Write report.md and the plots again from DIR/report.json (after a change to the
    /// report's layout); measures nothing.
    #[arg(long, value_name = "DIR")]
    pub render: Option<std::path::PathBuf>,
}

/// `--render`: report.md and the plots of an existing report, from its report.json.
fn render(dir: &std::path::Path) -> Result<()> {
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (a directory under target/bench/)",
            path.display()
        )
    })?;
    let report: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a benchmark report", path.display()))?;
    if !report["net"].is_null() {
        plots::network(&report["net"], dir)?;
    }
    std::fs::write(dir.join("report.md"), markdown(&report))?;
    eprintln!("report: {}", dir.join("report.md").display());
    Ok(())
}

/// `skiff-bench net --quick` (debug builds) against the running lab of `cargo xtask test`;
/// the report goes to the lab's logs (report JSON, Markdown, plots).
pub fn net_smoke(layout: &Layout, nodes: usize) -> Result<()> {
    let dir = layout.logs().join("bench-net-smoke");
    std::fs::create_dir_all(&dir)?;
    let report = net::run_on(layout, nodes, true, "debug")?;
    let report = json!({"date": "smoke", "machine": machine(), "net": report});
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    plots::network(&report["net"], &dir)?;
    std::fs::write(dir.join("report.md"), markdown(&report))?;
    eprintln!("      smoke report: {}", dir.join("report.md").display());
    net::ensure_complete(&report["net"])
}

/// Entry point.
pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(dir) = &args.render {
        return render(dir);
    }
    host::require_root("bench")?;
    setup::ensure()?;
    let stamp = output(&mut command("date", ["-u", "+%Y%m%d-%H%M%S"]))?
        .trim()
        .to_owned();
    let dir = workspace_root().join("target").join("bench").join(&stamp);
    std::fs::create_dir_all(&dir)?;
    if args.current_lab {
        anyhow::ensure!(
            args.suite == Suite::Net,
            "--current-lab runs the network suite only: cargo xtask bench net --current-lab"
        );
        let layout = Layout::current();
        let nodes = Record::load(&layout)?
            .context("no lab is up: run cargo xtask up first")?
            .nodes;
        let network = net::run_on(&layout, nodes, args.quick, "debug")?;
        let report = json!({"date": stamp, "machine": machine(), "net": network});
        std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
        plots::network(&report["net"], &dir)?;
        std::fs::write(dir.join("report.md"), markdown(&report))?;
        println!("{}", markdown(&report));
        eprintln!("report: {}", dir.join("report.md").display());
        return net::ensure_complete(&report["net"]);
    }
    let layout = Layout::release();
    let run_api_suite = matches!(args.suite, Suite::Api | Suite::All);
    let run_pods_suite = matches!(args.suite, Suite::Pods | Suite::All);
    let run_sched_suite = matches!(args.suite, Suite::Sched | Suite::All);
    let run_net_suite = matches!(args.suite, Suite::Net | Suite::All);
    let control_plane = run_api_suite || run_pods_suite || run_sched_suite;
    let mut progress = Progress::new("bench", 8);
    progress.step("build release binaries", || {
        run_cmd(cargo().args([
            "build",
            "--quiet",
            "--release",
            "--bins",
            "-p",
            "skiff-control",
            "-p",
            "skiff-agent",
            "-p",
            "skiff-tests",
            "-p",
            "skiff-load",
        ]))
    })?;
    if control_plane {
        progress.step("fresh lab on release builds (1 node)", || {
            if lab::down::anything_left(&layout) {
                lab::teardown(&layout)?;
            }
            lab::bring_up(&layout, 1, false)
        })?;
    } else {
        progress.step("control plane lab: not needed", || Ok(()))?;
    }
    let api = if run_api_suite {
        progress.step("API server benchmark", || run_api(&layout, args.quick))
    } else {
        progress.step("API server benchmark: skipped", || Ok(Value::Null))
    };
    let pods = if run_pods_suite && api.is_ok() {
        progress.step("pod start benchmark", || run_pods(&layout, args.quick))
    } else {
        progress.step("pod start benchmark: skipped", || Ok(Value::Null))
    };
    let sched = if run_sched_suite && api.is_ok() && pods.is_ok() {
        progress.step("scheduler benchmark", || run_sched(&layout, args.quick))
    } else {
        progress.step("scheduler benchmark: skipped", || Ok(Value::Null))
    };
    let down = progress.step("lab down", || {
        if control_plane {
            lab::teardown(&layout)
        } else {
            Ok(())
        }
    });
    let api = api?;
    let pods = pods?;
    let sched = sched?;
    down?;
    let network = if run_net_suite {
        progress.step("network benchmark (fresh 3-node lab)", || {
            net::run(&layout, args.quick)
        })?
    } else {
        progress.step("network benchmark: skipped", || Ok(Value::Null))?
    };
    let report = json!({"date": stamp, "machine": machine(), "net": network, "api": api, "pods": pods, "sched": sched});
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    if !report["net"].is_null() {
        plots::network(&report["net"], &dir)?;
    }
    std::fs::write(dir.join("report.md"), markdown(&report))?;
    println!("{}", markdown(&report));
    eprintln!("report: {}", dir.join("report.md").display());
    net::ensure_complete(&report["net"])
}

/// `skiff-bench SUITE --kubeconfig … --<PID_FLAG> <pid of the daemon> [EXTRA] [--quick]`,
/// its stdout parsed as the suite's JSON report.
fn run_suite(
    layout: &Layout,
    suite: &str,
    pid_flag: &str,
    pid: i32,
    extra: &[&str],
    quick: bool,
) -> Result<Value> {
    let mut cmd = Command::new(layout.bin("skiff-bench"));
    cmd.arg(suite)
        .arg("--kubeconfig")
        .arg(layout.kubeconfig())
        .arg(pid_flag)
        .arg(pid.to_string())
        .args(extra);
    if quick {
        cmd.arg("--quick");
    }
    let out = output(&mut cmd)?;
    serde_json::from_str(&out).with_context(|| format!("skiff-bench {suite} printed no JSON"))
}

/// The pid of the lab's skiff-control.
fn control_pid(layout: &Layout) -> Result<i32> {
    let record = Record::load(layout)?.context("the lab has no record")?;
    record
        .daemons
        .iter()
        .find(|d| d.name == "skiff-control")
        .map(|d| d.pid)
        .context("no skiff-control in the lab")
}

fn run_api(layout: &Layout, quick: bool) -> Result<Value> {
    // The authorization comparison: an ordinary user's kubeconfig, and a second API server
    // on the same etcd with authorization off.
    let user_kubeconfig = layout.root.join("bench-user.kubeconfig");
    lab::write_kubeconfig(layout, "bench-user", &[], &user_kubeconfig)?;
    let open = lab::start_extra_control(
        layout,
        "bench-authz-off",
        AUTHZ_OFF_PORT,
        &["--authorization-mode", "AlwaysAllow"],
    )?;
    let result = run_suite(
        layout,
        "api",
        "--control-pid",
        control_pid(layout)?,
        &[
            "--etcd",
            &layout.etcd_url(),
            "--etcd-pki",
            &layout.etcd_pki().to_string_lossy(),
            "--user-kubeconfig",
            &user_kubeconfig.to_string_lossy(),
            "--authz-off-server",
            &format!("https://127.0.0.1:{AUTHZ_OFF_PORT}"),
        ],
        quick,
    );
    drop(open);
    result
}

/// Where the authorization-off API server listens during `bench api`.
const AUTHZ_OFF_PORT: u16 = 6444;

fn run_sched(layout: &Layout, quick: bool) -> Result<Value> {
    run_suite(
        layout,
        "sched",
        "--control-pid",
        control_pid(layout)?,
        &[],
        quick,
    )
}

/// The pod start benchmark on the first agent's node.
fn run_pods(layout: &Layout, quick: bool) -> Result<Value> {
    let record = Record::load(layout)?.context("the lab has no record")?;
    let agent = record
        .daemons
        .iter()
        .find(|d| d.name.starts_with("agent/"))
        .context("no agent in the lab")?;
    let node = agent.name.trim_start_matches("agent/");
    // The floor (containerd + runc alone) starts the same image from its archive.
    let containerd = layout.containerd_socket();
    let archive = crate::images::archive_dir().join("echo.tar");
    let (containerd, archive) = (containerd.to_string_lossy(), archive.to_string_lossy());
    run_suite(
        layout,
        "pods",
        "--agent-pid",
        agent.pid,
        &[
            "--node",
            node,
            "--containerd",
            &containerd,
            "--echo-archive",
            &archive,
        ],
        quick,
    )
}

fn first_line(path: &str, prefix: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(String::new, |v| v.trim().to_owned())
}

fn machine() -> Value {
    json!({
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": first_line("/proc/cpuinfo", "model name"),
        "memory": first_line("/proc/meminfo", "MemTotal"),
    })
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn row<'a>(rows: &'a [Value], starts: &str) -> Option<&'a Value> {
    rows.iter()
        .rfind(|r| r["name"].as_str().is_some_and(|n| n.starts_with(starts)))
}

fn markdown(report: &Value) -> String {
    let mut md = String::new();
    let m = &report["machine"];
    md.push_str(&format!(
        "# Skiff benchmarks — {}\n\nMachine: Linux {}, {} cores ({}), {} memory. Release builds, one lab on this machine.\n",
        report["date"].as_str().unwrap_or_default(),
        m["kernel"].as_str().unwrap_or_default(),
        m["cores"],
        m["cpu"].as_str().unwrap_or_default(),
        m["memory"].as_str().unwrap_or_default(),
    ));
    if !report["net"].is_null() {
        md.push_str(&net::markdown(&report["net"]));
    }
    if !report["api"].is_null() {
        md.push_str(&api_markdown(&report["api"]));
    }
    if !report["pods"].is_null() {
        md.push_str(&pods_markdown(&report["pods"]));
    }
    if !report["sched"].is_null() {
        md.push_str(&sched_markdown(&report["sched"]));
    }
    md
}

fn sched_markdown(sched: &Value) -> String {
    let mut md = String::from(
        "\n## Scheduler (`cargo xtask bench sched`, simulated nodes with fresh Leases, no agents)\n\n\
         | nodes | pods | bound | seconds | pods/s | target | verdict |\n|---:|---:|---:|---:|---:|---|---|\n",
    );
    for run in sched["runs"].as_array().into_iter().flatten() {
        let nodes = run["nodes"].as_u64().unwrap_or(0);
        let rate = number(&run["pods_per_second"]);
        let (target, verdict) = if nodes >= 1000 {
            (
                "≥ 1,000 pods/s at 1,000 nodes",
                if rate >= 1000.0 { "met" } else { "NOT met" },
            )
        } else {
            ("(kube-scheduler CI floor: 680 pods/s at 5k nodes)", "—")
        };
        md.push_str(&format!(
            "| {nodes} | {} | {} | {:.2} | {rate:.0} | {target} | {verdict} |\n",
            run["pods"],
            run["bound"],
            number(&run["seconds"])
        ));
    }
    md
}

fn rows_table(md: &mut String, rows: &[Value]) {
    md.push_str("| operation | n | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | per s | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {} |\n",
            r["name"].as_str().unwrap_or_default(),
            r["count"],
            number(&r["p50_ms"]),
            number(&r["p90_ms"]),
            number(&r["p99_ms"]),
            number(&r["p999_ms"]),
            number(&r["max_ms"]),
            number(&r["per_second"]),
            r["errors"],
        ));
    }
}

fn pods_markdown(pods: &Value) -> String {
    let mut md = String::new();
    let rows = pods["rows"].as_array().cloned().unwrap_or_default();
    md.push_str(&format!(
        "\n## Pod start (`cargo xtask bench pods`, node {}, image present)\n\n",
        pods["node"].as_str().unwrap_or_default()
    ));
    rows_table(&mut md, &rows);
    if let Some(quiet) = pods["settle"]["quiet_below"].as_f64() {
        md.push_str(&format!(
            "\nEach timed batch starts on a quiet node (CPU below {:.0} % over half a second, \
             after the previous batch's pods are gone: the kernel destroys their network \
             namespaces after that); waiting for it took {:.1} s in all.\n",
            quiet * 100.0,
            number(&pods["settle"]["seconds_waited"])
        ));
    }
    // One column per variant; reports before the floor and crun rows have one, unnamed.
    let columns: Vec<(String, Value)> = match pods["burst_cpu"].as_array() {
        Some(variants) => variants
            .iter()
            .map(|v| {
                let label = v["label"].as_str().unwrap_or_default().to_owned();
                (label, v["cpu"].clone())
            })
            .collect(),
        None => vec![("pod start".to_owned(), pods["burst_cpu_ms_per_pod"].clone())],
    };
    cpu_table(&mut md, &columns);
    for floor in pods["burst_steps"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "\nThe containerd calls of {}, 30 at once (each container's own call):\n\n\
             | call | p50 ms | p99 ms |\n|---|---:|---:|\n",
            floor["label"].as_str().unwrap_or_default()
        ));
        for step in floor["steps"].as_array().into_iter().flatten() {
            md.push_str(&format!(
                "| {} | {:.1} | {:.1} |\n",
                step["step"].as_str().unwrap_or_default(),
                number(&step["p50_ms"]),
                number(&step["p99_ms"])
            ));
        }
    }
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let resident = pods["sizes"]["resident"].as_u64().unwrap_or(0);
    let rss = number(&pods["agent_rss_mib"]["with_pods"]);
    md.push_str("\n| target | measured | verdict |\n|---|---|---|\n");
    for (name, prefix, floor_prefix) in [
        (
            "1 at a time",
            "pod start, 1 at a time",
            "containerd + runc alone (floor), 1 at a time",
        ),
        (
            "30 at once",
            "pod start, 30 at once",
            "containerd + runc alone (floor), 30 at once",
        ),
    ] {
        let quantile =
            |prefix: &str, field: &str| row(&rows, prefix).map_or(f64::NAN, |r| number(&r[field]));
        for (target, field, limit) in [
            ("p50 ≤ 300 ms", "p50_ms", 300.0),
            ("p99 ≤ 1 s", "p99_ms", 1000.0),
        ] {
            let skiff = quantile(prefix, field);
            let floor = quantile(floor_prefix, field);
            md.push_str(&format!(
                "| start {target}, {name} | {skiff:.0} ms (containerd + runc alone: {floor:.0} ms) | {} |\n",
                verdict(skiff <= limit)
            ));
        }
    }
    md.push_str(&format!(
        "| agent RSS ≤ 40 MiB with {resident} pods | {rss:.1} MiB (heap and stacks {:.1} MiB, \
         binary pages shared by all agents {:.1} MiB; idle {:.1} MiB) | {} |\n",
        number(&pods["agent_rss_mib"]["with_pods_anon"]),
        number(&pods["agent_rss_mib"]["with_pods_file"]),
        number(&pods["agent_rss_mib"]["idle"]),
        verdict(rss <= 40.0)
    ));
    md
}

/// CPU per start, 30 at once: a row per process, a column per `(label, CpuPerPod report)`
/// (`{"roles": [{"process", "ms"}], "total"}`); nothing if no column has roles.
fn cpu_table(md: &mut String, columns: &[(String, Value)]) {
    let Some(roles) = columns.iter().find_map(|(_, cpu)| cpu["roles"].as_array()) else {
        return;
    };
    md.push_str(
        "\nCPU per start, 30 at once, ms (user and system time of the lab's processes and of \
         the children they waited for, from /proc/<pid>/stat; kernel workers not counted):\n\n\
         | process |",
    );
    for (label, _) in columns {
        md.push_str(&format!(" {label} |"));
    }
    md.push_str(&format!("\n|---|{}\n", "---:|".repeat(columns.len())));
    let ms = |cpu: &Value, i: usize| number(&cpu["roles"][i]["ms"]);
    for (i, role) in roles.iter().enumerate() {
        md.push_str(&format!(
            "| {} |",
            role["process"].as_str().unwrap_or_default()
        ));
        for (_, cpu) in columns {
            md.push_str(&format!(" {:.1} |", ms(cpu, i)));
        }
        md.push('\n');
    }
    md.push_str("| all of these |");
    for (_, cpu) in columns {
        md.push_str(&format!(" {:.1} |", number(&cpu["total"])));
    }
    md.push('\n');
}

fn api_markdown(api: &Value) -> String {
    let mut md = String::new();
    let rows = api["rows"].as_array().cloned().unwrap_or_default();
    md.push_str("\n## API server (`cargo xtask bench api`)\n\n");
    rows_table(&mut md, &rows);
    let large = api["sizes"]["large"].as_u64().unwrap_or(0);
    let watchers = api["sizes"]["watchers"].as_u64().unwrap_or(0);
    let floor = row(&rows, "etcd put").map_or(0.0, |r| number(&r["p99_ms"]));
    let create_8 = row(&rows, "create pod (0→").map_or(f64::NAN, |r| number(&r["p99_ms"]));
    let create_32 = row(&rows, &format!("create pod ({}→", api["sizes"]["small"]))
        .map_or(f64::NAN, |r| number(&r["p99_ms"]));
    let list =
        row(&rows, &format!("list {large} pods (one")).map_or(f64::NAN, |r| number(&r["p99_ms"]));
    let delivery = row(&rows, "watch event delivery").map_or(f64::NAN, |r| number(&r["p99_ms"]));
    let rss = number(&api["rss_mib"]["after_large"]);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    md.push_str("\n| target | measured | verdict |\n|---|---|---|\n");
    for (load, create) in [
        ("8 requests in flight", create_8),
        ("32 requests in flight", create_32),
    ] {
        md.push_str(&format!(
            "| create p99 ≤ 10 ms, {load} | {create:.2} ms (etcd put floor p99 {floor:.2} ms) | {} |\n",
            verdict(create <= 10.0)
        ));
    }
    md.push_str(&format!(
        "| list of {large} pods ≤ 300 ms | p99 {list:.1} ms | {} |\n",
        verdict(list <= 300.0)
    ));
    md.push_str(&format!(
        "| event delivery p99 ≤ 20 ms to {watchers} watchers | {delivery:.2} ms | {} |\n",
        verdict(delivery <= 20.0)
    ));
    md.push_str(&format!(
        "| RSS ≤ 200 MiB at {large} pods | {rss:.0} MiB | {} |\n",
        verdict(rss <= 200.0)
    ));
    let authz = &api["authz"];
    if !authz.is_null() {
        md.push_str("\n### Authorization cost (RBAC on and off, same run, rounds A B B A)\n\n");
        let authz_rows = authz["rows"].as_array().cloned().unwrap_or_default();
        rows_table(&mut md, &authz_rows);
        let ratio = number(&authz["p99_ratio"]);
        md.push_str(&format!(
            "\n| target | measured | verdict |\n|---|---|---|\n| create p99 with RBAC ({} RoleBindings) ≤ 1.10× with authorization off | {ratio:.3}× (p50 {:.3}×) | {} |\n",
            authz["bindings"],
            number(&authz["p50_ratio"]),
            verdict(ratio <= 1.10)
        ));
    }
    let custom = &api["custom"];
    if !custom.is_null() {
        md.push_str("\n### Custom resources beside ConfigMaps (same run, rotating rounds)\n\n");
        let custom_rows = custom["rows"].as_array().cloned().unwrap_or_default();
        rows_table(&mut md, &custom_rows);
        let create = number(&custom["create_p99_ratio"]);
        let list = number(&custom["list_p99_ratio"]);
        md.push_str(&format!(
            "\n| target | measured | verdict |\n|---|---|---|\n\
             | custom resource create p99 ≤ 1.2× ConfigMap's | {create:.3}× | {} |\n\
             | list of {} custom resources p99 ≤ 1.2× ConfigMaps' | {list:.3}× | {} |\n\
             \nSchema validation (types, enum, pattern, format, bounds, defaults, a CEL rule, a list map) costs {:.3} ms per object at p50 (validated create minus unvalidated).\n",
            verdict(create <= 1.2),
            custom["listed"],
            verdict(list <= 1.2),
            number(&custom["schema_cost_p50_ms"]),
        ));
    }
    if api["sizes"]["quick"].as_bool() == Some(true) {
        md.push_str("\n`--quick` run: smaller sizes than the targets name; a smoke test, not a measurement.\n");
    }
    md
}
