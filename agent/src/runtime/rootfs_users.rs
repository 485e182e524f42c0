//! An image's `/etc/passwd` and `/etc/group`, read from its root filesystem as containerd
//! reads them to resolve a container's user: a read-only view of the image's top snapshot,
//! mounted (nosuid, nodev, noexec) on a scratch directory of the agent's, both files read
//! with `openat2(RESOLVE_IN_ROOT)` so a symlink in the image resolves inside the image, then
//! unmounted and the view removed. Images are immutable, so what was read is kept per
//! chain ID and later containers of the image cost nothing. Views an agent that died
//! mid-read left behind (snapshots `skiff-accounts-*` and their mount points) are removed
//! when the next agent starts.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use containerd_client::{
    services::v1::snapshots::{
        ListSnapshotsRequest, RemoveSnapshotRequest, ViewSnapshotRequest,
        snapshots_client::SnapshotsClient,
    },
    types::Mount,
};
use nix::mount::{MntFlags, MsFlags};

use super::{Runtime, RuntimeError, SNAPSHOTTER, call_error, passwd::ImageAccounts};
use crate::beneath::{Dir, Resolve};

/// The largest account file read (a passwd file of this size is not a real one).
const MAX_FILE: u64 = 4 << 20;

/// Distinguishes concurrent views.
static VIEW_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The beginning of every image view's snapshot key and mount point name.
const VIEW_PREFIX: &str = "skiff-accounts-";

/// Whether `name` is an image view's snapshot key or mount point.
fn is_view(name: &str) -> bool {
    name.starts_with(VIEW_PREFIX)
}

/// Unmount and remove the image views' mount points under `scratch`; returns how many.
fn remove_view_mount_points(scratch: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(is_view) {
            continue;
        }
        let path = entry.path();
        let _ = nix::mount::umount2(&path, MntFlags::MNT_DETACH);
        match std::fs::remove_dir(&path) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale image view");
            }
        }
    }
    removed
}

/// How one containerd mount is made with mount(2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// Filesystem type (`overlay`; none for a bind).
    pub fstype: Option<String>,
    /// Source.
    pub source: String,
    /// Flags (always read-only, nosuid, nodev, noexec).
    pub flags: MsFlags,
    /// Filesystem options (`lowerdir=…`).
    pub data: String,
    /// A bind mount (made, then remounted read-only).
    pub bind: bool,
}

/// The read-only mount(2) call for a snapshot view's mount: flag options become flags, the
/// rest filesystem data.
pub fn plan(mount: &Mount) -> Result<MountPlan, String> {
    let mut flags =
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mut data = Vec::new();
    let mut bind = mount.r#type == "bind";
    for option in &mount.options {
        match option.as_str() {
            "ro" | "rw" | "nosuid" | "nodev" | "noexec" | "suid" | "dev" | "exec" => {}
            "bind" => bind = true,
            "rbind" => {
                bind = true;
                flags |= MsFlags::MS_REC;
            }
            other => data.push(other),
        }
    }
    match mount.r#type.as_str() {
        "bind" | "overlay" => {}
        other => return Err(format!("cannot read an image from a {other:?} mount")),
    }
    if bind {
        flags |= MsFlags::MS_BIND;
    }
    Ok(MountPlan {
        fstype: (!bind).then(|| mount.r#type.clone()),
        source: mount.source.clone(),
        flags,
        data: data.join(","),
        bind,
    })
}

/// Read both account files of the root filesystem at `root`.
pub fn read_accounts(root: &Path) -> Result<ImageAccounts, String> {
    let dir = Dir::open(root).map_err(|e| e.to_string())?;
    let read = |path: &str| -> Result<Option<String>, String> {
        let data = dir
            .read_file(path, Resolve::InRoot, MAX_FILE)
            .map_err(|e| e.to_string())?;
        Ok(data.map(|d| String::from_utf8_lossy(&d).into_owned()))
    };
    Ok(ImageAccounts {
        passwd: read("etc/passwd")?,
        group: read("etc/group")?,
    })
}

