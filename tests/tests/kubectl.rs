//! The kubectl on PATH against skiff-control: the everyday verbs on pods, services,
//! deployments and configmaps, each output checked.

use std::{process::Command, time::Duration};

use skiff_tests::{Lab, process, streaming::StreamingKubectl};

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

    // get -w sees a change made while it watches: first the list, then the new object.
    let watch = StreamingKubectl::start(&lab, &["get", "configmaps", "-n", &ns, "-w"]);
    let mut watched = Vec::new();
    let starts =
        |prefix: &'static str| move |lines: &[String]| lines.iter().any(|l| l.starts_with(prefix));
    assert!(
        watch.read_until(&mut watched, Duration::from_secs(20), starts("settings")),
        "get -w did not list the existing configmap: {watched:?}"
    );
    let late = lab.kubectl_stdin(
        &["create", "-f", "-"],
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: late, namespace: {ns}}}\n"),
    );
    assert_eq!(late.code, 0, "{late:?}");
    assert!(
        watch.read_until(&mut watched, Duration::from_secs(20), starts("late")),
        "get -w missed the new configmap: {watched:?}"
    );
    drop(watch);

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

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn edit_changes_the_live_object_through_the_editor() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("kubectl-edit");
    // Created (not applied), so no last-applied annotation repeats the values below.
    let created = lab.kubectl_stdin(
        &["create", "-n", &ns, "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tuned}\ndata: {color: skiff-blue, size: small}\n",
    );
    assert_eq!(created.code, 0, "{created:?}");
    // kubectl runs $KUBE_EDITOR on a temporary file holding the live object as YAML.
    let edit = |editor: &str| {
        process::output(
            Command::new(&lab.kubectl)
                .env("KUBECONFIG", lab.kubeconfig())
                .env("KUBE_EDITOR", editor)
                .args(["edit", "configmap/tuned", "-n", &ns]),
        )
    };
    let version = || lab.jsonpath(&ns, "configmap/tuned", "{.metadata.resourceVersion}");
    let data = || lab.jsonpath(&ns, "configmap/tuned", "{.data.color}/{.data.size}");
    let first = version();
    assert!(!first.is_empty());

    // An editor that changes nothing: kubectl cancels and the object is untouched.
    let out = edit("true");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("Edit cancelled, no changes made."),
        "{out:?}"
    );
    assert_eq!(version(), first);

    // sed as the editor changes one value; the other stays.
    let out = edit("sed -i s/skiff-blue/skiff-green/");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("configmap/tuned edited"), "{out:?}");
    assert_eq!(data(), "skiff-green/small");
    let second = version();
    assert_ne!(second, first);

    // A key deleted in the editor is deleted from the live object.
    let out = edit("sed -i /size:/d");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("configmap/tuned edited"), "{out:?}");
    assert_eq!(data(), "skiff-green/");
    let keys = lab.kubectl_ok(&[
        "get",
        "configmap/tuned",
        "-n",
        &ns,
        "-o",
        "go-template={{range $k, $v := .data}}{{$k}};{{end}}",
    ]);
    assert_eq!(keys, "color;");
    assert_ne!(version(), second);
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The value of a top-level `Key:` line of `kubectl describe` output, whitespace collapsed.
fn described(text: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}:");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The indented lines under a top-level `Header:` line, whitespace collapsed.
fn section(text: &str, header: &str) -> Vec<String> {
    let header = format!("{header}:");
    text.lines()
        .skip_while(|l| l.trim_end() != header)
        .skip(1)
        .take_while(|l| l.starts_with(' ') || l.starts_with('\t'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn describe_service_and_node_print_the_sections_of_a_real_cluster() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("describe");
    lab.apply(
        &ns,
        r#"apiVersion: v1
kind: Pod
metadata: {name: backend, labels: {app: described}}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: echo, image: "skiff/echo:latest", ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: described}
  ports: [{name: http, port: 80, targetPort: 8080}]
"#,
    );
    lab.wait_running(&ns, "backend");
    let pod_ip = lab.jsonpath(&ns, "pod/backend", "{.status.podIP}");
    let cluster_ip = lab.jsonpath(&ns, "service/web", "{.spec.clusterIP}");
    assert!(
        cluster_ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "cluster IP {cluster_ip:?}"
    );
    let service = lab.eventually(
        "describe service lists the ready pod as its endpoint",
        MINUTE,
        || {
            let out = lab.kubectl(&["describe", "service", "web", "-n", &ns]);
            if out.code != 0 {
                return Err(out.stderr);
            }
            if described(&out.stdout, "Endpoints").as_deref()
                == Some(format!("{pod_ip}:8080").as_str())
            {
                Ok(out.stdout)
            } else {
                Err(out.stdout)
            }
        },
    );
    for (key, expected) in [
        ("Name", "web"),
        ("Namespace", ns.as_str()),
        ("Selector", "app=described"),
        ("Type", "ClusterIP"),
        ("IP Family Policy", "SingleStack"),
        ("IP Families", "IPv4"),
        ("IP", cluster_ip.as_str()),
        ("IPs", cluster_ip.as_str()),
        ("Port", "http 80/TCP"),
        ("TargetPort", "8080/TCP"),
        ("Session Affinity", "None"),
        ("Internal Traffic Policy", "Cluster"),
    ] {
        assert_eq!(
            described(&service, key).as_deref(),
            Some(expected),
            "{key} in:\n{service}"
        );
    }
    assert!(described(&service, "Events").is_some(), "{service}");

    let node = lab.nodes[0].clone();
    let field = |path: &str| {
        lab.kubectl_ok(&["get", "node", &node.name, "-o", &format!("jsonpath={path}")])
    };
    let text = lab.kubectl_ok(&["describe", "node", &node.name]);
    assert_eq!(
        described(&text, "Name").as_deref(),
        Some(node.name.as_str()),
        "{text}"
    );
    assert_eq!(
        described(&text, "Roles").as_deref(),
        Some("<none>"),
        "{text}"
    );
    assert_eq!(
        described(&text, "PodCIDR"),
        Some(field("{.spec.podCIDR}")),
        "{text}"
    );
    let addresses = section(&text, "Addresses");
    for expected in [
        format!("InternalIP: {}", node.address),
        format!("Hostname: {}", node.name),
    ] {
        assert!(
            addresses.contains(&expected),
            "{expected} in {addresses:?}:\n{text}"
        );
    }
    for (header, resources) in [("Capacity", "capacity"), ("Allocatable", "allocatable")] {
        let lines = section(&text, header);
        // kubectl prints memory in its canonical quantity form, which may differ from the
        // stored string; its presence is what counts there.
        assert!(
            lines.iter().any(|l| l.starts_with("memory: ")),
            "memory under {header}: {lines:?}\n{text}"
        );
        for resource in ["cpu", "pods"] {
            let expected = format!(
                "{resource}: {}",
                field(&format!("{{.status.{resources}.{resource}}}"))
            );
            assert!(
                lines.contains(&expected),
                "{expected} under {header}: {lines:?}\n{text}"
            );
        }
    }
    let info = section(&text, "System Info");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("kernel release");
    for expected in [
        format!("Kernel Version: {}", kernel.trim()),
        "Operating System: linux".to_owned(),
        format!(
            "Kubelet Version: {}",
            field("{.status.nodeInfo.kubeletVersion}")
        ),
    ] {
        assert!(info.contains(&expected), "{expected} in {info:?}:\n{text}");
    }
    assert!(
        info.iter()
            .any(|l| l.starts_with("Container Runtime Version: containerd://")),
        "{info:?}"
    );
    let conditions = section(&text, "Conditions");
    assert!(
        conditions.iter().any(|l| l.starts_with("Ready True ")),
        "no Ready=True row in {conditions:?}:\n{text}"
    );
    let lease = section(&text, "Lease");
    assert!(
        lease.contains(&format!("HolderIdentity: {}", node.name)),
        "{lease:?}:\n{text}"
    );
    assert!(
        described(&text, "Non-terminated Pods").is_some_and(|v| v.ends_with("in total)")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.trim_end() == "Allocated resources:"),
        "{text}"
    );
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The rows of `pod` in `kubectl get pods` output, split into columns.
fn rows<'a>(lines: &'a [String], pod: &str) -> Vec<Vec<&'a str>> {
    lines
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.first() == Some(&pod))
        .collect()
}

