//! The eBPF Service datapath end to end, with the socket LB on (the default): cluster IPs
//! over TCP and UDP from a pod on every node reach every backend, evenly, and the sockets
//! see the Service's address; node ports and LoadBalancer addresses answer from the root
//! namespace (outside the cluster) on every node, `externalTrafficPolicy: Local` only
//! where a backend runs, with health check node ports saying so; scaling down and killing
//! the agent under load fail no request; `trace` shows a NodePort flow hook by hook;
//! connected UDP sockets leave a removed backend; a frontend two Services claim passes to
//! the second when the first goes; bad input harms nothing.
//!
//! Clients are `skiff-load` run in the network namespace and cgroup of a busybox pod, or in
//! the root namespace.

use std::{collections::BTreeSet, time::Duration};

use skiff_tests::{
    Lab,
    datapath_checks::{
        self as checks, backends, client_pod, count, decisions, echo_deployment,
        wait_ready_endpoints,
    },
};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn cluster_ips_reach_every_backend_from_every_node_evenly() {
    let Some(lab) = Lab::from_env() else { return };
    checks::cluster_ips_reach_every_backend_from_every_node_evenly(&lab);
}

#[test]
fn node_ports_and_load_balancers_answer_from_outside_with_traffic_policies() {
    let Some(lab) = Lab::from_env() else { return };
    checks::node_ports_and_load_balancers_answer_from_outside_with_traffic_policies(&lab);
}

#[test]
fn scaling_down_under_load_fails_no_connection_and_drains_terminating_backends() {
    let Some(lab) = Lab::from_env() else { return };
    checks::scaling_down_under_load_fails_no_connection_and_drains_terminating_backends(&lab);
}

#[test]
fn killing_the_agent_under_load_fails_no_request_and_restart_flushes_nothing() {
    let Some(lab) = Lab::from_env() else { return };
    checks::killing_the_agent_under_load_fails_no_request_and_restart_flushes_nothing(&lab);
}

#[test]
fn trace_shows_a_node_port_flow_hook_by_hook() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("dp-trace");
    lab.apply(&ns, &echo_deployment("echo", 1));
    lab.apply(
        &ns,
        r#"apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  type: NodePort
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
"#,
    );
    wait_ready_endpoints(&lab, &ns, "echo", 1);
    let node_port = lab.jsonpath(&ns, "service/echo", "{.spec.ports[0].nodePort}");
    let node = lab.nodes[1].clone();
    let agent = lab.bin("skiff-agent");
    let trace = std::process::Command::new(&agent)
        .args([
            "bpf",
            "--node",
            &node.name,
            "trace",
            "--addr",
            "172.30.0.1",
            "--port",
            &node_port,
            "--proto",
            "tcp",
            "--seconds",
            "8",
            "--count",
            "6",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting trace");
    std::thread::sleep(Duration::from_secs(2));
    let target = format!("{}:{node_port}", node.address);
    let report = lab.load_from_root(&["probe", "--target", &target, "--requests", "3"]);
    assert_eq!(count(&report, "failed"), 0, "{report}");
    let out = trace.wait_with_output().expect("trace finished");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("trace of a NodePort flow on {}:\n{text}", node.name);
    let first = text
        .lines()
        .find(|l| l.contains(" translated ") || l.contains("  translated"))
        .unwrap_or_else(|| panic!("no translation traced: {text}"));
    assert!(
        first.contains("tc-external") || first.contains("xdp"),
        "hook: {first}"
    );
    assert!(
        first.contains(&format!("service {target}/TCP")),
        "service: {first}"
    );
    assert!(first.contains("backend 10.244."), "backend: {first}");
    assert!(first.contains("nat "), "NAT: {first}");
    assert!(
        text.contains("reverse_translated"),
        "the reply was not traced: {text}"
    );
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// A bare echo pod labelled `app=<app>`.
fn echo_pod(name: &str, app: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {app}}}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: echo
    image: skiff/echo
    ports: [{{name: udp, containerPort: 9001, protocol: UDP}}]
"#
    )
}

