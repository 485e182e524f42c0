//! The agent as kubelet, end to end on real containerd/runc: pods with several containers
//! sharing localhost and an emptyDir, pod-to-pod traffic across nodes, OOM kills with
//! back-off, probes, agent restarts that restart nothing, image pull through the lab
//! registry and import from an archive, and the statuses bad pods get. `kubectl logs` and
//! `exec` are in logs_and_exec.rs.

use std::time::Duration;

use skiff_tests::{Lab, manifests::pod_on, oci_runtime};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn a_two_container_pod_shares_localhost_and_an_empty_dir_and_serves_other_nodes() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("pods");
    let node1 = lab.nodes[0].name.clone();
    let node2 = lab.nodes[1 % lab.nodes.len()].name.clone();
    // busybox httpd serves what the sidecar writes into the shared emptyDir; the sidecar
    // then fetches it over the pod's localhost.
    lab.apply(
        &ns,
        &pod_on(
            "web",
            &node1,
            r#"  containers:
  - name: httpd
    image: busybox
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    volumeMounts: [{name: www, mountPath: /www}]
  - name: writer
    image: busybox
    command: ["sh", "-c", "echo shared-$(hostname) > /content/index.html; while true; do wget -qO- http://127.0.0.1:8080/index.html; sleep 1; done"]
    volumeMounts: [{name: www, mountPath: /content}]
  volumes:
  - name: www
    emptyDir: {}
"#,
        ),
    );
    lab.wait_running(&ns, "web");
    let table = lab.kubectl_ok(&["get", "pod", "web", "-n", &ns, "-o", "wide"]);
    assert!(
        table.contains("2/2") && table.contains("Running"),
        "{table}"
    );
    assert!(table.contains(&node1), "{table}");
    // One containerd shim serves both containers, as containerd's CRI plugin does a pod's.
    let ids = lab.jsonpath(&ns, "pod/web", "{.status.containerStatuses[*].containerID}");
    let shims: Vec<u32> = ids
        .split_whitespace()
        .map(|id| {
            let id = id.trim_start_matches("containerd://");
            shim_of(&node1, id).unwrap_or_else(|e| panic!("the shim of {id}: {e}"))
        })
        .collect();
    assert_eq!(shims.len(), 2, "container IDs {ids:?}");
    assert_eq!(
        shims[0], shims[1],
        "the pod's containers have shims {shims:?}"
    );
    let ip = lab.jsonpath(&ns, "pod/web", "{.status.podIP}");
    assert!(
        ip.starts_with("10.244.1."),
        "pod IP {ip:?} is not from node 1's pod CIDR"
    );
    assert!(table.contains(&ip), "{table}");
    // The sidecar reached httpd over localhost and read the emptyDir file.
    lab.eventually("kubectl logs shows the shared file", MINUTE, || {
        let logs = lab
            .kubectl(&["logs", "web", "-c", "writer", "-n", &ns])
            .stdout;
        if logs.contains("shared-web") {
            Ok(())
        } else {
            Err(logs)
        }
    });
    let tail = lab.kubectl_ok(&[
        "logs",
        "web",
        "-c",
        "writer",
        "-n",
        &ns,
        "--tail=1",
        "--timestamps",
    ]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(
        tail.starts_with("20") && tail.contains(" shared-web"),
        "{tail}"
    );
    let bad = lab.kubectl(&["logs", "web", "-c", "nope", "-n", &ns]);
    assert!(
        bad.code != 0 && bad.stderr.contains("container nope is not valid"),
        "{}",
        bad.stderr
    );

    // A pod on another node reaches it by pod IP.
    lab.apply(
        &ns,
        &pod_on(
            "client",
            &node2,
            &format!(
                r#"  restartPolicy: Never
  containers:
  - name: get
    image: busybox
    command: ["sh", "-c", "wget -qO- http://{ip}:8080/index.html && cat /etc/resolv.conf"]
"#
            ),
        ),
    );
    lab.eventually("the cross-node client succeeded", MINUTE, || {
        let phase = lab.jsonpath(&ns, "pod/client", "{.status.phase}");
        if phase == "Succeeded" {
            Ok(())
        } else {
            Err(phase)
        }
    });
    let logs = lab.kubectl_ok(&["logs", "client", "-n", &ns]);
    assert!(logs.contains("shared-web"), "{logs}");
    assert!(
        logs.contains(&format!(
            "search {ns}.svc.cluster.local svc.cluster.local cluster.local"
        )),
        "{logs}"
    );
    assert!(logs.contains("nameserver 10.96.0.10"), "{logs}");
    let reason = lab.jsonpath(
        &ns,
        "pod/client",
        "{.status.containerStatuses[0].state.terminated.reason}",
    );
    assert_eq!(reason, "Completed");

    // Deleting runs graceful termination on the node and the pod disappears.
    lab.kubectl_ok(&["delete", "pod", "web", "client", "-n", &ns, "--timeout=60s"]);
    assert!(lab.kubectl(&["get", "pod", "web", "-n", &ns]).code != 0);
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The process serving runc container `id` of `node`'s containerd namespace: the parent
/// of the container's first process (the shim is its subreaper).
fn shim_of(node: &str, id: &str) -> Result<u32, String> {
    let pid = oci_runtime::runc_init_pid(node, id)?;
    oci_runtime::process_state(pid)
        .map(|(_, parent)| parent)
        .ok_or_else(|| format!("process {pid} of {id} is gone"))
}

#[test]
fn an_oom_killed_container_reports_137_and_backs_off() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("oom");
    let node = lab.nodes[lab.nodes.len() - 1].name.clone();
    lab.apply(
        &ns,
        &pod_on(
            "hog",
            &node,
            r#"  containers:
  - name: hog
    image: busybox
    command: ["sh", "-c", "head -c 256m /dev/zero | tail"]
    resources:
      limits: {memory: 32Mi}
"#,
        ),
    );
    lab.eventually(
        "the container is OOMKilled and restarted with back-off",
        MINUTE,
        || {
            let code = lab.jsonpath(
                &ns,
                "pod/hog",
                "{.status.containerStatuses[0].lastState.terminated.exitCode}",
            );
            let reason = lab.jsonpath(
                &ns,
                "pod/hog",
                "{.status.containerStatuses[0].lastState.terminated.reason}",
            );
            let restarts: i32 = lab
                .jsonpath(
                    &ns,
                    "pod/hog",
                    "{.status.containerStatuses[0].restartCount}",
                )
                .parse()
                .unwrap_or(0);
            let waiting = lab.jsonpath(
                &ns,
                "pod/hog",
                "{.status.containerStatuses[0].state.waiting.reason}",
            );
            if code == "137"
                && reason == "OOMKilled"
                && restarts >= 1
                && waiting == "CrashLoopBackOff"
            {
                Ok(())
            } else {
                Err(format!(
                    "exit={code} reason={reason} restarts={restarts} waiting={waiting}"
                ))
            }
        },
    );
    let table = lab.kubectl_ok(&["get", "pod", "hog", "-n", &ns]);
    assert!(
        table.contains("CrashLoopBackOff") || table.contains("OOMKilled"),
        "{table}"
    );
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn an_agent_killed_and_restarted_restarts_no_container() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("adopt");
    let node = lab.nodes[0].name.clone();
    lab.apply(
        &ns,
        &pod_on(
            "steady",
            &node,
            r#"  containers:
  - name: tick
    image: busybox
    command: ["sh", "-c", "while true; do echo tick; sleep 1; done"]
"#,
        ),
    );
    lab.wait_running(&ns, "steady");
    let before = lab.jsonpath(
        &ns,
        "pod/steady",
        "{.status.containerStatuses[0].containerID}",
    );
    let started = lab.jsonpath(
        &ns,
        "pod/steady",
        "{.status.containerStatuses[0].state.running.startedAt}",
    );
    lab.component("stop", &format!("agent/{node}"), true);
    std::thread::sleep(Duration::from_secs(2));
    lab.component("start", &format!("agent/{node}"), false);
    // The restarted agent adopts the running container: same ID, no restart, still logging.
    std::thread::sleep(Duration::from_secs(3));
    lab.wait_running(&ns, "steady");
    assert_eq!(
        lab.jsonpath(
            &ns,
            "pod/steady",
            "{.status.containerStatuses[0].containerID}"
        ),
        before
    );
    assert_eq!(
        lab.jsonpath(
            &ns,
            "pod/steady",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
    assert_eq!(
        lab.jsonpath(
            &ns,
            "pod/steady",
            "{.status.containerStatuses[0].state.running.startedAt}"
        ),
        started
    );
    let first = lab
        .kubectl_ok(&["logs", "steady", "-n", &ns])
        .lines()
        .count();
    lab.eventually("logs keep growing after the agent restart", MINUTE, || {
        let now = lab
            .kubectl_ok(&["logs", "steady", "-n", &ns])
            .lines()
            .count();
        if now > first + 1 {
            Ok(())
        } else {
            Err(format!("{now} lines"))
        }
    });
    // …and it still manages the pod: deletion completes.
    lab.kubectl_ok(&["delete", "pod", "steady", "-n", &ns, "--timeout=60s"]);
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn images_come_from_the_registry_or_from_an_imported_archive() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("images");
    let node = lab.nodes[lab.nodes.len() - 1].name.clone();
    let socket = lab.containerd_socket();
    let socket = socket.to_string_lossy();
    // Forget the echo image on this node, then import it from the archive `xtask images` wrote.
    let _ = skiff_tests::process::run(
        "ctr",
        &[
            "--address",
            &socket,
            "-n",
            &node,
            "images",
            "rm",
            "docker.io/skiff/echo:latest",
        ],
    );
    let archive = lab
        .dir
        .parent()
        .expect("target dir")
        .join("images")
        .join("echo.tar");
    let imported = skiff_tests::process::run(
        &lab.bin("skiff-agent").to_string_lossy(),
        &[
            "images",
            "import",
            &archive.to_string_lossy(),
            "--namespace",
            &node,
            "--containerd",
            &socket,
        ],
    )
    .expect("skiff-agent images import");
    assert!(
        imported.contains("imported docker.io/skiff/echo:latest"),
        "{imported}"
    );
    lab.apply(
        &ns,
        &pod_on(
            "imported",
            &node,
            r#"  containers:
  - name: echo
    image: skiff/echo
    imagePullPolicy: Never
"#,
        ),
    );
    lab.wait_running(&ns, "imported");
    let image_id = lab.jsonpath(
        &ns,
        "pod/imported",
        "{.status.containerStatuses[0].imageID}",
    );
    assert!(
        image_id.starts_with("docker.io/skiff/echo@sha256:"),
        "{image_id}"
    );
    // The same image pulled from the registry on another node: the same digest.
    let other = lab.nodes[0].name.clone();
    lab.apply(
        &ns,
        &pod_on(
            "pulled-echo",
            &other,
            r#"  containers:
  - name: echo
    image: skiff/echo
    imagePullPolicy: Always
"#,
        ),
    );
    lab.wait_running(&ns, "pulled-echo");
    let pulled_id = lab.jsonpath(
        &ns,
        "pod/pulled-echo",
        "{.status.containerStatuses[0].imageID}",
    );
    assert_eq!(
        pulled_id, image_id,
        "the image pulled on {other} differs from the one imported on {node}"
    );
    // The pull path: `busybox` resolves to docker.io/library/busybox, fetched via the mirror.
    lab.apply(
        &ns,
        &pod_on(
            "pulled",
            &node,
            r#"  containers:
  - name: sh
    image: busybox
    imagePullPolicy: Always
    command: ["sleep", "3600"]
"#,
        ),
    );
    lab.wait_running(&ns, "pulled");
    let image_id = lab.jsonpath(&ns, "pod/pulled", "{.status.containerStatuses[0].imageID}");
    assert!(
        image_id.starts_with("docker.io/library/busybox@sha256:"),
        "{image_id}"
    );
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn bad_pods_say_what_is_wrong_and_the_node_keeps_serving() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("badpods");
    let node = lab.nodes[0].name.clone();
    for (name, body) in [
        (
            "noimage",
            "  containers:\n  - name: c\n    image: skiff/does-not-exist:v1\n",
        ),
        (
            "nocommand",
            "  containers:\n  - name: c\n    image: busybox\n    command: [\"/no/such/binary\"]\n",
        ),
        (
            "noconfig",
            "  containers:\n  - name: c\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n    env:\n    - name: X\n      valueFrom:\n        configMapKeyRef: {name: missing, key: k}\n",
        ),
        (
            "fine",
            "  containers:\n  - name: c\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n",
        ),
    ] {
        lab.apply(&ns, &pod_on(name, &node, body));
    }
    lab.wait_running(&ns, "fine");
    let waiting = |pod: &str, reasons: &[&str], needle: &str| {
        lab.eventually(
            &format!("pod {pod} waiting with {reasons:?}"),
            MINUTE,
            || {
                let reason = lab.jsonpath(
                    &ns,
                    &format!("pod/{pod}"),
                    "{.status.containerStatuses[0].state.waiting.reason}",
                );
                let message = lab.jsonpath(
                    &ns,
                    &format!("pod/{pod}"),
                    "{.status.containerStatuses[0].state.waiting.message}",
                );
                let last = lab.jsonpath(
                    &ns,
                    &format!("pod/{pod}"),
                    "{.status.containerStatuses[0].lastState.terminated.message}",
                );
                if reasons.contains(&reason.as_str())
                    && (message.contains(needle) || last.contains(needle))
                {
                    Ok(())
                } else {
                    Err(format!("reason={reason} message={message} last={last}"))
                }
            },
        );
    };
    waiting(
        "noimage",
        &["ErrImagePull", "ImagePullBackOff"],
        "skiff/does-not-exist",
    );
    waiting("nocommand", &["CrashLoopBackOff"], "/no/such/binary");
    waiting("noconfig", &["CreateContainerConfigError"], "missing");
    lab.wait_running(&ns, "fine");
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn readiness_decides_ready_and_liveness_restarts() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("probes");
    let node = lab.nodes[0].name.clone();
    lab.apply(
        &ns,
        &pod_on(
            "served",
            &node,
            r#"  containers:
  - name: echo
    image: skiff/echo
    readinessProbe:
      httpGet: {path: /, port: 8080}
      periodSeconds: 1
"#,
        ),
    );
    lab.apply(
        &ns,
        &pod_on(
            "sick",
            &node,
            r#"  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "touch /tmp/healthy; sleep 6; rm /tmp/healthy; sleep 3600"]
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 2
"#,
        ),
    );
    lab.wait_running(&ns, "served");
    lab.eventually(
        "readiness failing keeps the pod Running but not Ready",
        MINUTE,
        || {
            let phase = lab.jsonpath(&ns, "pod/sick", "{.status.phase}");
            let ready = lab.jsonpath(
                &ns,
                "pod/sick",
                "{.status.conditions[?(@.type==\"Ready\")].status}",
            );
            let container = lab.jsonpath(&ns, "pod/sick", "{.status.containerStatuses[0].ready}");
            if phase == "Running" && ready == "False" && container == "false" {
                Ok(())
            } else {
                Err(format!(
                    "phase={phase} ready={ready} container ready={container}"
                ))
            }
        },
    );
    lab.eventually("liveness failure restarts the container", MINUTE, || {
        let restarts: i32 = lab
            .jsonpath(
                &ns,
                "pod/sick",
                "{.status.containerStatuses[0].restartCount}",
            )
            .parse()
            .unwrap_or(0);
        if restarts >= 1 {
            Ok(())
        } else {
            Err(format!("restarts={restarts}"))
        }
    });
    let events = lab.events_of(&ns, "sick");
    assert!(events.contains("Liveness probe failed"), "{events}");
    assert!(events.contains("Readiness probe failed"), "{events}");
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
