//! `x-kubernetes-list-type`: `set` lists hold no duplicates, `map` lists no two items with
//! the same `x-kubernetes-list-map-keys` (kube's listtype.ValidateListSetsAndMaps, with its
//! "Duplicate value" errors).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{
    node::{Additional, MAX_SCHEMA_DEPTH, Node},
    path,
    values::{self, Kind, bad_value},
};
use crate::model::validation::{ErrorList, FieldError};

/// Validate the set and map lists in `object` (a whole custom resource).
pub(crate) fn validate(root: &Node, object: &Value, errors: &mut ErrorList) {
    if let Value::Object(map) = object {
        validate_object("", root, map, errors, 0);
    }
}

fn validate_object(
    at: &str,
    s: &Node,
    map: &Map<String, Value>,
    errors: &mut ErrorList,
    depth: usize,
) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    if let Some(Additional::Schema(additional)) = &s.additional {
        for (k, v) in map {
            validate_value(&path::key(at, k), additional, v, errors, depth + 1);
        }
    }
    for (k, v) in map {
        if let Some(sub) = s.properties.get(k) {
            validate_value(&path::child(at, k), sub, v, errors, depth + 1);
        }
    }
}

fn validate_value(at: &str, s: &Node, v: &Value, errors: &mut ErrorList, depth: usize) {
    match v {
        Value::Array(items) => validate_array(at, s, items, errors, depth),
        Value::Object(map) => validate_object(at, s, map, errors, depth),
        _ => {}
    }
}

fn validate_array(at: &str, s: &Node, items: &[Value], errors: &mut ErrorList, depth: usize) {
    match s.list_type.as_deref() {
        Some("set") => {
            for i in non_unique(items.iter()) {
                errors.push(FieldError::duplicate(
                    path::index(at, i),
                    bad_value(&items[i]),
                ));
            }
        }
        Some("map") => validate_map_list(at, s, items, errors),
        _ => {}
    }
    if let Some(item) = s.items.as_deref() {
        for (i, v) in items.iter().enumerate() {
            validate_value(&path::index(at, i), item, v, errors, depth + 1);
        }
    }
}

/// The indices of the second occurrence of each duplicated value (kube reports each
/// duplicated value once).
fn non_unique<'a>(items: impl Iterator<Item = &'a Value>) -> Vec<usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, x) in items.enumerate() {
        let times = seen.entry(canonical(x)).or_insert(0);
        *times += 1;
        if *times == 2 {
            out.push(i);
        }
    }
    out
}

/// A key that is equal for kube-equal values (an int64 and a float64 differ).
fn canonical(v: &Value) -> String {
    match values::kind(v) {
        Kind::Int(i) => format!("i{i}"),
        Kind::Float(f) => format!("f{f:?}"),
        _ => values::go_json(v),
    }
}

fn validate_map_list(at: &str, s: &Node, items: &[Value], errors: &mut ErrorList) {
    for (i, x) in items.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            errors.push(FieldError::invalid(
                path::index(at, i),
                bad_value(x),
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    if items.len() <= 1 {
        return;
    }
    // The key of each item: the map-key fields it has (a missing key is "unspecified").
    let keys: Vec<Value> = items
        .iter()
        .map(|x| {
            let mut key = Map::new();
            if let Value::Object(x) = x {
                for k in &s.list_map_keys {
                    if let Some(v) = x.get(k) {
                        key.insert(k.clone(), v.clone());
                    }
                }
            }
            Value::Object(key)
        })
        .collect();
    for i in non_unique(keys.iter()) {
        errors.push(FieldError::duplicate(
            path::index(at, i),
            bad_value(&keys[i]),
        ));
    }
}

/// The item of `old_items` with the same map keys as `item` (kube's MapList.Get), for a
/// list of x-kubernetes-list-type map; None for other lists (their items do not correlate).
pub(crate) fn correlate<'a>(s: &Node, item: &Value, old_items: &'a [Value]) -> Option<&'a Value> {
    if s.list_type.as_deref() != Some("map") || s.list_map_keys.is_empty() {
        return None;
    }
    let item = item.as_object()?;
    old_items.iter().find(|o| {
        o.as_object().is_some_and(|o| {
            s.list_map_keys
                .iter()
                .all(|k| match (item.get(k), o.get(k)) {
                    (Some(a), Some(b)) => values::deep_equal(a, b),
                    (None, None) => true,
                    _ => false,
                })
        })
    })
}