fn mount_view(plan: &MountPlan, target: &Path) -> Result<(), String> {
    let data = (!plan.data.is_empty()).then_some(plan.data.as_str());
    nix::mount::mount(
        Some(plan.source.as_str()),
        target,
        plan.fstype.as_deref(),
        plan.flags & !MsFlags::MS_RDONLY,
        data,
    )
    .map_err(|e| format!("mounting the image view: {e}"))?;
    // A bind ignores MS_RDONLY on the first call; an overlay of lower layers is read-only
    // anyway. Remount either way so the view is read-only, nosuid, nodev and noexec.
    let remount = MsFlags::MS_REMOUNT
        | (plan.flags
            & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC))
        | if plan.bind {
            MsFlags::MS_BIND
        } else {
            MsFlags::empty()
        };
    if let Err(e) = nix::mount::mount(None::<&str>, target, None::<&str>, remount, data) {
        let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
        return Err(format!("making the image view read-only: {e}"));
    }
    Ok(())
}

/// Mount `plan` on `target`, read the account files, unmount.
fn read_through_mount(plan: &MountPlan, target: &Path) -> Result<ImageAccounts, String> {
    std::fs::create_dir_all(target).map_err(|e| format!("creating {}: {e}", target.display()))?;
    let result = mount_view(plan, target).and_then(|()| {
        let accounts = read_accounts(target);
        let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
        accounts
    });
    let _ = std::fs::remove_dir(target);
    result
}

