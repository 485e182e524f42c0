//! subPath mounts made as kubelet makes them (`pkg/volume/util/subpath/subpath_linux.go`):
//! the subPath is opened beneath its volume with `openat2` (made first if missing), and the
//! open descriptor is bind-mounted, through `/proc/self/fd/<fd>`, onto a directory of the
//! pod's that no container can write (`<pod>/volume-subpaths/<volume>/<container>/<index>`).
//! The runtime mounts that path, never the subPath itself, so a symlink a container swaps in
//! after the check (CVE-2017-1002101) leads nowhere.

use std::{
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::OFlag,
    mount::{MntFlags, MsFlags},
    sys::stat::{SFlag, fstat},
};

use crate::beneath::{Attrs, Dir, Resolve};

/// The directory under a pod's directory holding its subPath bind mounts.
const SUBPATHS_DIR: &str = "volume-subpaths";

/// kubelet's checks of a volumeMount's subPath, with its wording.
pub fn validate(sub_path: &str) -> Result<(), String> {
    if sub_path.starts_with('/') {
        return Err(format!(
            "error SubPath `{sub_path}` must not be an absolute path"
        ));
    }
    if sub_path.split('/').any(|name| name == "..") {
        return Err(format!(
            "unable to provision SubPath `{sub_path}`: must not contain '..'"
        ));
    }
    Ok(())
}

/// An opened subPath: its descriptor (`O_PATH`) and whether it is a directory.
#[derive(Debug)]
pub struct OpenSubPath {
    fd: OwnedFd,
    /// A directory (else a file).
    pub is_dir: bool,
}

/// Open `sub_path` beneath `volume`, making it a directory (with the volume's own mode, as
/// kubelet does) if it does not exist.
pub fn open(volume: &Path, sub_path: &str) -> Result<OpenSubPath, String> {
    validate(sub_path)?;
    let root = Dir::open(volume).map_err(|e| e.to_string())?;
    let outside = |e: crate::beneath::BeneathError| {
        format!("subPath \"{sub_path}\" of volume {}: {e}", volume.display())
    };
    let fd = match root.open_at(sub_path, OFlag::O_PATH, Resolve::Beneath) {
        Ok(fd) => fd,
        Err(e) if e.is_not_found() => {
            let mode = fstat(root.fd()).map_or(0o755, |s| s.st_mode & 0o7777);
            root.create_dir_all(sub_path, Attrs::mode(mode))
                .map_err(outside)?;
            root.open_at(sub_path, OFlag::O_PATH, Resolve::Beneath)
                .map_err(outside)?
        }
        Err(e) => return Err(outside(e)),
    };
    let stat = fstat(fd.as_fd()).map_err(|e| format!("subPath \"{sub_path}\": {e}"))?;
    let is_dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    Ok(OpenSubPath { fd, is_dir })
}

/// Where the subPath of `container`'s `index`-th volumeMount of `volume` is bound.
pub fn target(pod_dir: &Path, volume: &str, container: &str, index: usize) -> PathBuf {
    pod_dir
        .join(SUBPATHS_DIR)
        .join(volume)
        .join(container)
        .join(index.to_string())
}

/// Bind-mount the opened subPath onto `target` (replacing an earlier bind there, left by
/// the container's previous run).
pub fn bind(sub_path: &OpenSubPath, target: &Path) -> Result<(), String> {
    let error = |what: &str, e: &dyn std::fmt::Display| {
        format!("subPath bind mount at {}: {what}: {e}", target.display())
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| error("creating", &e))?;
    }
    let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
    if sub_path.is_dir {
        std::fs::create_dir_all(target).map_err(|e| error("creating", &e))?;
    } else if !target.is_file() {
        std::fs::write(target, b"").map_err(|e| error("creating", &e))?;
    }
    let source = format!("/proc/self/fd/{}", sub_path.fd.as_raw_fd());
    nix::mount::mount(
        Some(source.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| error("mounting", &e))
}

/// Unmount every subPath bind of the pod; true if none is left mounted (only then may the
/// pod's directory be removed: a bind left in place would lead the removal into the volume,
/// or onto the host for a hostPath subPath).
pub fn unmount_all(pod_dir: &Path) -> bool {
    let mut clear = true;
    let Ok(volumes) = std::fs::read_dir(pod_dir.join(SUBPATHS_DIR)) else {
        return true;
    };
    for volume in volumes.flatten() {
        let Ok(containers) = std::fs::read_dir(volume.path()) else {
            continue;
        };
        for container in containers.flatten() {
            let Ok(mounts) = std::fs::read_dir(container.path()) else {
                continue;
            };
            for mount in mounts.flatten() {
                let path = mount.path();
                match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
                    Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot unmount a subPath bind");
                        clear = false;
                    }
                }
            }
        }
    }
    clear
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn temp(name: &str) -> (PathBuf, PathBuf) {
        let top = std::env::temp_dir().join(format!("skiff-subpath-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        let volume = top.join("volume");
        std::fs::create_dir_all(&volume).expect("volume");
        std::fs::create_dir_all(top.join("outside")).expect("outside");
        (top, volume)
    }

    #[test]
    fn sub_paths_are_checked_with_kubelets_words() {
        assert_eq!(
            validate("/etc"),
            Err("error SubPath `/etc` must not be an absolute path".to_owned())
        );
        assert_eq!(
            validate("a/../../x"),
            Err("unable to provision SubPath `a/../../x`: must not contain '..'".to_owned())
        );
        assert_eq!(validate("a/b"), Ok(()));
        assert_eq!(validate("a..b"), Ok(()));
    }

    #[test]
    fn a_missing_sub_path_is_made_with_the_volumes_mode() {
        let (top, volume) = temp("make");
        std::fs::set_permissions(&volume, std::fs::Permissions::from_mode(0o2775)).expect("chmod");
        let opened = open(&volume, "data/db").expect("open");
        assert!(opened.is_dir);
        let mode = std::fs::metadata(volume.join("data/db"))
            .expect("made")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o2775);
        std::fs::write(volume.join("file"), "x").expect("file");
        assert!(!open(&volume, "file").expect("file").is_dir);
        let _ = std::fs::remove_dir_all(top);
    }

    #[test]
    fn a_sub_path_leading_out_of_its_volume_is_refused() {
        let (top, volume) = temp("escape");
        // What a container of the pod could plant in a writable volume.
        symlink("/", volume.join("root")).expect("symlink");
        symlink("../outside", volume.join("up")).expect("symlink");
        for sub in ["root", "root/etc", "up", "up/new"] {
            let err = open(&volume, sub).expect_err(sub);
            assert!(err.contains("resolves outside"), "{sub}: {err}");
        }
        assert_eq!(
            std::fs::read_dir(top.join("outside"))
                .expect("read")
                .count(),
            0,
            "nothing was made outside"
        );
        let _ = std::fs::remove_dir_all(top);
    }

    #[test]
    fn targets_live_under_the_pods_own_directory() {
        assert_eq!(
            target(Path::new("/state/pods/p"), "data", "app", 2),
            Path::new("/state/pods/p/volume-subpaths/data/app/2")
        );
    }
}
