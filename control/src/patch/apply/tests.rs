//! Server-side apply: ownership, conflicts, forcing, removal of fields no longer applied.

use serde_json::{Value, json};

use super::{FieldSet, apply};
use crate::protobuf::message_for;

fn deployment(replicas: i64, labels: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": labels},
           "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})
}

const NOW: &str = "2026-11-22T00:00:00Z";

#[test]
fn create_records_the_appliers_fields() {
    let created = apply(
        None,
        &deployment(2, json!({"app": "web"})),
        "alice",
        false,
        NOW,
    )
    .unwrap();
    let entries = created["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["manager"], "alice");
    assert_eq!(entries[0]["operation"], "Apply");
    let fields = &entries[0]["fieldsV1"];
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert_eq!(fields["f:metadata"]["f:labels"]["f:app"], json!({}));
    assert_eq!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:image"],
        json!({})
    );
    assert_eq!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["."],
        json!({})
    );
}

#[test]
fn another_manager_conflicts_unless_forced_or_agreeing() {
    let live = apply(None, &deployment(2, json!({})), "alice", false, NOW).unwrap();
    let bob = deployment(3, json!({}));
    let err = apply(Some(&live), &bob, "bob", false, NOW).unwrap_err();
    assert_eq!((err.code, err.reason), (409, "Conflict"));
    assert!(
        err.message
            .starts_with("Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"),
        "{}",
        err.message
    );
    assert_eq!(err.details.causes[0].field, ".spec.replicas");

    // The same value is shared ownership, not a conflict.
    let agree = apply(Some(&live), &deployment(2, json!({})), "bob", false, NOW).unwrap();
    assert_eq!(
        agree["metadata"]["managedFields"].as_array().unwrap().len(),
        2
    );

    // Forced: bob takes .spec.replicas from alice.
    let forced = apply(Some(&live), &bob, "bob", true, NOW).unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    let alice = forced["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "alice")
        .unwrap()
        .clone();
    assert!(
        alice["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
        "{alice}"
    );
}

#[test]
fn fields_no_longer_applied_are_removed() {
    let live = apply(
        None,
        &deployment(2, json!({"a": "1", "b": "2"})),
        "alice",
        false,
        NOW,
    )
    .unwrap();
    let next = apply(
        Some(&live),
        &deployment(2, json!({"a": "1"})),
        "alice",
        false,
        NOW,
    )
    .unwrap();
    assert_eq!(next["metadata"]["labels"], json!({"a": "1"}));
}

#[test]
fn fields_v1_round_trips() {
    let set = FieldSet::of(
        &deployment(1, json!({"x": "y"})),
        message_for("apps/v1", "Deployment"),
    );
    assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1()), set);
}

#[test]
fn a_configuration_that_is_not_an_object_is_refused_not_a_panic() {
    // Found by fuzzing: apply(None, 0) indexed `metadata` into a JSON number.
    for config in [json!(0), json!([]), json!("x"), json!(null)] {
        let error = apply(None, &config, "alice", false, NOW).expect_err("refused");
        assert_eq!(error.to_status()["code"], 400, "{config}");
    }
    // A metadata that is not an object is replaced where managedFields are recorded.
    let odd_metadata =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": 5, "data": {"a": "1"}});
    let created = apply(None, &odd_metadata, "alice", false, NOW).expect("applies");
    assert_eq!(created["metadata"]["managedFields"][0]["manager"], "alice");
    let updated = apply(Some(&created), &odd_metadata, "alice", false, NOW).expect("applies");
    assert_eq!(updated["metadata"]["managedFields"][0]["manager"], "alice");
    assert_eq!(updated["data"]["a"], "1");
}
