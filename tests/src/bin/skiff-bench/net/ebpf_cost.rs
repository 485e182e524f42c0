//! What Skiff's eBPF programs cost per request on a path: the kernel's run-time statistics
//! of every lab node's programs, read before and after a measurement (`skiff-agent bpf
//! programs` shows the same counters). This is the datapath's own share of the CPU time
//! per request, apart from the kernel's TCP/IP work that the floor pays too.

use serde_json::{Map, Value, json};
use skiff_agent::datapath::{
    inspect::Target,
    programs::{self, ProgramStats},
};
use skiff_tests::Lab;

/// Every lab node's programs with their counters so far (a node whose datapath cannot be
/// read is left out, with a warning: the figure then undercounts and says so on stderr).
pub fn snapshot(lab: &Lab) -> Vec<ProgramStats> {
    let mut all = Vec::new();
    for node in &lab.nodes {
        let target = Target {
            node: Some(node.name.clone()),
            pins: None,
        };
        match target.dir().and_then(|dir| programs::node_programs(&dir)) {
            Ok(found) => all.extend(found),
            Err(e) => eprintln!("warning: eBPF run statistics of {}: {e}", node.name),
        }
    }
    all
}

/// The report fields for `requests` requests between two snapshots: nanoseconds of eBPF
/// per request in total and, per program, runs and nanoseconds per request.
pub fn per_request(before: &[ProgramStats], after: &[ProgramStats], requests: u64) -> Value {
    let spent = programs::by_name(&programs::difference(before, after));
    let requests = requests.max(1) as f64;
    let mut total = 0.0;
    let mut by_program = Map::new();
    for (name, (runs, time)) in spent {
        if runs == 0 {
            continue;
        }
        let ns = time.as_nanos() as f64;
        total += ns;
        by_program.insert(
            name,
            json!({"runs_per_request": runs as f64 / requests, "ns_per_request": ns / requests}),
        );
    }
    json!({"ebpf_ns_per_request": total / requests, "ebpf_by_program": by_program})
}
