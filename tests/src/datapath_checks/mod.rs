//! The datapath checks that must hold in both east-west modes (socket LB, and the
//! per-packet tc path with the socket LB off): `tests/datapath.rs` runs them with the
//! socket LB on, `tests/per_packet.rs` with it off.

mod fixtures;
mod xdp;

use std::{collections::BTreeSet, time::Duration};

pub use fixtures::{
    backends, client_pod, clients, count, counters_moved, decisions, echo_deployment, pods_of,
    wait_ready_endpoints,
};
use xdp::xdp_serves_local_node_port;

use crate::Lab;

const MINUTE: Duration = Duration::from_secs(60);

/// See the module documentation.
pub fn cluster_ips_reach_every_backend_from_every_node_evenly(lab: &Lab) {
    let ns = lab.namespace("dp-clusterip");
    lab.apply(&ns, &echo_deployment("echo", 3));
    lab.apply(
        &ns,
        r#"apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: udp, port: 53, targetPort: udp, protocol: UDP}
"#,
    );
    let clients = clients(lab, &ns);
    wait_ready_endpoints(lab, &ns, "echo", 3);
    let vip = lab.jsonpath(&ns, "service/echo", "{.spec.clusterIP}");
    let pods: BTreeSet<String> = pods_of(lab, &ns, "echo")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let tcp = format!("{vip}:80");
    let udp = format!("{vip}:53");
    for client in &clients {
        let report = lab.load_in_pod(
            &ns,
            client,
            &["probe", "--target", &tcp, "--requests", "60"],
        );
        assert_eq!(count(&report, "failed"), 0, "TCP from {client}: {report}");
        assert_eq!(
            backends(&report),
            pods,
            "TCP from {client} reached: {report}"
        );
        // getpeername shows the Service, not the backend.
        assert_eq!(report["peers"], serde_json::json!([tcp]), "{report}");
        let report = lab.load_in_pod(
            &ns,
            client,
            &[
                "probe",
                "--protocol",
                "udp",
                "--target",
                &udp,
                "--requests",
                "60",
            ],
        );
        assert_eq!(count(&report, "failed"), 0, "UDP from {client}: {report}");
        assert_eq!(
            backends(&report),
            pods,
            "UDP from {client} reached: {report}"
        );
        // Replies come from the Service's address (recvmsg reverse translation).
        assert_eq!(report["peers"], serde_json::json!([udp]), "{report}");
    }
    // 3,000 connections spread within ±10 % of 1,000 per backend.
    let report = lab.load_in_pod(
        &ns,
        &clients[0],
        &[
            "crr",
            "--target",
            &tcp,
            "--requests",
            "3000",
            "--connections",
            "4",
        ],
    );
    assert_eq!(count(&report, "ok"), 3000, "{report}");
    for (pod, hits) in report["backends"].as_object().into_iter().flatten() {
        let hits = hits.as_u64().unwrap_or(0);
        assert!(
            (900..=1100).contains(&hits),
            "{pod} got {hits} of 3000 connections: {report}"
        );
    }
    eprintln!("distribution over 3 backends: {}", report["backends"]);
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// See the module documentation.
pub fn node_ports_and_load_balancers_answer_from_outside_with_traffic_policies(lab: &Lab) {
    let ns = lab.namespace("dp-nodeport");
    // Two backends on three nodes: one node has none.
    lab.apply(&ns, &echo_deployment("echo", 2));
    lab.apply(
        &ns,
        r#"apiVersion: v1
kind: Service
metadata: {name: cluster}
spec:
  type: NodePort
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: local}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
"#,
    );
    wait_ready_endpoints(lab, &ns, "cluster", 2);
    wait_ready_endpoints(lab, &ns, "local", 2);
    let pods = pods_of(lab, &ns, "echo");
    let all: BTreeSet<String> = pods.iter().map(|(p, _)| p.clone()).collect();
    let cluster_port = lab.jsonpath(&ns, "service/cluster", "{.spec.ports[0].nodePort}");
    let local_port = lab.jsonpath(&ns, "service/local", "{.spec.ports[0].nodePort}");
    let health_port = lab.jsonpath(&ns, "service/local", "{.spec.healthCheckNodePort}");
    assert!(!health_port.is_empty(), "no healthCheckNodePort");
    let mut reached = BTreeSet::new();
    for node in &lab.nodes {
        // eTP=Cluster: every node answers, with local and remote backends.
        let target = format!("{}:{cluster_port}", node.address);
        let report = lab.load_from_root(&["probe", "--target", &target, "--requests", "40"]);
        assert_eq!(count(&report, "failed"), 0, "NodePort {target}: {report}");
        reached.extend(backends(&report));
        // eTP=Local: only this node's backends; a node without one refuses at once.
        let local: BTreeSet<String> = pods
            .iter()
            .filter(|(_, n)| *n == node.name)
            .map(|(p, _)| p.clone())
            .collect();
        let target = format!("{}:{local_port}", node.address);
        let report = lab.load_from_root(&[
            "probe",
            "--target",
            &target,
            "--requests",
            "20",
            "--timeout-ms",
            "1000",
        ]);
        let health = format!("http://{}:{health_port}/", node.address);
        let expected = if local.is_empty() { "503" } else { "200" };
        let status = lab.eventually(&format!("{health} answers {expected}"), MINUTE, || {
            // curl exits 0 for any status it received.
            let status = crate::process::run(
                "curl",
                &[
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-m",
                    "2",
                    &health,
                ],
            )
            .unwrap_or_default();
            if status == expected {
                Ok(status)
            } else {
                Err(status)
            }
        });
        if local.is_empty() {
            assert_eq!(
                count(&report, "ok"),
                0,
                "{target} answered without a local backend: {report}"
            );
            assert_eq!(
                report["errors"]["refused"].as_u64(),
                Some(20),
                "{target} should refuse at once: {report}"
            );
            assert_eq!(
                status, "503",
                "health check {health} with no local endpoint"
            );
        } else {
            assert_eq!(count(&report, "failed"), 0, "{target}: {report}");
            assert_eq!(backends(&report), local, "{target} left the node: {report}");
            assert_eq!(status, "200", "health check {health} with a local endpoint");
            xdp_serves_local_node_port(
                lab,
                &ns,
                &node.name,
                &node.address.to_string(),
                &local_port,
            );
        }
    }
    assert_eq!(reached, all, "NodePorts together reached every backend");
    // The LoadBalancer address, announced by a node with a local endpoint.
    let ip = lab.eventually("a LoadBalancer address", MINUTE, || {
        let ip = lab.jsonpath(&ns, "service/local", "{.status.loadBalancer.ingress[0].ip}");
        if ip.is_empty() {
            Err("none yet".to_owned())
        } else {
            Ok(ip)
        }
    });
    let target = format!("{ip}:80");
    lab.eventually(
        &format!("{target} answers from the root namespace"),
        MINUTE,
        || {
            let report = lab.load_from_root(&[
                "probe",
                "--target",
                &target,
                "--requests",
                "20",
                "--timeout-ms",
                "1000",
            ]);
            if count(&report, "ok") == 20 {
                Ok(())
            } else {
                Err(report.to_string())
            }
        },
    );
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// See the module documentation.
pub fn scaling_down_under_load_fails_no_connection_and_drains_terminating_backends(lab: &Lab) {
    let ns = lab.namespace("dp-scale");
    lab.apply(&ns, &echo_deployment("echo", 10));
    lab.apply(
        &ns,
        r#"apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
"#,
    );
    lab.apply(&ns, &client_pod("client", &lab.nodes[0].name));
    lab.wait_running(&ns, "client");
    wait_ready_endpoints(lab, &ns, "echo", 10);
    let vip = lab.jsonpath(&ns, "service/echo", "{.spec.clusterIP}");
    let target = format!("{vip}:80");
    let load = lab.spawn_load_in_pod(
        &ns,
        "client",
        &[
            "crr",
            "--target",
            &target,
            "--duration",
            "16",
            "--rate",
            "300",
            "--connections",
            "4",
        ],
    );
    std::thread::sleep(Duration::from_secs(4));
    lab.kubectl_ok(&["scale", "deployment/echo", "-n", &ns, "--replicas=2"]);
    // While the 8 leaving pods still serve (preStop), new connections go only to the 2 that
    // stay: terminating backends take no new connections.
    let survivors = lab.eventually("8 pods terminating", MINUTE, || {
        let out = lab.jsonpath(
            &ns,
            "pods -l app=echo",
            "{range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        );
        let staying: BTreeSet<String> = out
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let name = w.next()?;
                w.next().is_none().then(|| name.to_owned())
            })
            .collect();
        if staying.len() == 2 {
            Ok(staying)
        } else {
            Err(out)
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let probe = lab.load_in_pod(
        &ns,
        "client",
        &["probe", "--target", &target, "--requests", "100"],
    );
    assert_eq!(count(&probe, "failed"), 0, "{probe}");
    assert!(
        backends(&probe).is_subset(&survivors),
        "new connections reached terminating backends: {probe} (staying: {survivors:?})"
    );
    let report = load.finish();
    eprintln!(
        "scale 10→2 under {} connections/s: ok {} failed {} errors {}",
        report["per_second"], report["ok"], report["failed"], report["errors"]
    );
    assert!(count(&report, "ok") > 3000, "{report}");
    assert_eq!(
        count(&report, "failed"),
        0,
        "connections failed while scaling down: {report}"
    );
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// See the module documentation.
pub fn killing_the_agent_under_load_fails_no_request_and_restart_flushes_nothing(lab: &Lab) {
    let ns = lab.namespace("dp-restart");
    lab.apply(&ns, &echo_deployment("echo", 3));
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
    let node = lab.nodes[0].clone();
    lab.apply(&ns, &client_pod("client", &node.name));
    lab.wait_running(&ns, "client");
    wait_ready_endpoints(lab, &ns, "echo", 3);
    let vip = lab.jsonpath(&ns, "service/echo", "{.spec.clusterIP}");
    let node_port = lab.jsonpath(&ns, "service/echo", "{.spec.ports[0].nodePort}");
    let cluster_target = format!("{vip}:80");
    let node_target = format!("{}:{node_port}", node.address);
    // This test's backends as the node's datapath lists them (id, address, state).
    let ours = || {
        let ips: BTreeSet<String> = lab
            .jsonpath(
                &ns,
                "pods -l app=echo",
                "{range .items[*]}{.status.podIP}{\"\\n\"}{end}",
            )
            .lines()
            .map(|ip| format!("{ip}:8080"))
            .collect();
        lab.bpf(&node.name, &["backends"])
            .lines()
            .filter(|l| l.split_whitespace().nth(1).is_some_and(|a| ips.contains(a)))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let backends_before = ours();
    assert_eq!(backends_before.len(), 3, "{backends_before:?}");
    let rr = lab.spawn_load_in_pod(
        &ns,
        "client",
        &[
            "rr",
            "--target",
            &cluster_target,
            "--duration",
            "14",
            "--rate",
            "200",
            "--connections",
            "2",
        ],
    );
    let crr = lab.spawn_load_in_pod(
        &ns,
        "client",
        &[
            "crr",
            "--target",
            &cluster_target,
            "--duration",
            "14",
            "--rate",
            "200",
            "--connections",
            "2",
        ],
    );
    let outside = lab.spawn_load_from_root(&[
        "crr",
        "--target",
        &node_target,
        "--duration",
        "14",
        "--rate",
        "200",
        "--connections",
        "2",
    ]);
    std::thread::sleep(Duration::from_secs(3));
    let agent = format!("agent/{}", node.name);
    let per_packet = lab.bpf(&node.name, &["config"]).contains("socket-lb: off");
    lab.component("stop", &agent, true);
    std::thread::sleep(Duration::from_secs(3));
    lab.component("start", &agent, false);
    if per_packet {
        // A new agent starts from its flags; the checks' mode is a runtime switch.
        lab.bpf(&node.name, &["config", "--socket-lb", "off"]);
    }
    for (what, report) in [
        ("ClusterIP request/response", rr.finish()),
        ("ClusterIP connections", crr.finish()),
        ("NodePort connections", outside.finish()),
    ] {
        eprintln!("{what} across an agent SIGKILL: {report}");
        assert!(count(&report, "ok") > 1000, "{what}: {report}");
        assert_eq!(
            count(&report, "failed"),
            0,
            "{what} failed while the agent was down: {report}"
        );
    }
    // The restarted agent took the pinned state over: the same backends under the same ids.
    let backends_after = lab.eventually("the restarted agent reconciled", MINUTE, || {
        let metrics = crate::process::run(
            "curl",
            &[
                "-s",
                "-m",
                "2",
                &format!(
                    "http://{}:{}/metrics",
                    node.address,
                    crate::AGENT_HEALTH_PORT
                ),
            ],
        )
        .unwrap_or_default();
        if metrics.contains("skiff_datapath_services ")
            && !metrics.contains("skiff_datapath_services 0\n")
        {
            Ok(ours())
        } else {
            Err(metrics
                .lines()
                .filter(|l| l.contains("skiff_datapath_services"))
                .collect())
        }
    });
    assert_eq!(
        backends_before, backends_after,
        "backend ids changed across the restart"
    );
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// A pod reaching its own Service, answered by itself (hairpin).
pub fn a_pod_reaches_itself_through_its_service(lab: &Lab) {
    let ns = lab.namespace("dp-hairpin");
    lab.apply(&ns, &echo_deployment("echo", 1));
    lab.apply(
        &ns,
        r#"apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
"#,
    );
    wait_ready_endpoints(lab, &ns, "echo", 1);
    let vip = lab.jsonpath(&ns, "service/echo", "{.spec.clusterIP}");
    let target = format!("{vip}:80");
    let (pod, _) = pods_of(lab, &ns, "echo").remove(0);
    let report = lab.load_in_pod(
        &ns,
        &pod,
        &["probe", "--target", &target, "--requests", "20"],
    );
    assert_eq!(count(&report, "ok"), 20, "hairpin: {report}");
    assert_eq!(backends(&report), BTreeSet::from([pod.clone()]), "{report}");
    assert_eq!(report["peers"], serde_json::json!([target]), "{report}");
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// ClientIP session affinity keeps a client on one backend (in-cluster and through a node
/// port), and a Service without backends refuses new connections at once.
pub fn affinity_holds_and_services_without_backends_refuse_at_once(lab: &Lab) {
    let ns = lab.namespace("dp-affinity");
    lab.apply(&ns, &echo_deployment("echo", 3));
    lab.apply(
        &ns,
        r#"apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  type: NodePort
  selector: {app: echo}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  type: NodePort
  selector: {app: nothing}
  ports: [{port: 80}]
"#,
    );
    lab.apply(&ns, &client_pod("client", &lab.nodes[0].name));
    lab.wait_running(&ns, "client");
    wait_ready_endpoints(lab, &ns, "sticky", 3);
    let vip = lab.jsonpath(&ns, "service/sticky", "{.spec.clusterIP}");
    let target = format!("{vip}:80");
    let report = lab.load_in_pod(
        &ns,
        "client",
        &["probe", "--target", &target, "--requests", "30"],
    );
    assert_eq!(count(&report, "ok"), 30, "{report}");
    assert_eq!(
        backends(&report).len(),
        1,
        "affinity did not hold in the cluster: {report}"
    );
    let node_port = lab.jsonpath(&ns, "service/sticky", "{.spec.ports[0].nodePort}");
    let outside = format!("{}:{node_port}", lab.nodes[1].address);
    let report = lab.load_from_root(&["probe", "--target", &outside, "--requests", "30"]);
    assert_eq!(count(&report, "ok"), 30, "{report}");
    assert_eq!(
        backends(&report).len(),
        1,
        "affinity did not hold through the node port: {report}"
    );
    // Refusals come at once and keep coming: 20 connects in a row, again and again (the
    // kernel's rate-limited "unreachable" would let most of them time out).
    let refuses_at_once = |report: &serde_json::Value| -> Result<(), String> {
        let refused = report["errors"]["refused"].as_u64().unwrap_or(0)
            + report["errors"]["unreachable"].as_u64().unwrap_or(0);
        let seconds = report["seconds"].as_f64().unwrap_or(f64::MAX);
        if refused == 20 && seconds < 1.0 {
            Ok(())
        } else {
            Err(report.to_string())
        }
    };
    let probe = ["--requests", "20", "--timeout-ms", "3000"];
    let empty = format!(
        "{}:80",
        lab.jsonpath(&ns, "service/empty", "{.spec.clusterIP}")
    );
    lab.eventually("the empty Service refuses in the cluster", MINUTE, || {
        let args = [&["probe", "--target", empty.as_str()][..], &probe[..]].concat();
        refuses_at_once(&lab.load_in_pod(&ns, "client", &args))
    });
    for _ in 0..3 {
        let args = [&["probe", "--target", empty.as_str()][..], &probe[..]].concat();
        let report = lab.load_in_pod(&ns, "client", &args);
        assert!(
            refuses_at_once(&report).is_ok(),
            "refusals were not immediate: {report}"
        );
    }
    let empty_port = lab.jsonpath(&ns, "service/empty", "{.spec.ports[0].nodePort}");
    let outside = format!("{}:{empty_port}", lab.nodes[2].address);
    lab.eventually("the empty Service refuses on its node port", MINUTE, || {
        let args = [&["probe", "--target", outside.as_str()][..], &probe[..]].concat();
        refuses_at_once(&lab.load_from_root(&args))
    });
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
