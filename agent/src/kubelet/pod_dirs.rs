//! The pods' directories under the agent's state directory (`pods/<ns>_<name>_<uid>`, see
//! [`crate::logs::pod_dir`]): they hold the pods' volumes (secrets and tokens among them)
//! and logs, so `pods/` and every pod directory are 0750, closed to other local users, and
//! existing ones are tightened at start. A pod directory whose pod is gone (deleted while
//! the agent was away, or kept because a volume mount could not be undone at termination)
//! is found again and removed once its mounts are undone.

use std::{
    collections::HashSet,
    io::ErrorKind,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
};

use super::volumes;

/// Mode of `pods/` and of each pod's directory.
pub const POD_DIR_MODE: u32 = 0o750;

/// Where the pods' directories are.
pub fn pods_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("pods")
}

/// Narrow `path`'s permission bits to [`POD_DIR_MODE`] (never widening them).
fn tighten(path: &Path) -> std::io::Result<()> {
    let mode = std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    let narrowed = mode & POD_DIR_MODE;
    if narrowed != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(narrowed))?;
    }
    Ok(())
}

/// Make a directory with mode [`POD_DIR_MODE`] (whatever the umask), or tighten it if it
/// exists.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(POD_DIR_MODE).create(path) {
        Ok(()) => std::fs::set_permissions(path, std::fs::Permissions::from_mode(POD_DIR_MODE)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => tighten(path),
        Err(e) => Err(e),
    }
}

/// Make `state_dir/pods` or tighten it, and tighten the pod directories already in it
/// (made 0755 by earlier agents).
pub fn prepare(state_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let pods = pods_dir(state_dir);
    create_private_dir(&pods)?;
    for entry in std::fs::read_dir(&pods)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            tighten(&entry.path())?;
        }
    }
    Ok(())
}

/// The pod UID a pod directory's name ends with (`<ns>_<name>_<uid>`; namespaces and names
/// are DNS names, which have no `_`).
pub fn uid_of(dir_name: &str) -> Option<&str> {
    let (_, uid) = dir_name.rsplit_once('_')?;
    (!uid.is_empty()).then_some(uid)
}

/// The directories of pods whose UIDs are not in `known`, as (UID, directory).
pub fn leftovers(state_dir: &Path, known: &HashSet<String>) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(pods_dir(state_dir)) else {
        return Vec::new();
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let uid = uid_of(&name)?.to_owned();
            (!known.contains(&uid)).then(|| (uid, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Undo what the pod's volumes mounted, then remove its directory; false (the directory
/// is kept, to be tried again later) if a mount could not be undone: removing through it
/// would delete what it shows.
pub fn remove(dir: &Path) -> bool {
    if !volumes::unmount_all(dir) {
        return false;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a pod's directory");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("skiff-poddirs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp");
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("meta").permissions().mode() & 0o7777
    }

    #[test]
    fn pod_directories_are_closed_to_other_users() {
        let state = temp("modes");
        prepare(&state).expect("prepare");
        assert_eq!(mode(&state.join("pods")), 0o750);
        let pod = state.join("pods/default_web_u-1");
        create_private_dir(&pod).expect("pod dir");
        assert_eq!(mode(&pod), 0o750);
        // What earlier agents made world-readable is tightened at start.
        let old = state.join("pods/default_old_u-2");
        std::fs::create_dir(&old).expect("old");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(state.join("pods"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        prepare(&state).expect("again");
        assert_eq!(mode(&state.join("pods")), 0o750);
        assert_eq!(mode(&old), 0o750);
        // Narrower modes are not widened.
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        prepare(&state).expect("again");
        assert_eq!(mode(&old), 0o700);
        let _ = std::fs::remove_dir_all(state);
    }

    #[test]
    fn directories_of_unknown_pods_are_found_and_removed() {
        let state = temp("leftovers");
        prepare(&state).expect("prepare");
        for name in ["ns_live_u-live", "ns_gone_u-gone", "ns_other-gone_u-2"] {
            create_private_dir(&state.join("pods").join(name)).expect("dir");
        }
        std::fs::create_dir_all(state.join("pods/ns_gone_u-gone/volumes/data/deep"))
            .expect("volume");
        std::fs::write(state.join("pods/stray-file_x"), b"").expect("file");
        let known = HashSet::from(["u-live".to_owned()]);
        let found = leftovers(&state, &known);
        let uids: Vec<&str> = found.iter().map(|(uid, _)| uid.as_str()).collect();
        assert_eq!(uids, ["u-2", "u-gone"]);
        for (_, dir) in &found {
            assert!(remove(dir), "{}", dir.display());
        }
        assert!(leftovers(&state, &known).is_empty());
        assert!(state.join("pods/ns_live_u-live").is_dir());
        assert_eq!(uid_of("kube-system_coredns-0_1b2c"), Some("1b2c"));
        assert_eq!(uid_of("nounderscore"), None);
        let _ = std::fs::remove_dir_all(state);
    }
}
