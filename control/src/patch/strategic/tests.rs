//! Strategic merge patch on the cases kube-apiserver documents and kubectl produces.

use serde_json::{Value, json};

use super::{PatchError, apply};
use crate::protobuf::message_for;

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x"]}, "spec": spec})
}

fn patch_pod(original: &Value, patch: Value) -> Result<Value, PatchError> {
    apply(original, &patch, message_for("v1", "Pod"))
}

fn containers() -> Value {
    json!({"containers": [
        {"name": "a", "image": "a:1", "args": ["x", "y"], "env": [{"name": "E1", "value": "1"}, {"name": "E2", "value": "2"}],
         "ports": [{"containerPort": 80, "protocol": "TCP"}]},
        {"name": "b", "image": "b:1"}
    ]})
}

#[test]
fn lists_of_objects_merge_by_their_key() {
    let original = pod(containers());
    let patched = patch_pod(
        &original,
        json!({"spec": {"containers": [{"name": "a", "image": "a:2"}]}}),
    )
    .unwrap();
    assert_eq!(patched["spec"]["containers"][0]["image"], "a:2");
    assert_eq!(
        patched["spec"]["containers"][0]["args"],
        json!(["x", "y"]),
        "untouched fields stay"
    );
    assert_eq!(
        patched["spec"]["containers"][1]["image"], "b:1",
        "untouched items stay"
    );

    let added = patch_pod(
        &original,
        json!({"spec": {"containers": [{"name": "c", "image": "c:1"}]}}),
    )
    .unwrap();
    let names: Vec<&str> = added["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);

    // Nested lists merge by their own keys: env by name, ports by containerPort.
    let nested = patch_pod(
        &original,
        json!({"spec": {"containers": [{"name": "a",
        "env": [{"name": "E2", "value": "two"}, {"name": "E3", "value": "3"}],
        "ports": [{"containerPort": 443}]}]}}),
    )
    .unwrap();
    assert_eq!(
        nested["spec"]["containers"][0]["env"],
        json!([{"name": "E1", "value": "1"}, {"name": "E2", "value": "two"}, {"name": "E3", "value": "3"}])
    );
    assert_eq!(
        nested["spec"]["containers"][0]["ports"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn patch_directives_delete_and_replace() {
    let original = pod(containers());
    let deleted = patch_pod(
        &original,
        json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}),
    )
    .unwrap();
    assert_eq!(deleted["spec"]["containers"].as_array().unwrap().len(), 1);

    let replaced = patch_pod(
        &original,
        json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "z", "image": "z:1"}]}}),
    )
    .unwrap();
    assert_eq!(
        replaced["spec"]["containers"],
        json!([{"name": "z", "image": "z:1"}])
    );

    let labels = patch_pod(
        &original,
        json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
    )
    .unwrap();
    assert_eq!(labels["metadata"]["labels"], json!({"c": "3"}));

    let gone = patch_pod(
        &original,
        json!({"metadata": {"labels": {"$patch": "delete"}}}),
    )
    .unwrap();
    assert!(gone["metadata"].get("labels").is_none());

    let nulled = patch_pod(&original, json!({"metadata": {"labels": {"a": null}}})).unwrap();
    assert_eq!(nulled["metadata"]["labels"], json!({"b": "2"}));
}

#[test]
fn primitive_lists_are_sets_or_replaced() {
    let original = pod(containers());
    let union = patch_pod(&original, json!({"metadata": {"finalizers": ["y", "x"]}})).unwrap();
    assert_eq!(union["metadata"]["finalizers"], json!(["x", "y"]));
    let removed = patch_pod(
        &original,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"], "finalizers": ["z"]}}),
    )
    .unwrap();
    assert_eq!(removed["metadata"]["finalizers"], json!(["z"]));
    // args has no merge strategy: the patch's list replaces it.
    let args = patch_pod(
        &original,
        json!({"spec": {"containers": [{"name": "a", "args": ["only"]}]}}),
    )
    .unwrap();
    assert_eq!(args["spec"]["containers"][0]["args"], json!(["only"]));
}

#[test]
fn set_element_order_orders_the_merged_list() {
    let original = pod(containers());
    let patched = patch_pod(
        &original,
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
            "containers": [{"name": "c", "image": "c:1"}]
        }}),
    )
    .unwrap();
    let names: Vec<&str> = patched["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c", "b", "a"]);
}

#[test]
fn retain_keys_clears_the_fields_not_listed() {
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}});
    let schema = message_for("apps/v1", "Deployment");
    let patched = apply(
        &deployment,
        &json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        schema,
    )
    .unwrap();
    assert_eq!(patched["spec"]["strategy"], json!({"type": "Recreate"}));
    let bad = apply(
        &deployment,
        &json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        schema,
    );
    assert!(matches!(bad, Err(PatchError::Invalid(_))), "{bad:?}");
}

#[test]
fn directives_need_a_merge_key_and_a_known_shape() {
    let original = pod(containers());
    let no_key = patch_pod(
        &original,
        json!({"spec": {"containers": [{"name": "a", "args": [{"$patch": "delete", "x": 1}]}]}}),
    );
    assert!(
        matches!(no_key, Err(PatchError::Invalid(ref m)) if m.contains("needs a merge key")),
        "{no_key:?}"
    );
    let missing_key = patch_pod(
        &original,
        json!({"spec": {"containers": [{"image": "nameless"}]}}),
    );
    assert!(
        matches!(missing_key, Err(PatchError::Invalid(ref m)) if m.contains("merge key \"name\"")),
        "{missing_key:?}"
    );
    let unknown = patch_pod(&original, json!({"metadata": {"$patch": "explode"}}));
    assert!(
        matches!(unknown, Err(PatchError::BadFormat(_))),
        "{unknown:?}"
    );
    let primitive_delete = patch_pod(
        &original,
        json!({"spec": {"containers": [{"name": "a", "$deleteFromPrimitiveList/env": ["x"]}]}}),
    );
    assert!(
        matches!(primitive_delete, Err(PatchError::Invalid(_))),
        "{primitive_delete:?}"
    );
}

/// `kubectl rollout undo` for DaemonSets and StatefulSets: the ControllerRevision's data
/// replaces the whole template, dropping fields the current one has and the old one lacks.
#[test]
fn a_revision_patch_replaces_the_whole_template() {
    let daemonset = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "revisionHistoryLimit": 10,
            "template": {"metadata": {"labels": {"app": "d", "extra": "x"}, "annotations": {"a": "1"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:2", "args": ["new"]},
                                        {"name": "side", "image": "side:1"}],
                         "nodeSelector": {"disk": "ssd"}}}}});
    let data = json!({"spec": {"template": {"$patch": "replace",
        "metadata": {"labels": {"app": "d"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}});
    let patched = apply(&daemonset, &data, message_for("apps/v1", "DaemonSet")).unwrap();
    assert_eq!(
        patched["spec"]["template"],
        json!({"metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}})
    );
    assert_eq!(
        patched["spec"]["revisionHistoryLimit"], 10,
        "the rest of spec stays"
    );
    assert_eq!(patched["spec"]["selector"], daemonset["spec"]["selector"]);
    let statefulset = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}});
    let patched = apply(&statefulset, &data, message_for("apps/v1", "StatefulSet")).unwrap();
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1"
    );
    assert_eq!(patched["spec"]["replicas"], 3);
}
