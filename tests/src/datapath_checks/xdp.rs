//! XDP NodePort acceleration, checked end to end on one node.

use crate::Lab;

use super::{count, counters_moved, decisions};

/// XDP on for one node while alive (off again when dropped, also after a failed check).
struct XdpOn<'a> {
    lab: &'a Lab,
    node: String,
}

impl<'a> XdpOn<'a> {
    fn new(lab: &'a Lab, node: &str) -> Self {
        lab.bpf(node, &["config", "--xdp", "on"]);
        Self {
            lab,
            node: node.to_owned(),
        }
    }
}

impl Drop for XdpOn<'_> {
    fn drop(&mut self) {
        // No panic here: this also runs while a failed check unwinds.
        let out = crate::process::output(
            std::process::Command::new(self.lab.bin("skiff-agent"))
                .args(["bpf", "--node", &self.node, "config", "--xdp", "off"]),
        );
        if out.code != 0 {
            eprintln!("could not turn XDP off on {}: {}", self.node, out.stderr);
        }
    }
}

/// With XDP on, a node port with local backends (`externalTrafficPolicy: Local`) keeps
/// answering every connection, twice over the same client ports (the second round meets
/// the conntrack entries of the first), and XDP did the translating.
/// `ns` is the Service's namespace (its EndpointSlices are shown when a round fails).
pub(super) fn xdp_serves_local_node_port(
    lab: &Lab,
    ns: &str,
    node: &str,
    address: &str,
    port: &str,
) {
    let xdp = XdpOn::new(lab, node);
    let before = decisions(lab, node, "xdp", "translated");
    let target = format!("{address}:{port}");
    for round in 1..=2 {
        let counters = lab.bpf(node, &["counters"]);
        let report = lab.load_from_root(&[
            "crr",
            "--target",
            &target,
            "--duration",
            "1",
            "--timeout-ms",
            "1000",
            "--local-ports",
            "47000-47199",
        ]);
        if count(&report, "failed") != 0 {
            // What the node decided meanwhile and what it holds for the port say why.
            let moved = counters_moved(&counters, &lab.bpf(node, &["counters"]));
            let config = lab.bpf(node, &["config"]);
            let frontends: Vec<String> = lab
                .bpf(node, &["lb", "list"])
                .lines()
                .filter(|l| l.contains(&format!(":{port}/")))
                .map(str::to_owned)
                .collect();
            let slices = lab.kubectl(&["get", "endpointslices", "-n", ns, "-o", "wide"]);
            panic!(
                "XDP round {round} to {target} failed: {report}\n\
                 decisions on {node} during the round:\n{moved}\n\
                 config:\n{config}\nfrontends on port {port}:\n{}\n\
                 EndpointSlices after the round:\n{}",
                frontends.join("\n"),
                slices.stdout
            );
        }
        assert!(
            count(&report, "ok") >= 100,
            "XDP round {round} to {target}: {report}"
        );
    }
    let translated = decisions(lab, node, "xdp", "translated").saturating_sub(before);
    assert!(translated > 0, "XDP translated nothing for {target}");
    drop(xdp);
}
