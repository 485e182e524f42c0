//! Kubernetes strategic merge patch, driven by the patch strategies of the built-in types
//! (the protobuf schema table records, per list field, whether it is replaced, merged as a
//! set of primitives, or merged as a list of objects by a key).
//!
//! Directives: `$patch: replace|delete|merge` (maps and list items), `$retainKeys`,
//! `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>`; `null` deletes a field.

use serde_json::{Map, Value};

use crate::{
    model::ApiError,
    protobuf::{self, ListMerge, Message, Ty},
};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

/// Why a strategic merge patch cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    /// The patch is not shaped as strategic merge patches are (400).
    #[error("{0}")]
    BadFormat(String),
    /// The patch asks for something the field's strategy does not allow (422).
    #[error("{0}")]
    Invalid(String),
}

impl PatchError {
    /// The Status kube-apiserver answers.
    pub fn into_api_error(self) -> ApiError {
        match self {
            Self::BadFormat(m) => ApiError::bad_request(m),
            Self::Invalid(m) => ApiError::unprocessable(m),
        }
    }
}

/// Apply `patch` to `original` (both JSON objects) with the strategies of `schema`.
pub fn apply(
    original: &Value,
    patch: &Value,
    schema: Option<&'static Message>,
) -> Result<Value, PatchError> {
    let (Value::Object(original), Value::Object(patch)) = (original, patch) else {
        return Err(PatchError::BadFormat(
            "a strategic merge patch must be a JSON object".to_owned(),
        ));
    };
    Ok(merge_map(original, patch, schema, "")?.map_or(Value::Object(Map::new()), Value::Object))
}

fn field<'a>(schema: Option<&'a Message>, name: &str) -> Option<&'a protobuf::Field> {
    schema.and_then(|m| m.fields.iter().find(|f| f.json == name))
}

fn child_schema(field: Option<&protobuf::Field>) -> Option<&'static Message> {
    match field.map(|f| &f.ty) {
        Some(Ty::Message(name)) => protobuf::message(name),
        _ => None,
    }
}

fn map_value_schema(field: Option<&protobuf::Field>) -> Option<&'static Message> {
    match field.map(|f| &f.ty) {
        Some(Ty::Map(_, Ty::Message(name))) => protobuf::message(name),
        _ => None,
    }
}

fn list_merge(field: Option<&protobuf::Field>) -> ListMerge {
    field
        .filter(|f| f.repeated)
        .map_or(ListMerge::Replace, |f| f.list)
}

fn path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Strip directives from a value added wholesale (no original to merge with).
fn clean(
    value: &Value,
    schema: Option<&'static Message>,
    at: &str,
) -> Result<Option<Value>, PatchError> {
    match value {
        Value::Object(patch) => Ok(merge_map(&Map::new(), patch, schema, at)?.map(Value::Object)),
        other => Ok(Some(other.clone())),
    }
}

/// Merge `patch` into `original`. `None`: the map is deleted (`$patch: delete`).
fn merge_map(
    original: &Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Option<&'static Message>,
    at: &str,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get(PATCH).map(|d| d.as_str()) {
        None | Some(Some("merge")) => {}
        Some(Some("replace")) => {
            let mut replaced = Map::new();
            for (k, v) in patch.iter().filter(|(k, _)| !k.starts_with('$')) {
                if let Some(v) = clean(v, child_schema(field(schema, k)), &path(at, k))? {
                    replaced.insert(k.clone(), v);
                }
            }
            return Ok(Some(replaced));
        }
        Some(Some("delete")) => return Ok(None),
        Some(other) => {
            return Err(PatchError::BadFormat(format!(
                "Unknown patch type: {other:?} in {at}"
            )));
        }
    }
    let mut result = original.clone();
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keys: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| {
                PatchError::BadFormat(format!("{RETAIN_KEYS} in {at} must be a list of keys"))
            })?
            .iter()
            .map(|k| {
                k.as_str().ok_or_else(|| {
                    PatchError::BadFormat(format!("{RETAIN_KEYS} in {at} must contain strings"))
                })
            })
            .collect::<Result<_, _>>()?;
        for key in patch.keys().filter(|k| !k.starts_with('$')) {
            if !keys.contains(&key.as_str()) {
                return Err(PatchError::Invalid(format!(
                    "the patch has keys that are not in {RETAIN_KEYS} at {}: {key}",
                    if at.is_empty() { "the top level" } else { at }
                )));
            }
        }
        result.retain(|k, _| keys.contains(&k.as_str()));
    }
    for (key, values) in patch
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(DELETE_FROM).map(|f| (f, v)))
    {
        let doomed = values
            .as_array()
            .ok_or_else(|| PatchError::BadFormat(format!("{DELETE_FROM}{key} must be a list")))?;
        if list_merge(field(schema, key)) != ListMerge::Set && field(schema, key).is_some() {
            return Err(PatchError::Invalid(format!(
                "{DELETE_FROM}{key}: {} is not a list of primitives merged as a set",
                path(at, key)
            )));
        }
        if let Some(Value::Array(items)) = result.get_mut(key) {
            items.retain(|item| !doomed.contains(item));
        }
    }
    for (key, value) in patch.iter().filter(|(k, _)| !k.starts_with('$')) {
        let f = field(schema, key);
        let here = path(at, key);
        if value.is_null() {
            result.remove(key);
            continue;
        }
        let merged = match (result.get(key), value) {
            (Some(Value::Object(o)), Value::Object(p)) => match f.map(|f| &f.ty) {
                Some(Ty::Map(_, Ty::Message(_))) => {
                    merge_map_of_objects(o, p, map_value_schema(f), &here)?
                }
                // Maps of strings (labels, annotations, data…) merge key by key, schema-less.
                Some(Ty::Map(..)) => merge_map(o, p, None, &here)?,
                _ => merge_map(o, p, child_schema(f), &here)?,
            }
            .map(Value::Object),
            (Some(Value::Array(o)), Value::Array(p)) => {
                Some(Value::Array(merge_list(o, p, f, &here)?))
            }
            (None, Value::Array(p)) => Some(Value::Array(merge_list(&[], p, f, &here)?)),
            (_, v) => clean(v, child_schema(f), &here)?,
        };
        match merged {
            Some(v) => result.insert(key.clone(), v),
            None => result.remove(key),
        };
    }
    for (key, order) in patch
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(SET_ORDER).map(|f| (f, v)))
    {
        let order = order
            .as_array()
            .ok_or_else(|| PatchError::BadFormat(format!("{SET_ORDER}{key} must be a list")))?;
        let f = field(schema, key);
        if let Some(Value::Array(items)) = result.get_mut(key) {
            reorder(items, order, list_merge(f));
        }
    }
    Ok(Some(result))
}

