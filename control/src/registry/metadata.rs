//! Object metadata rules shared by create and update: names, generateName, uid,
//! timestamps, generation, namespaces.

use serde_json::{Value, json};

use crate::{
    model::{
        ApiError, meta,
        validation::{self, ErrorList, FieldError},
    },
    resources::{Names, ResourceInfo, Subresource},
};

/// Now, as kube-apiserver writes timestamps (RFC 3339, seconds).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A random 5-character suffix from kube's alphabet (no vowels, no look-alikes).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .take(5)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Validate the metadata every object has.
pub fn validate(info: &ResourceInfo, object: &Value, errors: &mut ErrorList) {
    let name = meta::name(object);
    if name.is_empty() {
        errors.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        let why = match info.names {
            Names::Label => validation::dns1123_label(name),
            Names::Subdomain => validation::dns1123_subdomain(name),
            Names::PathSegment => validation::path_segment_name(name),
        };
        if let Some(why) = why {
            errors.push(FieldError::invalid("metadata.name", name, why));
        }
    }
    validation::labels(
        &meta::string_map(object, "labels"),
        "metadata.labels",
        errors,
    );
    validation::annotations(
        &meta::string_map(object, "annotations"),
        "metadata.annotations",
        errors,
    );
}

/// Whether a create resets `.status` (kube's PrepareForCreate does for resources with a
/// status subresource, except nodes, whose kubelet registers them with their status).
pub fn resets_status_on_create(info: &ResourceInfo) -> bool {
    info.has(Subresource::Status) && info.kind != "Node"
}

/// Stamp server-owned metadata on a new object (after name and namespace are settled).
pub fn stamp_create(object: &mut Value) {
    meta::set_meta(object, "uid", json!(uuid::Uuid::new_v4().to_string()));
    meta::set_meta(object, "creationTimestamp", json!(now()));
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "generation",
    ] {
        meta::remove_meta(object, field);
    }
}

/// Settle name and namespace of a new object from the body and the URL's namespace.
pub fn settle_identity(
    info: &ResourceInfo,
    path_ns: &str,
    object: &mut Value,
) -> Result<(), ApiError> {
    let body_ns = meta::namespace(object).to_owned();
    if info.namespaced {
        if !body_ns.is_empty() && body_ns != path_ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta::set_meta(object, "namespace", json!(path_ns));
    } else {
        meta::remove_meta(object, "namespace");
    }
    if meta::name(object).is_empty() {
        let prefix = meta::meta_str(object, "generateName").to_owned();
        if !prefix.is_empty() {
            meta::set_meta(object, "name", json!(format!("{prefix}{}", name_suffix())));
        }
    }
    Ok(())
}

/// The parts of an object that make up its "spec" for generation purposes.
fn spec_view(object: &Value) -> Value {
    let mut view = object.clone();
    if let Some(map) = view.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    view
}

/// Set `metadata.generation`: 1 on create, +1 on an update that changes the spec.
pub fn set_generation(object: &mut Value, old: Option<&Value>) {
    if object.get("spec").is_none() {
        return;
    }
    let generation = match old {
        None => 1,
        Some(old) => {
            let previous = old
                .get("metadata")
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let deleting = meta::meta_str(object, "deletionTimestamp")
                != meta::meta_str(old, "deletionTimestamp");
            if spec_view(object) != spec_view(old) || deleting {
                previous.saturating_add(1)
            } else {
                previous
            }
        }
    };
    meta::set_meta(object, "generation", json!(generation));
}

/// Carry the metadata the server owns from the stored object into an update.
pub fn carry_over(object: &mut Value, old: &Value) {
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "name",
    ] {
        match old.get("metadata").and_then(|m| m.get(field)) {
            Some(value) => meta::set_meta(object, field, value.clone()),
            None => meta::remove_meta(object, field),
        }
    }
}
