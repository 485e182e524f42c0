//! Client-side `kubectl apply` (strategic merge patch with the last-applied annotation),
//! `set image` and `patch` of all three types: the live object ends up as on a real cluster.

use serde_json::{Value, json};
use skiff_tests::Lab;

fn manifest(ns: &str, image: &str, env: &str, ports: &str, sidecar: bool) -> String {
    let sidecar = if sidecar {
        "      - name: sidecar\n        image: busybox\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: {ns}}}\ndata: {{a: \"1\"}}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  replicas: 2\n  \
         selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      \
         - name: web\n        image: {image}\n        env: {env}\n        ports: {ports}\n{sidecar}---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{name: http, port: 80}}]\n"
    )
}

fn containers(lab: &Lab, ns: &str) -> Value {
    let out = lab.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.template.spec.containers}",
    ]);
    serde_json::from_str(&out).expect("containers JSON")
}

#[test]
fn apply_edit_apply_matches_strategic_merge_semantics() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("apply");
    let first = manifest(
        &ns,
        "nginx:1.25",
        r#"[{name: A, value: "1"}, {name: B, value: "2"}]"#,
        "[{containerPort: 80}]",
        true,
    );
    let out = lab.kubectl_stdin(&["apply", "-f", "-"], &first);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("deployment.apps/web created"),
        "{}",
        out.stdout
    );

    // Image changed, env var B removed, port 443 added, sidecar removed.
    let second = manifest(
        &ns,
        "nginx:1.26",
        r#"[{name: A, value: "1"}]"#,
        "[{containerPort: 80}, {containerPort: 443}]",
        false,
    );
    let out = lab.kubectl_stdin(&["apply", "-f", "-"], &second);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("deployment.apps/web configured"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("configmap/cfg unchanged"),
        "{}",
        out.stdout
    );
    let live = containers(&lab, &ns);
    let expected = json!([{
        "name": "web", "image": "nginx:1.26", "imagePullPolicy": "IfNotPresent",
        "env": [{"name": "A", "value": "1"}],
        "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}],
        "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
    }]);
    assert_eq!(live, expected);

    // A field set by someone else (not in the last-applied configuration) survives apply.
    lab.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"owner":"ops"}}}"#,
    ]);
    lab.kubectl_stdin(&["apply", "-f", "-"], &second);
    let labels = lab.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        &ns,
        "-o",
        "jsonpath={.metadata.labels.owner}",
    ]);
    assert_eq!(labels, "ops");

    lab.kubectl_ok(&[
        "set",
        "image",
        "deployment/web",
        "-n",
        &ns,
        "web=nginx:1.27",
    ]);
    assert_eq!(containers(&lab, &ns)[0]["image"], "nginx:1.27");

    lab.kubectl_ok(&["patch", "deployment", "web", "-n", &ns, "--type=strategic", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"C","value":"3"}]}]}}}}"#]);
    lab.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "-n",
        &ns,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":5}]"#,
    ]);
    let state = lab.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].env}",
    ]);
    assert_eq!(
        state,
        r#"5 [{"name":"A","value":"1"},{"name":"C","value":"3"}]"#
    );
}

#[test]
fn bad_patches_get_kubes_status_and_change_nothing() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("badpatch");
    lab.kubectl_stdin(
        &["apply", "-f", "-"],
        &manifest(&ns, "nginx:1.25", "[]", "[]", false),
    );
    let before = lab.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        &ns,
        "-o",
        "jsonpath={.metadata.generation} {.spec}",
    ]);
    // A $patch directive on a list that has no merge key.
    let out = lab.kubectl(&["patch", "deployment", "web", "-n", &ns, "--type=strategic", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","args":[{"$patch":"delete"}]}]}}}}"#]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("needs a merge key"), "{}", out.stderr);
    // A JSON patch whose test fails.
    let out = lab.kubectl(&["patch", "deployment", "web", "-n", &ns, "--type=json", "-p", r#"[{"op":"test","path":"/spec/replicas","value":9},{"op":"replace","path":"/spec/replicas","value":1}]"#]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("did not match") || out.stderr.contains("test"),
        "{}",
        out.stderr
    );
    let after = lab.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        &ns,
        "-o",
        "jsonpath={.metadata.generation} {.spec}",
    ]);
    // (status changes from the deployment controller may happen meanwhile; the spec may not)
    assert_eq!(before, after, "a failed patch changed the object");
}

#[test]
fn server_side_apply_from_two_managers_conflicts_until_forced() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("ssa");
    let manifest = |replicas: u32| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  replicas: {replicas}\n  \
             selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      \
             containers: [{{name: web, image: \"nginx:1.25\"}}]\n"
        )
    };
    let first = lab.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &manifest(2));
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first
            .stdout
            .contains("deployment.apps/web serverside-applied"),
        "{}",
        first.stdout
    );
    // The same manager again: no conflict.
    assert_eq!(
        lab.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &manifest(2))
            .code,
        0
    );

    let conflict = lab.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        &manifest(5),
    );
    assert_ne!(conflict.code, 0);
    assert!(
        conflict
            .stderr
            .contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{}",
        conflict.stderr
    );
    let replicas = lab.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "2", "a conflicting apply changed the object");

    let forced = lab.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &manifest(5),
    );
    assert_eq!(forced.code, 0, "{forced:?}");
    let state = lab.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        &ns,
        "--show-managed-fields",
        "-o",
        "json",
    ]);
    let state: Value = serde_json::from_str(&state).expect("json");
    assert_eq!(state["spec"]["replicas"], 5);
    let managers: Vec<&str> = state["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter_map(|e| e["manager"].as_str())
        .collect();
    assert!(
        managers.contains(&"kubectl") && managers.contains(&"other"),
        "{managers:?}"
    );
    let kubectl_fields = state["metadata"]["managedFields"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["manager"] == "kubectl")
        .expect("kubectl entry");
    assert!(
        kubectl_fields["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none(),
        "forcing moved .spec.replicas to `other`: {kubectl_fields}"
    );
}
