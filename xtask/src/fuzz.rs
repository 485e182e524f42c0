//! `cargo xtask fuzz`: the libFuzzer targets of `fuzz/` (bodies decoded into every kind's
//! strategy, selectors, quantities, patches), each for a bounded time, starting from the
//! committed seeds. `cargo xtask test` runs it briefly on every run; a crash fails the run
//! and leaves its input in `fuzz/artifacts/<target>/`.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;

use crate::cmd::{Progress, run_cmd, workspace_root};

/// The fuzz targets, in `fuzz/fuzz_targets/`.
pub const TARGETS: [&str; 4] = ["decode_strategy", "selectors", "quantity", "patches"];

/// Arguments of `cargo xtask fuzz`.
#[derive(Args, Debug, Clone)]
pub struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 60)]
    pub seconds: u32,
    /// Build as `cargo fuzz` does by default (release, AddressSanitizer) instead of the
    /// quicker-to-build debug build without a sanitizer that CI uses.
    #[arg(long)]
    pub thorough: bool,
}

/// `cargo +nightly fuzz <args>` in the workspace root.
fn cargo_fuzz(args: &[&str], thorough: bool) -> std::process::Command {
    let mut cmd = std::process::Command::new("cargo");
    cmd.current_dir(workspace_root())
        .arg("+nightly")
        .arg("fuzz");
    cmd.args(args);
    if !thorough {
        // A debug build without AddressSanitizer builds in a fraction of the time; Rust's
        // own checks (overflow, bounds, unwrap) still turn every panic into a crash.
        cmd.args(["--dev", "--sanitizer", "none"]);
    }
    cmd
}

/// Run every target for `args.seconds`.
pub fn run(args: &FuzzArgs) -> Result<()> {
    crate::setup::ensure_cargo_fuzz()?;
    let root = workspace_root();
    let mut progress = Progress::new("fuzz", TARGETS.len() + 1);
    progress.step("build the fuzz targets", || {
        run_cmd(&mut cargo_fuzz(&["build"], args.thorough))
    })?;
    for target in TARGETS {
        progress.step(&format!("{target} for {} s", args.seconds), || {
            let corpus = root.join("fuzz/corpus").join(target);
            std::fs::create_dir_all(&corpus)
                .with_context(|| format!("creating {}", corpus.display()))?;
            let seeds = root.join("fuzz/seeds").join(target);
            let time = format!("-max_total_time={}", args.seconds);
            let corpus_arg = path_arg(&corpus);
            let seeds_arg = path_arg(&seeds);
            let mut cmd = cargo_fuzz(&["run", target, &corpus_arg, &seeds_arg], args.thorough);
            cmd.args(["--", &time, "-print_final_stats=1"]);
            run_cmd(&mut cmd).with_context(|| {
                format!("fuzz target {target} found a crash: see fuzz/artifacts/{target}/")
            })
        })?;
    }
    Ok(())
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