/// Maps whose values are objects (e.g. resource lists of quantities are strings; this is
/// for map<string, Message> fields): merge value by value.
fn merge_map_of_objects(
    original: &Map<String, Value>,
    patch: &Map<String, Value>,
    values: Option<&'static Message>,
    at: &str,
) -> Result<Option<Map<String, Value>>, PatchError> {
    if patch.contains_key(PATCH) {
        // Map-level directives apply as to any map; the values are then plain JSON.
        return merge_map(original, patch, None, at);
    }
    let mut result = original.clone();
    for (key, value) in patch {
        let here = path(at, key);
        let merged = match (result.get(key), value) {
            (_, Value::Null) => None,
            (Some(Value::Object(o)), Value::Object(p)) => {
                merge_map(o, p, values, &here)?.map(Value::Object)
            }
            (_, v) => clean(v, values, &here)?,
        };
        match merged {
            Some(v) => result.insert(key.clone(), v),
            None => result.remove(key),
        };
    }
    Ok(Some(result))
}

fn merge_list(
    original: &[Value],
    patch: &[Value],
    f: Option<&protobuf::Field>,
    at: &str,
) -> Result<Vec<Value>, PatchError> {
    let strategy = list_merge(f);
    let directive = |v: &Value| v.get(PATCH).and_then(Value::as_str).map(str::to_owned);
    // `{"$patch": "replace"}` as an item: the rest of the patch list replaces the list.
    if patch
        .iter()
        .any(|v| directive(v).as_deref() == Some("replace"))
    {
        let items = patch
            .iter()
            .filter(|v| directive(v).as_deref() != Some("replace"));
        return items
            .map(|v| clean(v, child_schema(f), at))
            .filter_map(Result::transpose)
            .collect();
    }
    match strategy {
        ListMerge::Replace => {
            if let Some(d) = patch.iter().find_map(directive) {
                return Err(PatchError::Invalid(format!(
                    "{at}: the directive $patch: {d} needs a merge key, but this list has none"
                )));
            }
            Ok(patch.to_vec())
        }
        ListMerge::Set => {
            let mut result = original.to_vec();
            for item in patch {
                if item.is_object() || item.is_array() {
                    return Err(PatchError::BadFormat(format!(
                        "{at} is a list of primitives; got {item}"
                    )));
                }
                if !result.contains(item) {
                    result.push(item.clone());
                }
            }
            Ok(result)
        }
        ListMerge::Key(key) => {
            let item_schema = child_schema(f);
            let mut result = original.to_vec();
            for item in patch {
                let Value::Object(item_map) = item else {
                    return Err(PatchError::BadFormat(format!(
                        "{at}: items must be objects merged by {key:?}; got {item}"
                    )));
                };
                let id = item_map.get(key).ok_or_else(|| {
                    PatchError::Invalid(format!(
                        "{at}: an item lacks the merge key {key:?}: {item}"
                    ))
                })?;
                let position = result.iter().position(|o| o.get(key) == Some(id));
                match (directive(item).as_deref(), position) {
                    (Some("delete"), Some(i)) => {
                        result.remove(i);
                    }
                    (Some("delete"), None) => {}
                    (_, Some(i)) => {
                        let Value::Object(existing) = &result[i] else {
                            continue;
                        };
                        match merge_map(
                            existing,
                            item_map,
                            item_schema,
                            &format!("{at}[{key}={id}]"),
                        )? {
                            Some(merged) => result[i] = Value::Object(merged),
                            None => {
                                result.remove(i);
                            }
                        }
                    }
                    (_, None) => {
                        if let Some(v) = clean(item, item_schema, at)? {
                            result.push(v);
                        }
                    }
                }
            }
            Ok(result)
        }
    }
}

/// `$setElementOrder`: put the listed items first, in the given order; items the order does
/// not mention keep their relative order after them.
fn reorder(items: &mut Vec<Value>, order: &[Value], strategy: ListMerge) {
    let rank = |item: &Value| -> usize {
        order
            .iter()
            .position(|o| match strategy {
                ListMerge::Key(key) => o.get(key).is_some() && o.get(key) == item.get(key),
                _ => o == item,
            })
            .unwrap_or(usize::MAX)
    };
    let mut indexed: Vec<(usize, usize, Value)> = items
        .drain(..)
        .enumerate()
        .map(|(i, v)| (rank(&v), i, v))
        .collect();
    indexed.sort_by_key(|(rank, i, _)| (*rank, *i));
    items.extend(indexed.into_iter().map(|(_, _, v)| v));
}

#[cfg(test)]
mod tests;
