//! The datapath with the socket LB off on every node (`skiff-agent bpf config --socket-lb
//! off`, what `--socket-lb=false` starts with): east-west traffic is translated per packet
//! by tc on the pods' veths, with conntrack, and must pass the same checks as the socket
//! LB — cluster IPs over TCP and UDP from every node to every backend with the Service's
//! address seen by the sockets, hairpin, node ports and LoadBalancers with their traffic
//! policies, scaling down and killing the agent under load.
//!
//! One test runs the checks in turn: the switch is node-wide, so nothing else may run
//! beside them in this binary.

use skiff_tests::{Lab, datapath_checks as checks};

/// Switches the socket LB back on when dropped, even after a failed check.
struct PerPacket<'a>(&'a Lab);

impl<'a> PerPacket<'a> {
    fn on(lab: &'a Lab) -> Self {
        lab.set_socket_lb(false);
        Self(lab)
    }
}

impl Drop for PerPacket<'_> {
    fn drop(&mut self) {
        self.0.set_socket_lb(true);
    }
}

#[test]
fn the_per_packet_path_passes_the_socket_lb_checks() {
    let Some(lab) = Lab::from_env() else { return };
    let _mode = PerPacket::on(&lab);
    checks::cluster_ips_reach_every_backend_from_every_node_evenly(&lab);
    checks::a_pod_reaches_itself_through_its_service(&lab);
    checks::affinity_holds_and_services_without_backends_refuse_at_once(&lab);
    checks::node_ports_and_load_balancers_answer_from_outside_with_traffic_policies(&lab);
    checks::scaling_down_under_load_fails_no_connection_and_drains_terminating_backends(&lab);
    checks::killing_the_agent_under_load_fails_no_request_and_restart_flushes_nothing(&lab);
}
