//! `cargo xtask`: Skiff's developer tasks.
//!
//! - `setup`: install what is missing (Debian packages, nightly rust-src, bpf-linker) and
//!   check the host (root, bpffs, cgroup2, BTF).
//! - `up` / `down` / `status`: the local multi-node lab (see ARCHITECTURE.md, "The lab").
//! - `test`: fmt, clippy, unit tests, a short fuzz run, then end-to-end tests against a
//!   fresh lab.
//! - `fuzz`: the libFuzzer targets of `fuzz/`, each for a bounded time.
#![forbid(unsafe_code)]

mod bench;
mod cmd;
mod fuzz;
mod generate;
mod host;
mod images;
mod lab;
mod setup;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Skiff developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install missing prerequisites and check the host. Idempotent.
    Setup,
    /// Build Skiff and bring up the local lab cluster (etcd, containerd, control plane, agents).
    Up(lab::UpArgs),
    /// Stop everything `up` started and remove the lab's namespaces, links, cgroups and pins.
    Down,
    /// Show every lab component and node with its health.
    Status,
    /// Stop, start or restart one lab component (e.g. `restart skiff-control`).
    Component(lab::ComponentArgs),
    /// Build the lab's test images (busybox, skiff/echo) offline into target/images/ and push
    /// them to the lab registry when the lab is up.
    Images(images::ImagesArgs),
    /// fmt, clippy, unit tests, then end-to-end tests against a lab brought up for the run.
    Test(test::TestArgs),
    /// Benchmarks against a lab on release builds; report in target/bench/<timestamp>/.
    Bench(bench::BenchArgs),
    /// Run the fuzz targets of fuzz/ (libFuzzer, nightly) for a bounded time each.
    Fuzz(fuzz::FuzzArgs),
    /// Regenerate control/src/protobuf/schema.rs from the pinned k8s-pb and k8s-openapi.
    GenerateProtoSchema,
}

fn main() {
    let cli = Cli::parse();
    let result: Result<()> = match cli.task {
        Task::Setup => setup::run(),
        Task::Up(args) => lab::up(&args),
        Task::Down => lab::down(),
        Task::Status => lab::status(),
        Task::Component(args) => lab::component(&args),
        Task::Test(args) => test::run(&args),
        Task::Images(args) => images::run(&args),
        Task::GenerateProtoSchema => generate::run(),
        Task::Bench(args) => bench::run(&args),
        Task::Fuzz(args) => fuzz::run(&args),
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
