//! A real operator framework against Skiff: a small operator written with Python's kopf
//! and the official Kubernetes client (both from PyPI, installed by `cargo xtask setup`
//! into target/py), run outside the cluster as operators are developed. It reconciles a
//! custom resource into a Deployment and a Service, records its handlers' results in the
//! resource's status, scales on a spec change, and its finalizer holds the resource's
//! deletion until its deletion handler has cleaned up.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::json;
use skiff_tests::Lab;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn definition(group: &str) -> String {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("crontabs.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "image": {"type": "string"},
                        "replicas": {"type": "integer", "minimum": 0},
                    }},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                }}},
            }],
        },
    })
    .to_string()
}

/// The running operator: killed (and its log shown) when the test ends.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- kopf log (last lines) ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

#[test]
fn a_kopf_operator_reconciles_its_custom_resource() {
    let Some(lab) = Lab::from_env() else { return };
    let kopf = workspace().join("target/py/bin/kopf");
    if !kopf.exists() {
        skiff_tests::cannot_run(
            "kopf is not installed: `cargo xtask setup` installs it into target/py",
        );
        return;
    }
    let group = format!("kopf{}.skiff.test", std::process::id());
    let crd = format!("crontabs.{group}");
    let ns = lab.namespace("kopf");
    let _cleanup = lab.delete_on_drop(&[("namespace", &ns), ("crd", &crd)]);
    let applied = lab.kubectl_stdin(&["apply", "-f", "-"], &definition(&group));
    assert_eq!(applied.code, 0, "{applied:?}");
    lab.kubectl_ok(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout=30s",
        &format!("crd/{crd}"),
    ]);

    let log = std::env::temp_dir().join(format!("skiff-kopf-{}.log", std::process::id()));
    let log_file = std::fs::File::create(&log).expect("the operator's log file");
    let child = Command::new(&kopf)
        .args(["run", "--standalone", "--namespace", &ns, "--verbose"])
        .arg(workspace().join("tests/operators/crontab_operator.py"))
        .env("KUBECONFIG", lab.kubeconfig())
        .env("CRONTAB_GROUP", &group)
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .stdin(Stdio::null())
        .spawn()
        .expect("starting kopf");
    let _operator = Operator { child, log };

    let resource = format!("crontabs.{group}");
    let cronjob = json!({"apiVersion": format!("{group}/v1"), "kind": "CronTab",
        "metadata": {"name": "nightly"}, "spec": {"image": "skiff/echo:latest", "replicas": 1}});
    lab.apply(&ns, &cronjob.to_string());
    let minute = Duration::from_secs(60);
    let owner = lab.eventually(
        "the operator made the Deployment, owned by the CronTab",
        minute,
        || {
            let owner = lab.jsonpath(
                &ns,
                "deployment nightly",
                "{.metadata.ownerReferences[0].kind}",
            );
            if owner.is_empty() {
                Err("no Deployment yet".to_owned())
            } else {
                Ok(owner)
            }
        },
    );
    assert_eq!(owner, "CronTab");
    // The handler creates the Service after the Deployment.
    lab.eventually("the operator made the Service", minute, || {
        let out = lab.kubectl(&["get", "service", "nightly", "-n", &ns]);
        if out.code == 0 {
            Ok(())
        } else {
            Err(out.stderr)
        }
    });
    lab.eventually(
        "the handler's result is in the CronTab's status",
        minute,
        || {
            let made = lab.jsonpath(
                &ns,
                &format!("{resource} nightly"),
                "{.status.create_fn.deployment}",
            );
            if made == "nightly" { Ok(()) } else { Err(made) }
        },
    );
    lab.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/nightly",
        "-n",
        &ns,
        "--timeout=90s",
    ]);

    lab.kubectl_ok(&[
        "patch",
        &resource,
        "nightly",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":2}}"#,
    ]);
    lab.eventually("the operator scaled the Deployment", minute, || {
        let replicas = lab.jsonpath(&ns, "deployment nightly", "{.spec.replicas}");
        if replicas == "2" {
            Ok(())
        } else {
            Err(replicas)
        }
    });

    // The deletion waits for kopf's finalizer: the deletion handler runs first.
    let finalizers = lab.jsonpath(
        &ns,
        &format!("{resource} nightly"),
        "{.metadata.finalizers}",
    );
    assert!(
        finalizers.contains("kopf.zalando.org"),
        "kopf's finalizer: {finalizers}"
    );
    lab.kubectl_ok(&["delete", &resource, "nightly", "-n", &ns, "--timeout=60s"]);
    for what in ["deployment", "service"] {
        let left = lab.kubectl(&["get", what, "nightly", "-n", &ns]);
        assert_ne!(
            left.code, 0,
            "the deletion handler removed the {what}: {left:?}"
        );
    }
    let gone = lab.kubectl(&["get", &resource, "nightly", "-n", &ns]);
    assert_ne!(gone.code, 0, "{gone:?}");
}
