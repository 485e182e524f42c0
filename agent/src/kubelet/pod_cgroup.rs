//! The pod's own cgroup and its process limit (kubelet's `podPidsLimit`): `pids.max` of
//! `<cgroup parent>/pod<uid>` in the hierarchy that holds the pids controller, written before
//! the pod's first container, so all its containers together stay under the limit. runc
//! makes each container's cgroup below it (and applies the same limit per container from
//! the OCI spec's `linux.resources.pids.limit`).
//!
//! Hybrid hosts (cgroup v1 controllers, cgroup2 at `unified` without controllers) keep pids
//! in the v1 hierarchy `pids/`; pure cgroup2 hosts need `+pids` in `cgroup.subtree_control`
//! of every ancestor, as runc enables it for its own cgroups.

use std::path::{Path, PathBuf};

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
}
