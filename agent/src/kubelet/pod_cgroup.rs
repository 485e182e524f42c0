//! The pod's own cgroup and its process limit (kubelet's `podPidsLimit`): `pids.max` of
//! `<cgroup parent>/pod<uid>` in the hierarchy that holds the pids controller, written before
//! the pod's first container, so all its containers together stay under the limit. runc
//! makes each container's cgroup below it (and applies the same limit per container from
//! the OCI spec's `linux.resources.pids.limit`).
//!
//! Hybrid hosts (cgroup v1 controllers, cgroup2 at `unified` without controllers) keep pids
//! in the v1 hierarchy `pids/`; pure cgroup2 hosts need `+pids` in `cgroup.subtree_control`
//! of every ancestor, as runc enables it for its own cgroups.
//!
//! When the pod is gone its cgroup is removed in every hierarchy (the pids one included),
//! with whatever empty container cgroups runc left below it; pod cgroups of pods the API no
//! longer has are found by listing the parent.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// Where cgroup filesystems are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Why the limit could not be set.
#[derive(Debug, thiserror::Error)]
pub enum PodCgroupError {
    /// No hierarchy offers the pids controller.
    #[error("no cgroup hierarchy under {0} offers the pids controller")]
    NoPidsController(PathBuf),
    /// A cgroup file or directory could not be written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PodCgroupError + 'a {
    move |source| PodCgroupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The pod's cgroup path relative to a hierarchy's root.
fn relative(parent: &str, pod_uid: &str) -> PathBuf {
    Path::new(parent.trim_start_matches('/')).join(format!("pod{pod_uid}"))
}

/// Write `limit` into the pod's `pids.max` under `root` (normally [`CGROUP_ROOT`]); returns
/// the pod's cgroup directory.
pub fn limit_pids(
    root: &Path,
    parent: &str,
    pod_uid: &str,
    limit: i64,
) -> Result<PathBuf, PodCgroupError> {
    let relative = relative(parent, pod_uid);
    let v1 = root.join("pids");
    let dir = if v1.is_dir() {
        let dir = v1.join(&relative);
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        dir
    } else if std::fs::read_to_string(root.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids"))
    {
        // Each level from the root down to the pod's parent hands pids to its children.
        let mut level = root.to_path_buf();
        for name in relative.iter() {
            let control = level.join("cgroup.subtree_control");
            std::fs::write(&control, "+pids").map_err(io("enabling pids in", &control))?;
            level = level.join(name);
            std::fs::create_dir_all(&level).map_err(io("creating", &level))?;
        }
        level
    } else {
        return Err(PodCgroupError::NoPidsController(root.to_path_buf()));
    };
    let file = dir.join("pids.max");
    std::fs::write(&file, limit.to_string()).map_err(io("writing", &file))?;
    Ok(dir)
}

/// Every hierarchy under `root` a pod cgroup may be in: each v1 controller's directory,
/// cgroup2's `unified`, and `root` itself (pure cgroup2).
fn hierarchies(root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.push(root.to_path_buf());
    found
}

/// The UIDs of the pod cgroups under `parent` in any hierarchy under `root`.
pub fn pod_uids(root: &Path, parent: &str) -> BTreeSet<String> {
    let parent = Path::new(parent.trim_start_matches('/'));
    let mut uids = BTreeSet::new();
    for hierarchy in hierarchies(root) {
        let Ok(entries) = std::fs::read_dir(hierarchy.join(parent)) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if let Some(uid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("pod"))
                && !uid.is_empty()
            {
                uids.insert(uid.to_owned());
            }
        }
    }
    uids
}

/// Remove `dir` and the cgroups below it, deepest first (a cgroup with no processes and
/// no children can be removed with its control files in it); false if one stays.
fn remove_tree(dir: &Path) -> bool {
    let mut clear = true;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                clear &= remove_tree(&entry.path());
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => clear,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => clear,
        Err(e) => {
            tracing::debug!(cgroup = %dir.display(), error = %e, "cannot remove a pod cgroup");
            false
        }
    }
}

/// Remove the pod's cgroup (and any container cgroup left below it) in every hierarchy
/// under `root`; true if none is left.
pub fn remove(root: &Path, parent: &str, pod_uid: &str) -> bool {
    let relative = relative(parent, pod_uid);
    let mut clear = true;
    for hierarchy in hierarchies(root) {
        let dir = hierarchy.join(&relative);
        if dir.is_dir() {
            clear &= remove_tree(&dir);
        }
    }
    clear
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("skiff-cgroup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp");
        dir
    }

    #[test]
    fn hybrid_hosts_limit_the_pod_in_the_v1_pids_hierarchy() {
        let root = temp("v1");
        std::fs::create_dir_all(root.join("pids")).expect("pids");
        std::fs::create_dir_all(root.join("unified")).expect("unified");
        let dir = limit_pids(&root, "/skiff/node-1", "abc", 4096).expect("limit");
        assert_eq!(dir, root.join("pids/skiff/node-1/podabc"));
        assert_eq!(
            std::fs::read_to_string(dir.join("pids.max")).expect("pids.max"),
            "4096"
        );
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn cgroup2_hosts_enable_pids_down_to_the_pod() {
        let root = temp("v2");
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .expect("controllers");
        let dir = limit_pids(&root, "/skiff/node-1", "abc", 100).expect("limit");
        assert_eq!(dir, root.join("skiff/node-1/podabc"));
        for level in ["", "skiff", "skiff/node-1"] {
            let control = root.join(level).join("cgroup.subtree_control");
            assert_eq!(
                std::fs::read_to_string(&control).expect("subtree_control"),
                "+pids",
                "{}",
                control.display()
            );
        }
        assert_eq!(
            std::fs::read_to_string(dir.join("pids.max")).expect("pids.max"),
            "100"
        );
        assert!(
            !dir.join("cgroup.subtree_control").exists(),
            "the pod keeps pids to itself"
        );
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_host_without_pids_says_so() {
        let root = temp("none");
        std::fs::write(root.join("cgroup.controllers"), "cpu memory\n").expect("controllers");
        assert!(matches!(
            limit_pids(&root, "/skiff/n", "u", 10),
            Err(PodCgroupError::NoPidsController(_))
        ));
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn pod_cgroups_are_found_and_removed_in_every_hierarchy() {
        let root = temp("remove");
        // A hybrid host: the pids controller's hierarchy and cgroup2 at unified, a
        // container cgroup runc left behind, and another pod's cgroup.
        for dir in [
            "pids/skiff/n1/podgone/ctr-1",
            "unified/skiff/n1/podgone",
            "memory/skiff/n1/podlive",
        ] {
            std::fs::create_dir_all(root.join(dir)).expect("cgroup");
        }
        std::fs::write(root.join("cgroup.procs-not-a-dir"), "").expect("file");
        assert_eq!(
            pod_uids(&root, "/skiff/n1").into_iter().collect::<Vec<_>>(),
            ["gone", "live"]
        );
        assert!(remove(&root, "/skiff/n1", "gone"));
        assert!(!root.join("pids/skiff/n1/podgone").exists());
        assert!(!root.join("unified/skiff/n1/podgone").exists());
        assert!(root.join("memory/skiff/n1/podlive").is_dir());
        assert!(remove(&root, "/skiff/n1", "gone"), "nothing left is clear");
        // A cgroup that cannot be removed (here: a file in it) is reported.
        std::fs::write(root.join("memory/skiff/n1/podlive/busy"), "").expect("busy");
        assert!(!remove(&root, "/skiff/n1", "live"));
        let _ = std::fs::remove_dir_all(root);
    }
}
