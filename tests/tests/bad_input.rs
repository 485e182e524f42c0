//! Bad input gets the Status kube-apiserver gives — right code, reason and field — and
//! nothing is written; anonymous requests get 401.

use http::Request;
use kube::Client;
use serde_json::{Value, json};
use skiff_tests::{Lab, process};

/// Send a request; Ok(body) on success, Err((code, reason, status)) otherwise.
async fn send(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<Value, (u16, String, Value)> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)
        .expect("request");
    match client.request::<Value>(request).await {
        Ok(v) => Ok(v),
        Err(kube::Error::Api(status)) => {
            let reason = status.reason.clone();
            Err((
                status.code,
                reason,
                serde_json::to_value(&*status).unwrap_or_default(),
            ))
        }
        Err(other) => panic!("transport error: {other}"),
    }
}

fn configmap(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": "v"}})
}

#[tokio::test]
async fn bad_requests_get_a_status_and_write_nothing() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("badinput");
    let client = lab.client().await;
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let json = "application/json";

    let expect =
        |result: Result<Value, (u16, String, Value)>, code: u16, reason: &str, needle: &str| {
            let (got, why, status) = result.expect_err("the request should fail");
            assert_eq!((got, why.as_str()), (code, reason), "{status}");
            assert!(
                status.to_string().contains(needle),
                "status lacks {needle:?}: {status}"
            );
            status
        };

    expect(
        send(&client, "POST", &path, json, b"{\"kind\": ".to_vec()).await,
        400,
        "BadRequest",
        "JSON",
    );
    expect(
        send(
            &client,
            "POST",
            &path,
            "application/yaml",
            b"kind: [unclosed".to_vec(),
        )
        .await,
        400,
        "BadRequest",
        "YAML",
    );
    let mut unknown = configmap(&ns, "unknown");
    unknown["spec"] = json!({"x": 1});
    expect(
        send(
            &client,
            "POST",
            &format!("{path}?fieldValidation=Strict"),
            json,
            unknown.to_string().into_bytes(),
        )
        .await,
        400,
        "BadRequest",
        "unknown field \\\"spec\\\"",
    );
    let wrong_kind = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wrong"}});
    expect(
        send(
            &client,
            "POST",
            &path,
            json,
            wrong_kind.to_string().into_bytes(),
        )
        .await,
        400,
        "BadRequest",
        "Kind=Secret",
    );
    let wrong_version =
        json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "wrong"}});
    expect(
        send(
            &client,
            "POST",
            &path,
            json,
            wrong_version.to_string().into_bytes(),
        )
        .await,
        400,
        "BadRequest",
        "apps/v1",
    );
    let mut huge = configmap(&ns, "huge");
    huge["data"]["k"] = json!("x".repeat(4 * 1024 * 1024));
    expect(
        send(&client, "POST", &path, json, huge.to_string().into_bytes()).await,
        413,
        "RequestEntityTooLarge",
        "limit",
    );
    let status = expect(
        send(
            &client,
            "POST",
            &path,
            json,
            configmap(&ns, "Not_A_DNS_Name").to_string().into_bytes(),
        )
        .await,
        422,
        "Invalid",
        "RFC 1123",
    );
    assert_eq!(
        status["details"]["causes"][0]["field"], "metadata.name",
        "{status}"
    );
    let mut label = configmap(&ns, "label");
    label["metadata"]["labels"] = json!({"app": "v".repeat(100)});
    let status = expect(
        send(&client, "POST", &path, json, label.to_string().into_bytes()).await,
        422,
        "Invalid",
        "must be no more than 63 characters",
    );
    assert_eq!(
        status["details"]["causes"][0]["field"], "metadata.labels[app]",
        "{status}"
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
    let status = expect(
        send(
            &client,
            "POST",
            &format!("/api/v1/namespaces/{ns}/pods"),
            json,
            pod.to_string().into_bytes(),
        )
        .await,
        422,
        "Invalid",
        "Required value",
    );
    assert_eq!(
        status["details"]["causes"][0]["field"], "spec.containers[0].image",
        "{status}"
    );
    expect(
        send(
            &client,
            "POST",
            "/api/v1/namespaces/does-not-exist/configmaps",
            json,
            configmap("does-not-exist", "x").to_string().into_bytes(),
        )
        .await,
        404,
        "NotFound",
        "namespaces",
    );

    // Nothing of the above was written.
    let listed = send(&client, "GET", &path, json, Vec::new())
        .await
        .expect("list");
    // Every namespace holds the cluster's CA bundle (the root-CA publisher's); nothing else.
    let written: Vec<&serde_json::Value> = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["metadata"]["name"] != "kube-root-ca.crt")
        .collect();
    assert!(written.is_empty(), "{listed}");
    let pods = send(
        &client,
        "GET",
        &format!("/api/v1/namespaces/{ns}/pods"),
        json,
        Vec::new(),
    )
    .await
    .expect("list pods");
    assert_eq!(pods["items"], json!([]));

    // Conflicts and missing objects.
    let created = send(
        &client,
        "POST",
        &path,
        json,
        configmap(&ns, "cm").to_string().into_bytes(),
    )
    .await
    .expect("create");
    expect(
        send(
            &client,
            "POST",
            &path,
            json,
            configmap(&ns, "cm").to_string().into_bytes(),
        )
        .await,
        409,
        "AlreadyExists",
        "already exists",
    );
    let mut stale = created.clone();
    stale["data"]["k"] = json!("first");
    send(
        &client,
        "PUT",
        &format!("{path}/cm"),
        json,
        stale.to_string().into_bytes(),
    )
    .await
    .expect("update");
    stale["data"]["k"] = json!("second");
    expect(
        send(
            &client,
            "PUT",
            &format!("{path}/cm"),
            json,
            stale.to_string().into_bytes(),
        )
        .await,
        409,
        "Conflict",
        "the object has been modified",
    );
    let current = send(&client, "GET", &format!("{path}/cm"), json, Vec::new())
        .await
        .expect("get");
    assert_eq!(current["data"]["k"], "first");
    expect(
        send(&client, "GET", &format!("{path}/missing"), json, Vec::new()).await,
        404,
        "NotFound",
        "configmaps \\\"missing\\\" not found",
    );
    let failing_test = json!([{"op": "test", "path": "/data/k", "value": "nope"}, {"op": "replace", "path": "/data/k", "value": "x"}]);
    expect(
        send(
            &client,
            "PATCH",
            &format!("{path}/cm"),
            "application/json-patch+json",
            failing_test.to_string().into_bytes(),
        )
        .await,
        422,
        "Invalid",
        "did not match",
    );
    let unchanged = send(&client, "GET", &format!("{path}/cm"), json, Vec::new())
        .await
        .expect("get");
    assert_eq!(unchanged["data"]["k"], "first");
}

