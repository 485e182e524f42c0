//! Rollout history of DaemonSets and StatefulSets through stock kubectl: every template
//! change is a ControllerRevision, `kubectl rollout history` lists them (and shows one with
//! `--revision`), `kubectl rollout undo --to-revision` brings an old template back on every
//! pod and re-numbers its revision, deleting the set collects its revisions; a DaemonSet
//! with `maxSurge` rolls without leaving a node lacking a Ready pod.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, api::ListParams};
use skiff_tests::Lab;

const MINUTE: Duration = Duration::from_secs(60);

/// The images a set goes through: three spellings, so three templates (the lab has
/// skiff/echo as :latest and :v2).
const IMAGES: [&str; 3] = ["skiff/echo", "skiff/echo:v2", "docker.io/skiff/echo:v2"];

fn daemonset(name: &str, image: &str, strategy: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  updateStrategy: {strategy}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: {image}
"#
    )
}

fn statefulset(name: &str, image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: {name}}}
spec:
  replicas: 3
  podManagementPolicy: Parallel
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: {image}
"#
    )
}

fn rollout_status(lab: &Lab, ns: &str, what: &str) {
    lab.kubectl_ok(&["rollout", "status", what, "-n", ns, "--timeout=180s"]);
}

/// The revision numbers `kubectl rollout history` lists.
fn history(lab: &Lab, ns: &str, what: &str) -> Vec<String> {
    let out = lab.kubectl_ok(&["rollout", "history", what, "-n", ns]);
    out.lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The images of the set's pods; a terminating pod shows as `(terminating)`.
fn images(lab: &Lab, ns: &str, app: &str) -> Vec<String> {
    let out = lab.jsonpath(
        ns,
        &format!("pods -l app={app}"),
        "{range .items[*]}{.metadata.deletionTimestamp}/{.spec.containers[0].image} {end}",
    );
    out.split_whitespace()
        .map(|entry| match entry.split_once('/') {
            Some(("", image)) => image.to_owned(),
            _ => "(terminating)".to_owned(),
        })
        .collect()
}

/// Roll a set through [`IMAGES`], check its history, undo to revision 1.
fn roll_through_and_undo(lab: &Lab, ns: &str, kind: &str, name: &str, expected_pods: usize) {
    let what = format!("{kind}/{name}");
    rollout_status(lab, ns, &what);
    for image in &IMAGES[1..] {
        lab.kubectl_ok(&["set", "image", &what, &format!("app={image}"), "-n", ns]);
        rollout_status(lab, ns, &what);
    }
    assert_eq!(history(lab, ns, &what), ["1", "2", "3"]);
    let second = lab.kubectl_ok(&["rollout", "history", &what, "-n", ns, "--revision=2"]);
    assert!(
        second.contains(IMAGES[1]),
        "revision 2's template:\n{second}"
    );
    assert!(
        !second.contains(IMAGES[2]),
        "revision 2's template:\n{second}"
    );
    // Revisions are owned by the set and labelled as kube labels them.
    let owners = lab.jsonpath(
        ns,
        &format!("controllerrevisions -l app={name}"),
        "{.items[*].metadata.ownerReferences[0].kind}",
    );
    assert_eq!(owners.split_whitespace().count(), 3, "{owners}");
    assert!(
        owners.split_whitespace().all(|k| k == kind_name(kind)),
        "{owners}"
    );

    lab.kubectl_ok(&["rollout", "undo", &what, "--to-revision=1", "-n", ns]);
    rollout_status(lab, ns, &what);
    lab.eventually("every pod runs the first image again", MINUTE, || {
        let images = images(lab, ns, name);
        if images.len() == expected_pods && images.iter().all(|i| i == IMAGES[0]) {
            Ok(())
        } else {
            Err(format!("{images:?}"))
        }
    });
    assert_eq!(
        history(lab, ns, &what),
        ["2", "3", "4"],
        "the undo re-numbered revision 1 as 4"
    );
}

fn kind_name(kind: &str) -> &'static str {
    if kind == "daemonset" {
        "DaemonSet"
    } else {
        "StatefulSet"
    }
}

/// Deleting the set takes its revisions with it.
fn revisions_are_collected(lab: &Lab, ns: &str, what: &str, app: &str) {
    lab.kubectl_ok(&["delete", what, "-n", ns, "--wait=false"]);
    lab.eventually("the revisions are collected", MINUTE, || {
        let left = lab.jsonpath(
            ns,
            &format!("controllerrevisions -l app={app}"),
            "{.items[*].metadata.name}",
        );
        if left.is_empty() { Ok(()) } else { Err(left) }
    });
}

