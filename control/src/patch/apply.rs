//! Server-side apply: field ownership per manager, recorded in `metadata.managedFields`
//! (FieldsV1), conflicts when another manager owns a field the applied configuration sets
//! to a different value (409 unless forced), and removal of fields a manager stopped
//! applying (unless someone else owns them).
//!
//! Ownership is tracked for Apply operations; plain updates leave `managedFields` as they
//! are, so only appliers conflict with each other.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::strategic;
use crate::{
    model::{ApiError, error::Cause},
    protobuf::{self, ListMerge, Message, Ty},
};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// A named field (`f:name`).
    Field(String),
    /// A list item by its merge key (`k:{"name":"web"}`, the JSON of the key fields).
    Key(String),
    /// A set member (`v:"x"`, its JSON).
    Value(String),
}

type Path = Vec<Step>;

/// A set of field paths.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<Path>);

/// Identity fields apply never owns.
const IGNORED_TOP: &[&str] = &["apiVersion", "kind", "status"];
const IGNORED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

impl FieldSet {
    /// The fields an applied configuration sets.
    pub fn of(config: &Value, schema: Option<&'static Message>) -> Self {
        let mut set = BTreeSet::new();
        if let Value::Object(map) = config {
            for (key, value) in map {
                if IGNORED_TOP.contains(&key.as_str()) {
                    continue;
                }
                let f = field(schema, key);
                if key == "metadata" {
                    if let Value::Object(meta) = value {
                        let meta_schema = child(f);
                        for (k, v) in meta
                            .iter()
                            .filter(|(k, _)| !IGNORED_META.contains(&k.as_str()))
                        {
                            collect(
                                v,
                                field(meta_schema, k),
                                vec![Step::Field("metadata".into()), Step::Field(k.clone())],
                                &mut set,
                            );
                        }
                    }
                    continue;
                }
                collect(value, f, vec![Step::Field(key.clone())], &mut set);
            }
        }
        Self(set)
    }

    /// Parse `fieldsV1`.
    pub fn from_fields_v1(value: &Value) -> Self {
        let mut set = BTreeSet::new();
        parse(value, Vec::new(), &mut set);
        Self(set)
    }

    /// Render as `fieldsV1`.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Map::new();
        for path in &self.0 {
            insert(&mut root, path);
        }
        Value::Object(root)
    }
}

/// Insert one path into a fieldsV1 tree (keyed list items also get their `.` marker).
fn insert(node: &mut Map<String, Value>, path: &[Step]) {
    let Some((step, rest)) = path.split_first() else {
        return;
    };
    let key = match step {
        Step::Field(f) => format!("f:{f}"),
        Step::Key(k) => format!("k:{k}"),
        Step::Value(v) => format!("v:{v}"),
    };
    let entry = node.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(child) = entry {
        if rest.is_empty() && matches!(step, Step::Key(_)) {
            child
                .entry(".")
                .or_insert_with(|| Value::Object(Map::new()));
        }
        insert(child, rest);
    }
}

fn field<'a>(schema: Option<&'a Message>, name: &str) -> Option<&'a protobuf::Field> {
    schema.and_then(|m| m.fields.iter().find(|f| f.json == name))
}

fn child(field: Option<&protobuf::Field>) -> Option<&'static Message> {
    match field.map(|f| &f.ty) {
        Some(Ty::Message(name)) => protobuf::message(name),
        _ => None,
    }
}

