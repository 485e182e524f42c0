//! Which OCI runtime runs a pod's containers: the handler of the pod's RuntimeClass
//! (node.k8s.io/v1, `spec.runtimeClassName`). A node knows `runc` (containerd's runc shim
//! with its own runc: pods without a RuntimeClass run there), `crun` where it is installed,
//! and whatever `--runtime-handler NAME=PATH` adds. As kubelet, a pod whose RuntimeClass
//! does not exist or names a handler this node lacks gets no sandbox: the pod says
//! FailedCreatePodSandBox with the reason, and the worker tries again later.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use k8s_openapi::api::node::v1::RuntimeClass;
use kube::{Api, Client};

/// The handler of pods without a RuntimeClass.
pub const DEFAULT_HANDLER: &str = "runc";

/// Where the `crun` handler's binary is looked for.
const CRUN: &str = "crun";

/// The OCI runtime binary the shim runs for a pod (`None`: the shim's default, runc).
pub type RuntimeBinary = Option<PathBuf>;

/// The runtime handlers this node offers, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeHandlers {
    handlers: BTreeMap<String, RuntimeBinary>,
}

impl RuntimeHandlers {
    /// `runc`, `crun` if found on `PATH` and the host's cgroups suit it, then `extra`
    /// (`NAME`, binary), which may replace either.
    pub fn new(extra: &[(String, PathBuf)]) -> Self {
        let mut handlers = BTreeMap::from([(DEFAULT_HANDLER.to_owned(), None)]);
        if let Some(crun) = on_path(CRUN) {
            match hybrid_cgroup2_controllers(Path::new(HYBRID_CGROUP2)) {
                None => {
                    handlers.insert(CRUN.to_owned(), Some(crun));
                }
                Some(controllers) => tracing::warn!(
                    %controllers,
                    "crun is installed but not offered: this hybrid host's cgroup2 holds \
                     controllers, which crun refuses (`cargo xtask setup` moves unused ones \
                     to cgroup v1)"
                ),
            }
        }
        for (name, binary) in extra {
            handlers.insert(name.clone(), Some(binary.clone()));
        }
        Self { handlers }
    }

    /// The handlers' names, sorted (reported in the Node's `status.runtimeHandlers`).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// The binary of `handler`, if this node has it.
    pub fn binary(&self, handler: &str) -> Option<&RuntimeBinary> {
        self.handlers.get(handler)
    }

    /// The runtime for a pod whose `spec.runtimeClassName` is `class`; Err(what kubelet
    /// says when it cannot make the sandbox).
    pub async fn resolve(
        &self,
        client: &Client,
        class: Option<&str>,
    ) -> Result<RuntimeBinary, String> {
        let Some(class) = class.filter(|c| !c.is_empty()) else {
            return Ok(self.binary(DEFAULT_HANDLER).cloned().flatten());
        };
        let classes: Api<RuntimeClass> = Api::all(client.clone());
        let handler = match classes.get_opt(class).await {
            Ok(Some(found)) => found.handler,
            Ok(None) => return Err(format!("RuntimeClass \"{class}\" not found")),
            Err(e) => return Err(format!("looking up RuntimeClass \"{class}\": {e}")),
        };
        self.binary(&handler).cloned().ok_or_else(|| {
            format!("failed to get sandbox runtime: no runtime for \"{handler}\" is configured")
        })
    }
}

/// `NAME=PATH` of `--runtime-handler`.
pub fn parse_handler(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=PATH (e.g. crun=/usr/bin/crun)"))?;
    let label_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if name.is_empty()
        || name.len() > 63
        || !name.chars().all(label_char)
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(format!(
            "handler name {name:?} must be a lowercase RFC 1123 label, as RuntimeClass.handler"
        ));
    }
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(format!(
            "the runtime binary of {name} must be an absolute path, not {}",
            path.display()
        ));
    }
    Ok((name.to_owned(), path.to_path_buf()))
}

/// Where hybrid hosts mount cgroup2 (pure cgroup2 hosts have no such directory).
const HYBRID_CGROUP2: &str = "/sys/fs/cgroup/unified";

/// The controllers a hybrid host's cgroup2 (at `unified`) holds, if any: crun refuses to run
/// there ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2").
fn hybrid_cgroup2_controllers(unified: &Path) -> Option<String> {
    let controllers = std::fs::read_to_string(unified.join("cgroup.controllers")).ok()?;
    let controllers = controllers.trim();
    (!controllers.is_empty()).then(|| controllers.to_owned())
}

/// The first executable `name` in a directory of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_is_the_default_and_extra_handlers_replace_or_add() {
        let handlers = RuntimeHandlers::new(&[
            ("runc".to_owned(), PathBuf::from("/opt/runc")),
            ("kata".to_owned(), PathBuf::from("/opt/kata-runtime")),
        ]);
        assert_eq!(
            handlers.binary("runc"),
            Some(&Some(PathBuf::from("/opt/runc")))
        );
        assert_eq!(
            handlers.binary("kata"),
            Some(&Some(PathBuf::from("/opt/kata-runtime")))
        );
        assert_eq!(handlers.binary("gvisor"), None);
        assert!(handlers.names().any(|n| n == "runc"));
        assert_eq!(
            RuntimeHandlers::new(&[]).binary(DEFAULT_HANDLER),
            Some(&None)
        );
    }

    #[test]
    fn handler_flags_are_checked() {
        assert_eq!(
            parse_handler("crun=/usr/bin/crun"),
            Ok(("crun".to_owned(), PathBuf::from("/usr/bin/crun")))
        );
        assert!(parse_handler("crun").unwrap_err().contains("NAME=PATH"));
        assert!(parse_handler("Crun=/x").unwrap_err().contains("RFC 1123"));
        assert!(parse_handler("crun=crun").unwrap_err().contains("absolute"));
    }
}
