//! `cargo xtask down`: stop what `up` started and remove everything the lab created.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, bail};

use super::{
    daemons,
    layout::{self, Layout},
    network,
    record::Record,
};
use crate::{
    cmd::{command, output},
    host,
};

/// Entry point of `cargo xtask down`.
pub fn down() -> Result<()> {
    host::require_root("down")?;
    let layout = Layout::current();
    if !anything_left(&layout) {
        eprintln!("No lab is running and nothing of one is left.");
        return Ok(());
    }
    teardown(&layout)?;
    eprintln!(
        "The lab is down: processes stopped; namespaces, links, cgroups and pins removed (logs kept in {}).",
        layout.logs().display()
    );
    Ok(())
}

/// Everything of a lab that may be present, described for messages (empty = nothing left).
pub fn leftovers(layout: &Layout) -> Vec<String> {
    let mut found = Vec::new();
    if layout.record_file().exists() {
        found.push(format!("record {}", layout.record_file().display()));
    }
    found.extend(
        network::lab_namespaces()
            .into_iter()
            .map(|n| format!("netns {n}")),
    );
    found.extend(
        network::lab_links()
            .into_iter()
            .map(|l| format!("link {l}")),
    );
    found.extend(
        layout::cgroup_roots()
            .into_iter()
            .filter(|c| c.exists())
            .map(|c| format!("cgroup {}", c.display())),
    );
    let pins = pin_root();
    if pins.exists() {
        found.push(format!("bpffs {}", pins.display()));
    }
    found.extend(
        daemons::processes_mentioning(&layout.root)
            .into_iter()
            .map(|p| format!("process {p}")),
    );
    found.extend(lab_mounts(layout).into_iter().map(|m| format!("mount {m}")));
    found.extend(
        runtime_state_dirs()
            .into_iter()
            .map(|d| format!("runtime state {}", d.display())),
    );
    found
}

/// Where containerd's runc shim keeps the OCI runtime's state (runc's and crun's alike):
/// one directory per containerd namespace.
const RUNTIME_STATE_ROOT: &str = "/run/containerd/runc";

/// The prefix of every containerd namespace the lab's containerd holds: its nodes'
/// (`skiff-node-N`) and the pod benchmark's floor (`skiff-bench-floor`).
const LAB_NAMESPACE_PREFIX: &str = "skiff-";

/// The OCI runtime state directories of the lab's containerd namespaces. They outlive the
/// lab's containerd (the root is shared with any system containerd), so `down` removes them.
fn runtime_state_dirs() -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(RUNTIME_STATE_ROOT) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(LAB_NAMESPACE_PREFIX))
        })
        .map(|e| e.path())
        .collect()
}

/// True if any trace of a lab is present.
pub fn anything_left(layout: &Layout) -> bool {
    !leftovers(layout).is_empty()
}

fn pin_root() -> std::path::PathBuf {
    Path::new(host::BPFFS).join(layout::CGROUP_AND_PIN_ROOT)
}

/// Stop processes, then remove mounts, namespaces, links, cgroups (and the
/// processes left in them), runtime state, pins and state.
pub fn teardown(layout: &Layout) -> Result<()> {
    // Recorded daemons in reverse start order (agents before the store they use), then
    // anything else that names the lab directory (container shims, stragglers).
    if let Some(record) = Record::load(layout).unwrap_or_default() {
        let pids: Vec<i32> = record.daemons.iter().rev().map(|d| d.pid).collect();
        for pid in pids {
            daemons::stop(&[pid], Duration::from_secs(10));
        }
    }
    let rest = daemons::processes_mentioning(&layout.root);
    daemons::stop(&rest, Duration::from_secs(5));

    for mount in lab_mounts(layout).into_iter().rev() {
        output(&mut command("umount", ["-l", &mount]))
            .with_context(|| format!("unmounting {mount}"))?;
    }
    network::remove_all()?;
    for root in layout::cgroup_roots() {
        remove_cgroup_tree(&root)?;
    }
    // Every container process is gone by now, so what the runtime kept of them is stale.
    for dir in runtime_state_dirs() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing runtime state {}", dir.display()))?;
    }
    let pins = pin_root();
    if pins.exists() {
        std::fs::remove_dir_all(&pins)
            .with_context(|| format!("removing bpffs pins {}", pins.display()))?;
    }
    for dir in [
        layout.etcd_data(),
        layout.etcd_pki(),
        layout.root.join("bench-authz-off"),
        layout.containerd_dir(),
        layout.control_dir(),
        layout.registry_dir(),
        layout.root.join("nodes"),
    ] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    // The record moves next to the logs it describes: what ran, with which pids.
    if layout.record_file().exists() {
        std::fs::create_dir_all(layout.logs())?;
        std::fs::rename(layout.record_file(), layout.logs().join("last-lab.json"))
            .context("moving the lab record to logs/last-lab.json")?;
    }
    let _ = std::fs::remove_file(layout.kubeconfig());
    let _ = std::fs::remove_file(layout.root.join("bench-user.kubeconfig"));
    let left = leftovers(layout);
    if !left.is_empty() {
        bail!(
            "the lab could not be removed completely; still present: {}",
            left.join(", ")
        );
    }
    Ok(())
}

/// Mount points under the lab directory (container rootfs, shm…), in mount order.
fn lab_mounts(layout: &Layout) -> Vec<String> {
    let root = layout.root.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| t.starts_with(&root))
        .map(str::to_owned)
        .collect()
}

/// Remove a cgroup directory tree bottom-up, killing any process still inside.
fn remove_cgroup_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let children: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading cgroup {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    for child in children {
        remove_cgroup_tree(&child)?;
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    let pids: Vec<i32> = procs
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if !pids.is_empty() {
        daemons::stop(&pids, Duration::from_secs(2));
    }
    let mut last = None;
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last.map_or_else(|| anyhow::anyhow!("unknown error"), anyhow::Error::from))
        .with_context(|| format!("removing cgroup {}", dir.display()))
}