fn collect(value: &Value, f: Option<&protobuf::Field>, path: Path, out: &mut BTreeSet<Path>) {
    match value {
        Value::Object(map) if !matches!(f.map(|f| &f.ty), Some(Ty::Message(n)) if is_atomic_message(n)) =>
        {
            let schema = child(f);
            let map_values = match f.map(|f| &f.ty) {
                Some(Ty::Map(_, Ty::Message(n))) => protobuf::message(n),
                _ => None,
            };
            if map.is_empty() {
                out.insert(path);
                return;
            }
            for (k, v) in map {
                let mut next = path.clone();
                next.push(Step::Field(k.clone()));
                match f.map(|f| &f.ty) {
                    // Maps of objects: each value is a structure of its own.
                    Some(Ty::Map(_, Ty::Message(_))) => collect_object(v, map_values, next, out),
                    // Maps of strings (labels, data…): each key is a field.
                    Some(Ty::Map(..)) => {
                        out.insert(next);
                    }
                    _ => collect(v, field(schema, k), next, out),
                }
            }
        }
        Value::Array(items) => match f.filter(|f| f.repeated).map(|f| f.list) {
            Some(ListMerge::Key(key)) => {
                let item_schema = child(f);
                for item in items {
                    let id =
                        json!({ key: item.get(key).cloned().unwrap_or(Value::Null) }).to_string();
                    let mut next = path.clone();
                    next.push(Step::Key(id));
                    out.insert(next.clone());
                    if let Value::Object(fields) = item {
                        for (k, v) in fields {
                            let mut inner = next.clone();
                            inner.push(Step::Field(k.clone()));
                            collect(v, field(item_schema, k), inner, out);
                        }
                    }
                }
            }
            Some(ListMerge::Set) => {
                for item in items {
                    let mut next = path.clone();
                    next.push(Step::Value(item.to_string()));
                    out.insert(next);
                }
            }
            _ => {
                out.insert(path);
            }
        },
        _ => {
            out.insert(path);
        }
    }
}

fn collect_object(
    value: &Value,
    schema: Option<&'static Message>,
    path: Path,
    out: &mut BTreeSet<Path>,
) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let mut next = path.clone();
                next.push(Step::Field(k.clone()));
                collect(v, field(schema, k), next, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// Quantities, times and int-or-strings are values, not structures.
fn is_atomic_message(name: &str) -> bool {
    matches!(
        name,
        "apimachinery/pkg/api/resource/Quantity"
            | "apimachinery/pkg/util/intstr/IntOrString"
            | "apimachinery/pkg/apis/meta/v1/Time"
            | "apimachinery/pkg/apis/meta/v1/MicroTime"
            | "apimachinery/pkg/runtime/RawExtension"
    )
}

fn parse(value: &Value, path: Path, out: &mut BTreeSet<Path>) {
    let Value::Object(map) = value else { return };
    if map.is_empty() && !path.is_empty() {
        out.insert(path);
        return;
    }
    for (key, child) in map {
        if key == "." {
            out.insert(path.clone());
            continue;
        }
        let step = if let Some(f) = key.strip_prefix("f:") {
            Step::Field(f.to_owned())
        } else if let Some(k) = key.strip_prefix("k:") {
            Step::Key(k.to_owned())
        } else if let Some(v) = key.strip_prefix("v:") {
            Step::Value(v.to_owned())
        } else {
            continue;
        };
        let mut next = path.clone();
        next.push(step);
        parse(child, next, out);
    }
}

/// Render a path as kube does in conflict messages (`.spec.containers[name="web"].image`).
fn display(path: &Path) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            Step::Key(k) => {
                let parsed: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let inner: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", inner.join(",")));
            }
            Step::Value(v) => out.push_str(&format!("[{v}]")),
        }
    }
    out
}

/// The value at `path` in `object` (None if absent).
fn lookup<'a>(object: &'a Value, path: &Path) -> Option<&'a Value> {
    let mut current = object;
    for step in path {
        current = match step {
            Step::Field(f) => current.get(f)?,
            Step::Key(k) => {
                let key: Map<String, Value> = serde_json::from_str(k).ok()?;
                current
                    .as_array()?
                    .iter()
                    .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))?
            }
            Step::Value(v) => {
                let wanted: Value = serde_json::from_str(v).ok()?;
                current.as_array()?.iter().find(|item| **item == wanted)?
            }
        };
    }
    Some(current)
}

