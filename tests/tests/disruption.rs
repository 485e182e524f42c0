//! PodDisruptionBudgets end to end: the disruption controller keeps a budget's status, and
//! `kubectl drain` — the eviction subresource — respects it. A drain that would leave fewer
//! pods than the budget's `minAvailable` keeps retrying with the budget's message until its
//! timeout, and the pod keeps running; once the budget has room the drain evicts the pod, the
//! Deployment brings it back on another node, and `kubectl uncordon` makes the node
//! schedulable again.
//!
//! The drains select the test's own pods (`--pod-selector`): the pods other tests left on the
//! node are none of this test's business (and a bare one would stop a drain without `--force`).

use std::time::Duration;

use skiff_tests::{Lab, cannot_run};

const MINUTE: Duration = Duration::from_secs(60);

const BUDGET_MESSAGE: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn manifest() -> &'static str {
    r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: skiff/echo
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
"#
}

/// Uncordons the node and deletes the namespace however the test ends, so a failure leaves
/// no unschedulable node behind for the tests that follow.
struct Cleanup<'a> {
    lab: &'a Lab,
    ns: String,
    node: Option<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(node) = &self.node {
            let _ = self.lab.kubectl(&["uncordon", node]);
        }
        let _ = self
            .lab
            .kubectl(&["delete", "namespace", &self.ns, "--wait=false"]);
    }
}

/// `name nodeName deleting` of each `app=web` pod.
fn web_pods(lab: &Lab, ns: &str) -> Vec<(String, String, bool)> {
    lab.jsonpath(
        ns,
        "pods -l app=web",
        "{range .items[*]}{.metadata.name} {.spec.nodeName} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    )
    .lines()
    .filter_map(|line| {
        let mut words = line.split_whitespace();
        let name = words.next()?.to_owned();
        let node = words.next().unwrap_or_default().to_owned();
        Some((name, node, words.next().is_some()))
    })
    .collect()
}

/// Wait until the budget's status reads `expected`
/// (`currentHealthy desiredHealthy expectedPods disruptionsAllowed`) for its current generation.
fn wait_for_budget(lab: &Lab, ns: &str, expected: &str) {
    lab.eventually(
        &format!("the budget's status is {expected:?}"),
        MINUTE,
        || {
            let status = lab.jsonpath(
                ns,
                "pdb/web",
                "{.status.currentHealthy} {.status.desiredHealthy} {.status.expectedPods} \
                 {.status.disruptionsAllowed} {.status.observedGeneration} {.metadata.generation}",
            );
            let words: Vec<&str> = status.split_whitespace().collect();
            match words.as_slice() {
                [counts @ .., observed, generation]
                    if counts.join(" ") == expected && observed == generation =>
                {
                    Ok(())
                }
                _ => Err(status),
            }
        },
    );
}

#[test]
fn drain_respects_the_disruption_budget_until_it_has_room() {
    let Some(lab) = Lab::from_env() else { return };
    if lab.nodes.len() < 2 {
        cannot_run("draining a node needs another node to take its pods");
        return;
    }
    let ns = lab.namespace("disruption");
    let mut cleanup = Cleanup {
        lab: &lab,
        ns: ns.clone(),
        node: None,
    };
    lab.apply(&ns, manifest());
    lab.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        &ns,
        "--timeout=120s",
    ]);
    wait_for_budget(&lab, &ns, "2 2 2 0");
    let condition = lab.jsonpath(
        &ns,
        "pdb/web",
        "{.status.conditions[?(@.type==\"DisruptionAllowed\")].reason}",
    );
    assert_eq!(condition, "InsufficientPods");

    // kubectl prints the budget as on any cluster.
    let table = lab.kubectl_ok(&["get", "pdb", "-n", &ns]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.get(..4), Some(&["web", "2", "N/A", "0"][..]), "{table}");

    let pods = web_pods(&lab, &ns);
    assert_eq!(pods.len(), 2, "{pods:?}");
    let (victim, node, _) = pods[0].clone();
    assert!(!node.is_empty(), "{victim} is scheduled");
    cleanup.node = Some(node.clone());

    // The budget has no room: the drain keeps retrying the eviction until its timeout.
    let drain = |timeout: &str| {
        lab.kubectl(&[
            "drain",
            &node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            &format!("--timeout={timeout}"),
            "--pod-selector=app=web",
        ])
    };
    let refused = drain("20s");
    let said = format!("{}{}", refused.stdout, refused.stderr);
    assert_ne!(refused.code, 0, "the drain cannot finish:\n{said}");
    assert!(
        said.contains(BUDGET_MESSAGE),
        "kubectl reports the budget:\n{said}"
    );
    assert!(
        said.contains("will retry after"),
        "kubectl retries the eviction (429):\n{said}"
    );
    let still = lab.jsonpath(
        &ns,
        &format!("pod/{victim}"),
        "{.status.phase} {.metadata.deletionTimestamp}",
    );
    assert_eq!(still.trim(), "Running", "{victim} keeps running");
    assert_eq!(
        lab.jsonpath("default", &format!("node/{node}"), "{.spec.unschedulable}"),
        "true",
        "the drain cordoned the node"
    );
    assert_eq!(
        lab.jsonpath(&ns, "pdb/web", "{.status.disruptionsAllowed}"),
        "0"
    );

    // One pod may go now.
    lab.kubectl_ok(&[
        "patch",
        "pdb",
        "web",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":1}}"#,
    ]);
    wait_for_budget(&lab, &ns, "2 1 2 1");
    let drained = drain("60s");
    assert_eq!(
        drained.code, 0,
        "the drain evicts the pod:\n{}{}",
        drained.stdout, drained.stderr
    );
    assert!(
        drained.stdout.contains(&format!("pod/{victim} evicted")),
        "{}",
        drained.stdout
    );
    lab.eventually(
        "the Deployment is back to two pods, none on the drained node",
        2 * MINUTE,
        || {
            let pods = web_pods(&lab, &ns);
            let live: Vec<_> = pods.iter().filter(|(_, _, deleting)| !deleting).collect();
            let ready = lab.jsonpath(&ns, "deployment/web", "{.status.readyReplicas}");
            let gone = pods.iter().all(|(name, _, _)| *name != victim);
            if gone && ready == "2" && live.len() == 2 && live.iter().all(|(_, n, _)| *n != node) {
                Ok(())
            } else {
                Err(format!("ready={ready} pods={pods:?}"))
            }
        },
    );
    // With both pods healthy again the budget has room for one more disruption.
    wait_for_budget(&lab, &ns, "2 1 2 1");

    lab.kubectl_ok(&["uncordon", &node]);
    assert_eq!(
        lab.jsonpath("default", &format!("node/{node}"), "{.spec.unschedulable}"),
        "",
        "the node is schedulable again"
    );
    cleanup.node = None;
}
