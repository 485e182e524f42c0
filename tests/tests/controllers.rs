//! The other workload controllers end to end: a StatefulSet's pods come up in order with
//! stable names and claims, a DaemonSet runs one pod per node, a Job with completions=5 and
//! parallelism=2 completes, and a CronJob that runs every minute keeps its history limit.

use std::time::Duration;

use skiff_tests::Lab;

#[test]
fn statefulset_daemonset_and_job_do_what_kube_does() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("ctrl");
    lab.apply(
        &ns,
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: sts}}
  template:
    metadata: {labels: {app: sts}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: ["sh", "-c", "echo $(hostname) >> /data/names; sleep 3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: everywhere}
spec:
  selector: {matchLabels: {app: ds}}
  template:
    metadata: {labels: {app: ds}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: c, image: busybox, command: ["sleep", "3600"]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: five}
spec:
  completions: 5
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: c, image: busybox, command: ["sh", "-c", "sleep 1; echo done"]}
"#,
    );
    let minute = Duration::from_secs(60);
    lab.kubectl_ok(&[
        "rollout",
        "status",
        "statefulset/web",
        "-n",
        &ns,
        "--timeout=120s",
    ]);
    // Stable names, created in order, each with its own claim.
    let names = lab.jsonpath(
        &ns,
        "pods -l app=sts --sort-by=.metadata.creationTimestamp",
        "{.items[*].metadata.name}",
    );
    assert_eq!(names, "web-0 web-1 web-2");
    let created: Vec<String> = ["web-0", "web-1", "web-2"]
        .iter()
        .map(|p| lab.jsonpath(&ns, &format!("pod/{p}"), "{.metadata.creationTimestamp}"))
        .collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "{created:?}");
    let claims = lab.jsonpath(&ns, "pvc", "{.items[*].metadata.name}");
    assert_eq!(claims, "data-web-0 data-web-1 data-web-2");
    assert_eq!(lab.jsonpath(&ns, "pod/web-1", "{.spec.hostname}"), "web-1");

    lab.kubectl_ok(&[
        "rollout",
        "status",
        "daemonset/everywhere",
        "-n",
        &ns,
        "--timeout=120s",
    ]);
    let nodes = lab.jsonpath(&ns, "pods -l app=ds", "{.items[*].spec.nodeName}");
    let mut nodes: Vec<&str> = nodes.split_whitespace().collect();
    nodes.sort_unstable();
    let expected: Vec<&str> = lab.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nodes, expected, "one daemon pod per node");

    lab.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/five",
        "-n",
        &ns,
        "--timeout=120s",
    ]);
    assert_eq!(lab.jsonpath(&ns, "job/five", "{.status.succeeded}"), "5");
    let jobs = lab.kubectl_ok(&["get", "job", "five", "-n", &ns]);
    assert!(jobs.contains("5/5"), "{jobs}");

    // Scale the StatefulSet down: the highest ordinal goes.
    lab.kubectl_ok(&["scale", "statefulset/web", "--replicas=2", "-n", &ns]);
    lab.eventually("web-2 is removed", minute, || {
        let names = lab.jsonpath(&ns, "pods -l app=sts", "{.items[*].metadata.name}");
        if names == "web-0 web-1" {
            Ok(())
        } else {
            Err(names)
        }
    });
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn a_cronjob_runs_every_minute_and_keeps_its_history_limit() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("cron");
    lab.apply(
        &ns,
        r#"apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "* * * * *"
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - {name: c, image: busybox, command: ["date"]}
"#,
    );
    let created = lab.eventually("two scheduled runs", Duration::from_secs(180), || {
        let events = lab.kubectl_ok(&[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            "reason=SuccessfulCreate,involvedObject.kind=CronJob",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        let runs = events.matches("Created job tick-").count();
        if runs >= 2 {
            Ok(runs)
        } else {
            Err(format!("{runs} runs: {events}"))
        }
    });
    assert!(created >= 2);
    lab.eventually(
        "only the last successful job is kept",
        Duration::from_secs(60),
        || {
            let jobs = lab.jsonpath(&ns, "jobs", "{.items[*].metadata.name}");
            if jobs.split_whitespace().count() == 1 {
                Ok(())
            } else {
                Err(jobs)
            }
        },
    );
    assert!(
        !lab.jsonpath(&ns, "cronjob/tick", "{.status.lastScheduleTime}")
            .is_empty()
    );
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn jobs_give_up_after_their_backoff_limit_index_their_pods_and_expire() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("jobs");
    lab.apply(
        &ns,
        r#"apiVersion: batch/v1
kind: Job
metadata: {name: doomed}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: c, image: busybox, command: ["sh", "-c", "exit 2"]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: indexed}
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  ttlSecondsAfterFinished: 3
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: c, image: busybox, command: ["sh", "-c", "echo index=$JOB_COMPLETION_INDEX"]}
"#,
    );
    let minute = Duration::from_secs(60);
    lab.eventually("the indexed job completes every index", minute, || {
        let done = lab.jsonpath(&ns, "job/indexed", "{.status.completedIndexes}");
        if done == "0-2" { Ok(()) } else { Err(done) }
    });
    let indexes = lab.jsonpath(
        &ns,
        "pods -l batch.kubernetes.io/job-name=indexed",
        "{.items[*].metadata.annotations.batch\\.kubernetes\\.io/job-completion-index}",
    );
    let mut indexes: Vec<&str> = indexes.split_whitespace().collect();
    indexes.sort_unstable();
    assert_eq!(indexes, ["0", "1", "2"]);
    let pod = lab.jsonpath(
        &ns,
        "pods -l batch.kubernetes.io/job-completion-index=1",
        "{.items[0].metadata.name}",
    );
    let logs = lab.kubectl_ok(&["logs", &pod, "-n", &ns]);
    assert_eq!(logs.trim(), "index=1");
    lab.eventually(
        "the finished job is deleted after its TTL, with its pods",
        minute,
        || {
            let out = lab.kubectl(&["get", "job", "indexed", "-n", &ns]);
            let pods = lab.jsonpath(
                &ns,
                "pods -l batch.kubernetes.io/job-name=indexed",
                "{.items[*].metadata.name}",
            );
            if out.code != 0 && pods.trim().is_empty() {
                Ok(())
            } else {
                Err(format!("job still there or pods left: {pods}"))
            }
        },
    );
    lab.eventually(
        "the failing job stops at its backoff limit",
        Duration::from_secs(90),
        || {
            let reason = lab.jsonpath(
                &ns,
                "job/doomed",
                "{.status.conditions[?(@.type==\"Failed\")].reason}",
            );
            let failed = lab.jsonpath(&ns, "job/doomed", "{.status.failed}");
            if reason == "BackoffLimitExceeded" && failed == "2" {
                Ok(())
            } else {
                Err(format!("reason={reason} failed={failed}"))
            }
        },
    );
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
