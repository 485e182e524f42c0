//! The node API as kubectl reaches it through the API server, end to end: `kubectl exec`
//! (stdout, stderr, exit codes, stdin, a terminal) and `kubectl logs` (follow, tail, since,
//! the previous run).

use std::time::Duration;

use skiff_tests::{Lab, manifests::pod_on, streaming::StreamingKubectl};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn kubectl_exec_runs_commands_with_stdin_exit_codes_and_a_terminal() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("exec");
    let node = lab.nodes[lab.nodes.len() - 1].name.clone();
    lab.apply(
        &ns,
        &pod_on(
            "shell",
            &node,
            "  terminationGracePeriodSeconds: 1\n  containers:\n  - name: sh\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n",
        ),
    );
    lab.wait_running(&ns, "shell");
    // stdout, stderr and the exit status travel separately.
    let out = lab.kubectl(&[
        "exec",
        "shell",
        "-n",
        &ns,
        "--",
        "sh",
        "-c",
        "echo out-$(hostname); echo err >&2; exit 3",
    ]);
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(out.stdout.trim(), "out-shell");
    assert!(
        out.stderr.contains("err") && out.stderr.contains("exit code 3"),
        "{}",
        out.stderr
    );
    // stdin reaches the process and its EOF ends it.
    let out = lab.kubectl_stdin(
        &["exec", "-i", "shell", "-n", &ns, "--", "wc", "-l"],
        "a\nb\nc\n",
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "3");
    // A terminal: an interactive shell through `script`, which gives kubectl a pty.
    let kubeconfig = lab.kubeconfig();
    let line = format!(
        "KUBECONFIG={} kubectl exec -it shell -n {ns} -- sh",
        kubeconfig.display()
    );
    let out = skiff_tests::process::output(std::process::Command::new("sh").arg("-c").arg(
        format!("printf 'echo typed-$((6*7)); tty\\nexit 5\\n' | script -qec \"{line}\" /dev/null"),
    ));
    assert!(out.stdout.contains("typed-42"), "{out:?}");
    assert!(out.stdout.contains("/dev/pts/"), "{out:?}");
    assert_eq!(out.code, 5, "{out:?}");
    let missing = lab.kubectl(&["exec", "shell", "-n", &ns, "-c", "nope", "--", "true"]);
    assert!(
        missing.code != 0 && missing.stderr.contains("container nope is not valid"),
        "{}",
        missing.stderr
    );
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The numbers of `line-<n>` lines, in order; panics on any other line.
fn numbers<S: AsRef<str>>(lines: &[S]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| {
            let l = l.as_ref();
            l.strip_prefix("line-")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected log line {l:?}"))
        })
        .collect()
}

/// True if `numbers` count up by one.
fn consecutive(numbers: &[u64]) -> bool {
    numbers.windows(2).all(|w| w[1] == w[0] + 1)
}

