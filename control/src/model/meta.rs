//! Helpers on objects held as JSON values: reading and writing `metadata`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// `metadata` of an object, created if absent (non-objects are left alone).
pub fn metadata_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let root = obj.as_object_mut()?;
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

/// A string field of `metadata` ("" if absent).
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.name`.
pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name")
}

/// `metadata.namespace`.
pub fn namespace(obj: &Value) -> &str {
    meta_str(obj, "namespace")
}

/// `metadata.resourceVersion`.
pub fn resource_version(obj: &Value) -> &str {
    meta_str(obj, "resourceVersion")
}

/// A string map of `metadata` (`labels`, `annotations`).
pub fn string_map(obj: &Value, field: &str) -> BTreeMap<String, String> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Set a `metadata` field.
pub fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if let Some(meta) = metadata_mut(obj) {
        meta.insert(field.to_owned(), value);
    }
}

/// Remove a `metadata` field.
pub fn remove_meta(obj: &mut Value, field: &str) {
    if let Some(meta) = metadata_mut(obj) {
        meta.remove(field);
    }
}

/// The value at a dotted path (`spec.nodeName`, `involvedObject.kind`) rendered as a field
/// selector compares it: strings as-is, numbers and booleans as text, absent as "".
pub fn field_value(obj: &Value, path: &str) -> String {
    let mut current = obj;
    for part in path.split('.') {
        match current.get(part) {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn field_values_render_like_kube() {
        let pod = json!({"spec": {"nodeName": "n1", "priority": 5}, "status": {}});
        assert_eq!(field_value(&pod, "spec.nodeName"), "n1");
        assert_eq!(field_value(&pod, "spec.priority"), "5");
        assert_eq!(field_value(&pod, "status.phase"), "");
    }

    #[test]
    fn metadata_is_created_when_missing() {
        let mut obj = json!({"kind": "Pod"});
        set_meta(&mut obj, "name", json!("web"));
        assert_eq!(name(&obj), "web");
        assert_eq!(namespace(&obj), "");
    }
}
