//! `cargo xtask test`: the whole test pipeline, exactly what CI runs.
//!
//! setup → fmt → clippy → unit tests → fuzz targets (20 s each) → a fresh lab → end-to-end tests → the kubectl
//! sessions again with kubectl.1.33 itself → the custom-resource sessions with kubectl 1.27 → the network
//! benchmark's quick run (smoke) → down → the after-down checks. The lab is torn down even
//! when a step fails.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{
    bench,
    cmd::{Progress, cargo, run_cmd, workspace_root},
    host,
    lab::{self, Layout},
    setup,
};

/// The e2e test target that runs after `down` and checks nothing of the lab is left.
const TEARDOWN_TARGET: &str = "teardown";

/// The e2e targets that are kubectl sessions: run once with the kubectl on PATH (the
/// Cloud SDK dispatcher) and once with the versioned binary itself.
const KUBECTL_TARGETS: [&str; 5] = ["apply", "crd", "kubectl", "tables", "validation"];

/// The sessions that also run with the oldest kubectl on the machine (client-side
/// validation, discovery of custom resources and aggregated APIs differ most between
/// versions; admission warnings are printed by each version itself).
const OLDEST_KUBECTL_TARGETS: [&str; 4] = ["aggregation", "crd", "validation", "webhooks"];

/// The oldest kubectl on the machine.
const KUBECTL_OLDEST: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";

/// How long each fuzz target runs in `test` (a smoke run; `cargo xtask fuzz` for longer).
const FUZZ_SECONDS: u32 = 20;

/// The versioned kubectl the sessions run with a second time.
const KUBECTL_1_33: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

/// Arguments of `cargo xtask test`.
#[derive(Args, Debug, Clone)]
pub struct TestArgs {
    /// Nodes in the lab the end-to-end tests run against.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Only run the checks and unit tests (no lab, no end-to-end tests).
    #[arg(long)]
    pub unit_only: bool,
    /// Leave the lab running after the end-to-end tests (skips the after-down checks).
    #[arg(long)]
    pub keep_lab: bool,
}

/// Entry point of `cargo xtask test`.
pub fn run(args: &TestArgs) -> Result<()> {
    host::require_root("test")?;
    setup::ensure()?;
    let steps = if args.unit_only { 4 } else { 11 };
    let mut progress = Progress::new("test", steps);
    progress.step("cargo fmt --check", || {
        run_cmd(cargo().args(["fmt", "--all", "--", "--check"]))?;
        run_cmd(cargo().args([
            "fmt",
            "--manifest-path",
            "ebpf/programs/Cargo.toml",
            "--",
            "--check",
        ]))
    })?;
    progress.step("cargo clippy --all-targets -D warnings", || {
        run_cmd(cargo().args([
            "clippy",
            "--quiet",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    progress.step("unit tests", || {
        run_cmd(cargo().args(["test", "--workspace", "--exclude", "skiff-tests"]))?;
        // The e2e crate's own unit tests (the kube-proxy rule generator) need no lab.
        run_cmd(cargo().args(["test", "-p", "skiff-tests", "--lib"]))
    })?;
    progress.step(
        &format!("fuzz targets, {FUZZ_SECONDS} s each (cargo xtask fuzz)"),
        || {
            crate::fuzz::run(&crate::fuzz::FuzzArgs {
                seconds: FUZZ_SECONDS,
                thorough: false,
            })
        },
    )?;
    if args.unit_only {
        return Ok(());
    }
    progress.step("build end-to-end tests", || {
        run_cmd(cargo().args(["test", "--quiet", "-p", "skiff-tests", "--no-run"]))
    })?;
    let layout = Layout::current();
    if lab::down::anything_left(&layout) {
        eprintln!(
            "A lab is present; the end-to-end tests need a fresh one, so it goes down first."
        );
        lab::teardown(&layout)?;
    }
    let e2e = progress.step(
        &format!("lab up ({} nodes) and end-to-end tests", args.nodes),
        || {
            lab::bring_up(&layout, args.nodes, true)?;
            run_cmd(&mut e2e_command(&layout, args.nodes, &e2e_targets()?))
        },
    );
    let e2e = e2e.and_then(|()| {
        progress.step("kubectl sessions again with kubectl.1.33 itself", || {
            if !std::path::Path::new(KUBECTL_1_33).exists() {
                bail!("{KUBECTL_1_33} is missing: `cargo xtask setup` installs it");
            }
            let targets: Vec<String> = KUBECTL_TARGETS.iter().map(|t| (*t).to_owned()).collect();
            let mut cmd = e2e_command(&layout, args.nodes, &targets);
            cmd.env("SKIFF_KUBECTL", KUBECTL_1_33);
            run_cmd(&mut cmd)
        })
    });
    let e2e = e2e.and_then(|()| {
        progress.step("custom-resource sessions with the oldest kubectl (1.27)", || {
            if !std::path::Path::new(KUBECTL_OLDEST).exists() {
                bail!("{KUBECTL_OLDEST} is missing: it comes with the Cloud SDK's kubectl versions");
            }
            let targets: Vec<String> =
                OLDEST_KUBECTL_TARGETS.iter().map(|t| (*t).to_owned()).collect();
            let mut cmd = e2e_command(&layout, args.nodes, &targets);
            cmd.env("SKIFF_KUBECTL", KUBECTL_OLDEST);
            run_cmd(&mut cmd)
        })
    });
    // The network benchmark's quick run as a smoke test on the same lab: it must run and
    // report; its figures (debug builds, a loaded machine) are not judged here.
    let smoke = if e2e.is_ok() {
        progress.step("bench net --quick (smoke, no timing checks)", || {
            bench::net_smoke(&layout, args.nodes)
        })
    } else {
        progress.step(
            "bench net --quick: skipped (end-to-end tests failed)",
            || Ok(()),
        )
    };
    if args.keep_lab {
        e2e?;
        return smoke;
    }
    let down = progress.step("lab down", || lab::teardown(&layout));
    e2e?;
    smoke?;
    down?;
    progress.step("after-down checks", || {
        let mut cmd = e2e_command(&layout, args.nodes, &[TEARDOWN_TARGET.to_owned()]);
        cmd.env("SKIFF_LAB_TORN_DOWN", "1");
        run_cmd(&mut cmd)
    })?;
    eprintln!("cargo xtask test: all steps passed");
    Ok(())
}

/// The e2e test targets (files in tests/tests/), except the after-down checks.
fn e2e_targets() -> Result<Vec<String>> {
    let dir = workspace_root().join("tests").join("tests");
    let mut targets: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.path().file_stem()?.to_str().map(str::to_owned))
        .filter(|name| name != TEARDOWN_TARGET)
        .collect();
    targets.sort();
    if targets.is_empty() {
        bail!("no end-to-end tests found in {}", dir.display());
    }
    Ok(targets)
}

/// `cargo test -p skiff-tests --test …` with the lab described in the environment.
fn e2e_command(layout: &Layout, nodes: usize, targets: &[String]) -> Command {
    let mut cmd = cargo();
    cmd.args(["test", "-p", "skiff-tests"]);
    for target in targets {
        cmd.args(["--test", target]);
    }
    let xtask: PathBuf = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("xtask"));
    cmd.env("SKIFF_LAB_DIR", &layout.root)
        .env("SKIFF_LAB_NODES", nodes.to_string())
        .env("SKIFF_XTASK_BIN", xtask)
        .env(
            "SKIFF_BIN_DIR",
            workspace_root().join("target").join("debug"),
        );
    cmd
}
