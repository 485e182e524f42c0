//! The `RuntimeDefault` seccomp profile: containerd's default profile, as data in the OCI
//! runtime spec's `linux.seccomp` form.
//!
//! Ported from containerd's `contrib/seccomp/seccomp_default.go` (`DefaultProfile`), at
//! commit 301026e58 of github.com/containerd/containerd (Apache-2.0): the same allow list,
//! the same argument filters (socket families other than AF_ALG and AF_VSOCK, the
//! personality values, clone without namespace flags), the same syscalls unlocked by
//! capabilities in the bounding set, and clone3 answering ENOSYS without CAP_SYS_ADMIN.
//! Two simplifications: the kernel ≥ 4.8 check for ptrace and process_vm_* is taken as
//! true (Skiff's datapath needs a far newer kernel), and only the x86-64 and arm64
//! architecture lists are carried. Syscall names this host's libseccomp does not know are
//! skipped by runc, as they are with containerd's profile.

use serde_json::{Value, json};

/// `AF_ALG`.
const AF_ALG: u64 = 38;
/// `AF_VSOCK`.
const AF_VSOCK: u64 = 40;
/// `ENOSYS`.
const ENOSYS: u64 = 38;
/// `CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET | CLONE_NEWCGROUP`.
const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000 | 0x0200_0000;

/// Allowed whatever the capabilities.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget",
    "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat", "dup",
    "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
    "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
    "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat",
    "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv",
    "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid",
    "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
    "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority",
    "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit",
    "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area",
    "gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "getxattrat", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy",
    "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set",
    "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen",
    "listmount", "listxattr", "listxattrat", "llistxattr", "_llseek", "lremovexattr", "lseek",
    "lsetxattr", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr", "lstat", "lstat64",
    "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat",
    "mknod", "mknodat", "mlock", "mlock2", "mlockall", "map_shadow_stack", "mmap", "mmap2",
    "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap",
    "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2",
    "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev",
    "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom",
    "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "removexattrat",
    "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction",
    "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity",
    "sched_getattr", "sched_getparam", "sched_get_priority_max", "sched_get_priority_min",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32",
    "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer",
    "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid",
    "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr",
    "setxattrat", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd",
    "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat",
    "stat64", "statfs", "statfs64", "statmount", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask",
    "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat", "utimensat_time64", "utimes",
    "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
];

/// Allowed on kernels ≥ 4.8 (every kernel Skiff runs on).
const ALLOWED_SINCE_4_8: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// The profile's architectures and architecture-specific syscalls.
#[cfg(target_arch = "x86_64")]
const ARCH: (&[&str], &[&str]) = (
    &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    &["arch_prctl", "modify_ldt"],
);
#[cfg(target_arch = "aarch64")]
const ARCH: (&[&str], &[&str]) = (
    &["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"],
    &[
        "arm_fadvise64_64",
        "arm_sync_file_range",
        "sync_file_range2",
        "breakpoint",
        "cacheflush",
        "set_tls",
    ],
);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH: (&[&str], &[&str]) = (&[], &[]);

/// Syscalls a capability in the bounding set unlocks.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

fn allow(names: &[&str]) -> Value {
    json!({"names": names, "action": "SCMP_ACT_ALLOW"})
}

fn allow_if(name: &str, op: &str, value: u64) -> Value {
    json!({
        "names": [name],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": value, "op": op}],
    })
}

/// containerd's default profile for a container whose bounding set is `capabilities`.
pub fn runtime_default(capabilities: &[String]) -> Value {
    let (architectures, arch_syscalls) = ARCH;
    let mut syscalls = vec![
        allow(ALLOWED),
        // socket(2) for every family but AF_ALG and AF_VSOCK, as three single-condition
        // rules (runc turns repeated conditions on one argument into an OR).
        allow_if("socket", "SCMP_CMP_LT", AF_ALG),
        allow_if("socket", "SCMP_CMP_EQ", AF_ALG + 1),
        allow_if("socket", "SCMP_CMP_GT", AF_VSOCK),
    ];
    for persona in [0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(allow_if("personality", "SCMP_CMP_EQ", persona));
    }
    syscalls.push(allow(ALLOWED_SINCE_4_8));
    if !arch_syscalls.is_empty() {
        syscalls.push(allow(arch_syscalls));
    }
    let held = |cap: &str| capabilities.iter().any(|c| c == cap);
    for (cap, names) in BY_CAPABILITY {
        if held(cap) {
            syscalls.push(allow(names));
        }
    }
    if !held("CAP_SYS_ADMIN") {
        syscalls.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{
                "index": 0,
                "value": CLONE_NAMESPACE_FLAGS,
                "valueTwo": 0,
                "op": "SCMP_CMP_MASKED_EQ",
            }],
        }));
        syscalls.push(json!({
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": ENOSYS,
        }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": architectures,
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_for<'a>(profile: &'a Value, name: &str) -> Vec<&'a Value> {
        profile["syscalls"]
            .as_array()
            .expect("syscalls")
            .iter()
            .filter(|rule| {
                rule["names"]
                    .as_array()
                    .is_some_and(|names| names.iter().any(|n| n == name))
            })
            .collect()
    }

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn the_default_denies_what_containerd_denies() {
        let profile = runtime_default(&caps(&["CAP_CHOWN", "CAP_KILL"]));
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
        for denied in [
            "mount",
            "unshare",
            "setns",
            "bpf",
            "reboot",
            "keyctl",
            "add_key",
            "kexec_load",
            "init_module",
            "chroot",
        ] {
            assert!(
                rules_for(&profile, denied).is_empty(),
                "{denied} is allowed"
            );
        }
        for allowed in ["read", "openat2", "execve", "futex", "arch_prctl", "ptrace"] {
            assert_eq!(rules_for(&profile, allowed).len(), 1, "{allowed}");
        }
        assert_eq!(
            rules_for(&profile, "clone3")[0],
            &json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38})
        );
        let clone = rules_for(&profile, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0]["args"][0]["value"], 2_114_060_288_u64);
        assert_eq!(clone[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
    }

    #[test]
    fn socket_families_alg_and_vsock_stay_denied() {
        let profile = runtime_default(&[]);
        let socket: Vec<(u64, &str)> = rules_for(&profile, "socket")
            .iter()
            .map(|r| {
                (
                    r["args"][0]["value"].as_u64().expect("value"),
                    r["args"][0]["op"].as_str().expect("op"),
                )
            })
            .collect();
        assert_eq!(
            socket,
            [
                (38, "SCMP_CMP_LT"),
                (39, "SCMP_CMP_EQ"),
                (40, "SCMP_CMP_GT")
            ]
        );
        assert_eq!(rules_for(&profile, "personality").len(), 5);
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let admin = runtime_default(&caps(&["CAP_SYS_ADMIN", "CAP_SYS_CHROOT"]));
        assert_eq!(rules_for(&admin, "mount").len(), 1);
        assert_eq!(rules_for(&admin, "chroot").len(), 1);
        // With CAP_SYS_ADMIN clone and clone3 are allowed outright: no masked clone rule
        // and no ENOSYS for clone3.
        let clone3 = rules_for(&admin, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0]["action"], "SCMP_ACT_ALLOW");
        assert!(
            rules_for(&admin, "clone")
                .iter()
                .all(|r| r.get("args").is_none())
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_profiles_name_the_three_x86_abis() {
        assert_eq!(
            runtime_default(&[])["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
    }
}
