//! Where a pod start's CPU goes: the CPU time of the lab's processes by role, read from
//! `/proc/<pid>/stat` before and after a batch, process by process (a process that exits in
//! between takes its time with it; one that starts counts all of its own). Each process
//! counts its user and system time and that of the children it has waited for, so runc
//! (`create`, `start`) lands with the shim that ran it, and the shim launcher
//! (`containerd-shim-runc-v2 start`, which exits at once) with containerd. `runc init`
//! becomes the container's process, so its share is under "containers". Times are clock
//! ticks (10 ms) per process, good to a few milliseconds per pod over a batch of 30. Kernel
//! work done outside these processes (network namespaces are destroyed by a kernel worker)
//! is not counted.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// Roles in the order the report lists them.
const ROLES: [&str; 7] = [
    "containerd shims (with the OCI runtime's create/start)",
    "containers (the OCI runtime's init, then the app)",
    "containerd (with the shim launcher)",
    "skiff-agent",
    "log shims",
    "skiff-control",
    "etcd",
];

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, PartialEq)]
struct ProcessStat<'a> {
    comm: &'a str,
    parent: u32,
    ticks: u64,
}

/// CPU ticks of every lab process at one moment, by pid.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSnapshot {
    processes: BTreeMap<u32, (&'static str, u64)>,
}

impl CpuSnapshot {
    /// Every process of the lab now; `agent_pid` tells the agent from its log shims (the
    /// same binary).
    pub fn take(agent_pid: u32) -> Self {
        let mut stats = Vec::new();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                    stats.push((pid, stat));
                }
            }
        }
        let parsed: Vec<(u32, ProcessStat)> = stats
            .iter()
            .filter_map(|(pid, stat)| Some((*pid, parse_stat(stat)?)))
            .collect();
        let shims: Vec<u32> = parsed
            .iter()
            .filter(|(_, p)| p.comm == "containerd-shim")
            .map(|(pid, _)| *pid)
            .collect();
        let processes = parsed
            .iter()
            .filter_map(|(pid, p)| {
                let role = role(p, *pid == agent_pid, shims.contains(&p.parent))?;
                Some((*pid, (role, p.ticks)))
            })
            .collect();
        Self { processes }
    }

    /// Milliseconds of CPU per pod by role between `earlier` and this snapshot, for `pods`
    /// pods started in between.
    pub fn per_pod_since(&self, earlier: &Self, pods: usize) -> BTreeMap<&'static str, f64> {
        let mut ticks: BTreeMap<&'static str, u64> = ROLES.iter().map(|r| (*r, 0)).collect();
        for (pid, (role, now)) in &self.processes {
            let then = earlier
                .processes
                .get(pid)
                .filter(|(earlier_role, _)| earlier_role == role)
                .map_or(0, |(_, t)| *t);
            *ticks.entry(role).or_default() += now.saturating_sub(then);
        }
        ticks
            .into_iter()
            .map(|(role, t)| {
                let ms = t as f64 * 1000.0 / TICKS_PER_SECOND;
                (role, ms / pods.max(1) as f64)
            })
            .collect()
    }
}

/// Sums of per-pod figures over batches, averaged at the end.
#[derive(Debug, Default)]
pub struct CpuPerPod {
    sums: BTreeMap<&'static str, f64>,
    batches: usize,
}

impl CpuPerPod {
    /// Add one batch's figures.
    pub fn add(&mut self, batch: &BTreeMap<&'static str, f64>) {
        for (role, ms) in batch {
            *self.sums.entry(role).or_default() += ms;
        }
        self.batches += 1;
    }

    /// `{"roles": [{"process", "ms"}, …], "total": ms}`: milliseconds per pod averaged over
    /// the batches, roles in report order.
    pub fn to_json(&self) -> Value {
        let batches = self.batches.max(1) as f64;
        let tenths = |ms: f64| (ms * 10.0).round() / 10.0;
        let mut total = 0.0;
        let roles: Vec<Value> = ROLES
            .iter()
            .map(|role| {
                let ms = self.sums.get(role).copied().unwrap_or(0.0) / batches;
                total += ms;
                json!({"process": role, "ms": tenths(ms)})
            })
            .collect();
        json!({"roles": roles, "total": tenths(total)})
    }
}

