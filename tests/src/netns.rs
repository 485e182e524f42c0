//! Running code inside a network namespace: a thread that `setns`es, so the test process
//! itself stays where it is. Sockets keep the namespace they were created in.

use std::{fs::File, path::PathBuf};

use nix::sched::{CloneFlags, setns};

/// Run `f` on a fresh thread inside the named namespace (`/run/netns/<name>`).
pub fn run_in<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = PathBuf::from("/run/netns").join(name);
    let handle = std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        setns(&file, CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
        f()
    });
    match handle.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A network namespace created for one test and deleted when dropped.
pub struct ScratchNetns {
    /// Its name under /run/netns.
    pub name: String,
}

impl ScratchNetns {
    /// Create `skiff-test-<tag>-<pid>` with loopback up and nothing else: no route leaves it.
    pub fn new(tag: &str) -> Self {
        let name = format!("skiff-test-{tag}-{}", std::process::id());
        let _ = crate::process::run("ip", &["netns", "delete", &name]);
        crate::process::run("ip", &["netns", "add", &name]).expect("ip netns add");
        crate::process::run("ip", &["-n", &name, "link", "set", "lo", "up"]).expect("lo up");
        Self { name }
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        let _ = crate::process::run("ip", &["netns", "delete", &self.name]);
    }
}
