//! Facts about the host the lab runs on, and the checks `setup` and `up` make.
//!
//! Every failed check is one sentence: what is missing and how to fix it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cmd::{command, run_cmd, succeeds};

/// Where bpffs is (or will be) mounted.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Oldest kernel the datapath supports (BTF, bpf_link for cgroups, TC BPF).
const MIN_KERNEL: (u32, u32) = (5, 10);

/// True if this process runs as root.
pub fn is_root() -> bool {
    effective_uid() == 0
}

fn effective_uid() -> u32 {
    // /proc/self/status "Uid:\treal\teffective\t…" avoids an unsafe libc call.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).and_then(|e| e.parse().ok()))
        })
        .unwrap_or(u32::MAX)
}

/// Fail with one sentence unless running as root.
pub fn require_root(task: &str) -> Result<()> {
    if !is_root() {
        bail!(
            "`cargo xtask {task}` must run as root (the lab creates network namespaces, cgroups and \
             eBPF programs): run it again as root, e.g. `sudo -E cargo xtask {task}`."
        );
    }
    Ok(())
}

/// The mount point of the cgroup2 hierarchy (`/sys/fs/cgroup/unified` on hybrid hosts,
/// `/sys/fs/cgroup` on pure-v2 hosts), if any.
pub fn cgroup2_mount() -> Option<PathBuf> {
    mounts()
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| m.target)
}

/// All cgroup v1 hierarchy mount points (empty on pure-v2 hosts).
pub fn cgroup1_mounts() -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .filter(|m| m.fstype == "cgroup")
        .map(|m| m.target)
        .collect()
}

/// On a hybrid host (cgroup v1 hierarchies beside cgroup2), move the controllers the cgroup2
/// hierarchy holds but gives to no cgroup to v1 hierarchies of their own, as systemd's
/// hybrid layout does. crun (the `crun` RuntimeClass) refuses a hybrid host whose cgroup2
/// holds controllers ("cgroups in hybrid mode not supported, drop all controllers from
/// cgroupv2"); runc works either way. Controllers some cgroup uses stay where they are, and
/// a move that fails is reported, not fatal (the agent then does not offer crun).
pub fn free_hybrid_cgroup2_controllers() -> Result<()> {
    let Some(unified) = cgroup2_mount() else {
        return Ok(());
    };
    let Some(v1_root) = unified.parent().filter(|_| !cgroup1_mounts().is_empty()) else {
        return Ok(());
    };
    let read = |file: &str| std::fs::read_to_string(unified.join(file)).unwrap_or_default();
    let controllers = read("cgroup.controllers");
    if controllers.trim().is_empty() {
        return Ok(());
    }
    if !read("cgroup.subtree_control").trim().is_empty() {
        eprintln!(
            "      cgroup2 at {} holds controllers in use ({}): left there, so the crun \
             runtime handler is not offered",
            unified.display(),
            controllers.trim()
        );
        return Ok(());
    }
    for controller in controllers.split_whitespace() {
        let dir = v1_root.join(controller);
        let moved = std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating {}", dir.display()))
            .and_then(|()| {
                let target = dir.to_string_lossy();
                let options = ["-t", "cgroup", "-o", controller, "cgroup", &target];
                run_cmd(&mut command("mount", options))
            });
        // Not fatal: everything but the crun handler works without it.
        match moved {
            Ok(()) => eprintln!(
                "      moved the unused {controller} controller from cgroup2 to {} (crun needs \
                 cgroup2 without controllers on hybrid hosts)",
                dir.display()
            ),
            Err(e) => eprintln!(
                "      could not move the {controller} controller out of cgroup2 ({e:#}): the \
                 agents will not offer the crun runtime handler"
            ),
        }
    }
    Ok(())
}

/// True if bpffs is mounted at [`BPFFS`].
pub fn bpffs_mounted() -> bool {
    mounts()
        .iter()
        .any(|m| m.fstype == "bpf" && m.target == Path::new(BPFFS))
}

struct Mount {
    target: PathBuf,
    fstype: String,
}

fn mounts() -> Vec<Mount> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _source = fields.next()?;
            let target = fields.next()?.replace("\\040", " ");
            let fstype = fields.next()?.to_owned();
            Some(Mount {
                target: PathBuf::from(target),
                fstype,
            })
        })
        .collect()
}

/// Check the kernel and mounts the datapath needs; mount bpffs if it is not mounted.
pub fn check_kernel_features() -> Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .trim()
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if version < MIN_KERNEL {
        bail!(
            "the kernel is {} but Skiff needs Linux {}.{} or newer: boot a newer kernel.",
            release.trim(),
            MIN_KERNEL.0,
            MIN_KERNEL.1
        );
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!(
            "the kernel has no BTF (/sys/kernel/btf/vmlinux is missing): use a kernel built with \
             CONFIG_DEBUG_INFO_BTF=y."
        );
    }
    if cgroup2_mount().is_none() {
        bail!(
            "no cgroup2 hierarchy is mounted: mount one with \
             `mount -t cgroup2 none /sys/fs/cgroup/unified` (hybrid) or boot with \
             systemd.unified_cgroup_hierarchy=1."
        );
    }
    free_hybrid_cgroup2_controllers()?;
    if !bpffs_mounted() {
        std::fs::create_dir_all(BPFFS).ok();
        if !succeeds(&mut command("mount", ["-t", "bpf", "bpf", BPFFS])) || !bpffs_mounted() {
            bail!(
                "bpffs is not mounted at {BPFFS} and mounting it failed: run \
                 `mount -t bpf bpf {BPFFS}` and check that the kernel has CONFIG_BPF_SYSCALL=y."
            );
        }
    }
    Ok(())
}