#[test]
fn a_daemonset_rolls_back_to_an_old_revision_with_kubectl() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("ds-history");
    let _cleanup = lab.delete_on_drop(&[("namespace", &ns)]);
    lab.apply(&ns, &daemonset("d", IMAGES[0], "{type: RollingUpdate}"));
    roll_through_and_undo(&lab, &ns, "daemonset", "d", lab.nodes.len());
    // Pods name their revision by hash and the generation that made them.
    let hashes = lab.jsonpath(
        &ns,
        "pods -l app=d",
        "{.items[*].metadata.labels.controller-revision-hash}",
    );
    let newest = lab.jsonpath(
        &ns,
        "controllerrevisions -l app=d --sort-by=.revision",
        "{.items[-1:].metadata.labels.controller-revision-hash}",
    );
    assert!(!newest.is_empty());
    assert!(
        hashes.split_whitespace().all(|h| h == newest),
        "pods {hashes}, revision {newest}"
    );
    let generation = lab.jsonpath(&ns, "daemonset/d", "{.metadata.generation}");
    let generations = lab.jsonpath(
        &ns,
        "pods -l app=d",
        "{.items[*].metadata.labels.pod-template-generation}",
    );
    assert!(
        generations.split_whitespace().all(|g| g == generation),
        "{generations} vs {generation}"
    );
    // A quiet set writes nothing: neither its status nor its revisions change.
    let versions = || {
        let set = lab.jsonpath(&ns, "daemonset/d", "{.metadata.resourceVersion}");
        let revisions = lab.jsonpath(
            &ns,
            "controllerrevisions",
            "{.items[*].metadata.resourceVersion}",
        );
        format!("{set} {revisions}")
    };
    let before = versions();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(before, versions(), "a settled DaemonSet keeps writing");
    revisions_are_collected(&lab, &ns, "daemonset/d", "d");
}

#[test]
fn a_statefulset_rolls_back_to_an_old_revision_with_kubectl() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("sts-history");
    let _cleanup = lab.delete_on_drop(&[("namespace", &ns)]);
    lab.apply(&ns, &statefulset("s", IMAGES[0]));
    roll_through_and_undo(&lab, &ns, "statefulset", "s", 3);
    let update = lab.jsonpath(&ns, "statefulset/s", "{.status.updateRevision}");
    let current = lab.jsonpath(&ns, "statefulset/s", "{.status.currentRevision}");
    assert_eq!(update, current, "the rollout completed");
    let newest = lab.jsonpath(
        &ns,
        "controllerrevisions -l app=s --sort-by=.revision",
        "{.items[-1:].metadata.name}",
    );
    assert_eq!(update, newest, "the update revision is the newest");
    let hashes = lab.jsonpath(
        &ns,
        "pods -l app=s",
        "{.items[*].metadata.labels.controller-revision-hash}",
    );
    assert!(
        hashes.split_whitespace().count() == 3 && hashes.split_whitespace().all(|h| h == update),
        "pods {hashes}, update revision {update}"
    );
    assert_eq!(
        lab.jsonpath(&ns, "statefulset/s", "{.status.updatedReplicas}"),
        "3"
    );
    revisions_are_collected(&lab, &ns, "statefulset/s", "s");
}

#[test]
fn a_daemonset_with_max_surge_keeps_a_ready_pod_on_every_node() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("ds-surge");
    let _cleanup = lab.delete_on_drop(&[("namespace", &ns)]);
    // Both zero is refused, as kube refuses it.
    let refused = lab.kubectl_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &daemonset(
            "zero",
            IMAGES[0],
            "{type: RollingUpdate, rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}",
        ),
    );
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("may not be 0 when `maxSurge` is 0"),
        "{}",
        refused.stderr
    );
    lab.apply(
        &ns,
        &daemonset(
            "surge",
            IMAGES[0],
            "{type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}",
        ),
    );
    rollout_status(&lab, &ns, "daemonset/surge");

    // Watch every node's pods through the rollout.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime.block_on(lab.client());
    let done = Arc::new(AtomicBool::new(false));
    let bare_nodes: Arc<Mutex<Vec<String>>> = Arc::default();
    let surged = Arc::new(AtomicBool::new(false));
    let nodes: BTreeSet<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
    let watcher = {
        let api: Api<Pod> = Api::namespaced(client, &ns);
        let (done, bare_nodes, surged) = (done.clone(), bare_nodes.clone(), surged.clone());
        runtime.spawn(async move {
            let params = ListParams::default().labels("app=surge");
            while !done.load(Ordering::Relaxed) {
                if let Ok(pods) = api.list(&params).await {
                    let mut ready: BTreeMap<String, usize> = BTreeMap::new();
                    let mut all: BTreeMap<String, usize> = BTreeMap::new();
                    for pod in &pods.items {
                        let node = pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.node_name.clone())
                            .unwrap_or_default();
                        *all.entry(node.clone()).or_default() += 1;
                        let is_ready = pod
                            .status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            });
                        if is_ready && pod.metadata.deletion_timestamp.is_none() {
                            *ready.entry(node).or_default() += 1;
                        }
                    }
                    if all.values().any(|n| *n > 1) {
                        surged.store(true, Ordering::Relaxed);
                    }
                    for node in &nodes {
                        if !ready.contains_key(node) {
                            bare_nodes
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(format!("{node}: {all:?}"));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    lab.kubectl_ok(&[
        "set",
        "image",
        "daemonset/surge",
        &format!("app={}", IMAGES[1]),
        "-n",
        &ns,
    ]);
    rollout_status(&lab, &ns, "daemonset/surge");
    lab.eventually("the old pods are gone", MINUTE, || {
        let images = images(&lab, &ns, "surge");
        if images.len() == lab.nodes.len() && images.iter().all(|i| i == IMAGES[1]) {
            Ok(())
        } else {
            Err(format!("{images:?}"))
        }
    });
    done.store(true, Ordering::Relaxed);
    runtime.block_on(watcher).expect("watcher");
    let bare = bare_nodes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(bare.is_empty(), "nodes without a Ready pod: {bare:?}");
    assert!(
        surged.load(Ordering::Relaxed),
        "no node ever ran the new pod beside the old one"
    );
}
