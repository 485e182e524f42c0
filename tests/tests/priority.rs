//! Pod priority and preemption through stock kubectl: PriorityClasses give pods their
//! priority (Priority admission), and a pod that fits nowhere evicts lower-priority pods
//! to make room, as kube-scheduler's DefaultPreemption does.

use std::time::Duration;

use serde_json::{Value, json};
use skiff_tests::Lab;

/// Millicores of CPU requested by the pods bound to `node` that still hold them.
fn requested_millicores(lab: &Lab, node: &str) -> i64 {
    let selector = format!("spec.nodeName={node}");
    let pods = lab.kubectl_ok(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        &selector,
        "-o",
        "json",
    ]);
    let pods: Value = serde_json::from_str(&pods).expect("a pod list");
    let mut total = 0;
    for pod in pods["items"].as_array().into_iter().flatten() {
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
            let cpu = container["resources"]["requests"]["cpu"]
                .as_str()
                .unwrap_or("0");
            total += match cpu.strip_suffix('m') {
                Some(milli) => milli.parse::<i64>().unwrap_or(0),
                None => cpu.parse::<f64>().map_or(0, |c| (c * 1000.0) as i64),
            };
        }
    }
    total
}

fn pod(name: &str, class: &str, node: &str, millicores: i64) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "priorityClassName": class,
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"],
                            "resources": {"requests": {"cpu": format!("{millicores}m")}}}],
        },
    })
    .to_string()
}

#[test]
fn a_higher_priority_pod_preempts_a_lower_one() {
    let Some(lab) = Lab::from_env() else { return };
    let pid = std::process::id();
    let (low, high) = (format!("low-{pid}"), format!("high-{pid}"));
    let ns = lab.namespace("priority");
    let _cleanup = lab.delete_on_drop(&[
        ("namespace", &ns),
        ("priorityclass", &high),
        ("priorityclass", &low),
    ]);
    lab.kubectl_ok(&["create", "priorityclass", &low, "--value=100"]);
    lab.kubectl_ok(&["create", "priorityclass", &high, "--value=100000"]);
    // The class's value is the pod's priority; claiming another one is refused.
    let claimed = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "claims"},
        "spec": {"priorityClassName": low, "priority": 7,
                 "containers": [{"name": "main", "image": "busybox"}]}});
    let refused = lab.kubectl_stdin(&["create", "-n", &ns, "-f", "-"], &claimed.to_string());
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stderr.contains("must not be provided in pod spec"),
        "{refused:?}"
    );

    let node = "skiff-node-3";
    let allocatable = lab.kubectl_ok(&[
        "get",
        "node",
        node,
        "-o",
        "jsonpath={.status.allocatable.cpu}",
    ]);
    let allocatable: i64 = allocatable
        .trim()
        .parse::<i64>()
        .map_or(2000, |cores| cores * 1000);
    let room = allocatable - requested_millicores(&lab, node) - 50;
    assert!(room > 200, "the node has room for the test: {room}m");

    lab.kubectl_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &pod("victim", &low, node, room),
    );
    lab.wait_running(&ns, "victim");
    assert_eq!(lab.jsonpath(&ns, "pod victim", "{.spec.priority}"), "100");

    lab.kubectl_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &pod("urgent", &high, node, room),
    );
    lab.wait_running(&ns, "urgent");
    let victim = lab.kubectl(&["get", "pod", "victim", "-n", &ns]);
    assert!(
        victim.code != 0 || victim.stdout.contains("Terminating"),
        "the victim was evicted: {victim:?}"
    );
    let events = lab.eventually(
        "the victim's Preempted event",
        Duration::from_secs(20),
        || {
            let events = lab.events_of(&ns, "victim");
            if events.contains("Preempted") {
                Ok(events)
            } else {
                Err(events)
            }
        },
    );
    assert!(events.contains("Preempted by pod"), "{events}");
}
