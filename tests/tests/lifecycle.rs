//! Container lifecycle and security on real containerd/runc: preStop hooks run before
//! SIGTERM and hold deletion up within the grace period (and are cut short by it), the
//! securityContext basics (runAsUser, readOnlyRootFilesystem, capabilities) reach the
//! process, and privileged containers are refused by the lab's agents.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use skiff_tests::{Lab, manifests::pod_on};

const MINUTE: Duration = Duration::from_secs(60);

/// The host's uptime in seconds. Containers read the same clock from /proc/uptime (no time
/// namespaces), so the test and the pod's processes can compare instants.
fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .expect("reading /proc/uptime")
}

/// `<what> <uptime>` lines the pod appended to its hostPath file.
fn events(file: &std::path::Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let what = words.next()?.to_owned();
            let at: f64 = words.next()?.parse().ok()?;
            Some((what, at))
        })
        .collect()
}

/// A per-run directory under the lab dir (the agents see the host's file system), fresh.
fn host_dir(lab: &Lab, name: &str) -> PathBuf {
    let dir = std::path::absolute(lab.dir.join(format!("{name}-{}", std::process::id())))
        .expect("absolute lab dir");
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_pre_stop_hook_runs_before_sigterm_and_holds_deletion_up() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("prestop");
    let node = lab.nodes[0].name.clone();
    let dir = host_dir(&lab, "hostpath-prestop");
    let file = dir.join("events");
    // The main container records when it starts and when SIGTERM reaches it; the preStop
    // hook records when it starts and ends (3 s later). All append to one hostPath file,
    // which outlives the pod.
    let body = r#"  terminationGracePeriodSeconds: 30
  containers:
  - name: app
    image: busybox
    command:
    - sh
    - -c
    - |
      trap 'echo term $(cut -d " " -f 1 /proc/uptime) >> /hooks/events; exit 0' TERM
      echo started $(cut -d " " -f 1 /proc/uptime) >> /hooks/events
      while true; do sleep 0.2; done
    lifecycle:
      preStop:
        exec:
          command:
          - sh
          - -c
          - |
            echo prestop-start $(cut -d " " -f 1 /proc/uptime) >> /hooks/events
            sleep 3
            echo prestop-end $(cut -d " " -f 1 /proc/uptime) >> /hooks/events
    volumeMounts: [{name: hooks, mountPath: /hooks}]
  volumes:
  - name: hooks
    hostPath: {path: HOOKDIR, type: DirectoryOrCreate}
"#
    .replace("HOOKDIR", &dir.to_string_lossy());
    lab.apply(&ns, &pod_on("hooked", &node, &body));
    lab.wait_running(&ns, "hooked");
    lab.eventually("the container wrote its start line", MINUTE, || {
        let seen = events(&file);
        if seen.iter().any(|(what, _)| what == "started") {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });

    let asked = uptime();
    let started = Instant::now();
    let out = lab.kubectl(&[
        "delete",
        "pod",
        "hooked",
        "-n",
        &ns,
        "--grace-period=10",
        "--timeout=60s",
    ]);
    let took = started.elapsed();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        lab.kubectl(&["get", "pod", "hooked", "-n", &ns]).code != 0,
        "the pod is still there after kubectl delete returned"
    );
    let seen = events(&file);
    let order: Vec<&str> = seen.iter().map(|(what, _)| what.as_str()).collect();
    assert_eq!(
        order,
        ["started", "prestop-start", "prestop-end", "term"],
        "the hook must finish before SIGTERM reaches the container: {seen:?}"
    );
    let at = |what: &str| {
        seen.iter()
            .find(|(w, _)| w == what)
            .map(|(_, t)| *t)
            .expect("event present")
    };
    assert!(
        at("prestop-start") >= asked - 0.05,
        "the hook ran before the deletion was asked for: {seen:?} (asked at {asked})"
    );
    assert!(
        at("term") - at("prestop-start") >= 2.9,
        "SIGTERM came less than 3 s after the hook started: {seen:?}"
    );
    // Deletion waited for the hook, and the container's exit on SIGTERM ended it well before
    // the 10 s grace period (no SIGKILL needed).
    assert!(
        took >= Duration::from_millis(2900),
        "deletion took only {took:?} although preStop sleeps 3 s"
    );
    assert!(
        took < Duration::from_secs(10),
        "deletion took {took:?}: the container was not stopped by SIGTERM after the hook"
    );
    let _ = std::fs::remove_dir_all(&dir);
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn a_pre_stop_hook_longer_than_the_grace_period_is_cut_short() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("prestop-slow");
    let node = lab.nodes[lab.nodes.len() - 1].name.clone();
    // sleep as PID 1 ignores SIGTERM, and the hook would take 60 s: only the grace period
    // ends this pod.
    lab.apply(
        &ns,
        &pod_on(
            "slow",
            &node,
            r#"  containers:
  - name: app
    image: busybox
    command: ["sleep", "3600"]
    lifecycle:
      preStop:
        exec: {command: ["sleep", "60"]}
"#,
        ),
    );
    lab.wait_running(&ns, "slow");
    let started = Instant::now();
    let out = lab.kubectl(&[
        "delete",
        "pod",
        "slow",
        "-n",
        &ns,
        "--grace-period=3",
        "--timeout=60s",
    ]);
    let took = started.elapsed();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        took >= Duration::from_millis(2500),
        "deletion took only {took:?}: the hook did not run within the 3 s grace period"
    );
    assert!(
        took < Duration::from_secs(15),
        "deletion took {took:?}: the 60 s hook was not cut short by the 3 s grace period"
    );
    lab.eventually("the cut-short hook is reported as an event", MINUTE, || {
        let events = lab.events_of(&ns, "slow");
        if events.contains("FailedPreStopHook") && events.contains("did not finish within") {
            Ok(())
        } else {
            Err(events)
        }
    });
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The value of `CapXxx:` in a dump of /proc/self/status.
fn cap<'a>(logs: &'a str, name: &str) -> &'a str {
    logs.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map_or("", str::trim)
}

