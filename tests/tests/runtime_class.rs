//! RuntimeClasses end to end: a pod whose RuntimeClass names the `crun` handler runs under
//! crun (containerd's runc shim told to run crun), a pod naming a RuntimeClass that does
//! not exist is refused at admission, a class whose handler the node lacks leaves the pod
//! Pending with FailedCreatePodSandBox, and the handler cannot change.

use std::time::Duration;

use skiff_tests::{Lab, manifests::pod_on, oci_runtime};

const MINUTE: Duration = Duration::from_secs(60);

/// `RuntimeClass` `name` with `handler`.
fn runtime_class(name: &str, handler: &str) -> String {
    format!(
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {{name: {name}}}\nhandler: {handler}\n"
    )
}

#[test]
fn runtime_classes_pick_the_oci_runtime_and_bad_ones_are_refused_or_reported() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("runtimeclass");
    let node = lab.nodes[0].name.clone();
    // Cluster-scoped: names unique to this run.
    let fast = format!("{ns}-crun");
    let missing_handler = format!("{ns}-nosuch");
    for (name, handler) in [(&fast, "crun"), (&missing_handler, "nosuch")] {
        let out = lab.kubectl_stdin(&["apply", "-f", "-"], &runtime_class(name, handler));
        assert_eq!(out.code, 0, "{out:?}");
    }
    let table = lab.kubectl_ok(&["get", "runtimeclass", &fast]);
    assert!(
        table.contains("HANDLER") && table.contains("crun"),
        "{table}"
    );
    // The node offers runc and crun.
    let handlers = lab.jsonpath(
        "default",
        &format!("node/{node}"),
        "{.status.runtimeHandlers[*].name}",
    );
    assert!(
        handlers.split_whitespace().any(|h| h == "crun")
            && handlers.split_whitespace().any(|h| h == "runc"),
        "{handlers}"
    );

    // A pod with the crun class runs, and crun runs its container.
    lab.apply(
        &ns,
        &pod_on(
            "under-crun",
            &node,
            &format!(
                "  runtimeClassName: {fast}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: busybox, command: [sleep, \"3600\"]}}\n"
            ),
        ),
    );
    lab.apply(
        &ns,
        &pod_on(
            "under-runc",
            &node,
            "  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: c, image: busybox, command: [sleep, \"3600\"]}\n",
        ),
    );
    lab.wait_running(&ns, "under-crun");
    lab.wait_running(&ns, "under-runc");
    let out = lab.kubectl(&[
        "exec",
        "under-crun",
        "-n",
        &ns,
        "--",
        "cat",
        "/proc/1/cmdline",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("sleep"), "{out:?}");
    for (pod, runtime) in [("under-crun", "crun"), ("under-runc", "runc")] {
        let id = lab.jsonpath(
            &ns,
            &format!("pod/{pod}"),
            "{.status.containerStatuses[0].containerID}",
        );
        let id = id.trim_start_matches("containerd://");
        assert_eq!(
            runtime_state(&node, id),
            runtime,
            "the runtime that keeps {pod}'s container {id}"
        );
    }

    // A RuntimeClass that does not exist: refused at admission, as kube-apiserver does.
    let out = lab.kubectl_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &pod_on(
            "no-class",
            &node,
            "  runtimeClassName: no-such-class\n  containers:\n  - {name: c, image: busybox}\n",
        ),
    );
    assert!(
        out.code != 0
            && out
                .stderr
                .contains("is forbidden: pod rejected: RuntimeClass \"no-such-class\" not found"),
        "{out:?}"
    );

    // Admission writes back only what the class sets, so strict field validation still
    // sees an unknown field of a pod that names a RuntimeClass.
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"strict"}},"spec":{{"runtimeClassName":"{fast}","bogusField":1,"containers":[{{"name":"c","image":"busybox"}}]}}}}"#
    );
    let path = format!("/api/v1/namespaces/{ns}/pods?fieldValidation=Strict");
    let out = lab.kubectl_stdin(&["create", "--raw", &path, "-f", "-"], &body);
    assert!(
        out.code != 0 && out.stderr.contains("bogusField"),
        "{out:?}"
    );

    // A handler this node lacks: the pod waits, saying why.
    lab.apply(
        &ns,
        &pod_on(
            "no-handler",
            &node,
            &format!(
                "  runtimeClassName: {missing_handler}\n  containers:\n  - {{name: c, image: busybox}}\n"
            ),
        ),
    );
    lab.eventually("the pod reports its missing handler", MINUTE, || {
        let reason = lab.jsonpath(&ns, "pod/no-handler", "{.status.reason}");
        let message = lab.jsonpath(&ns, "pod/no-handler", "{.status.message}");
        let phase = lab.jsonpath(&ns, "pod/no-handler", "{.status.phase}");
        if reason == "FailedCreatePodSandBox"
            && message.contains("no runtime for \"nosuch\" is configured")
            && phase == "Pending"
        {
            Ok(())
        } else {
            Err(format!("phase={phase} reason={reason} message={message}"))
        }
    });
    let events = lab.events_of(&ns, "no-handler");
    assert!(
        events.contains("FailedCreatePodSandBox") && events.contains("nosuch"),
        "{events}"
    );

    // The handler is immutable.
    let out = lab.kubectl(&[
        "patch",
        "runtimeclass",
        &fast,
        "--type=merge",
        "-p",
        "{\"handler\":\"runc\"}",
    ]);
    assert!(
        out.code != 0 && out.stderr.contains("field is immutable"),
        "{out:?}"
    );
    let out = lab.kubectl_stdin(&["apply", "-f", "-"], &runtime_class("Bad_Name", "x"));
    assert!(out.code != 0, "{out:?}");
    let out = lab.kubectl_stdin(
        &["apply", "-f", "-"],
        &runtime_class(&format!("{ns}-bad"), "Not_A_Label"),
    );
    assert!(out.code != 0 && out.stderr.contains("handler"), "{out:?}");

    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
    lab.kubectl_ok(&["delete", "runtimeclass", &fast, &missing_handler]);
}

/// Which OCI runtime keeps the state of container `id` of `node`'s containerd namespace:
/// runc writes `state.json` in its state directory, crun `status`.
fn runtime_state(node: &str, id: &str) -> &'static str {
    let dir = oci_runtime::state_dir(node, id);
    match (dir.join("state.json").exists(), dir.join("status").exists()) {
        (true, false) => "runc",
        (false, true) => "crun",
        (runc, crun) => {
            panic!("{}: runc state {runc}, crun state {crun}", dir.display())
        }
    }
}