impl Runtime {
    /// Remove the image views an earlier agent left behind (it died while reading one):
    /// their mount points under `scratch` and their snapshots. Call it before any
    /// container is configured: every view found is taken for stale.
    pub async fn remove_stale_image_views(&self, scratch: &Path) {
        let scratch_dir = scratch.to_path_buf();
        let mount_points =
            tokio::task::spawn_blocking(move || remove_view_mount_points(&scratch_dir))
                .await
                .unwrap_or(0);
        let mut snapshots = SnapshotsClient::new(self.channel());
        let list = self.request(
            ListSnapshotsRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                filters: Vec::new(),
            },
            None,
        );
        let mut stream = match snapshots.list(list).await {
            Ok(answer) => answer.into_inner(),
            Err(e) => {
                tracing::warn!(error = %e.message(), "cannot list snapshots to remove stale image views");
                return;
            }
        };
        let mut stale = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(page)) => stale.extend(
                    page.info
                        .into_iter()
                        .map(|info| info.name)
                        .filter(|name| is_view(name)),
                ),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e.message(), "cannot list snapshots to remove stale image views");
                    break;
                }
            }
        }
        for key in &stale {
            let remove = self.request(
                RemoveSnapshotRequest {
                    snapshotter: SNAPSHOTTER.to_owned(),
                    key: key.clone(),
                },
                None,
            );
            if let Err(e) = snapshots.remove(remove).await {
                tracing::warn!(snapshot = %key, error = %e.message(), "cannot remove a stale image view");
            }
        }
        if mount_points > 0 || !stale.is_empty() {
            tracing::info!(
                mount_points,
                snapshots = stale.len(),
                "removed image views an earlier agent left behind"
            );
        }
    }

    /// The account files of the image whose top snapshot is `chain_id` (none for an image
    /// without layers); `scratch` is a directory of the agent's for the temporary view.
    pub async fn image_accounts(
        &self,
        chain_id: &str,
        scratch: &Path,
    ) -> Result<Arc<ImageAccounts>, RuntimeError> {
        if chain_id.is_empty() {
            return Ok(Arc::default());
        }
        if let Some(known) = self.accounts_cache(chain_id) {
            return Ok(known);
        }
        let key = format!(
            "{VIEW_PREFIX}{}-{}",
            std::process::id(),
            VIEW_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut snapshots = SnapshotsClient::new(self.channel());
        let view = self.request(
            ViewSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                key: key.clone(),
                parent: chain_id.to_owned(),
                labels: std::collections::HashMap::new(),
            },
            None,
        );
        let mounts = snapshots
            .view(view)
            .await
            .map_err(call_error("snapshot view"))?
            .into_inner()
            .mounts;
        let target: PathBuf = scratch.join(&key);
        let read = match mounts.as_slice() {
            [mount] => match plan(mount) {
                Ok(plan) => tokio::task::spawn_blocking(move || read_through_mount(&plan, &target))
                    .await
                    .unwrap_or_else(|e| Err(format!("reading the image view: {e}"))),
                Err(e) => Err(e),
            },
            other => Err(format!(
                "the image view has {} mounts; one was expected",
                other.len()
            )),
        };
        let remove = self.request(
            RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                key,
            },
            None,
        );
        if let Err(e) = snapshots.remove(remove).await {
            tracing::warn!(error = %e.message(), "cannot remove the image view");
        }
        let accounts = Arc::new(read.map_err(|e| {
            RuntimeError::BadImage(format!(
                "reading /etc/passwd and /etc/group of the image: {e}"
            ))
        })?);
        self.remember_accounts(chain_id, &accounts);
        Ok(accounts)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn mount(type_: &str, options: &[&str]) -> Mount {
        Mount {
            r#type: type_.into(),
            source: "/snapshots/1/fs".into(),
            target: String::new(),
            options: options.iter().map(|o| (*o).to_owned()).collect(),
        }
    }

    #[test]
    fn views_are_mounted_read_only_without_devices_or_set_id() {
        let safe = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let bind = plan(&mount("bind", &["ro", "rbind"])).expect("bind");
        assert!(bind.bind && bind.fstype.is_none());
        assert_eq!(bind.flags, safe | MsFlags::MS_BIND | MsFlags::MS_REC);
        let overlay = plan(&mount("overlay", &["index=off", "lowerdir=/a:/b"])).expect("overlay");
        assert_eq!(overlay.fstype.as_deref(), Some("overlay"));
        assert_eq!(overlay.data, "index=off,lowerdir=/a:/b");
        assert_eq!(overlay.flags, safe);
        // An upper layer would ask for "rw": it is dropped, the view stays read-only.
        assert!(
            plan(&mount("overlay", &["rw"]))
                .expect("rw")
                .flags
                .contains(MsFlags::MS_RDONLY)
        );
        assert!(plan(&mount("nfs", &[])).is_err());
    }

    #[test]
    fn account_files_are_read_inside_the_root() {
        let root = std::env::temp_dir().join(format!("skiff-rootfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc")).expect("etc");
        std::fs::write(root.join("etc/passwd"), "app:x:1:2::/:/bin/sh\n").expect("passwd");
        // /etc/group pointing at the host's: resolved inside the image, where it is missing.
        symlink("/../../../../../etc/host-group", root.join("etc/group")).expect("symlink");
        let accounts = read_accounts(&root).expect("read");
        assert_eq!(accounts.passwd.as_deref(), Some("app:x:1:2::/:/bin/sh\n"));
        assert_eq!(accounts.group, None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn stale_view_mount_points_are_removed_and_nothing_else() {
        let scratch = std::env::temp_dir().join(format!("skiff-views-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(scratch.join("skiff-accounts-41-0")).expect("view");
        std::fs::create_dir_all(scratch.join("skiff-accounts-41-1")).expect("view");
        std::fs::create_dir_all(scratch.join("other")).expect("other");
        assert_eq!(remove_view_mount_points(&scratch), 2);
        let left: Vec<String> = std::fs::read_dir(&scratch)
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["other"]);
        assert!(is_view("skiff-accounts-7-3"));
        assert!(!is_view("sha256:abc"));
        assert_eq!(remove_view_mount_points(&scratch.join("missing")), 0);
        let _ = std::fs::remove_dir_all(&scratch);
    }
}
