//! The OCI runtime spec (config.json) runc gets for one container: process (user and
//! groups, capabilities, no_new_privs), root, mounts, namespaces (the pod's network namespace
//! shared by all its containers), seccomp, devices, cgroup path and resource limits
//! (memory, CPU, pids). Defaults follow containerd's CRI plugin (capability set, masked
//! paths, what a privileged container gets).

use std::path::PathBuf;

use serde_json::{Value, json};

/// containerd's type URL for a runtime spec carried in a protobuf `Any`.
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// Docker's default capabilities, which kubelet (through containerd's CRI) also grants.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A bind mount from the host (volumes, /etc/hosts, /etc/resolv.conf).
#[derive(Debug, Clone, PartialEq)]
pub struct BindMount {
    /// Host path.
    pub source: PathBuf,
    /// Path in the container.
    pub destination: String,
    /// Read-only.
    pub read_only: bool,
}

/// Everything that varies between containers.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    /// argv.
    pub args: Vec<String>,
    /// `KEY=value`.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// uid and gid.
    pub user: (u32, u32),
    /// Supplementary gids (`process.user.additionalGids`).
    pub additional_gids: Vec<u32>,
    /// Hostname (the pod name).
    pub hostname: String,
    /// The pod's network namespace file.
    pub netns: PathBuf,
    /// cgroupsPath (`/skiff/<node>/pod<uid>/<container>`).
    pub cgroups_path: String,
    /// Extra mounts.
    pub mounts: Vec<BindMount>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// CPU quota in microseconds per 100 ms period.
    pub cpu_quota: Option<i64>,
    /// CPU shares (from the request).
    pub cpu_shares: Option<u64>,
    /// Read-only root filesystem.
    pub read_only_root: bool,
    /// Capabilities granted (bounding, effective, permitted).
    pub capabilities: Vec<String>,
    /// Privileged: every capability, no masked paths, writable /sys and cgroupfs, every
    /// device allowed.
    pub privileged: bool,
    /// `process.noNewPrivileges` (allowPrivilegeEscalation: false).
    pub no_new_privileges: bool,
    /// `linux.seccomp` (`None`: unconfined).
    pub seccomp: Option<Value>,
    /// `linux.devices`: device nodes made in the container (the host's, when privileged).
    pub devices: Vec<Value>,
    /// `linux.resources.pids.limit`.
    pub pids_limit: Option<i64>,
    /// The containers that share one containerd shim process (the pod's UID; empty: a shim
    /// of its own). See [`SHIM_GROUP_ANNOTATION`].
    pub shim_group: String,
}

/// The annotation by which containerd's runc shim serves several containers from one
/// process: `containerd-shim-runc-v2 start` derives its socket from the group instead of
/// the container ID and joins a running shim of the group, as containerd's CRI plugin
/// does for a pod's containers (there through `io.kubernetes.cri.sandbox-id`). A pod's
/// second container then costs no shim process of its own, and a restarted container
/// joins the shim its siblings keep alive.
pub const SHIM_GROUP_ANNOTATION: &str = "io.containerd.runc.v2.group";

/// The network namespace entry: join `netns`, or (no path) a new namespace of its own.
fn network_namespace(netns: &std::path::Path) -> Value {
    if netns.as_os_str().is_empty() {
        json!({"type": "network"})
    } else {
        json!({"type": "network", "path": netns})
    }
}

/// The runtime spec as JSON bytes.
pub fn build(config: &ContainerConfig) -> Value {
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if config.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if config.privileged { "rw" } else { "ro" }]}),
    ];
    for mount in &config.mounts {
        let mode = if mount.read_only { "ro" } else { "rw" };
        mounts.push(json!({
            "destination": mount.destination,
            "type": "bind",
            "source": mount.source,
            "options": ["rbind", "rprivate", mode],
        }));
    }
    let capabilities: Vec<&str> = if config.privileged {
        ALL_CAPABILITIES.to_vec()
    } else {
        config.capabilities.iter().map(String::as_str).collect()
    };
    let mut resources = json!({"devices": [{"allow": config.privileged, "access": "rwm"}]});
    if let Some(limit) = config.memory_limit {
        resources["memory"] = json!({"limit": limit});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(quota) = config.cpu_quota {
        cpu.insert("quota".into(), json!(quota));
        cpu.insert("period".into(), json!(100_000));
    }
    if let Some(shares) = config.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(limit) = config.pids_limit {
        resources["pids"] = json!({"limit": limit});
    }
    let mut linux = json!({
        "namespaces": [
            {"type": "pid"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "mount"},
            network_namespace(&config.netns),
        ],
        "cgroupsPath": config.cgroups_path,
        "resources": resources,
    });
    if let Some(seccomp) = &config.seccomp {
        linux["seccomp"] = seccomp.clone();
    }
    if !config.devices.is_empty() {
        linux["devices"] = Value::Array(config.devices.clone());
    }
    // Only a privileged container goes without masked and read-only /proc and /sys paths:
    // an unmasked /proc (procMount: Unmasked) is safe only inside a user namespace, which
    // the agent does not create, so the kubelet refuses it before a spec is built.
    if !config.privileged {
        linux["maskedPaths"] = json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap"
        ]);
        linux["readonlyPaths"] = json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]);
    }
    let mut user = json!({"uid": config.user.0, "gid": config.user.1});
    if !config.additional_gids.is_empty() {
        user["additionalGids"] = json!(config.additional_gids);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": user,
            "args": config.args,
            "env": config.env,
            "cwd": if config.cwd.is_empty() { "/" } else { config.cwd.as_str() },
            "capabilities": {
                "bounding": capabilities,
                "effective": capabilities,
                "permitted": capabilities,
            },
            "noNewPrivileges": config.no_new_privileges,
        },
        "root": {"path": "rootfs", "readonly": config.read_only_root},
        "hostname": config.hostname,
        "mounts": mounts,
        "linux": linux,
    });
    if !config.shim_group.is_empty() {
        spec["annotations"] = json!({ SHIM_GROUP_ANNOTATION: config.shim_group });
    }
    spec
}

