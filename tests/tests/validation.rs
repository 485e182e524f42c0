//! kubectl's validation of what it creates, as against kube-apiserver: the items of a
//! `kind: List` are validated on the client against the OpenAPI v2 document (the server's
//! `fieldValidation` cannot be relied on for a List), a single object on the server
//! (`fieldValidation=Strict`, which the OpenAPI v3 documents advertise).

use serde_json::{Value, json};
use skiff_tests::Lab;

/// A Deployment whose container has `extra` fields; `maxSurge: 1` and `cpu: 1` are the
/// int-or-string and quantity fields a wrong v2 schema would refuse.
fn deployment(ns: &str, name: &str, extra: Value) -> Value {
    let mut container = json!({
        "name": "web",
        "image": "skiff/echo:latest",
        "ports": [{"containerPort": 8080}],
        "resources": {"limits": {"cpu": 1, "memory": "64Mi"}},
    });
    if let (Some(container), Value::Object(extra)) = (container.as_object_mut(), extra) {
        container.extend(extra);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
        },
    })
}

fn configmap(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": name}})
}

fn list(items: Vec<Value>) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

#[test]
fn a_list_of_configmaps_is_validated_and_created() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("validate-list");
    let body = list(vec![configmap(&ns, "one"), configmap(&ns, "two")]);
    let created = lab.kubectl_stdin(&["create", "-f", "-"], &body);
    assert_eq!(created.code, 0, "{created:?}");
    for line in ["configmap/one created", "configmap/two created"] {
        assert!(created.stdout.contains(line), "{created:?}");
    }
    let data = lab.kubectl_ok(&[
        "get",
        "configmap",
        "two",
        "-n",
        &ns,
        "-o",
        "jsonpath={.data.k}",
    ]);
    assert_eq!(data, "two");

    // The document kubectl read, as JSON: swagger 2.0 with each kind's definition findable
    // by its group-version-kind.
    let raw = lab.kubectl_ok(&["get", "--raw", "/openapi/v2"]);
    let doc: Value = serde_json::from_str(&raw).expect("/openapi/v2 is JSON");
    assert_eq!(doc["swagger"], "2.0");
    assert_eq!(
        doc["definitions"]["io.k8s.api.core.v1.ConfigMap"]["x-kubernetes-group-version-kind"],
        json!([{"group": "", "version": "v1", "kind": "ConfigMap"}])
    );
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn a_misspelled_field_in_a_list_item_is_kubectls_validation_error() {
    let Some(lab) = Lab::from_env() else { return };
    let ns = lab.namespace("validate-typo");
    let typo = json!({"imagePullPolicyy": "IfNotPresent"});

    // In a List: kubectl's own client-side error, and nothing of the List is created.
    let body = list(vec![
        configmap(&ns, "before"),
        deployment(&ns, "web", typo.clone()),
    ]);
    let refused = lab.kubectl_stdin(&["create", "--validate=true", "-f", "-"], &body);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stderr.contains(
            "ValidationError(Deployment.spec.template.spec.containers[0]): \
             unknown field \"imagePullPolicyy\" in io.k8s.api.core.v1.Container"
        ),
        "{refused:?}"
    );
    let none = lab.kubectl(&["get", "configmap", "before", "-n", &ns]);
    assert!(none.stderr.contains("NotFound"), "{none:?}");

    // Without the typo the same List passes: maxSurge 1 (int-or-string) and cpu 1
    // (quantity) are what kube's v2 schemas allow.
    let body = list(vec![
        configmap(&ns, "before"),
        deployment(&ns, "web", json!({})),
    ]);
    let created = lab.kubectl_stdin(&["create", "--validate=true", "-f", "-"], &body);
    assert_eq!(created.code, 0, "{created:?}");
    assert!(
        created.stdout.contains("deployment.apps/web created"),
        "{created:?}"
    );

    // A single object is left to the server (strict field validation), as kube does.
    let single = deployment(&ns, "single", typo).to_string();
    let refused = lab.kubectl_stdin(&["create", "--validate=true", "-f", "-"], &single);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stderr.contains("Error from server (BadRequest)")
            && refused.stderr.contains("unknown field")
            && refused.stderr.contains("imagePullPolicyy")
            && !refused.stderr.contains("ValidationError("),
        "{refused:?}"
    );
    lab.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