#[test]
fn get_pods_watch_shows_a_new_pod_appear_and_start() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("kubectl-watch");
    // A pod that stays Pending: its row marks the end of the initial list, and the watch
    // goes on from that list's resourceVersion, so nothing created afterwards is missed.
    lab.apply(
        &ns,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: early}\nspec:\n  nodeSelector: {skiff.io/no-such-node: \"true\"}\n  containers: [{name: c, image: busybox}]\n",
    );
    let watch = StreamingKubectl::start(
        &lab,
        &["get", "pods", "-n", &ns, "-w", "--request-timeout=150s"],
    );
    let mut seen = Vec::new();
    let listed = watch.read_until(&mut seen, Duration::from_secs(30), |lines| {
        !rows(lines, "early").is_empty()
    });
    assert!(listed, "get -w did not list the existing pod: {seen:?}");
    assert_eq!(
        seen.first()
            .map(|h| h.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
        "{seen:?}"
    );
    lab.apply(
        &ns,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: arrival}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{name: c, image: busybox, command: [sleep, \"3600\"]}]\n",
    );
    let started = watch.read_until(&mut seen, Duration::from_secs(90), |lines| {
        rows(lines, "arrival")
            .iter()
            .any(|cols| cols.get(2) == Some(&"Running"))
    });
    drop(watch);
    assert!(started, "get -w never showed arrival Running: {seen:?}");
    let arrival = rows(&seen, "arrival");
    assert_eq!(
        arrival[0].get(1..3),
        Some(&["0/1", "Pending"][..]),
        "the first row of a new pod: {seen:?}"
    );
    let running = arrival
        .iter()
        .find(|cols| cols.get(2) == Some(&"Running"))
        .expect("a Running row");
    assert_eq!(running.get(1), Some(&"1/1"), "{seen:?}");
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
