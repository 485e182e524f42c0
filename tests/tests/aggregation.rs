//! API aggregation as an extension API server (metrics-server, prometheus-adapter) uses
//! it: skiff/echo serves `echo.skiff.dev/v1alpha1` over HTTPS behind a Service, an
//! APIService registers it with the Service's CA, and stock kubectl reaches it through
//! skiff-control — discovered, authorized by Skiff's RBAC before the request is proxied,
//! with the caller's identity (not the admin's, not its credentials) forwarded in the
//! front proxy's headers; the Available condition follows the backend, and a backend
//! that is gone gets 503 while the rest of the API answers.

use std::time::Duration;

use serde_json::json;
use skiff_tests::{
    Lab,
    https_echo::{self, Certificates},
};

const SERVICE: &str = "echo-api";
const APISERVICE: &str = "v1alpha1.echo.skiff.dev";

/// `kubectl get apiservice <name>`'s Available condition: "status reason".
fn available(lab: &Lab, name: &str) -> String {
    lab.kubectl(&[
        "get",
        "apiservice",
        name,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Available\")].status} {.status.conditions[?(@.type==\"Available\")].reason}",
    ])
    .stdout
}

#[test]
fn local_apiservices_are_registered_for_built_in_groups() {
    let Some(lab) = Lab::from_env() else { return };
    let table = lab.eventually("the local APIServices", Duration::from_secs(30), || {
        let out = lab.kubectl(&["get", "apiservices", "v1.apps", "v1.", "--no-headers"]);
        if out.code == 0 && out.stdout.lines().count() == 2 {
            Ok(out.stdout)
        } else {
            Err(format!("{out:?}"))
        }
    });
    for line in table.lines() {
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns.get(1..3), Some(&["Local", "True"][..]), "{table}");
    }
    // kube-aggregator's validation: the name must be <version>.<group>.
    let wrong = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": "wrong-name"},
        "spec": {"group": "x.skiff.dev", "version": "v1", "groupPriorityMinimum": 100,
                 "versionPriority": 100, "insecureSkipTLSVerify": true,
                 "service": {"name": "s", "namespace": "default"}}});
    let out = lab.kubectl_stdin(&["create", "-f", "-"], &wrong.to_string());
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("metadata.name") && out.stderr.contains("v1.x.skiff.dev"),
        "{out:?}"
    );
}

#[test]
fn an_extension_api_server_is_proxied_discovered_and_authorized() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("aggregation");
    let _cleanup = lab.delete_on_drop(&[("namespace", &ns), ("apiservice", APISERVICE)]);
    let certificates = Certificates::for_service(SERVICE, &ns);
    https_echo::deploy(&lab, SERVICE, &ns, &certificates);

    let apiservice = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": APISERVICE},
        "spec": {"group": "echo.skiff.dev", "version": "v1alpha1",
                 "groupPriorityMinimum": 1000, "versionPriority": 15,
                 "caBundle": certificates.ca_bundle(),
                 "service": {"name": SERVICE, "namespace": ns}}});
    let out = lab.kubectl_stdin(&["apply", "-f", "-"], &apiservice.to_string());
    assert_eq!(out.code, 0, "{out:?}");
    lab.kubectl_ok(&[
        "wait",
        "--for=condition=Available",
        &format!("apiservice/{APISERVICE}"),
        "--timeout=60s",
    ]);
    let row = lab.kubectl_ok(&["get", "apiservice", APISERVICE, "--no-headers"]);
    assert!(
        row.contains(&format!("{ns}/{SERVICE}")) && row.contains("True"),
        "{row}"
    );

    // Discovery: the group is merged in, kubectl finds the resource by name.
    lab.eventually("echoes in discovery", Duration::from_secs(30), || {
        let out = lab.kubectl(&[
            "api-resources",
            "--api-group=echo.skiff.dev",
            "--no-headers",
        ]);
        if out.code == 0 && out.stdout.contains("echoes") && out.stdout.contains("Echo") {
            Ok(())
        } else {
            Err(format!("{out:?}"))
        }
    });
    let raw = lab.kubectl_ok(&["get", "--raw", "/apis/echo.skiff.dev/v1alpha1"]);
    assert!(raw.contains("\"echoes\""), "{raw}");

    // The admin, proxied: the backend sees the admin's name and groups.
    let admin = lab.kubectl_ok(&["get", "echoes", "-n", &ns, "--no-headers"]);
    assert!(admin.starts_with("whoami"), "{admin}");
    assert!(admin.contains("system:masters"), "{admin}");

    // Another user is authorized by Skiff before anything is proxied…
    let denied = lab.kubectl(&["get", "echoes", "-n", &ns, "--as=alice"]);
    assert_ne!(denied.code, 0, "{denied:?}");
    assert!(denied.stderr.contains("forbidden"), "{denied:?}");
    // …and, once a Role allows it, reaches the backend as herself.
    lab.kubectl_ok(&[
        "create",
        "role",
        "echo-reader",
        "-n",
        &ns,
        "--verb=get,list",
        "--resource=echoes.echo.skiff.dev",
    ]);
    lab.kubectl_ok(&[
        "create",
        "rolebinding",
        "echo-reader",
        "-n",
        &ns,
        "--role=echo-reader",
        "--user=alice",
    ]);
    let alice = lab.eventually("alice reads echoes", Duration::from_secs(30), || {
        let out = lab.kubectl(&[
            "get",
            "echoes",
            "whoami",
            "-n",
            &ns,
            "--as=alice",
            "--as-group=dev",
            "-o",
            "json",
        ]);
        if out.code == 0 {
            Ok(out.stdout)
        } else {
            Err(format!("{out:?}"))
        }
    });
    let alice: serde_json::Value = serde_json::from_str(&alice).expect("an Echo");
    assert_eq!(alice["user"], json!("alice"), "{alice}");
    assert_eq!(
        alice["groups"],
        json!(["dev", "system:authenticated"]),
        "the impersonated groups, not the admin's: {alice}"
    );

    // The backend gone: Available turns False, requests get 503, the API still answers.
    lab.kubectl_ok(&[
        "scale",
        "-n",
        &ns,
        &format!("deployment/{SERVICE}"),
        "--replicas=0",
    ]);
    let reason = lab.eventually(
        "the APIService unavailable",
        Duration::from_secs(60),
        || {
            let condition = available(&lab, APISERVICE);
            if condition.starts_with("False") {
                Ok(condition)
            } else {
                Err(condition)
            }
        },
    );
    assert!(
        reason.contains("MissingEndpoints") || reason.contains("FailedDiscoveryCheck"),
        "{reason}"
    );
    let gone = lab.kubectl(&[
        "get",
        "--raw",
        &format!("/apis/echo.skiff.dev/v1alpha1/namespaces/{ns}/echoes"),
    ]);
    assert_ne!(gone.code, 0, "{gone:?}");
    assert!(
        gone.stderr.contains("ServiceUnavailable") || gone.stderr.contains("503"),
        "{gone:?}"
    );
    lab.kubectl_ok(&["get", "pods", "-n", &ns]);
    let resources = lab.kubectl(&[
        "api-resources",
        "--api-group=echo.skiff.dev",
        "--no-headers",
    ]);
    assert!(
        !resources.stdout.contains("echoes"),
        "an unavailable group leaves discovery: {resources:?}"
    );
}
