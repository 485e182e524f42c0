//! PersistentVolumeClaims end to end with the built-in local-path provisioner: a claim
//! without a class gets the default class `local-path` and waits for its first pod; the
//! scheduler picks the pod's node, the PV controller provisions a volume pinned to it and
//! binds the claim; the pod writes; a pod re-created after deletion goes back to the same
//! node and finds the data. A claim in use is not removed until its pod is gone
//! (pvc-protection); then its volume is deleted and the directory removed on the node
//! (lab nodes share the host's filesystem, so the test looks at the path itself). A pod
//! naming a missing claim stays Pending and says why.

use std::{path::Path, time::Duration};

use skiff_tests::Lab;

const MINUTE: Duration = Duration::from_secs(60);

const CLAIM: &str = "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
";

/// A pod named `name` that runs `script` with claim `claim` at /data.
fn pod(name: &str, claim: &str, script: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, '{script}']
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim}}}
"
    )
}

#[test]
fn a_claim_binds_and_its_data_survives_the_pod() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("storage");
    // The default class, as `kubectl get sc` shows it.
    let classes = lab.kubectl_ok(&["get", "storageclass", "local-path"]);
    assert!(
        classes.contains("local-path (default)")
            && classes.contains("skiff.dev/local-path")
            && classes.contains("WaitForFirstConsumer"),
        "{classes}"
    );
    // A claim without a class gets the default and waits for its first consumer.
    lab.apply(&ns, CLAIM);
    assert_eq!(
        lab.jsonpath(&ns, "pvc/data", "{.spec.storageClassName}"),
        "local-path"
    );
    assert_eq!(
        lab.jsonpath(&ns, "pvc/data", "{.metadata.finalizers}"),
        "[\"kubernetes.io/pvc-protection\"]"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.jsonpath(&ns, "pvc/data", "{.status.phase}"), "Pending");
    // Its first pod: the claim is provisioned on the pod's node and bound.
    lab.apply(
        &ns,
        &pod(
            "writer",
            "data",
            "echo survived > /data/hello && sleep 3600",
        ),
    );
    lab.wait_running(&ns, "writer");
    let node = lab.jsonpath(&ns, "pod/writer", "{.spec.nodeName}");
    assert_eq!(lab.jsonpath(&ns, "pvc/data", "{.status.phase}"), "Bound");
    assert_eq!(
        lab.jsonpath(
            &ns,
            "pvc/data",
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
        ),
        node
    );
    let volume = lab.jsonpath(&ns, "pvc/data", "{.spec.volumeName}");
    assert!(volume.starts_with("pvc-"), "{volume:?}");
    let pv = |path: &str| {
        let output = format!("jsonpath={path}");
        lab.kubectl_ok(&["get", "pv", &volume, "-o", &output])
    };
    assert_eq!(pv("{.status.phase}"), "Bound");
    assert_eq!(pv("{.spec.persistentVolumeReclaimPolicy}"), "Delete");
    assert_eq!(pv("{.spec.claimRef.name}"), "data");
    assert_eq!(
        pv("{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"),
        node
    );
    let dir = pv("{.spec.hostPath.path}");
    assert!(dir.ends_with(&format!("/local-path/{volume}")), "{dir}");
    let file = Path::new(&dir).join("hello");
    lab.eventually(
        "the pod's write reaches the node",
        MINUTE,
        || match std::fs::read_to_string(&file) {
            Ok(text) if text.trim() == "survived" => Ok(()),
            other => Err(format!("{}: {other:?}", file.display())),
        },
    );
    // The pod goes; a new one goes back to the same node and finds the data.
    lab.kubectl_ok(&["delete", "pod", "writer", "-n", &ns, "--wait=true"]);
    lab.apply(&ns, &pod("reader", "data", "cat /data/hello && sleep 3600"));
    lab.wait_running(&ns, "reader");
    assert_eq!(lab.jsonpath(&ns, "pod/reader", "{.spec.nodeName}"), node);
    lab.eventually("the new pod reads the old pod's data", MINUTE, || {
        let logs = lab.kubectl(&["logs", "reader", "-n", &ns]).stdout;
        if logs.trim() == "survived" {
            Ok(())
        } else {
            Err(logs)
        }
    });
    // Deleting the claim while the pod uses it only marks it (pvc-protection).
    lab.kubectl_ok(&["delete", "pvc", "data", "-n", &ns, "--wait=false"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_ne!(
        lab.jsonpath(&ns, "pvc/data", "{.metadata.deletionTimestamp}"),
        ""
    );
    assert!(file.exists(), "the data went while the pod used it");
    // Once the pod is gone the claim goes, its volume is deleted (reclaim policy Delete)
    // and the node removes the directory.
    lab.kubectl_ok(&["delete", "pod", "reader", "-n", &ns, "--wait=true"]);
    lab.eventually("the claim, its volume and the directory go", MINUTE, || {
        let claim = lab.kubectl(&["get", "pvc", "data", "-n", &ns]).code;
        let pv_left = lab.kubectl(&["get", "pv", &volume]).code;
        let dir_left = Path::new(&dir).exists();
        if claim != 0 && pv_left != 0 && !dir_left {
            Ok(())
        } else {
            Err(format!(
                "claim exit {claim}, pv exit {pv_left}, directory exists: {dir_left}"
            ))
        }
    });
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn a_pod_with_a_missing_claim_stays_pending_and_says_why() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("storage-missing");
    lab.apply(&ns, &pod("orphan", "nope", "sleep 3600"));
    let message = lab.eventually("the pod is unschedulable", MINUTE, || {
        let reason = lab.jsonpath(
            &ns,
            "pod/orphan",
            "{.status.conditions[?(@.type==\"PodScheduled\")].reason}",
        );
        let message = lab.jsonpath(
            &ns,
            "pod/orphan",
            "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        );
        if reason == "Unschedulable" {
            Ok(message)
        } else {
            Err(format!("reason={reason:?} message={message:?}"))
        }
    });
    assert!(
        message.contains("persistentvolumeclaim \"nope\" not found"),
        "{message}"
    );
    assert_eq!(lab.jsonpath(&ns, "pod/orphan", "{.spec.nodeName}"), "");
    let events = lab.events_of(&ns, "orphan");
    assert!(events.contains("FailedScheduling"), "{events}");
    // The claim appears: the pod is scheduled and runs.
    lab.apply(&ns, &CLAIM.replace("name: data", "name: nope"));
    lab.wait_running(&ns, "orphan");
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
