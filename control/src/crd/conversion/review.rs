//! The ConversionReview exchange (apiextensions.k8s.io/v1, or v1beta1 of the same shape):
//! the request kube sends a conversion webhook, and the checks kube makes of its answer —
//! the review's kind and uid, `result.status` Success, as many objects as were sent, each
//! in the desired version with the original's kind, name, namespace and uid. Of the
//! metadata only labels and annotations may change; the rest is restored from the
//! original, as kube's `restoreObjectMeta` does.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::model::validation::{self, ErrorList};

/// The ConversionReview versions kube speaks.
pub const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// The review version to send: the first of the webhook's preferences kube speaks.
pub fn review_version(preferences: &[String]) -> Option<&str> {
    preferences
        .iter()
        .map(String::as_str)
        .find(|v| REVIEW_VERSIONS.contains(v))
}

/// The ConversionReview asking for `objects` as `desired` (`group/version`).
pub fn request(uid: &str, review_version: &str, desired: &str, objects: &[Value]) -> Value {
    json!({
        "apiVersion": format!("apiextensions.k8s.io/{review_version}"),
        "kind": "ConversionReview",
        "request": {"uid": uid, "desiredAPIVersion": desired, "objects": objects},
    })
}

/// The converted objects of `answer`, checked as kube's
/// `getConvertedObjectsFromResponse` does; the error is the message kube reports.
pub fn converted(answer: &Value, uid: &str, review_version: &str) -> Result<Vec<Value>, String> {
    if review_version == "v1" {
        let api_version = answer.get("apiVersion").and_then(Value::as_str);
        let kind = answer.get("kind").and_then(Value::as_str);
        if api_version != Some("apiextensions.k8s.io/v1") || kind != Some("ConversionReview") {
            return Err(format!(
                "expected webhook response of apiextensions.k8s.io/v1, Kind=ConversionReview, got {}, Kind={}",
                api_version.unwrap_or_default(),
                kind.unwrap_or_default()
            ));
        }
    }
    let Some(response) = answer.get("response").filter(|r| r.is_object()) else {
        return Err("no response provided".to_owned());
    };
    let got = response
        .get("uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // v1beta1 answers were never checked for their uid; kube keeps it that way.
    if review_version == "v1" && got != uid {
        return Err(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let result = response.get("result");
    let status = result
        .and_then(|r| r.get("status"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if status != "Success" {
        let message = result
            .and_then(|r| r.get("message"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !message.is_empty() {
            return Err(message.to_owned());
        }
        return Err(format!(
            "response.result.status was '{status}', not 'Success'"
        ));
    }
    Ok(response
        .get("convertedObjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn string_map(object: &Value, field: &str) -> Result<BTreeMap<String, String>, String> {
    match object.get("metadata").and_then(|m| m.get(field)) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(value) => {
            serde_json::from_value(value.clone()).map_err(|e| format!("metadata.{field}: {e}"))
        }
    }
}

/// Why a converted object is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its apiVersion, kind or identity is wrong.
    Object(String),
    /// Its labels or annotations are invalid.
    Metadata(String),
}

/// Check `converted` against the `original` it was converted from, and restore every
/// metadata field but labels and annotations from the original.
pub fn accept(original: &Value, mut converted: Value, desired: &str) -> Result<Value, Refusal> {
    if !converted.is_object() {
        return Err(Refusal::Object(
            "the converted object is not a JSON object".to_owned(),
        ));
    }
    let got = converted
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if got != desired {
        return Err(Refusal::Object(format!(
            "invalid groupVersion (expected {desired}, received {got})"
        )));
    }
    let kind = |o: &Value| {
        o.get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if kind(original) != kind(&converted) {
        return Err(Refusal::Object(format!(
            "invalid kind (expected {}, received {})",
            kind(original),
            kind(&converted)
        )));
    }
    for (field, what) in [("name", "name"), ("namespace", "namespace"), ("uid", "UID")] {
        let (expected, received) = (meta_str(original, field), meta_str(&converted, field));
        if expected != received {
            return Err(Refusal::Object(format!(
                "must have the same {what}: {expected} != {received}"
            )));
        }
    }
    let labels = string_map(&converted, "labels").map_err(Refusal::Metadata)?;
    let annotations = string_map(&converted, "annotations").map_err(Refusal::Metadata)?;
    let mut errors = ErrorList::new();
    validation::labels(&labels, "metadata.labels", &mut errors);
    validation::annotations(&annotations, "metadata.annotations", &mut errors);
    if !errors.is_empty() {
        let causes: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.cause_message()))
            .collect();
        return Err(Refusal::Metadata(causes.join(", ")));
    }
    let mut metadata = original
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(map) = metadata.as_object_mut() {
        for (field, values) in [("labels", &labels), ("annotations", &annotations)] {
            if values.is_empty() {
                map.remove(field);
            } else {
                map.insert(field.to_owned(), json!(values));
            }
        }
    }
    converted["metadata"] = metadata;
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget(api_version: &str) -> Value {
        json!({"apiVersion": api_version, "kind": "Widget",
               "metadata": {"name": "w", "namespace": "ns", "uid": "u-1", "resourceVersion": "7",
                            "labels": {"a": "b"}},
               "spec": {"size": 1}})
    }

    #[test]
    fn the_request_names_the_desired_version() {
        let review = request(
            "id",
            "v1",
            "example.com/v1",
            &[widget("example.com/v1beta1")],
        );
        assert_eq!(review["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(review["request"]["desiredAPIVersion"], "example.com/v1");
        assert_eq!(review["request"]["objects"][0]["spec"]["size"], 1);
        assert_eq!(
            review_version(&["v2".into(), "v1beta1".into()]),
            Some("v1beta1")
        );
        assert_eq!(review_version(&["v2".into()]), None);
    }

    #[test]
    fn answers_are_checked_like_kube() {
        let ok = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
                        "response": {"uid": "id", "result": {"status": "Success"},
                                     "convertedObjects": [widget("example.com/v1")]}});
        assert_eq!(converted(&ok, "id", "v1").expect("converted").len(), 1);
        assert_eq!(
            converted(&ok, "other", "v1").expect_err("uid"),
            "expected response.uid=\"other\", got \"id\""
        );
        // v1beta1 answers are not held to their uid.
        assert!(converted(&ok, "other", "v1beta1").is_ok());
        let failed = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
                            "response": {"uid": "id", "result": {"status": "Failure",
                                                                 "message": "cannot convert"}}});
        assert_eq!(
            converted(&failed, "id", "v1").expect_err("failed"),
            "cannot convert"
        );
        let silent = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
                            "response": {"uid": "id", "result": {}}});
        assert_eq!(
            converted(&silent, "id", "v1").expect_err("no status"),
            "response.result.status was '', not 'Success'"
        );
        let wrong = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
        assert!(
            converted(&wrong, "id", "v1")
                .expect_err("kind")
                .starts_with("expected webhook response")
        );
        let empty = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview"});
        assert_eq!(
            converted(&empty, "id", "v1").expect_err("empty"),
            "no response provided"
        );
    }

    #[test]
    fn only_labels_and_annotations_may_change() {
        let original = widget("example.com/v1beta1");
        let mut answer = widget("example.com/v1");
        answer["metadata"]["labels"] = json!({"converted": "yes"});
        answer["metadata"]["finalizers"] = json!(["sneaky"]);
        answer["metadata"]["resourceVersion"] = json!("99");
        answer["spec"] = json!({"sizeInches": 1});
        let accepted = accept(&original, answer, "example.com/v1").expect("accepted");
        assert_eq!(accepted["metadata"]["labels"], json!({"converted": "yes"}));
        assert_eq!(accepted["metadata"]["resourceVersion"], "7");
        assert!(accepted["metadata"].get("finalizers").is_none());
        assert_eq!(accepted["spec"], json!({"sizeInches": 1}));

        let mut renamed = widget("example.com/v1");
        renamed["metadata"]["name"] = json!("other");
        assert_eq!(
            accept(&original, renamed, "example.com/v1").expect_err("renamed"),
            Refusal::Object("must have the same name: w != other".to_owned())
        );
        assert!(matches!(
            accept(&original, widget("example.com/v1beta1"), "example.com/v1"),
            Err(Refusal::Object(m)) if m.contains("invalid groupVersion")
        ));
        let mut bad_label = widget("example.com/v1");
        bad_label["metadata"]["labels"] = json!({"not a key!": "x"});
        assert!(matches!(
            accept(&original, bad_label, "example.com/v1"),
            Err(Refusal::Metadata(_))
        ));
    }
}
