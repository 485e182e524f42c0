//! Namespace deletion as on a real cluster: the namespace turns Terminating and refuses new
//! objects, the namespace controller (leader-elected inside skiff-control) deletes its
//! contents, finalizes it, and `kubectl delete namespace` returns once it is gone.

use skiff_tests::Lab;

#[test]
fn deleting_a_namespace_empties_it_then_removes_it() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("doomed");
    lab.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        &ns,
        "--from-literal=a=b",
    ]);
    lab.kubectl_ok(&["create", "deployment", "web", "-n", &ns, "--image=nginx"]);
    lab.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        &ns,
        "--from-literal=k=v",
    ]);

    // Mark it without waiting, to look at the Terminating state.
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
    let refused = lab.kubectl(&[
        "create",
        "configmap",
        "late",
        "-n",
        &ns,
        "--from-literal=a=b",
    ]);
    // Refused either way: Forbidden while it is Terminating, NotFound once it is gone.
    assert_ne!(
        refused.code, 0,
        "an object was created in a deleted namespace: {refused:?}"
    );
    assert!(
        refused.stderr.contains("is being terminated") || refused.stderr.contains("not found"),
        "{}",
        refused.stderr
    );

    let waited = lab.kubectl(&[
        "wait",
        "--for=delete",
        &format!("namespace/{ns}"),
        "--timeout=60s",
    ]);
    assert_eq!(waited.code, 0, "the namespace was not removed: {waited:?}");
    let gone = lab.kubectl(&["get", "namespace", &ns]);
    assert!(gone.stderr.contains("NotFound"), "{gone:?}");
    for kind in ["configmaps", "deployments", "secrets"] {
        let left = lab.kubectl_ok(&[
            "get",
            kind,
            "-A",
            "--field-selector",
            &format!("metadata.namespace={ns}"),
            "-o",
            "name",
        ]);
        assert!(left.trim().is_empty(), "{kind} left behind: {left}");
    }
    let lease = lab.kubectl_ok(&[
        "get",
        "lease",
        "skiff-controller-manager",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert!(!lease.is_empty(), "no controller-manager leader");
}

#[test]
fn system_namespaces_cannot_be_deleted() {
    let Some(lab) = Lab::from_env() else { return };
    let out = lab.kubectl(&["delete", "namespace", "kube-system", "--wait=false"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("may not be deleted"), "{}", out.stderr);
}
