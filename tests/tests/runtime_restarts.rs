//! containerd restarting under the agents: running pods keep running (no restart counted,
//! their status keeps being reported) and new pods start once it is back. Alone in its
//! binary, since every pod of the lab shares the one containerd.

use std::time::Duration;

use skiff_tests::Lab;

const MINUTE: Duration = Duration::from_secs(60);

fn sleeper(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, \"3600\"]\n"
    )
}

#[test]
fn a_containerd_restart_loses_no_pod() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("containerd-restart");
    for node in &lab.nodes {
        lab.apply(&ns, &sleeper(&format!("before-{}", node.name), &node.name));
    }
    for node in &lab.nodes {
        lab.wait_running(&ns, &format!("before-{}", node.name));
    }
    let ids = lab.jsonpath(
        &ns,
        "pods",
        "{.items[*].status.containerStatuses[0].containerID}",
    );
    lab.component("restart", "containerd", false);
    for node in &lab.nodes {
        lab.apply(&ns, &sleeper(&format!("after-{}", node.name), &node.name));
    }
    for node in &lab.nodes {
        lab.wait_running(&ns, &format!("after-{}", node.name));
    }
    // The first pods were neither restarted nor replaced.
    for node in &lab.nodes {
        let pod = format!("pod/before-{}", node.name);
        lab.eventually(&format!("{pod} still running, never restarted"), MINUTE, || {
            let state = lab.jsonpath(
                &ns,
                &pod,
                "{.status.phase} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready}",
            );
            if state == "Running 0 true" { Ok(()) } else { Err(state) }
        });
    }
    let after = lab.jsonpath(
        &ns,
        "pods -l !nothing",
        "{.items[*].status.containerStatuses[0].containerID}",
    );
    for id in ids.split_whitespace() {
        assert!(after.contains(id), "container {id} was replaced: {after}");
    }
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
