//! The host's devices, for privileged containers: containerd's CRI gives a privileged
//! container every device node under the host's `/dev` (`pkg/oci/utils_unix.go`,
//! `HostDevices`), in the OCI spec's `linux.devices` form, skipping what it skips (`pts`,
//! `shm`, `fd`, `mqueue`, `.lxc`, `.lxd-mounts`, `.udev`, `console`, FIFOs).

use std::{os::unix::fs::FileTypeExt, path::Path};

use serde_json::{Value, json};

/// Directories under /dev containerd does not descend into.
const SKIPPED_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// Every device node under `dev` (the host's `/dev`), as OCI `linux.devices` entries with
/// `dev`'s path prefix kept.
pub fn host_devices(dev: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    walk(dev, &mut out);
    out
}

fn walk(dir: &Path, out: &mut Vec<Value>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // file_type() is lstat's: symlinks are neither followed nor taken.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_ref()) {
                walk(&entry.path(), out);
            }
            continue;
        }
        if name == "console" {
            continue;
        }
        let type_ = if kind.is_block_device() {
            "b"
        } else if kind.is_char_device() {
            "c"
        } else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        let rdev = meta.rdev();
        out.push(json!({
            "path": entry.path(),
            "type": type_,
            "major": nix::sys::stat::major(rdev),
            "minor": nix::sys::stat::minor(rdev),
            "fileMode": meta.mode() & 0o7777,
            "uid": meta.uid(),
            "gid": meta.gid(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_null_device_is_found_and_skipped_dirs_are_not_walked() {
        let devices = host_devices(Path::new("/dev"));
        let null = devices
            .iter()
            .find(|d| d["path"] == "/dev/null")
            .expect("/dev/null is a device on every Linux host");
        assert_eq!(
            (
                null["type"].as_str(),
                null["major"].as_u64(),
                null["minor"].as_u64()
            ),
            (Some("c"), Some(1), Some(3))
        );
        assert!(
            devices.iter().all(|d| !d["path"]
                .as_str()
                .unwrap_or_default()
                .starts_with("/dev/pts/")),
            "pts is skipped"
        );
    }

    #[test]
    fn plain_files_are_not_devices() {
        let dir = std::env::temp_dir().join(format!("skiff-devices-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).expect("dir");
        std::fs::write(dir.join("sub/file"), "x").expect("file");
        assert!(host_devices(&dir).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