/// Remove `path` from `object` (a field, a keyed list item, a set member).
fn remove(object: &mut Value, path: &Path) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = object;
    for step in parents {
        let next = match step {
            Step::Field(f) => current.get_mut(f),
            Step::Key(k) => {
                let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
                    return;
                };
                current.as_array_mut().and_then(|items| {
                    items
                        .iter_mut()
                        .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))
                })
            }
            Step::Value(_) => None,
        };
        match next {
            Some(next) => current = next,
            None => return,
        }
    }
    match last {
        Step::Field(f) => {
            if let Some(map) = current.as_object_mut() {
                map.remove(f);
            }
        }
        Step::Key(k) => {
            let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
                return;
            };
            if let Some(items) = current.as_array_mut() {
                items.retain(|item| !key.iter().all(|(k, v)| item.get(k) == Some(v)));
            }
        }
        Step::Value(v) => {
            let Ok(wanted) = serde_json::from_str::<Value>(v) else {
                return;
            };
            if let Some(items) = current.as_array_mut() {
                items.retain(|item| *item != wanted);
            }
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
struct Managed {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    fields: FieldSet,
}

fn managed_entries(object: &Value) -> Vec<Managed> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| Managed {
            manager: e["manager"].as_str().unwrap_or_default().to_owned(),
            operation: e["operation"].as_str().unwrap_or_default().to_owned(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
            time: e["time"].as_str().unwrap_or_default().to_owned(),
            fields: FieldSet::from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

fn render_entries(entries: &[Managed]) -> Value {
    Value::Array(
        entries
            .iter()
            .filter(|e| !e.fields.0.is_empty())
            .map(|e| {
                json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version, "time": e.time,
                       "fieldsType": "FieldsV1", "fieldsV1": e.fields.to_fields_v1()})
            })
            .collect(),
    )
}

/// Apply `config` as `manager` onto `live` (None: the object does not exist yet). Returns
/// the object to store.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApiError> {
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding the apply configuration: it is not an object",
        ));
    }
    let api_version = config["apiVersion"].as_str().unwrap_or_default().to_owned();
    let kind = config["kind"].as_str().unwrap_or_default().to_owned();
    let schema = protobuf::message_for(&api_version, &kind);
    let applied = FieldSet::of(config, schema);
    let mut entries = live.map(managed_entries).unwrap_or_default();
    let mine = Managed {
        manager: manager.to_owned(),
        operation: "Apply".into(),
        api_version: api_version.clone(),
        time: now.to_owned(),
        fields: applied.clone(),
    };
    let Some(live) = live else {
        let mut created = config.clone();
        set_managed_fields(&mut created, render_entries(&[mine]));
        return Ok(created);
    };

    // Conflicts: fields another manager owns that this configuration sets differently.
    let mut conflicts: Vec<(String, String)> = Vec::new();
    let mut contested: BTreeSet<Path> = BTreeSet::new();
    for other in entries
        .iter()
        .filter(|e| !(e.manager == manager && e.operation == "Apply"))
    {
        for path in applied.0.intersection(&other.fields.0) {
            // A keyed list item's own entry only says it exists; its fields carry the values.
            let existence = matches!(path.last(), Some(Step::Key(_)));
            if !existence && lookup(live, path) != lookup(config, path) {
                conflicts.push((other.manager.clone(), display(path)));
                contested.insert(path.clone());
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let mut error = ApiError::conflict_with_message(&format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            conflicts
                .iter()
                .map(|(m, p)| format!("conflict with \"{m}\": {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
        error.details.causes = conflicts
            .iter()
            .map(|(m, p)| Cause {
                reason: "FieldManagerConflict".into(),
                message: format!("conflict with \"{m}\""),
                field: p.clone(),
            })
            .collect();
        return Err(error);
    }
    // Forced: the other managers lose the contested fields (agreeing values stay shared).
    for other in entries
        .iter_mut()
        .filter(|e| !(e.manager == manager && e.operation == "Apply"))
    {
        other.fields.0.retain(|p| !contested.contains(p));
    }

    let mut patch = config.clone();
    if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let mut result = strategic::apply(live, &patch, schema).map_err(|e| e.into_api_error())?;
    // Fields this manager applied before but not now, that nobody else owns, are removed.
    let previous = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply")
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: BTreeSet<&Path> = entries
        .iter()
        .filter(|e| !(e.manager == manager && e.operation == "Apply"))
        .flat_map(|e| e.fields.0.iter())
        .collect();
    for stale in previous.0.difference(&applied.0) {
        if !others.contains(stale) {
            remove(&mut result, stale);
        }
    }
    entries.retain(|e| !(e.manager == manager && e.operation == "Apply"));
    entries.push(mine);
    set_managed_fields(&mut result, render_entries(&entries));
    Ok(result)
}

/// Set `metadata.managedFields` (a metadata that is not an object is replaced, never indexed
/// into: indexing a JSON number panics).
fn set_managed_fields(object: &mut Value, entries: Value) {
    if let Some(meta) = crate::model::meta::metadata_mut(object) {
        meta.insert("managedFields".to_owned(), entries);
    }
}

#[cfg(test)]
mod tests;
