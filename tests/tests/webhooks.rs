//! Admission webhooks as an operator's chart ships them: a webhook server (skiff/echo in
//! its admission mode, TLS from a Secret) behind a ClusterIP Service, a
//! ValidatingWebhookConfiguration that refuses ConfigMaps labelled `deny=true` and a
//! MutatingWebhookConfiguration that labels them `mutated=yes`, both trusting the test's
//! CA through caBundle. With the server gone, failurePolicy Fail refuses matching writes
//! promptly (and nothing else), and Ignore lets them through.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use skiff_tests::{
    Lab,
    https_echo::{self, Certificates},
};

/// The webhook's Service name.
const SERVICE: &str = "hook";

/// One webhook on ConfigMap creates and updates in the namespaces labelled for this run.
fn webhook(name: &str, namespace: &str, path: &str, ca: &str, run: &str) -> Value {
    json!({
        "name": name,
        "clientConfig": {"service": {"name": SERVICE, "namespace": namespace, "path": path},
                         "caBundle": base64::engine::general_purpose::STANDARD.encode(ca)},
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""],
                   "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "namespaceSelector": {"matchLabels": {"skiff-webhook-e2e": run}},
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "timeoutSeconds": 5,
        "admissionReviewVersions": ["v1"],
    })
}

/// Deletes the configurations (first: they hold every matching write) and the namespace.
struct Cleanup<'a> {
    lab: &'a Lab,
    mutating: String,
    validating: String,
    namespace: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.lab.kubectl(&[
            "delete",
            "mutatingwebhookconfiguration",
            &self.mutating,
            "--ignore-not-found",
        ]);
        let _ = self.lab.kubectl(&[
            "delete",
            "validatingwebhookconfiguration",
            &self.validating,
            "--ignore-not-found",
        ]);
        let _ = self
            .lab
            .kubectl(&["delete", "namespace", &self.namespace, "--wait=false"]);
    }
}

