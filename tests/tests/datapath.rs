//! The eBPF Service datapath end to end, with the socket LB on (the default): cluster IPs
//! over TCP and UDP from a pod on every node reach every backend, evenly, and the sockets
//! see the Service's address; node ports and LoadBalancer addresses answer from the root
//! namespace (outside the cluster) on every node, `externalTrafficPolicy: Local` only
//! where a backend runs, with health check node ports saying so; scaling down and killing
//! the agent under load fail no request; `trace` shows a NodePort flow hook by hook;
//! connected UDP sockets leave a removed backend; bad input harms nothing.
//!
//! Clients are `skiff-load` run in the network namespace and cgroup of a busybox pod, or in
//! the root namespace.

use std::{collections::BTreeSet, time::Duration};

use skiff_tests::{
    Lab,
    datapath_checks::{
        self as checks, backends, client_pod, count, echo_deployment, wait_ready_endpoints,
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
fn empty_huge_and_odd_services_harm_nothing() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("dp-odd");
    lab.apply(&ns, &client_pod("client", &lab.nodes[0].name));
    lab.wait_running(&ns, "client");
    // No backend: refused at once, not timed out.
    lab.apply(
        &ns,
        r#"apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nothing}
  ports: [{port: 80}]
"#,
    );
    let vip = lab.jsonpath(&ns, "service/empty", "{.spec.clusterIP}");
    let target = format!("{vip}:80");
    let report = lab.eventually("the empty Service is programmed", MINUTE, || {
        let report = lab.load_in_pod(
            &ns,
            "client",
            &["probe", "--target", &target, "--requests", "5"],
        );
        if report["errors"]["refused"].as_u64() == Some(5) {
            Ok(report)
        } else {
            Err(report.to_string())
        }
    });
    assert!(
        report["seconds"].as_f64().unwrap_or(f64::MAX) < 1.0,
        "refusals were not immediate: {report}"
    );
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
        let list = lab.bpf(&node, &["lb", "list"]);
        let slots = list
            .lines()
            .skip_while(|l| !l.starts_with(&format!("{huge}:80/TCP")))
            .take_while(|l| l.starts_with(&format!("{huge}:80/TCP")) || l.starts_with(' '))
            .count();
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
