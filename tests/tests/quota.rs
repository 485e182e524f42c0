//! ResourceQuota and LimitRange end to end: in a namespace with a quota of two pods and
//! 500m of requested CPU and a LimitRange defaulting requests to 100m, pods get the default
//! request, the quota controller keeps `used` (what `kubectl describe quota` shows), a third
//! pod is refused with kube's quota message, a pod asking more than a container may have is
//! refused by LimitRanger, and deleting a pod frees room for another.

use std::time::Duration;

use skiff_tests::Lab;

const MINUTE: Duration = Duration::from_secs(60);

const QUOTA: &str = "apiVersion: v1
kind: ResourceQuota
metadata: {name: compute}
spec:
  hard: {pods: \"2\", requests.cpu: 500m}
";

const LIMITS: &str = "apiVersion: v1
kind: LimitRange
metadata: {name: defaults}
spec:
  limits:
  - type: Container
    defaultRequest: {cpu: 100m}
    default: {cpu: 200m}
    max: {cpu: \"1\"}
";

/// A pod named `name` with one container and `resources` (YAML flow map, or "").
fn pod(name: &str, resources: &str) -> String {
    let resources = if resources.is_empty() {
        String::new()
    } else {
        format!(", resources: {resources}")
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: busybox, command: [sleep, \"3600\"]{resources}}}\n"
    )
}

/// The quota's `status.used[resource]` as the controller and admission keep it.
fn used(lab: &Lab, ns: &str, resource: &str) -> String {
    let path = format!("{{.status.used.{}}}", resource.replace('.', "\\."));
    lab.jsonpath(ns, "resourcequota/compute", &path)
}

#[test]
fn quotas_and_limit_ranges_bound_a_namespace() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("quota");
    lab.apply(&ns, LIMITS);
    lab.apply(&ns, QUOTA);
    // Short names and the quota's table.
    let table = lab.kubectl_ok(&["get", "limits,quota", "-n", &ns]);
    assert!(
        table.contains("defaults") && table.contains("compute"),
        "{table}"
    );
    // The controller fills in the status before the quota limits anything.
    lab.eventually("the quota's status is computed", MINUTE, || {
        let hard = lab.jsonpath(&ns, "resourcequota/compute", "{.status.hard.pods}");
        let pods = used(&lab, &ns, "pods");
        if hard == "2" && pods == "0" {
            Ok(())
        } else {
            Err(format!("hard.pods={hard:?} used.pods={pods:?}"))
        }
    });
    // LimitRange defaults fill in what the pod leaves out.
    lab.apply(&ns, &pod("first", ""));
    let request = lab.jsonpath(
        &ns,
        "pod/first",
        "{.spec.containers[0].resources.requests.cpu}",
    );
    let limit = lab.jsonpath(
        &ns,
        "pod/first",
        "{.spec.containers[0].resources.limits.cpu}",
    );
    assert_eq!((request.as_str(), limit.as_str()), ("100m", "200m"));
    let note = lab.jsonpath(
        &ns,
        "pod/first",
        "{.metadata.annotations.kubernetes\\.io/limit-ranger}",
    );
    assert_eq!(
        note,
        "LimitRanger plugin set: cpu request for container c; cpu limit for container c"
    );
    // Beyond the LimitRange's max: refused by LimitRanger.
    let out = lab.kubectl_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &pod("greedy", "{limits: {cpu: \"2\"}}"),
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("maximum cpu usage per Container is 1, but limit is 2"),
        "{out:?}"
    );
    // A second pod within the quota.
    lab.apply(
        &ns,
        &pod("second", "{requests: {cpu: 300m}, limits: {cpu: 300m}}"),
    );
    assert_eq!(used(&lab, &ns, "pods"), "2");
    assert_eq!(used(&lab, &ns, "requests.cpu"), "400m");
    // A third: over the pod count.
    let out = lab.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &pod("third", ""));
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(
            "pods \"third\" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2"
        ),
        "{out:?}"
    );
    // A dry run is judged but charges nothing.
    let out = lab.kubectl_stdin(
        &["apply", "-n", &ns, "--dry-run=server", "-f", "-"],
        &pod("third", ""),
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert_eq!(used(&lab, &ns, "pods"), "2");
    // `kubectl describe quota` shows used against hard.
    let described = lab.kubectl_ok(&["describe", "quota", "compute", "-n", &ns]);
    let row = |resource: &str| {
        described
            .lines()
            .find(|l| l.split_whitespace().next() == Some(resource))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
    };
    assert_eq!(row("pods"), Some(vec!["pods", "2", "2"]), "{described}");
    assert_eq!(
        row("requests.cpu"),
        Some(vec!["requests.cpu", "400m", "500m"]),
        "{described}"
    );
    // Deleting a pod gives its room back (the controller recomputes usage).
    lab.kubectl_ok(&["delete", "pod", "second", "-n", &ns, "--wait=true"]);
    lab.eventually("the deleted pod's usage is released", MINUTE, || {
        let pods = used(&lab, &ns, "pods");
        let cpu = used(&lab, &ns, "requests.cpu");
        if pods == "1" && cpu == "100m" {
            Ok(())
        } else {
            Err(format!("pods={pods:?} requests.cpu={cpu:?}"))
        }
    });
    // Now the third fits, but not a pod asking more CPU than is left.
    let out = lab.kubectl_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &pod("big", "{requests: {cpu: 450m}, limits: {cpu: 450m}}"),
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(
            "exceeded quota: compute, requested: requests.cpu=450m, used: requests.cpu=100m, limited: requests.cpu=500m"
        ),
        "{out:?}"
    );
    lab.apply(&ns, &pod("third", ""));
    assert_eq!(used(&lab, &ns, "pods"), "2");
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