#[test]
fn webhooks_refuse_mutate_and_follow_their_failure_policy() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("webhook");
    let run = std::process::id().to_string();
    let mutating = format!("skiff-e2e-mutate-{run}");
    let validating = format!("skiff-e2e-validate-{run}");
    let _cleanup = Cleanup {
        lab: &lab,
        mutating: mutating.clone(),
        validating: validating.clone(),
        namespace: ns.clone(),
    };
    lab.kubectl_ok(&[
        "label",
        "namespace",
        &ns,
        &format!("skiff-webhook-e2e={run}"),
    ]);

    // The server, up and behind its Service.
    let certificates = Certificates::for_service(SERVICE, &ns);
    https_echo::deploy(&lab, SERVICE, &ns, &certificates);
    let ca = &certificates.ca;

    // The configurations.
    let validating_config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": validating},
        "webhooks": [webhook("deny.skiff.test", &ns, "/validate", ca, &run)]});
    let mutating_config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": mutating},
        "webhooks": [webhook("mutate.skiff.test", &ns, "/mutate", ca, &run)]});
    for config in [&validating_config, &mutating_config] {
        let out = lab.kubectl_stdin(&["apply", "-f", "-"], &config.to_string());
        assert_eq!(out.code, 0, "{out:?}");
    }
    let defaults = lab.kubectl_ok(&[
        "get",
        "validatingwebhookconfiguration",
        &validating,
        "-o",
        "jsonpath={.webhooks[0].matchPolicy} {.webhooks[0].objectSelector} {.webhooks[0].clientConfig.service.port}",
    ]);
    assert_eq!(defaults, "Equivalent {} 443", "kube's defaults");

    // A labelled ConfigMap is refused with the webhook's message and code.
    lab.kubectl_ok(&[
        "create",
        "configmap",
        "refused",
        "-n",
        &ns,
        "--from-literal=a=b",
    ]);
    let labelled = json!({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "denied", "labels": {"deny": "true"}}})
    .to_string();
    let denied = lab.eventually(
        "the validating webhook denies",
        Duration::from_secs(30),
        || {
            let out = lab.kubectl_stdin(&["create", "-n", &ns, "-f", "-"], &labelled);
            if out.code != 0
                && out
                    .stderr
                    .contains("admission webhook \"deny.skiff.test\" denied the request")
            {
                Ok(out.stderr)
            } else {
                // Admitted before the configuration took effect: try again.
                let _ = lab.kubectl(&[
                    "delete",
                    "configmap",
                    "denied",
                    "-n",
                    &ns,
                    "--ignore-not-found",
                ]);
                Err(format!("{out:?}"))
            }
        },
    );
    assert!(
        denied.contains("objects labelled deny=true are refused by skiff-echo"),
        "{denied}"
    );
    assert!(
        denied.contains("Forbidden") || denied.contains("forbidden"),
        "the webhook's 403: {denied}"
    );
    // Labelling an existing ConfigMap deny=true is an update the webhook refuses too.
    let relabel = lab.kubectl(&[
        "label",
        "configmap",
        "refused",
        "-n",
        &ns,
        "deny=true",
        "--overwrite",
    ]);
    assert_ne!(relabel.code, 0, "{relabel:?}");

    // Another one is admitted, labelled by the mutating webhook, with the warning.
    let created = lab.kubectl_stdin(
        &["create", "-n", &ns, "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "labelled", "labels": {"team": "a"}}, "data": {"k": "v"}})
        .to_string(),
    );
    assert_eq!(created.code, 0, "{created:?}");
    assert!(
        created.stderr.contains("checked by skiff-echo"),
        "the warning: {created:?}"
    );
    let labels = lab.jsonpath(
        &ns,
        "configmap/labelled",
        "{.metadata.labels.mutated} {.metadata.labels.team}",
    );
    assert_eq!(labels, "yes a");

    // Dry runs are sent too (sideEffects None) and write nothing.
    let dry = lab.kubectl(&[
        "create",
        "configmap",
        "dry",
        "-n",
        &ns,
        "--dry-run=server",
        "-o",
        "jsonpath={.metadata.labels.mutated}",
    ]);
    assert_eq!((dry.code, dry.stdout.as_str()), (0, "yes"), "{dry:?}");

    // The server gone: failurePolicy Fail refuses matching writes promptly.
    lab.kubectl_ok(&["scale", "-n", &ns, "deployment/hook", "--replicas=0"]);
    lab.eventually("the webhook's pods gone", Duration::from_secs(60), || {
        let pods = lab.jsonpath(&ns, "pods -l app=hook", "{.items[*].metadata.name}");
        let ready = lab.jsonpath(
            &ns,
            &format!("endpointslices -l kubernetes.io/service-name={SERVICE}"),
            "{.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
        );
        if pods.trim().is_empty() && ready.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("pods: {pods}; ready endpoints: {ready}"))
        }
    });
    let started = Instant::now();
    let refused = lab.kubectl(&[
        "create",
        "configmap",
        "while-down",
        "-n",
        &ns,
        "--from-literal=a=b",
    ]);
    let took = started.elapsed();
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("failed calling webhook \"mutate.skiff.test\""),
        "{refused:?}"
    );
    assert!(took < Duration::from_secs(8), "refused after {took:?}");
    // Everything else still works, at once.
    let started = Instant::now();
    lab.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "unaffected",
        "-n",
        &ns,
        "--from-literal=a=b",
    ]);
    lab.kubectl_ok(&["get", "pods,configmaps", "-n", &ns]);
    lab.kubectl_ok(&[
        "create",
        "configmap",
        "elsewhere",
        "-n",
        "default",
        "--dry-run=server",
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // failurePolicy Ignore lets them through (unlabelled, nothing could mutate them).
    let ignore = r#"[{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]"#;
    lab.kubectl_ok(&[
        "patch",
        "mutatingwebhookconfiguration",
        &mutating,
        "--type=json",
        "-p",
        ignore,
    ]);
    lab.kubectl_ok(&[
        "patch",
        "validatingwebhookconfiguration",
        &validating,
        "--type=json",
        "-p",
        ignore,
    ]);
    lab.eventually(
        "failurePolicy Ignore admits",
        Duration::from_secs(30),
        || {
            let out = lab.kubectl(&[
                "create",
                "configmap",
                "ignored",
                "-n",
                &ns,
                "--from-literal=a=b",
            ]);
            if out.code == 0 {
                Ok(())
            } else {
                Err(format!("{out:?}"))
            }
        },
    );
    let mutated = lab.jsonpath(&ns, "configmap/ignored", "{.metadata.labels.mutated}");
    assert_eq!(mutated, "", "no webhook answered");
}