#[test]
fn kubectl_logs_follows_tails_filters_by_time_and_shows_the_previous_run() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("logs");
    let node = lab.nodes[0].name.clone();
    lab.apply(
        &ns,
        &pod_on(
            "counter",
            &node,
            r#"  terminationGracePeriodSeconds: 1
  containers:
  - name: count
    image: busybox
    command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.5; done"]
"#,
        ),
    );
    // Counts its runs in an emptyDir (which survives container restarts): the first run
    // prints its marker and exits 3, the second stays up.
    lab.apply(
        &ns,
        &pod_on(
            "restarter",
            &node,
            r#"  terminationGracePeriodSeconds: 1
  restartPolicy: Always
  containers:
  - name: once
    image: busybox
    command: ["sh", "-c", "n=$(cat /state/runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > /state/runs; echo run-$n; if [ $n -ge 2 ]; then exec sleep 3600; fi; sleep 1; echo exiting-$n; exit 3"]
    volumeMounts: [{name: state, mountPath: /state}]
  volumes:
  - name: state
    emptyDir: {}
"#,
        ),
    );
    lab.wait_running(&ns, "counter");
    let full = |lab: &Lab| -> Vec<String> {
        lab.kubectl_ok(&["logs", "counter", "-n", &ns])
            .lines()
            .map(str::to_owned)
            .collect()
    };
    // No restart yet: there is no previous run to show.
    let none = lab.kubectl(&["logs", "counter", "-n", &ns, "--previous"]);
    assert!(
        none.code != 0 && none.stderr.contains("previous terminated container"),
        "{none:?}"
    );
    lab.eventually("the counter has logged 10 lines", MINUTE, || {
        let lines = full(&lab);
        if lines.len() >= 10 {
            Ok(())
        } else {
            Err(format!("{lines:?}"))
        }
    });

    // -f prints the log so far, then the lines written while it runs.
    let before = numbers(&full(&lab)).last().copied().unwrap_or(0);
    let follow = StreamingKubectl::start(&lab, &["logs", "-f", "counter", "-n", &ns]);
    let mut seen = Vec::new();
    let followed = follow.read_until(&mut seen, Duration::from_secs(30), |lines| {
        lines
            .last()
            .and_then(|l| l.strip_prefix("line-")?.parse::<u64>().ok())
            .is_some_and(|n| n >= before + 3)
    });
    drop(follow);
    assert!(
        followed,
        "logs -f did not show 3 new lines after line-{before}: {seen:?}"
    );
    let got = numbers(&seen);
    assert_eq!(got.first(), Some(&1), "{seen:?}");
    assert!(
        consecutive(&got),
        "logs -f lost or repeated lines: {seen:?}"
    );

    // --tail=2: exactly the last two lines.
    let last = numbers(&full(&lab)).last().copied().unwrap_or(0);
    let tail = lab.kubectl_ok(&["logs", "counter", "-n", &ns, "--tail=2"]);
    let tail: Vec<&str> = tail.lines().collect();
    assert_eq!(tail.len(), 2, "{tail:?}");
    let tail = numbers(&tail);
    assert!(
        consecutive(&tail) && tail[1] >= last,
        "{tail:?} after line-{last}"
    );

    // --since=1s: only the last second (two lines at 0.5 s each), fewer than the whole log.
    let whole = full(&lab);
    let since = lab.kubectl_ok(&["logs", "counter", "-n", &ns, "--since=1s"]);
    let since: Vec<&str> = since.lines().collect();
    assert!(
        !since.is_empty() && since.len() <= 4 && since.len() < whole.len(),
        "--since=1s gave {} lines of {}: {since:?}",
        since.len(),
        whole.len()
    );
    let since = numbers(&since);
    let whole_last = numbers(&whole).last().copied().unwrap_or(0);
    assert!(
        consecutive(&since) && since.last().is_some_and(|n| *n >= whole_last),
        "{since:?} after line-{whole_last}"
    );

    // --previous: the run before the restart, not the current one.
    lab.eventually(
        "the restarter exited 3 and runs again",
        Duration::from_secs(90),
        || {
            let get = |path: &str| lab.jsonpath(&ns, "pod/restarter", path);
            let restarts = get("{.status.containerStatuses[0].restartCount}");
            let code = get("{.status.containerStatuses[0].lastState.terminated.exitCode}");
            let running = get("{.status.containerStatuses[0].state.running.startedAt}");
            if restarts == "1" && code == "3" && !running.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "restarts={restarts} exit={code} running since={running:?}"
                ))
            }
        },
    );
    let previous = lab.kubectl_ok(&["logs", "restarter", "-n", &ns, "--previous"]);
    assert_eq!(
        previous.lines().collect::<Vec<_>>(),
        ["run-1", "exiting-1"],
        "{previous}"
    );
    lab.eventually("the current run logs its marker", MINUTE, || {
        let current = lab.kubectl_ok(&["logs", "restarter", "-n", &ns]);
        if current.lines().collect::<Vec<_>>() == ["run-2"] {
            Ok(())
        } else {
            Err(current)
        }
    });
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
