//! Starting the lab's daemons detached, and stopping them (and only them).

use std::{
    fs::File,
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use super::{probe::alive, record::Daemon};

/// Start `cmd` in its own process group with stdout/stderr appended to `log`.
pub fn spawn(name: &str, mut cmd: Command, log: &Path, health: String) -> Result<Daemon> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    let command = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    Ok(Daemon {
        name: name.to_owned(),
        pid,
        log: log.to_path_buf(),
        health,
        command,
    })
}

/// Pids of every process whose command line mentions `lab_root` (daemons, shims, children).
pub fn processes_mentioning(lab_root: &Path) -> Vec<i32> {
    let needle = lab_root.to_string_lossy().into_owned();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| u32::try_from(*pid).is_ok_and(|p| p != me))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// SIGTERM each pid, wait up to `grace` for all to exit, then SIGKILL the rest.
/// Returns the pids that had to be killed.
pub fn stop(pids: &[i32], grace: Duration) -> Vec<i32> {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let started = Instant::now();
    while started.elapsed() < grace && pids.iter().any(|p| alive(*p)) {
        reap(pids);
        std::thread::sleep(Duration::from_millis(50));
    }
    let stubborn: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    for pid in &stubborn {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) && stubborn.iter().any(|p| alive(*p)) {
        reap(pids);
        std::thread::sleep(Duration::from_millis(50));
    }
    reap(pids);
    stubborn
}

/// Collect exit statuses of pids that are our own children, so they do not linger as zombies.
fn reap(pids: &[i32]) {
    for pid in pids {
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(*pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
    }
}
