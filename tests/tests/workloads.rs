//! Scheduler and workload controllers end to end: a Deployment spreads over the nodes, rolls
//! to a new image within maxUnavailable, rolls back; a pod too big for every node stays
//! Pending with kube-scheduler's message until it fits; deleting a Deployment cascades to
//! its ReplicaSets and pods unless orphaned.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI32, Ordering},
    },
    time::Duration,
};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use skiff_tests::Lab;

const MINUTE: Duration = Duration::from_secs(60);

fn deployment(name: &str, replicas: u32, image: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 1}}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: {image}
{extra}"#
    )
}

fn pods_per_node(lab: &Lab, ns: &str, app: &str) -> BTreeMap<String, usize> {
    let nodes = lab.jsonpath(
        ns,
        &format!("pods -l app={app} --field-selector=status.phase=Running"),
        "{.items[*].spec.nodeName}",
    );
    let mut counts = BTreeMap::new();
    for node in nodes.split_whitespace() {
        *counts.entry(node.to_owned()).or_default() += 1;
    }
    counts
}

#[test]
fn a_deployment_spreads_rolls_within_max_unavailable_and_rolls_back() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("rollout");
    lab.apply(&ns, &deployment("web", 6, "skiff/echo", ""));
    lab.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        &ns,
        "--timeout=120s",
    ]);
    let spread = pods_per_node(&lab, &ns, "web");
    assert_eq!(
        spread.len(),
        lab.nodes.len(),
        "pods on every node: {spread:?}"
    );
    assert!(
        spread.values().all(|n| *n == 6 / lab.nodes.len()),
        "even spread: {spread:?}"
    );

    // Watch availability through the rollout from a kube-rs client.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime.block_on(lab.client());
    let lowest = Arc::new(AtomicI32::new(i32::MAX));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let api: Api<Deployment> = Api::namespaced(client, &ns);
        let (lowest, done) = (lowest.clone(), done.clone());
        runtime.spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Ok(d) = api.get("web").await {
                    let available = d.status.and_then(|s| s.available_replicas).unwrap_or(0);
                    lowest.fetch_min(available, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    lab.kubectl_ok(&[
        "set",
        "image",
        "deployment/web",
        "app=skiff/echo:v2",
        "-n",
        &ns,
    ]);
    lab.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        &ns,
        "--timeout=180s",
    ]);
    done.store(true, Ordering::Relaxed);
    runtime.block_on(watcher).expect("watcher");
    let lowest = lowest.load(Ordering::Relaxed);
    assert!(
        lowest >= 5,
        "availability fell to {lowest} during the rollout (maxUnavailable 1 of 6)"
    );
    let images = lab.jsonpath(
        &ns,
        "pods -l app=web",
        "{.items[*].spec.containers[0].image}",
    );
    assert!(
        images.split_whitespace().all(|i| i == "skiff/echo:v2"),
        "{images}"
    );
    let sets = lab.kubectl_ok(&["get", "rs", "-n", &ns]);
    assert_eq!(sets.lines().count(), 3, "two ReplicaSets:\n{sets}");

    lab.kubectl_ok(&["rollout", "undo", "deployment/web", "-n", &ns]);
    lab.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        &ns,
        "--timeout=180s",
    ]);
    let image = lab.jsonpath(
        &ns,
        "deployment/web",
        "{.spec.template.spec.containers[0].image}",
    );
    assert_eq!(image, "skiff/echo");
    let history = lab.kubectl_ok(&["rollout", "history", "deployment/web", "-n", &ns]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        revisions,
        ["2", "3"],
        "the undo re-used revision 1 as 3:\n{history}"
    );
    let sets = lab.kubectl_ok(&["get", "rs", "-n", &ns]);
    assert_eq!(
        sets.lines().count(),
        3,
        "the undo re-used the old ReplicaSet:\n{sets}"
    );
    let describe = lab.kubectl_ok(&["describe", "deployment", "web", "-n", &ns]);
    assert!(describe.contains("ScalingReplicaSet"), "{describe}");
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn a_pod_too_big_for_every_node_stays_pending_until_it_fits() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("fit");
    let resources = "        resources:\n          requests: {memory: 4000Gi}\n";
    lab.apply(&ns, &deployment("big", 1, "skiff/echo", resources));
    let pod = lab.eventually("the pod is unschedulable", MINUTE, || {
        let names = lab.jsonpath(&ns, "pods -l app=big", "{.items[*].metadata.name}");
        let message = lab.jsonpath(
            &ns,
            "pods -l app=big",
            "{.items[0].status.conditions[?(@.type==\"PodScheduled\")].message}",
        );
        let expected = format!(
            "0/{n} nodes are available: {n} Insufficient memory.",
            n = lab.nodes.len()
        );
        match names.split_whitespace().next() {
            Some(name) if message == expected => Ok(name.to_owned()),
            _ => Err(format!("pods={names} message={message}")),
        }
    });
    assert_eq!(
        lab.jsonpath(&ns, &format!("pod/{pod}"), "{.status.phase}"),
        "Pending"
    );
    let describe = lab.kubectl_ok(&["describe", "pod", &pod, "-n", &ns]);
    assert!(
        describe.contains("FailedScheduling") && describe.contains("Insufficient memory"),
        "{describe}"
    );
    // Shrink the request: the new pod fits and runs.
    lab.kubectl_ok(&[
        "set",
        "resources",
        "deployment/big",
        "-n",
        &ns,
        "--requests=memory=16Mi",
    ]);
    lab.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/big",
        "-n",
        &ns,
        "--timeout=120s",
    ]);
    let events = lab.kubectl_ok(&["get", "events", "-n", &ns]);
    assert!(events.contains("Scheduled"), "{events}");
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn deleting_a_deployment_cascades_unless_orphaned() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("cascade");
    lab.apply(&ns, &deployment("gone", 2, "skiff/echo", ""));
    lab.apply(&ns, &deployment("kept", 2, "skiff/echo", ""));
    lab.apply(&ns, &deployment("waited", 2, "skiff/echo", ""));
    lab.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/waited",
        "-n",
        &ns,
        "--timeout=120s",
    ]);
    // Foreground: the Deployment stays (with the foregroundDeletion finalizer) until its
    // ReplicaSets and their pods are gone; `--wait` returns only then.
    lab.kubectl_ok(&[
        "delete",
        "deployment",
        "waited",
        "-n",
        &ns,
        "--cascade=foreground",
        "--timeout=120s",
    ]);
    let left = lab.jsonpath(&ns, "rs,pods -l app=waited", "{.items[*].metadata.name}");
    assert!(
        left.trim().is_empty(),
        "the foreground delete returned before its dependents were gone: {left}"
    );
    lab.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/gone",
        "-n",
        &ns,
        "--timeout=120s",
    ]);
    lab.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/kept",
        "-n",
        &ns,
        "--timeout=120s",
    ]);

    lab.kubectl_ok(&["delete", "deployment", "gone", "-n", &ns]);
    lab.eventually(
        "ReplicaSets and pods of the deleted Deployment are gone",
        MINUTE,
        || {
            let left = lab.jsonpath(&ns, "rs,pods -l app=gone", "{.items[*].metadata.name}");
            if left.trim().is_empty() {
                Ok(())
            } else {
                Err(left)
            }
        },
    );

    lab.kubectl_ok(&[
        "delete",
        "deployment",
        "kept",
        "-n",
        &ns,
        "--cascade=orphan",
    ]);
    lab.eventually("the orphaning delete completes", MINUTE, || {
        let out = lab.kubectl(&["get", "deployment", "kept", "-n", &ns]);
        if out.code != 0 {
            Ok(())
        } else {
            Err(out.stdout)
        }
    });
    std::thread::sleep(Duration::from_secs(5));
    let sets = lab.jsonpath(
        &ns,
        "rs -l app=kept",
        "{.items[*].metadata.ownerReferences}",
    );
    let names = lab.jsonpath(&ns, "rs -l app=kept", "{.items[*].metadata.name}");
    assert!(!names.trim().is_empty(), "the orphaned ReplicaSet stays");
    assert!(
        !sets.contains("uid"),
        "its owner reference is removed: {sets}"
    );
    let pods = lab.jsonpath(&ns, "pods -l app=kept", "{.items[*].status.phase}");
    assert_eq!(
        pods.split_whitespace().filter(|p| *p == "Running").count(),
        2,
        "{pods}"
    );
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn pods_of_a_dead_node_are_replaced_on_the_others() {
    let Some(lab) = Lab::from_env() else { return };
    if lab.nodes.len() < 2 {
        return;
    }
    let ns = lab.namespace("failover");
    // Pods tolerate an unreachable node for 5 s (instead of the default 300 s).
    let tolerations = "      tolerations:\n      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}\n";
    let manifest = deployment("sturdy", 6, "skiff/echo", "").replace(
        "      containers:\n",
        &format!("{tolerations}      containers:\n"),
    );
    lab.apply(&ns, &manifest);
    lab.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/sturdy",
        "-n",
        &ns,
        "--timeout=120s",
    ]);
    let victim = lab.nodes[lab.nodes.len() - 1].name.clone();
    let on_victim = pods_per_node(&lab, &ns, "sturdy")
        .get(&victim)
        .copied()
        .unwrap_or(0);
    assert!(on_victim > 0, "the victim node runs some of the pods");

    // A host failure: the agent dies and so do the node's containers.
    let started = std::time::Instant::now();
    lab.component("stop", &format!("agent/{victim}"), true);
    let cgroup = skiff_tests::cgroup2_mount()
        .expect("cgroup2")
        .join("skiff")
        .join(&victim)
        .join("cgroup.kill");
    std::fs::write(&cgroup, "1").expect("killing the node's pods through cgroup.kill");

    lab.eventually(
        "the node is marked unreachable",
        Duration::from_secs(90),
        || {
            let taints = lab.jsonpath(
                "default",
                &format!("node/{victim}"),
                "{.spec.taints[*].key}",
            );
            let ready = lab.jsonpath(
                "default",
                &format!("node/{victim}"),
                "{.status.conditions[?(@.type==\"Ready\")].status}",
            );
            if taints.contains("node.kubernetes.io/unreachable") && ready == "Unknown" {
                Ok(())
            } else {
                Err(format!("taints={taints} ready={ready}"))
            }
        },
    );
    lab.eventually(
        "the Deployment is fully available on the other nodes",
        Duration::from_secs(120),
        || {
            let available = lab.jsonpath(&ns, "deployment/sturdy", "{.status.availableReplicas}");
            let spread = pods_per_node(&lab, &ns, "sturdy");
            let live_elsewhere: usize = spread
                .iter()
                .filter(|(n, _)| **n != victim)
                .map(|(_, c)| *c)
                .sum();
            if available == "6" && live_elsewhere >= 6 {
                Ok(())
            } else {
                Err(format!("available={available} spread={spread:?}"))
            }
        },
    );
    println!(
        "recovered from the loss of {victim} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The dead node's pods are Terminating, not silently gone.
    let deleting = lab.jsonpath(
        &ns,
        "pods -l app=sturdy",
        "{range .items[?(@.metadata.deletionTimestamp)]}{.spec.nodeName} {end}",
    );
    assert!(
        deleting.contains(&victim),
        "pods of the dead node are marked for deletion: {deleting:?}"
    );

    // The node comes back: taints go, its old pods finish terminating.
    lab.component("start", &format!("agent/{victim}"), false);
    lab.eventually(
        "the node is schedulable again",
        Duration::from_secs(60),
        || {
            let taints = lab.jsonpath(
                "default",
                &format!("node/{victim}"),
                "{.spec.taints[*].key}",
            );
            if taints.contains("unreachable") {
                Err(taints)
            } else {
                Ok(())
            }
        },
    );
    lab.eventually(
        "the dead node's pods are gone",
        Duration::from_secs(60),
        || {
            let left = lab.jsonpath(
                &ns,
                "pods -l app=sturdy",
                "{range .items[?(@.metadata.deletionTimestamp)]}{.metadata.name} {end}",
            );
            if left.trim().is_empty() {
                Ok(())
            } else {
                Err(left)
            }
        },
    );
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
