//! Pod network namespaces as bind-mounted files (what `ip netns add` does), and running work
//! inside one on a dedicated thread (setns changes only the calling thread, so it must never
//! happen on a runtime worker).

use std::{fs::File, path::Path};

use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, setns, unshare},
};

use super::{NetworkError, io};

fn nix_io(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// Create a new network namespace and pin it at `path` (idempotent: an existing pinned
/// namespace is kept). Interfaces that arrive in it later (the pod's eth0) come without
/// IPv6: pods are IPv4-only, and each interface's link-local address, duplicate address
/// detection and MLD reports cost the kernel's addrconf workers (under the RTNL lock every
/// other sandbox needs) about as much CPU as the rest of the sandbox. Loopback keeps ::1.
///
/// The namespace is made on a thread of its own (unshare changes the calling thread, and
/// it can take tens of milliseconds while the kernel tears down other namespaces), awaited
/// without blocking a runtime worker.
pub async fn create(path: &Path) -> Result<(), NetworkError> {
    if is_pinned(path) {
        return Ok(());
    }
    File::create(path).map_err(io(format!("creating {}", path.display())))?;
    let target = path.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("netns-create".to_owned())
        .spawn(move || {
            let made = (|| -> std::io::Result<()> {
                unshare(CloneFlags::CLONE_NEWNET).map_err(nix_io)?;
                // This thread's namespace: /proc/sys/net is resolved per task.
                turn_ipv6_off("/proc/sys/net/ipv6/conf/default/disable_ipv6");
                mount(
                    Some("/proc/thread-self/ns/net"),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(nix_io)
            })();
            let _ = tx.send(made);
        });
    let made = match spawned {
        Ok(_) => rx.await.unwrap_or_else(|_| {
            Err(std::io::Error::other(
                "netns thread ended without answering",
            ))
        }),
        Err(e) => Err(e),
    };
    if made.is_err() {
        // Leave no unpinned placeholder behind.
        let _ = std::fs::remove_file(path);
    }
    made.map_err(io(format!(
        "pinning a new network namespace at {}",
        path.display()
    )))
}

/// Turn IPv6 off on `interface` of the calling task's namespace (see [`create`] for why).
pub fn disable_ipv6(interface: &str) {
    turn_ipv6_off(&format!("/proc/sys/net/ipv6/conf/{interface}/disable_ipv6"));
}

/// Write 1 to an IPv6 sysctl, as an optimisation only: a kernel without IPv6 has nothing to
/// turn off, and where /proc/sys is read-only (an agent in an unprivileged container) the
/// interface keeps IPv6 and the pod still starts.
fn turn_ipv6_off(knob: &str) {
    match std::fs::write(knob, "1") {
        Ok(()) => {}
        Err(_) if !Path::new("/proc/sys/net/ipv6").exists() => {}
        Err(e) => {
            tracing::debug!(%knob, error = %e, "cannot turn IPv6 off; the interface keeps it")
        }
    }
}

/// True if `path` is a pinned network namespace (a mount of nsfs).
pub fn is_pinned(path: &Path) -> bool {
    let Ok(stat) = nix::sys::statfs::statfs(path) else {
        return false;
    };
    // NSFS_MAGIC
    stat.filesystem_type().0 as u64 == 0x6e73_6673
}

/// Unpin and remove a namespace file (the namespace dies with its last user).
pub fn remove(path: &Path) -> Result<(), NetworkError> {
    if is_pinned(path) {
        umount2(path, MntFlags::MNT_DETACH)
            .map_err(nix_io)
            .map_err(io(format!("unmounting {}", path.display())))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("removing {}", path.display()))(e)),
    }
}

/// Run `work` on a fresh thread that has entered the namespace at `path`, with a
/// single-threaded tokio runtime for netlink; returns its result.
pub async fn run_in<T, F, Fut>(path: &Path, work: F) -> Result<T, NetworkError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, NetworkError>>,
{
    let path = path.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| {
            let file = File::open(&path).map_err(io(format!("opening {}", path.display())))?;
            setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(nix_io)
                .map_err(io(format!("entering {}", path.display())))?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(io("starting a runtime inside the pod namespace"))?;
            runtime.block_on(work())
        })();
        let _ = tx.send(result);
    });
    rx.await.unwrap_or_else(|_| {
        Err(NetworkError::Io {
            what: "pod namespace thread".to_owned(),
            source: std::io::Error::other("the thread ended without answering"),
        })
    })
}
