//! What is left on the node of pods the API no longer has: pods deleted while the agent
//! was away (their containers, sandboxes, addresses, volume mounts, cgroups and
//! directories), and pods whose termination could not undo everything (a volume mount
//! that would not go, a cgroup still busy).
//!
//! At start, once the first list of this node's pods is in, what belongs to no listed pod
//! is noted before any new pod is dispatched (so nothing of a pod arriving later is
//! mistaken for a leftover) and then removed. Afterwards, a periodic pass removes pod
//! directories and pod cgroups of pods without a worker, so what failed once is tried
//! again.

use std::{
    collections::{BTreeSet, HashSet},
    path::{Path, PathBuf},
};

use super::{Kubelet, LABEL_POD_UID, pod_cgroup, pod_dirs};
use crate::network::sandbox;

/// How often the leftovers of finished pods are looked for again.
pub const LEFTOVER_PASS: std::time::Duration = std::time::Duration::from_secs(60);

/// What the agent found of pods the API does not have, noted at one moment.
#[derive(Debug, Default)]
pub(crate) struct Orphans {
    /// Containers labelled with an unknown pod.
    containers: Vec<String>,
    /// Pods with containers or an address (their sandboxes go too).
    sandboxes: BTreeSet<String>,
    /// Pod directories of unknown pods.
    dirs: Vec<(String, PathBuf)>,
    /// Pod cgroups of unknown pods.
    cgroups: BTreeSet<String>,
}

/// Pod directories and pod cgroups of pods not in `known`.
fn leftovers(
    state_dir: &Path,
    cgroup_root: &Path,
    cgroup_parent: &str,
    known: &HashSet<String>,
) -> (Vec<(String, PathBuf)>, BTreeSet<String>) {
    let dirs = pod_dirs::leftovers(state_dir, known);
    let cgroups = pod_cgroup::pod_uids(cgroup_root, cgroup_parent)
        .into_iter()
        .filter(|uid| !known.contains(uid))
        .collect();
    (dirs, cgroups)
}

/// Remove leftover pod directories (after undoing their mounts) and pod cgroups; what
/// cannot be removed now stays for the next pass.
fn remove_leftovers(
    cgroup_root: &Path,
    cgroup_parent: &str,
    dirs: &[(String, PathBuf)],
    cgroups: &BTreeSet<String>,
) {
    for uid in cgroups {
        if pod_cgroup::remove(cgroup_root, cgroup_parent, uid) {
            tracing::info!(pod_uid = %uid, "removed the cgroup of a pod that is gone");
        }
    }
    for (uid, dir) in dirs {
        if pod_dirs::remove(dir) {
            tracing::info!(pod_uid = %uid, dir = %dir.display(), "removed the directory of a pod that is gone");
        } else {
            tracing::warn!(pod_uid = %uid, dir = %dir.display(), "a pod that is gone keeps its directory for now (a mount could not be undone)");
        }
    }
}

/// The host's cgroup filesystems.
fn cgroup_root() -> &'static Path {
    Path::new(pod_cgroup::CGROUP_ROOT)
}

impl Kubelet {
    /// Note what belongs to none of the `known` pods (the first list of this node's
    /// pods). Called before any pod that arrives after that list is dispatched.
    pub(crate) async fn find_orphans(&self, known: &HashSet<String>) -> Orphans {
        let mut orphans = Orphans::default();
        match self.runtime.list_containers("").await {
            Ok(containers) => {
                for container in containers {
                    let Some(uid) = container.labels.get(LABEL_POD_UID) else {
                        continue;
                    };
                    if !known.contains(uid) {
                        orphans.sandboxes.insert(uid.clone());
                        orphans.containers.push(container.id);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list containers to collect orphans"),
        }
        for uid in self.ipam.owners().await {
            if !known.contains(&uid) {
                orphans.sandboxes.insert(uid);
            }
        }
        (orphans.dirs, orphans.cgroups) = leftovers(
            &self.config.state_dir,
            cgroup_root(),
            &self.config.cgroup_parent,
            known,
        );
        orphans
    }

    /// Remove what [`Kubelet::find_orphans`] found: containers first, then sandboxes and
    /// addresses, then cgroups and directories.
    pub(crate) async fn remove_orphans(&self, orphans: Orphans) {
        for id in &orphans.containers {
            let _ = self.runtime.kill(id, 9).await;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if let Err(e) = self.runtime.remove_container(id).await {
                tracing::warn!(container = %id, error = %e, "cannot remove orphaned container");
            }
        }
        for uid in &orphans.sandboxes {
            let netns = self.netns_dir().join(uid);
            if let Err(e) = sandbox::tear_down(&self.netlink, &netns, uid).await {
                tracing::warn!(pod_uid = %uid, error = %e, "cannot remove an orphaned sandbox");
            }
            if let Some(hook) = &self.pod_veths {
                hook.down(&sandbox::host_veth(uid));
            }
            let _ = self.ipam.release(uid).await;
            tracing::info!(pod_uid = %uid, "removed what was left of a pod deleted while the agent was away");
        }
        remove_leftovers(
            cgroup_root(),
            &self.config.cgroup_parent,
            &orphans.dirs,
            &orphans.cgroups,
        );
    }

    /// The periodic pass: remove the directories and cgroups of pods without a worker
    /// (`live`). Runs in the pod watch loop, so no worker starts meanwhile.
    pub(crate) fn collect_leftovers(&self, live: &HashSet<String>) {
        let (dirs, cgroups) = leftovers(
            &self.config.state_dir,
            cgroup_root(),
            &self.config.cgroup_parent,
            live,
        );
        remove_leftovers(cgroup_root(), &self.config.cgroup_parent, &dirs, &cgroups);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("skiff-orphans-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp");
        dir
    }

    #[test]
    fn leftover_directories_and_cgroups_of_unknown_pods_are_removed() {
        let top = temp("pass");
        let state = top.join("state");
        let cgroups = top.join("cgroup");
        pod_dirs::prepare(&state).expect("pods dir");
        for name in ["ns_live_u-live", "ns_gone_u-gone"] {
            pod_dirs::create_private_dir(&state.join("pods").join(name)).expect("pod dir");
        }
        for dir in [
            "pids/skiff/n1/podu-live",
            "pids/skiff/n1/podu-gone",
            "unified/skiff/n1/podu-cgroup-only/ctr",
        ] {
            std::fs::create_dir_all(cgroups.join(dir)).expect("cgroup");
        }
        let live = HashSet::from(["u-live".to_owned()]);
        let (dirs, uids) = leftovers(&state, &cgroups, "/skiff/n1", &live);
        assert_eq!(dirs.len(), 1);
        assert_eq!(dirs[0].0, "u-gone");
        assert_eq!(
            uids.iter().map(String::as_str).collect::<Vec<_>>(),
            ["u-cgroup-only", "u-gone"]
        );
        remove_leftovers(&cgroups, "/skiff/n1", &dirs, &uids);
        assert!(!state.join("pods/ns_gone_u-gone").exists());
        assert!(state.join("pods/ns_live_u-live").is_dir());
        assert!(!cgroups.join("pids/skiff/n1/podu-gone").exists());
        assert!(!cgroups.join("unified/skiff/n1/podu-cgroup-only").exists());
        assert!(cgroups.join("pids/skiff/n1/podu-live").is_dir());
        let (dirs, uids) = leftovers(&state, &cgroups, "/skiff/n1", &live);
        assert!(dirs.is_empty() && uids.is_empty());
        let _ = std::fs::remove_dir_all(top);
    }
}