/// Every capability (privileged containers, and `capabilities.add: [ALL]`).
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_joins_the_pod_network_and_limits_memory() {
        let spec = build(&ContainerConfig {
            args: vec!["sh".into()],
            netns: "/run/x/netns/p".into(),
            cgroups_path: "/skiff/n1/podu/c".into(),
            memory_limit: Some(64 << 20),
            capabilities: vec!["CAP_KILL".into()],
            ..ContainerConfig::default()
        });
        assert_eq!(spec["linux"]["namespaces"][4]["path"], "/run/x/netns/p");
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(spec["linux"]["cgroupsPath"], "/skiff/n1/podu/c");
        assert_eq!(spec["process"]["capabilities"]["bounding"][0], "CAP_KILL");
        assert_eq!(spec["process"]["cwd"], "/");
    }

    #[test]
    fn no_network_namespace_path_means_a_new_namespace() {
        // An empty path is not "none" to every runtime: crun tries to open "".
        let spec = build(&ContainerConfig::default());
        assert_eq!(spec["linux"]["namespaces"][4], json!({"type": "network"}));
    }

    #[test]
    fn security_settings_reach_the_spec() {
        let spec = build(&ContainerConfig {
            user: (1000, 1001),
            additional_gids: vec![1001, 2000],
            no_new_privileges: true,
            seccomp: Some(json!({"defaultAction": "SCMP_ACT_ERRNO"})),
            pids_limit: Some(4096),
            read_only_root: true,
            ..ContainerConfig::default()
        });
        assert_eq!(
            spec["process"]["user"],
            json!({"uid": 1000, "gid": 1001, "additionalGids": [1001, 2000]})
        );
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(spec["linux"]["resources"]["pids"]["limit"], 4096);
        assert_eq!(spec["root"]["readonly"], true);
        assert!(spec["linux"]["maskedPaths"].is_array());
        let defaults = build(&ContainerConfig::default());
        assert_eq!(defaults["process"]["noNewPrivileges"], false);
        assert!(defaults["linux"].get("seccomp").is_none());
        assert!(defaults["linux"]["resources"].get("pids").is_none());
        assert!(defaults["process"]["user"].get("additionalGids").is_none());
    }

    #[test]
    fn privileged_containers_get_what_the_cri_gives_them() {
        let spec = build(&ContainerConfig {
            privileged: true,
            devices: vec![json!({"path": "/dev/null", "type": "c", "major": 1, "minor": 3})],
            ..ContainerConfig::default()
        });
        let caps = spec["process"]["capabilities"]["bounding"]
            .as_array()
            .expect("caps");
        assert_eq!(caps.len(), ALL_CAPABILITIES.len());
        assert!(spec["linux"].get("maskedPaths").is_none());
        assert_eq!(spec["linux"]["devices"][0]["path"], "/dev/null");
        assert_eq!(spec["linux"]["resources"]["devices"][0]["allow"], true);
        let mount = |dest: &str| {
            spec["mounts"]
                .as_array()
                .expect("mounts")
                .iter()
                .find(|m| m["destination"] == dest)
                .expect("mount")
                .clone()
        };
        assert!(
            mount("/sys")["options"]
                .as_array()
                .expect("o")
                .contains(&json!("rw"))
        );
        assert!(
            mount("/sys/fs/cgroup")["options"]
                .as_array()
                .expect("o")
                .contains(&json!("rw"))
        );
        let unprivileged = build(&ContainerConfig::default());
        let readonly = unprivileged["linux"]["readonlyPaths"]
            .as_array()
            .expect("readonlyPaths");
        assert!(readonly.contains(&json!("/proc/sys")));
        assert!(readonly.contains(&json!("/proc/sysrq-trigger")));
        assert!(unprivileged["linux"]["maskedPaths"].is_array());
    }

    #[test]
    fn a_pods_containers_name_their_shim_group() {
        let spec = build(&ContainerConfig {
            shim_group: "0b6f-uid".into(),
            ..ContainerConfig::default()
        });
        assert_eq!(spec["annotations"][SHIM_GROUP_ANNOTATION], "0b6f-uid");
        assert!(
            build(&ContainerConfig::default())
                .get("annotations")
                .is_none()
        );
    }
}
