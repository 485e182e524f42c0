//! The kubectl on PATH against skiff-control: the everyday verbs on pods, services,
//! deployments and configmaps, each output checked.

use std::{process::Command, time::Duration};

use skiff_tests::{Lab, process};

fn manifests(ns: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}, labels: {{app: web}}}}
data: {{color: blue}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}, labels: {{app: web}}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}, labels: {{app: web}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: "skiff/echo:latest"}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: solo, namespace: {ns}, labels: {{app: web, role: solo}}}}
spec:
  # No node has this label: the pod stays Pending, which the field selectors below rely on.
  nodeSelector: {{skiff.io/no-such-node: "true"}}
  containers: [{{name: c, image: busybox}}]
"#
    )
}

#[test]
fn everyday_verbs_work_on_pods_services_deployments_configmaps() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("kubectl");
    let created = lab.kubectl_stdin(&["create", "-f", "-"], &manifests(&ns));
    assert_eq!(created.code, 0, "{created:?}");
    for line in [
        "configmap/settings created",
        "service/web created",
        "deployment.apps/web created",
        "pod/solo created",
    ] {
        assert!(
            created.stdout.contains(line),
            "missing {line:?} in {}",
            created.stdout
        );
    }

    // get (table), get -o yaml with server defaults, selectors.
    let pods = lab.kubectl_ok(&["get", "pods", "-n", &ns]);
    assert!(
        pods.lines().next().is_some_and(|h| h.starts_with("NAME")),
        "{pods}"
    );
    assert!(pods.lines().any(|l| l.starts_with("solo ")), "{pods}");
    let yaml = lab.kubectl_ok(&["get", "deployment", "web", "-n", &ns, "-o", "yaml"]);
    for expected in [
        "replicas: 2",
        "revisionHistoryLimit: 10",
        "maxSurge: 25%",
        "progressDeadlineSeconds: 600",
        "generation: 1",
        "uid: ",
        "resourceVersion: ",
    ] {
        assert!(
            yaml.contains(expected),
            "deployment yaml lacks {expected:?}:\n{yaml}"
        );
    }
    let svc = lab.kubectl_ok(&[
        "get",
        "svc",
        "web",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.ports[0].protocol}/{.spec.ports[0].targetPort}",
    ]);
    assert_eq!(svc, "TCP/8080");
    for kind in ["pods", "services", "deployments", "configmaps"] {
        let names = lab.kubectl_ok(&[
            "get",
            kind,
            "-n",
            &ns,
            "--selector",
            "app=web",
            "-o",
            "name",
        ]);
        assert!(!names.trim().is_empty(), "no {kind} selected by app=web");
        let none = lab.kubectl_ok(&["get", kind, "-n", &ns, "-l", "app=nothing", "-o", "name"]);
        assert!(none.trim().is_empty(), "{kind}: {none}");
    }
    let solo = lab.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        &ns,
        "--field-selector",
        "metadata.name=solo,status.phase=Pending",
        "-o",
        "name",
    ]);
    assert_eq!(solo.trim(), "pod/solo");
    let bad = lab.kubectl(&["get", "pods", "-n", &ns, "--field-selector", "spec.bogus=1"]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("field label not supported: spec.bogus"),
        "{}",
        bad.stderr
    );

    // label and annotate (merge patches), then read them back.
    for kind in [
        "pod/solo",
        "service/web",
        "deployment/web",
        "configmap/settings",
    ] {
        lab.kubectl_ok(&["label", kind, "-n", &ns, "checked=yes"]);
        lab.kubectl_ok(&["annotate", kind, "-n", &ns, "note=hello world"]);
        let got = lab.kubectl_ok(&[
            "get",
            kind,
            "-n",
            &ns,
            "-o",
            "jsonpath={.metadata.labels.checked}/{.metadata.annotations.note}",
        ]);
        assert_eq!(got, "yes/hello world", "{kind}");
    }
    lab.kubectl_ok(&["label", "pod/solo", "-n", &ns, "checked-"]);
    let labels = lab.kubectl_ok(&[
        "get",
        "pod/solo",
        "-n",
        &ns,
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(!labels.contains("checked"), "{labels}");

    // get -w sees a change made while it watches.
    let mut watch = Command::new("kubectl")
        .env("KUBECONFIG", lab.kubeconfig())
        .args(["get", "configmaps", "-n", &ns, "-w", "--request-timeout=8s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl get -w");
    std::thread::sleep(Duration::from_millis(1500));
    let late = lab.kubectl_stdin(
        &["create", "-f", "-"],
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: late, namespace: {ns}}}\n"),
    );
    assert_eq!(late.code, 0, "{late:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = watch.kill();
    let watched = watch.wait_with_output().expect("watch output");
    let watched = String::from_utf8_lossy(&watched.stdout);
    assert!(
        watched.lines().any(|l| l.starts_with("settings")),
        "{watched}"
    );
    assert!(
        watched.lines().any(|l| l.starts_with("late")),
        "get -w missed the new configmap:\n{watched}"
    );

    // delete: unscheduled pods go at once; kubectl waits until they are gone.
    for kind in [
        "pod/solo",
        "configmap/settings",
        "service/web",
        "deployment/web",
    ] {
        let out = lab.kubectl(&["delete", kind, "-n", &ns, "--timeout=20s"]);
        assert_eq!(out.code, 0, "delete {kind}: {out:?}");
        let gone = lab.kubectl(&["get", kind, "-n", &ns]);
        assert!(
            gone.stderr.contains("NotFound"),
            "{kind} still there: {gone:?}"
        );
    }
}

#[test]
fn api_resources_and_version() {
    let Some(lab) = Lab::from_env() else { return };
    let resources = lab.kubectl_ok(&["api-resources"]);
    for (name, short, version, namespaced, kind) in [
        ("pods", "po", "v1", "true", "Pod"),
        ("services", "svc", "v1", "true", "Service"),
        ("nodes", "no", "v1", "false", "Node"),
        ("deployments", "deploy", "apps/v1", "true", "Deployment"),
        ("cronjobs", "cj", "batch/v1", "true", "CronJob"),
        ("leases", "", "coordination.k8s.io/v1", "true", "Lease"),
        (
            "endpointslices",
            "",
            "discovery.k8s.io/v1",
            "true",
            "EndpointSlice",
        ),
    ] {
        let found = resources.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let expected: Vec<&str> = [name, short, version, namespaced, kind]
                .into_iter()
                .filter(|c| !c.is_empty())
                .collect();
            cols == expected
        });
        assert!(found, "api-resources lacks {name}:\n{resources}");
    }
    let version = lab.kubectl_ok(&["version", "-o", "json"]);
    let version: serde_json::Value = serde_json::from_str(&version).expect("json");
    assert_eq!(version["serverVersion"]["minor"], "33");
    // The versioned client the dispatcher picks for 1.33 works too.
    let direct = process::output(
        Command::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33")
            .env("KUBECONFIG", lab.kubeconfig())
            .args(["get", "ns", "default", "-o", "name"]),
    );
    if direct.code != 0 && direct.stderr.contains("No such file") {
        skiff_tests::cannot_run("kubectl.1.33 is not installed");
    } else {
        assert_eq!(direct.stdout.trim(), "namespace/default", "{direct:?}");
    }
}

#[test]
fn explain_reads_the_openapi_schemas() {
    let Some(lab) = Lab::from_env() else { return };
    let out = lab.kubectl_ok(&["explain", "pod.spec.containers"]);
    assert!(out.contains("KIND:       Pod"), "{out}");
    assert!(out.contains("FIELD: containers <[]Container>"), "{out}");
    assert!(out.contains("image\t<string>"), "{out}");
    let out = lab.kubectl_ok(&["explain", "deployment.spec.strategy.rollingUpdate"]);
    assert!(
        out.contains("GROUP:      apps") && out.contains("maxSurge"),
        "{out}"
    );
}
