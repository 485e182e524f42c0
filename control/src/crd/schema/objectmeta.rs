//! x-kubernetes-embedded-resource values: apiVersion and kind are required and well-formed,
//! metadata is valid ObjectMeta (kube's objectmeta.Validate). The resource's own root
//! metadata is validated by the generic registry (registry::metadata), as kube-apiserver
//! validates it apart from the schema.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{
    node::{Additional, MAX_SCHEMA_DEPTH, Node},
    path,
    values::{bad_str, bad_value},
};
use crate::model::validation::{self, ErrorList, FieldError};

/// Validate the embedded resources in `object` (not its root).
pub(crate) fn validate(root: &Node, object: &Value, errors: &mut ErrorList) {
    walk("", object, root, true, errors, 0);
}

/// Validate `x` as an embedded resource at `at` (defaults of embedded schemas).
pub(crate) fn validate_embedded(at: &str, x: &Map<String, Value>, errors: &mut ErrorList) {
    embedded(at, x, errors);
}

fn walk(at: &str, x: &Value, s: &Node, check: bool, errors: &mut ErrorList, depth: usize) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    match x {
        Value::Object(map) => {
            if check && s.embedded {
                embedded(at, map, errors);
            }
            for (k, v) in map {
                if let Some(prop) = s.properties.get(k) {
                    walk(&path::child(at, k), v, prop, true, errors, depth + 1);
                } else if let Some(Additional::Schema(a)) = &s.additional {
                    walk(&path::key(at, k), v, a, true, errors, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = s.items.as_deref() {
                for (i, v) in items.iter().enumerate() {
                    walk(&path::index(at, i), v, item, true, errors, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn embedded(at: &str, x: &Map<String, Value>, errors: &mut ErrorList) {
    for field in ["apiVersion", "kind"] {
        if !x.contains_key(field) {
            errors.push(FieldError::required(path::child(at, field), ""));
        }
    }
    for (k, v) in x {
        match k.as_str() {
            "apiVersion" => match v.as_str() {
                None => errors.push(FieldError::invalid(
                    path::child(at, k),
                    bad_value(v),
                    "must be a string",
                )),
                Some("") => errors.push(FieldError::invalid(
                    path::child(at, k),
                    bad_str(""),
                    "must not be empty",
                )),
                Some(api_version) if api_version.matches('/').count() > 1 => {
                    errors.push(FieldError::invalid(
                        path::child(at, k),
                        bad_str(api_version),
                        format!("unexpected GroupVersion string: {api_version}"),
                    ))
                }
                Some(_) => {}
            },
            "kind" => match v.as_str() {
                None => errors.push(FieldError::invalid(
                    path::child(at, k),
                    bad_value(v),
                    "must be a string",
                )),
                Some("") => errors.push(FieldError::invalid(
                    path::child(at, k),
                    bad_str(""),
                    "must not be empty",
                )),
                Some(kind) => {
                    if let Some(why) = dns1035_label(&kind.to_lowercase()) {
                        errors.push(FieldError::invalid(
                            path::child(at, k),
                            bad_str(kind),
                            format!("may have mixed case, but should otherwise match: {why}"),
                        ));
                    }
                }
            },
            "metadata" => metadata(&path::child(at, k), v, errors),
            _ => {}
        }
    }
}

/// ObjectMeta validation of an embedded resource's metadata (names are path segments).
fn metadata(at: &str, v: &Value, errors: &mut ErrorList) {
    let Value::Object(meta) = v else {
        errors.push(FieldError::invalid(
            at,
            bad_value(v),
            "expected map[string]interface{}",
        ));
        return;
    };
    let string = |field: &str| meta.get(field).and_then(Value::as_str).unwrap_or_default();
    let name = string("name");
    if !name.is_empty()
        && let Some(why) = validation::path_segment_name(name)
    {
        errors.push(FieldError::invalid(
            path::child(at, "name"),
            bad_str(name),
            why,
        ));
    }
    let generate_name = string("generateName");
    if !generate_name.is_empty()
        && let Some(why) = path_segment_prefix(generate_name)
    {
        errors.push(FieldError::invalid(
            path::child(at, "generateName"),
            bad_str(generate_name),
            why,
        ));
    }
    let namespace = string("namespace");
    if !namespace.is_empty()
        && let Some(why) = validation::dns1123_label(namespace)
    {
        errors.push(FieldError::invalid(
            path::child(at, "namespace"),
            bad_str(namespace),
            why,
        ));
    }
    let map = |field: &str| -> BTreeMap<String, String> {
        meta.get(field)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    };
    validation::labels(&map("labels"), &path::child(at, "labels"), errors);
    validation::annotations(&map("annotations"), &path::child(at, "annotations"), errors);
}

/// kube's IsPathSegmentPrefix: like a path segment name, but "." and ".." are fine.
fn path_segment_prefix(name: &str) -> Option<String> {
    ["/", "%"]
        .into_iter()
        .find(|f| name.contains(f))
        .map(|f| format!("may not contain '{f}'"))
}

/// Why `value` is not an RFC 1035 label.
fn dns1035_label(value: &str) -> Option<String> {
    if value.len() > 63 {
        return Some("must be no more than 63 characters".to_owned());
    }
    let ok = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    (!ok).then(|| {
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an \
         alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or \
         'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            .to_owned()
    })
}