/// The role of a process: by its command name (`comm`, at most 15 bytes), or as a
/// container's process (a child of a shim that is not a log shim).
fn role(process: &ProcessStat, is_agent: bool, child_of_shim: bool) -> Option<&'static str> {
    match process.comm {
        "containerd-shim" => Some(ROLES[0]),
        "skiff-agent" if is_agent => Some(ROLES[3]),
        "skiff-agent" => Some(ROLES[4]),
        _ if child_of_shim => Some(ROLES[1]),
        "containerd" => Some(ROLES[2]),
        "skiff-control" => Some(ROLES[5]),
        "etcd" => Some(ROLES[6]),
        _ => None,
    }
}

/// Command name, parent and `utime + stime + cutime + cstime` of one `/proc/<pid>/stat`
/// line. The command name is in parentheses and may itself hold spaces or parentheses: the
/// fields after it start at the last `)`.
fn parse_stat(stat: &str) -> Option<ProcessStat<'_>> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    // After ")": state is field 3, the parent 4; utime, stime, cutime, cstime are 14–17.
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<i64>().ok();
    let ticks = field(14)? + field(15)? + field(16)? + field(17)?;
    Some(ProcessStat {
        comm,
        parent: u32::try_from(field(4)?).ok()?,
        ticks: u64::try_from(ticks).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_parent_and_own_and_waited_for_children_time() {
        let stat = "4242 (containerd-shim) S 1 4242 4242 0 -1 4194560 900 0 0 0 12 7 30 5 20 0 10 \
                    0 123 0 0";
        let parsed = parse_stat(stat).expect("parses");
        assert_eq!(parsed.comm, "containerd-shim");
        assert_eq!(parsed.parent, 1);
        assert_eq!(parsed.ticks, 12 + 7 + 30 + 5);
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_fields() {
        let stat = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 5 6 20 0 1 0 1 0 0";
        let parsed = parse_stat(stat).expect("parses");
        assert_eq!((parsed.comm, parsed.ticks), ("a (b) c", 18));
    }

    #[test]
    fn roles_tell_the_agent_its_log_shims_and_containers_apart() {
        let process = |comm| ProcessStat {
            comm,
            parent: 1,
            ticks: 0,
        };
        assert_eq!(
            role(&process("skiff-agent"), true, false),
            Some("skiff-agent")
        );
        assert_eq!(
            role(&process("skiff-agent"), false, true),
            Some("log shims")
        );
        assert_eq!(
            role(&process("skiff-echo"), false, true),
            Some("containers (the OCI runtime's init, then the app)")
        );
        assert_eq!(role(&process("bash"), false, false), None);
    }

    #[test]
    fn per_pod_figures_count_each_process_from_its_own_start() {
        let before = CpuSnapshot {
            processes: BTreeMap::from([(10, ("etcd", 50)), (20, (ROLES[0], 400))]),
        };
        let after = CpuSnapshot {
            processes: BTreeMap::from([
                (10, ("etcd", 80)),
                // pid 20 (an old shim) exited; pid 21 is a new shim.
                (21, (ROLES[0], 60)),
                (30, ("skiff-agent", 6)),
            ]),
        };
        let per_pod = after.per_pod_since(&before, 3);
        assert_eq!(per_pod["etcd"], 100.0); // 30 ticks = 300 ms over 3 pods
        assert_eq!(per_pod[ROLES[0]], 200.0); // the exited shim takes nothing away
        assert_eq!(per_pod["skiff-agent"], 20.0);
        let mut total = CpuPerPod::default();
        total.add(&per_pod);
        total.add(&per_pod);
        assert_eq!(
            total.to_json()["roles"][6],
            json!({"process": "etcd", "ms": 100.0})
        );
        assert_eq!(total.to_json()["total"], json!(320.0));
    }
}
