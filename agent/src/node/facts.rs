//! What a node reports about its host: capacity, OS, kernel, identities.

use std::path::Path;

/// Facts read from the host once at start.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// Logical CPUs.
    pub cpus: usize,
    /// Memory in KiB.
    pub memory_kib: u64,
    /// Kernel release.
    pub kernel: String,
    /// OS pretty name.
    pub os_image: String,
    /// /etc/machine-id (or empty).
    pub machine_id: String,
    /// Boot id.
    pub boot_id: String,
    /// CPU architecture as Kubernetes names it.
    pub architecture: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(path))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl HostFacts {
    /// Read the facts of this host.
    pub fn read() -> Self {
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| "Linux".to_owned());
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        }
        .to_owned();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_kib,
            kernel: read("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            architecture,
        }
    }
}