#[test]
fn anonymous_requests_get_401_and_tokens_authenticate() {
    let Some(lab) = Lab::from_env() else { return };
    let ca = lab.dir.join("control").join("ca.crt");
    let ca = ca.to_string_lossy();
    let out = process::run(
        "curl",
        &[
            "-s",
            "--cacert",
            &ca,
            "https://127.0.0.1:6443/api/v1/namespaces",
        ],
    )
    .expect("curl");
    let status: Value = serde_json::from_str(&out).expect("a Status");
    assert_eq!(
        (status["code"].as_u64(), status["reason"].as_str()),
        (Some(401), Some("Unauthorized")),
        "{status}"
    );
    let health = process::run(
        "curl",
        &["-s", "--cacert", &ca, "https://127.0.0.1:6443/healthz"],
    )
    .expect("curl");
    assert_eq!(health, "ok");
    let token =
        std::fs::read_to_string(lab.dir.join("control").join("tokens.csv")).expect("token file");
    let token = token
        .lines()
        .find(|l| !l.starts_with('#'))
        .and_then(|l| l.split(',').next())
        .expect("a token");
    let header = format!("Authorization: Bearer {token}");
    let listed = process::run(
        "curl",
        &[
            "-s",
            "--cacert",
            &ca,
            "-H",
            &header,
            "https://127.0.0.1:6443/api/v1/namespaces/default",
        ],
    )
    .expect("curl");
    let namespace: Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(namespace["metadata"]["name"], "default", "{namespace}");
    let wrong = process::run(
        "curl",
        &[
            "-s",
            "--cacert",
            &ca,
            "-H",
            "Authorization: Bearer wrong",
            "https://127.0.0.1:6443/api/v1/namespaces",
        ],
    )
    .expect("curl");
    assert!(wrong.contains("\"code\":401"), "{wrong}");
}

#[test]
fn bad_workloads_are_refused_or_warned_about_and_the_rest_keeps_working() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("badwork");
    // A Deployment whose selector does not match its template: 422 on spec.template.metadata.labels.
    let mismatched = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: mismatched}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: b}}
    spec: {containers: [{name: c, image: busybox}]}
"#;
    let out = lab.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], mismatched);
    assert_ne!(out.code, 0, "a mismatched selector was accepted");
    assert!(
        out.stderr.contains("spec.template.metadata.labels")
            && out.stderr.contains("does not match"),
        "{}",
        out.stderr
    );
    // CronJobs with impossible schedules or unknown time zones: 422 on the field.
    for (schedule, zone, field) in [
        ("61 * * * *", None, "spec.schedule"),
        ("* 24 * * *", None, "spec.schedule"),
        ("not a schedule", None, "spec.schedule"),
        ("*/5 * * * *", Some("Mars/Olympus"), "spec.timeZone"),
    ] {
        let zone = zone.map_or(String::new(), |z| format!("  timeZone: {z}\n"));
        let cronjob = format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: bad}}\nspec:\n  schedule: \"{schedule}\"\n{zone}  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{{name: c, image: busybox}}]\n"
        );
        let out = lab.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], &cronjob);
        assert_ne!(out.code, 0, "schedule {schedule:?} {zone} was accepted");
        assert!(out.stderr.contains(field), "{schedule:?}: {}", out.stderr);
    }
    assert!(
        lab.kubectl(&["get", "cronjob", "bad", "-n", &ns]).code != 0,
        "a refused CronJob was stored"
    );
    // A StatefulSet without serviceName is valid (1.33) but gets a Warning; its pods run.
    lab.apply(
        &ns,
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {name: headless}
spec:
  replicas: 1
  selector: {matchLabels: {app: headless}}
  template:
    metadata: {labels: {app: headless}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
"#,
    );
    lab.eventually(
        "a MissingServiceName warning",
        std::time::Duration::from_secs(60),
        || {
            let events = lab.kubectl_ok(&["get", "events", "-n", &ns]);
            if events.contains("MissingServiceName") {
                Ok(())
            } else {
                Err(events)
            }
        },
    );
    lab.wait_running(&ns, "headless-0");
    // Everything else is still served: a good Deployment rolls out.
    lab.kubectl_ok(&[
        "create",
        "deployment",
        "good",
        "--image=busybox",
        "-n",
        &ns,
        "--",
        "sleep",
        "3600",
    ]);
    lab.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/good",
        "-n",
        &ns,
        "--timeout=120s",
    ]);
    let _ = lab.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