#[test]
fn connected_udp_sockets_leave_a_removed_backend() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("dp-udp");
    lab.apply(&ns, &echo_pod("echo-a", "echo"));
    lab.apply(&ns, &echo_pod("echo-b", "echo"));
    lab.apply(
        &ns,
        r#"apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: udp, port: 53, targetPort: udp, protocol: UDP}]
"#,
    );
    lab.apply(&ns, &client_pod("client", &lab.nodes[0].name));
    lab.wait_running(&ns, "client");
    wait_ready_endpoints(&lab, &ns, "echo", 2);
    let vip = lab.jsonpath(&ns, "service/echo", "{.spec.clusterIP}");
    let target = format!("{vip}:53");
    // One connected UDP socket, 20 datagrams a second for 10 s. Each backend in turn leaves
    // the Service while its pod keeps answering: only the datapath closing the socket can
    // move the client off it.
    let load = lab.spawn_load_in_pod(
        &ns,
        "client",
        &[
            "rr",
            "--protocol",
            "udp",
            "--target",
            &target,
            "--duration",
            "10",
            "--rate",
            "20",
            "--timeout-ms",
            "500",
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    lab.kubectl_ok(&[
        "label",
        "pod",
        "echo-a",
        "-n",
        &ns,
        "app=gone",
        "--overwrite",
    ]);
    std::thread::sleep(Duration::from_secs(3));
    lab.kubectl_ok(&[
        "label",
        "pod",
        "echo-a",
        "-n",
        &ns,
        "app=echo",
        "--overwrite",
    ]);
    lab.kubectl_ok(&[
        "label",
        "pod",
        "echo-b",
        "-n",
        &ns,
        "app=gone",
        "--overwrite",
    ]);
    let report = load.finish();
    eprintln!("connected UDP across backend removals: {report}");
    assert_eq!(
        backends(&report),
        BTreeSet::from(["echo-a".to_owned(), "echo-b".to_owned()]),
        "the connected socket stayed on a removed backend: {report}"
    );
    assert!(
        count(&report, "ok") > 150,
        "the socket stopped getting answers: {report}"
    );
    let log = std::fs::read_to_string(
        lab.dir
            .join("logs")
            .join(format!("agent-{}.log", lab.nodes[0].name)),
    )
    .unwrap_or_default();
    assert!(
        log.contains("closed UDP sockets connected to removed backends"),
        "the agent destroyed no connected UDP socket"
    );
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn huge_and_odd_services_harm_nothing() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("dp-odd");
    // 10,000 backends of one selector-less Service (100 slices of 100), one of them outside
    // every lab range.
    let mut slices = String::new();
    for s in 0..100 {
        let mut endpoints = String::new();
        for e in 0..100 {
            let address = if s == 0 && e == 0 {
                "203.0.113.9".to_owned()
            } else {
                format!("10.250.{}.{}", s, e + 1)
            };
            endpoints.push_str(&format!("- addresses: [\"{address}\"]\n"));
        }
        slices.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: huge-{s}\n  labels: {{kubernetes.io/service-name: huge, endpointslice.kubernetes.io/managed-by: test}}\naddressType: IPv4\nports: [{{name: \"\", port: 8080, protocol: TCP}}]\nendpoints:\n{endpoints}"
        ));
    }
    lab.apply(&ns, "apiVersion: v1\nkind: Service\nmetadata: {name: huge}\nspec:\n  ports: [{port: 80, targetPort: 8080}]\n");
    let out = lab.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &slices);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let huge = lab.jsonpath(&ns, "service/huge", "{.spec.clusterIP}");
    let node = lab.nodes[0].name.clone();
    lab.eventually("10,000 backends programmed", 2 * MINUTE, || {
        let frontend = format!("{huge}:80/TCP");
        let slots = lab
            .frontends(&node)
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["frontend"] == frontend.as_str())
            .and_then(|f| f["backends"].as_array().map(Vec::len))
            .unwrap_or(0);
        if slots == 10_000 {
            Ok(())
        } else {
            Err(format!("{slots} slots"))
        }
    });
    // Other Services are still served, and the agent is healthy.
    let health = format!(
        "http://{}:{}/healthz",
        lab.nodes[0].address,
        skiff_tests::AGENT_HEALTH_PORT
    );
    assert_eq!(
        skiff_tests::process::run("curl", &["-s", "-m", "2", &health]).as_deref(),
        Ok("ok")
    );
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn a_pod_reaches_itself_through_its_service() {
    let Some(lab) = Lab::from_env() else { return };
    checks::a_pod_reaches_itself_through_its_service(&lab);
}

#[test]
fn affinity_holds_and_services_without_backends_refuse_at_once() {
    let Some(lab) = Lab::from_env() else { return };
    checks::affinity_holds_and_services_without_backends_refuse_at_once(&lab);
}

/// Two Services claiming one frontend (the same external IP and port): the first keeps
/// it, and once the first is deleted the second takes it over — on the node's own
/// initiative, with no change to the second Service.
#[test]
fn a_frontend_two_services_claim_passes_to_the_second_when_the_first_goes() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("dp-claim");
    // A lab underlay address no node or LoadBalancer pool holds.
    const CLAIMED: &str = "172.30.0.99";
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {name}}}}}\n\
             spec:\n  containers:\n  - name: echo\n    image: skiff/echo\n    \
             ports: [{{name: http, containerPort: 8080}}]\n"
        )
    };
    let service = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  \
             selector: {{app: {name}}}\n  externalIPs: [\"{CLAIMED}\"]\n  \
             ports: [{{port: 80, targetPort: http}}]\n"
        )
    };
    lab.apply(&ns, &pod("first"));
    lab.apply(&ns, &pod("second"));
    lab.apply(&ns, &client_pod("client", &lab.nodes[0].name));
    for name in ["first", "second", "client"] {
        lab.wait_running(&ns, name);
    }
    lab.apply(&ns, &service("first"));
    wait_ready_endpoints(&lab, &ns, "first", 1);
    lab.apply(&ns, &service("second"));
    wait_ready_endpoints(&lab, &ns, "second", 1);
    let target = format!("{CLAIMED}:80");
    let reached = || {
        let report = lab.load_in_pod(
            &ns,
            "client",
            &[
                "probe",
                "--target",
                &target,
                "--requests",
                "5",
                "--timeout-ms",
                "1000",
            ],
        );
        backends(&report).into_iter().collect::<Vec<_>>()
    };
    assert_eq!(reached(), ["first"], "the first claimant keeps {target}");
    let out = lab.kubectl(&["delete", "service", "first", "-n", &ns]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    lab.eventually(
        &format!("{target} passes to the second Service"),
        MINUTE,
        || {
            let now = reached();
            if now == ["second"] {
                Ok(())
            } else {
                Err(format!("reached {now:?}"))
            }
        },
    );
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Send one raw IPv4 packet (header included) from the root namespace.
fn send_raw(packet: &[u8], to: std::net::Ipv4Addr) {
    // SAFETY: plain socket(2); checked below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(to).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: the buffer and address are valid for the lengths passed; fd is ours.
    let sent = unsafe {
        let sent = libc::sendto(
            fd,
            packet.as_ptr().cast(),
            packet.len(),
            0,
            std::ptr::from_ref(&address).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        libc::close(fd);
        sent
    };
    assert_eq!(
        sent,
        packet.len() as isize,
        "sendto: {}",
        std::io::Error::last_os_error()
    );
}

/// An IPv4 header (checksum and id left to the kernel) for `payload` bytes after `options`.
fn ipv4(to: std::net::Ipv4Addr, proto: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let header_len = 20 + options.len();
    let total = header_len + payload.len();
    let mut packet = vec![
        0x40 | (header_len / 4) as u8,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ];
    packet.extend_from_slice(&skiff_tests::BRIDGE_ADDR.octets());
    packet.extend_from_slice(&to.octets());
    packet.extend_from_slice(options);
    packet.extend_from_slice(payload);
    packet
}

#[test]
fn malformed_fragmented_and_optioned_packets_are_counted_and_harm_nothing() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("dp-malformed");
    lab.apply(&ns, &echo_deployment("echo", 1));
    lab.apply(
        &ns,
        r#"apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  type: NodePort
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: udp, port: 53, targetPort: udp, protocol: UDP}
"#,
    );
    wait_ready_endpoints(&lab, &ns, "echo", 1);
    let node = lab.nodes[0].clone();
    let tcp_port: u16 = lab
        .jsonpath(&ns, "service/echo", "{.spec.ports[0].nodePort}")
        .parse()
        .expect("tcp node port");
    let udp_port: u16 = lab
        .jsonpath(&ns, "service/echo", "{.spec.ports[1].nodePort}")
        .parse()
        .expect("udp node port");
    let before = (
        decisions(&lab, &node.name, "tc-external", "malformed"),
        decisions(&lab, &node.name, "tc-external", "fragment"),
    );
    // A TCP header cut after 4 bytes.
    let truncated = ipv4(
        node.address,
        6,
        &[],
        &[0x9c, 0x40, (tcp_port >> 8) as u8, tcp_port as u8],
    );
    for _ in 0..5 {
        send_raw(&truncated, node.address);
    }
    // A UDP datagram larger than the MTU: the kernel sends it in fragments.
    let socket = std::net::UdpSocket::bind("172.30.0.1:0").expect("udp socket");
    socket
        .send_to(&vec![b'x'; 4000], (node.address, udp_port))
        .expect("large datagram");
    // A SYN behind IP options (four NOPs): translated like any other.
    let mut syn = vec![0x9c, 0x41, (tcp_port >> 8) as u8, tcp_port as u8];
    syn.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    send_raw(&ipv4(node.address, 6, &[1, 1, 1, 1], &syn), node.address);
    let optioned_flow = format!("172.30.0.1:40001 → {}:{tcp_port}", node.address);
    lab.eventually("the odd packets are counted", MINUTE, || {
        let now = (
            decisions(&lab, &node.name, "tc-external", "malformed"),
            decisions(&lab, &node.name, "tc-external", "fragment"),
        );
        let tracked = lab.bpf(&node.name, &["ct", "list"]).contains(&optioned_flow);
        if now.0 >= before.0 + 5 && now.1 >= before.1 + 2 && tracked {
            Ok(())
        } else {
            Err(format!(
                "malformed/fragment before {before:?}, now {now:?}; SYN with options tracked: {tracked}"
            ))
        }
    });
    // And the node port still works.
    let target = format!("{}:{tcp_port}", node.address);
    let report = lab.load_from_root(&["probe", "--target", &target, "--requests", "10"]);
    assert_eq!(count(&report, "ok"), 10, "{report}");
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
