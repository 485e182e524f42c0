//! What the OCI runtime and the processes it starts leave on the host, as the tests read
//! it: containerd's runc shim runs runc or crun with `--root /run/containerd/runc/<namespace>`,
//! where each container has a state directory (runc writes `state.json`, crun `status`).

use std::path::PathBuf;

/// The root of the OCI runtime's state: one directory per containerd namespace.
pub const STATE_ROOT: &str = "/run/containerd/runc";

/// The state directory of container `id` in containerd namespace `namespace`.
pub fn state_dir(namespace: &str, id: &str) -> PathBuf {
    PathBuf::from(STATE_ROOT).join(namespace).join(id)
}

/// The state directories of the containerd namespaces whose name starts with `prefix`.
pub fn namespaces_named(prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(STATE_ROOT) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(prefix))
        })
        .map(|e| e.path())
        .collect()
}

/// The first process of runc container `id` (runc's `state.json`, `init_process_pid`).
pub fn runc_init_pid(namespace: &str, id: &str) -> Result<u32, String> {
    let path = state_dir(namespace, id).join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let state: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    state["init_process_pid"]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
        .ok_or_else(|| format!("no init_process_pid in {}", path.display()))
}

/// State (`R`, `S`, `Z`…) and parent of process `pid`, from `/proc/<pid>/stat`; `None` when
/// it is gone.
pub fn process_state(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces or parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}
