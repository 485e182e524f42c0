//! A real operator bundle, applied unchanged as its README says: kube-prometheus
//! (tests/bundles/kube-prometheus: ten CRDs of up to 810 kB applied server-side, then 90
//! objects — Deployments, a DaemonSet, RBAC, ServiceAccounts, NetworkPolicies,
//! PodDisruptionBudgets, ServiceMonitors, PrometheusRules, an APIService). Its custom
//! resources are listed with their printer columns and explained from the published
//! schemas, an invalid one is refused with its field path, and the prometheus-adapter's
//! APIService is registered (not available: the lab cannot pull the bundle's images, and
//! its pods never start — nothing here needs them to).

use std::{path::PathBuf, time::Duration};

use skiff_tests::Lab;

/// The CRDs of the bundle.
const CRDS: &[&str] = &[
    "alertmanagerconfigs",
    "alertmanagers",
    "podmonitors",
    "probes",
    "prometheusagents",
    "prometheuses",
    "prometheusrules",
    "scrapeconfigs",
    "servicemonitors",
    "thanosrulers",
];

fn bundle() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bundles/kube-prometheus/manifests")
}

/// Deletes what the bundle created (objects first, then definitions and the namespace).
struct Uninstall<'a>(&'a Lab);

impl Drop for Uninstall<'_> {
    fn drop(&mut self) {
        let manifests = bundle();
        let setup = manifests.join("setup");
        let _ = self.0.kubectl(&[
            "delete",
            "-f",
            &manifests.to_string_lossy(),
            "--ignore-not-found",
            "--wait=false",
        ]);
        let _ = self.0.kubectl(&[
            "delete",
            "-f",
            &setup.to_string_lossy(),
            "--ignore-not-found",
            "--wait=false",
        ]);
    }
}

#[test]
fn kube_prometheus_applies_unchanged_and_its_resources_work() {
    let Some(lab) = Lab::from_env() else { return };
    let manifests = bundle();
    let setup = manifests.join("setup");
    let _uninstall = Uninstall(&lab);

    // 1. The definitions, server-side (too large for the last-applied annotation).
    let out = lab.kubectl(&["apply", "--server-side", "-f", &setup.to_string_lossy()]);
    assert_eq!(out.code, 0, "{out:?}");
    let crds: Vec<String> = CRDS
        .iter()
        .map(|c| format!("crd/{c}.monitoring.coreos.com"))
        .collect();
    let mut wait = vec!["wait", "--for", "condition=Established", "--timeout=120s"];
    wait.extend(crds.iter().map(String::as_str));
    lab.kubectl_ok(&wait);

    // 2. Everything else, client-side, as the README says.
    let out = lab.kubectl(&["apply", "-f", &manifests.to_string_lossy()]);
    assert_eq!(out.code, 0, "kubectl apply -f manifests/: {out:?}");
    let created = out.stdout.lines().count();
    assert!(created >= 80, "{created} objects: {}", out.stdout);

    // The kinds that ship with it are all there.
    for (kind, at_least) in [
        ("networkpolicies", 8),
        ("poddisruptionbudgets", 3),
        ("servicemonitors.monitoring.coreos.com", 8),
        ("prometheusrules.monitoring.coreos.com", 5),
        ("serviceaccounts", 8),
        ("deployments", 5),
        ("daemonsets", 1),
    ] {
        let names = lab.kubectl_ok(&["get", kind, "-n", "monitoring", "-o", "name"]);
        assert!(
            names.lines().count() >= at_least,
            "{kind}: expected at least {at_least}, got:\n{names}"
        );
    }

    // 3. Custom resources with their printer columns.
    let table = lab.kubectl_ok(&["get", "prometheus", "-n", "monitoring"]);
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "NAME",
        "VERSION",
        "DESIRED",
        "READY",
        "RECONCILED",
        "AVAILABLE",
        "AGE",
    ] {
        assert!(header.contains(column), "{table}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("k8s ") && l.contains("3.13.2")),
        "{table}"
    );
    let alertmanager = lab.kubectl_ok(&["get", "alertmanagers", "-n", "monitoring", "-o", "wide"]);
    assert!(alertmanager.contains("main"), "{alertmanager}");

    // 4. Explained from the published schema.
    let explained = lab.kubectl_ok(&["explain", "prometheus.spec.retention"]);
    assert!(
        explained.contains("retention") && explained.contains("DESCRIPTION"),
        "{explained}"
    );

    // 5. An invalid custom resource is refused with the field at fault.
    let invalid = r#"{"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "bad-scheme", "namespace": "monitoring"},
        "spec": {"selector": {}, "endpoints": [{"port": "web", "scheme": "ftp"}]}}"#;
    let out = lab.kubectl_stdin(&["create", "-f", "-"], invalid);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("spec.endpoints[0].scheme") && out.stderr.contains("ftp"),
        "{out:?}"
    );

    // 6. The adapter's APIService is registered; with no adapter running it is not
    // available, and the rest of the API is unaffected.
    let available = lab.eventually(
        "the metrics APIService's condition",
        Duration::from_secs(60),
        || {
            let condition = lab
                .kubectl(&[
                    "get",
                    "apiservice",
                    "v1beta1.metrics.k8s.io",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
                ])
                .stdout;
            if condition == "False" {
                Ok(condition)
            } else {
                Err(condition)
            }
        },
    );
    assert_eq!(available, "False");
    lab.kubectl_ok(&["get", "pods", "-n", "monitoring"]);
}