#[test]
fn security_context_sets_user_read_only_root_and_capabilities() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("secctx");
    let node = lab.nodes[0].name.clone();
    // The same script twice: once restricted, once without a securityContext, so every
    // difference below comes from the securityContext.
    let script = r#"["sh", "-c", "echo uid=$(id -u); touch /x 2>&1 && echo touched; grep Cap /proc/self/status"]"#;
    lab.apply(
        &ns,
        &pod_on(
            "restricted",
            &node,
            &format!(
                r#"  restartPolicy: Never
  containers:
  - name: restricted
    image: busybox
    command: {script}
    securityContext:
      runAsUser: 1000
      readOnlyRootFilesystem: true
      capabilities: {{drop: [ALL]}}
  - name: plain
    image: busybox
    command: {script}
"#
            ),
        ),
    );
    lab.eventually("both containers ran to completion", MINUTE, || {
        let phase = lab.jsonpath(&ns, "pod/restricted", "{.status.phase}");
        if phase == "Succeeded" {
            Ok(())
        } else {
            Err(format!(
                "phase={phase} statuses={}",
                lab.jsonpath(&ns, "pod/restricted", "{.status.containerStatuses}")
            ))
        }
    });
    let none = "0000000000000000";
    let restricted = lab.kubectl_ok(&["logs", "restricted", "-c", "restricted", "-n", &ns]);
    assert!(restricted.lines().any(|l| l == "uid=1000"), "{restricted}");
    assert!(
        restricted.contains("Read-only file system") && !restricted.contains("touched"),
        "the root file system is writable:\n{restricted}"
    );
    assert_eq!(cap(&restricted, "CapEff"), none, "{restricted}");
    assert_eq!(cap(&restricted, "CapPrm"), none, "{restricted}");
    assert_eq!(
        cap(&restricted, "CapBnd"),
        none,
        "drop ALL must empty the bounding set:\n{restricted}"
    );
    let plain = lab.kubectl_ok(&["logs", "restricted", "-c", "plain", "-n", &ns]);
    assert!(plain.lines().any(|l| l == "uid=0"), "{plain}");
    assert!(plain.lines().any(|l| l == "touched"), "{plain}");
    for name in ["CapEff", "CapBnd"] {
        let value = cap(&plain, name);
        assert!(
            value.len() == 16 && value != none,
            "{name} of an unrestricted root container: {plain}"
        );
    }
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn a_privileged_pod_is_refused_and_never_runs() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("privileged");
    let node = lab.nodes[0].name.clone();
    lab.apply(
        &ns,
        &pod_on(
            "root",
            &node,
            r#"  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: ["sleep", "3600"]
    securityContext: {privileged: true}
"#,
        ),
    );
    let state = |path: &str| lab.jsonpath(&ns, "pod/root", path);
    let refused = || {
        let reason = state("{.status.containerStatuses[0].state.waiting.reason}");
        let message = state("{.status.containerStatuses[0].state.waiting.message}");
        if reason == "CreateContainerConfigError"
            && message.contains("container c is privileged, which this node does not allow")
        {
            Ok(())
        } else {
            Err(format!("reason={reason} message={message}"))
        }
    };
    lab.eventually("the privileged container is refused", MINUTE, &refused);
    // The agent retries every few seconds; over two retries it keeps refusing and nothing
    // ever runs.
    std::thread::sleep(Duration::from_secs(12));
    if let Err(last) = refused() {
        panic!("the refusal did not hold: {last}");
    }
    assert_eq!(state("{.status.phase}"), "Pending");
    assert_eq!(state("{.status.containerStatuses[0].state.running}"), "");
    assert_eq!(
        state("{.status.containerStatuses[0].lastState.terminated}"),
        ""
    );
    assert_eq!(state("{.status.containerStatuses[0].containerID}"), "");
    assert_eq!(state("{.status.containerStatuses[0].restartCount}"), "0");
    let table = lab.kubectl_ok(&["get", "pod", "root", "-n", &ns]);
    assert!(
        table.lines().any(|l| l.starts_with("root ")
            && l.contains("0/1")
            && l.contains("CreateContainerConfigError")),
        "{table}"
    );
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
