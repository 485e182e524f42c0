//! `cargo xtask stop|start|restart <component>`: one lab daemon at a time, by the name
//! `status` shows (`etcd`, `containerd`, `skiff-control`, `agent/skiff-node-1`). Used by the
//! restart tests and by people poking at the lab.

use std::{process::Command, time::Duration};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use super::{
    daemons,
    layout::Layout,
    probe::{alive, http_get, wait_until},
    record::{Daemon, Record},
    up::ctr,
};
use crate::host;

/// What to do with the component.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Action {
    /// Stop it (SIGTERM, or SIGKILL with --kill).
    Stop,
    /// Start it again with its recorded command line.
    Start,
    /// Stop, then start.
    Restart,
}

/// Arguments of `cargo xtask component`.
#[derive(Args, Debug, Clone)]
pub struct ComponentArgs {
    /// stop, start or restart.
    pub action: Action,
    /// Component name as `cargo xtask status` shows it.
    pub name: String,
    /// Stop with SIGKILL (a crash) instead of SIGTERM.
    #[arg(long)]
    pub kill: bool,
}

/// Entry point.
pub fn run(args: &ComponentArgs) -> Result<()> {
    host::require_root("component")?;
    let layout = Layout::current();
    let mut record =
        Record::load(&layout)?.context("no lab is running: start one with `cargo xtask up`")?;
    let index = record
        .daemons
        .iter()
        .position(|d| d.name == args.name)
        .with_context(|| {
            let names: Vec<&str> = record.daemons.iter().map(|d| d.name.as_str()).collect();
            format!(
                "no component {:?} in the lab; components: {}",
                args.name,
                names.join(", ")
            )
        })?;
    if matches!(args.action, Action::Stop | Action::Restart) {
        stop(&record.daemons[index], args.kill);
    }
    if matches!(args.action, Action::Start | Action::Restart) {
        let daemon = start(&record.daemons[index])?;
        record.daemons[index] = daemon;
        record.save(&layout)?;
        wait_healthy(&layout, &record.daemons[index])?;
    }
    Ok(())
}

fn stop(daemon: &Daemon, kill: bool) {
    if !alive(daemon.pid) {
        return;
    }
    if kill {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(daemon.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = wait_until(Duration::from_secs(5), || {
            if alive(daemon.pid) {
                bail!("still running")
            } else {
                Ok(())
            }
        });
    } else {
        daemons::stop(&[daemon.pid], Duration::from_secs(10));
    }
}

fn start(daemon: &Daemon) -> Result<Daemon> {
    if alive(daemon.pid) {
        bail!("{} is already running (pid {})", daemon.name, daemon.pid);
    }
    let (program, args) = daemon
        .command
        .split_first()
        .context("the lab record has no command line for this component")?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    daemons::spawn(&daemon.name, cmd, &daemon.log, daemon.health.clone())
}

fn wait_healthy(layout: &Layout, daemon: &Daemon) -> Result<()> {
    wait_until(Duration::from_secs(60), || {
        if !alive(daemon.pid) {
            bail!("{} exited; see {}", daemon.name, daemon.log.display());
        }
        if daemon.name == "containerd" {
            return ctr(&layout.containerd_socket(), &["version"]).map(drop);
        }
        let url = daemon
            .health
            .strip_prefix("http://")
            .context("no health URL")?;
        let (addr, path) = url.split_once('/').unwrap_or((url, ""));
        let body = http_get(addr.parse()?, &format!("/{path}"))?;
        if daemon.name == "etcd" && !body.contains("true") {
            bail!("etcd /health says {body}");
        }
        Ok(())
    })
    .with_context(|| format!("{} did not become healthy", daemon.name))
}
