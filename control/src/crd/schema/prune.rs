//! Pruning as apiextensions-apiserver does it when decoding a custom resource: fields the
//! schema does not specify are dropped (unless x-kubernetes-preserve-unknown-fields), keeping
//! apiVersion, kind and metadata at the root and in x-kubernetes-embedded-resource values;
//! unknown fields of those metadata are dropped too (kube decodes them into ObjectMeta); then
//! nulls of non-nullable fields without a default are removed.

use serde_json::{Map, Value};

use super::node::{Additional, MAX_SCHEMA_DEPTH, Node};

/// ObjectMeta's JSON fields: the rest of a `metadata` object is dropped.
const OBJECT_META_FIELDS: [&str; 15] = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Values deeper than this under a schema-less part are dropped whole (no recursion).
const MAX_VALUE_DEPTH: usize = MAX_SCHEMA_DEPTH + 64;

/// Prune `object` (a whole custom resource) with `root`; the dropped paths, sorted
/// (`spec.foo`, `spec.items[0].bar`, `metadata.foo`).
pub(crate) fn prune(object: &mut Value, root: &Node) -> Vec<String> {
    let mut pruner = Pruner {
        path: String::new(),
        unknown: Vec::new(),
    };
    if let Value::Object(map) = object {
        pruner.prune_metadata(map);
    }
    pruner.prune(object, Some(root), true, 0);
    prune_nulls(object, Some(root), 0);
    pruner.unknown.sort();
    pruner.unknown
}

/// Prune a value (a default) with its own schema, as if it stood where `node` applies.
pub(crate) fn prune_value(value: &mut Value, node: &Node) -> Vec<String> {
    let mut pruner = Pruner {
        path: String::new(),
        unknown: Vec::new(),
    };
    pruner.prune(value, Some(node), node.embedded, 0);
    pruner.unknown
}

struct Pruner {
    /// The current path, built as kube's UnknownFieldPathOptions does.
    path: String,
    unknown: Vec<String>,
}

impl Pruner {
    fn record(&mut self, key: &str) {
        if self.path.is_empty() {
            self.unknown.push(key.to_owned());
        } else {
            self.unknown.push(format!("{}.{key}", self.path));
        }
    }

    fn enter_key(&mut self, key: &str) -> usize {
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        len
    }

    fn enter_index(&mut self, i: usize) -> usize {
        let len = self.path.len();
        self.path.push_str(&format!("[{i}]"));
        len
    }

    /// Drop what ObjectMeta does not know from `map["metadata"]`.
    fn prune_metadata(&mut self, map: &mut Map<String, Value>) {
        let Some(Value::Object(meta)) = map.get_mut("metadata") else {
            return;
        };
        let unknown: Vec<String> = meta
            .keys()
            .filter(|k| !OBJECT_META_FIELDS.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in unknown {
            meta.remove(&k);
            let len = self.enter_key("metadata");
            self.record(&k);
            self.path.truncate(len);
        }
    }

    /// kube's `prune(x, s)`; `embedded` is the schema's x-kubernetes-embedded-resource (true
    /// for the resource root).
    fn prune(&mut self, x: &mut Value, s: Option<&Node>, embedded: bool, depth: usize) {
        if let Some(s) = s
            && s.preserve_unknown
        {
            self.skip_prune(x, s, embedded, depth);
            return;
        }
        match x {
            Value::Object(map) => {
                let Some(s) = s else {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    for k in keys {
                        self.record(&k);
                    }
                    map.clear();
                    return;
                };
                if embedded && !self.path.is_empty() {
                    self.prune_metadata(map);
                }
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    if embedded && META_FIELDS.contains(&k.as_str()) {
                        continue;
                    }
                    let sub = match (s.properties.get(&k), &s.additional) {
                        (Some(p), _) => Some(Some(p)),
                        (None, Some(Additional::Schema(a))) => Some(Some(&**a)),
                        (None, Some(Additional::Bool(_))) => Some(None),
                        (None, None) => None,
                    };
                    match sub {
                        Some(sub) => {
                            if let Some(v) = map.get_mut(&k) {
                                self.descend_key(v, &k, sub, depth);
                            }
                        }
                        None => {
                            if !META_FIELDS.contains(&k.as_str()) || !self.path.is_empty() {
                                self.record(&k);
                            }
                            map.remove(&k);
                        }
                    }
                }
            }
            Value::Array(items) => {
                let items_schema = s.and_then(|s| s.items.as_deref());
                for (i, v) in items.iter_mut().enumerate() {
                    let len = self.enter_index(i);
                    if depth >= MAX_VALUE_DEPTH {
                        *v = Value::Null;
                    } else {
                        let embedded = items_schema.is_some_and(|s| s.embedded);
                        self.prune(v, items_schema, embedded, depth + 1);
                    }
                    self.path.truncate(len);
                }
            }
            _ => {}
        }
    }

    fn descend_key(&mut self, v: &mut Value, k: &str, sub: Option<&Node>, depth: usize) {
        let len = self.enter_key(k);
        if depth >= MAX_VALUE_DEPTH {
            *v = Value::Null;
        } else {
            self.prune(v, sub, sub.is_some_and(|s| s.embedded), depth + 1);
        }
        self.path.truncate(len);
    }

    /// kube's `skipPrune`: keep unknown fields, but prune inside the specified ones.
    fn skip_prune(&mut self, x: &mut Value, s: &Node, embedded: bool, depth: usize) {
        match x {
            Value::Object(map) => {
                if embedded && !self.path.is_empty() {
                    self.prune_metadata(map);
                }
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    if embedded && META_FIELDS.contains(&k.as_str()) {
                        continue;
                    }
                    let sub = match (s.properties.get(&k), &s.additional) {
                        (Some(p), _) => Some(Some(p)),
                        (None, Some(Additional::Schema(a))) => Some(Some(&**a)),
                        (None, Some(Additional::Bool(_))) => Some(None),
                        (None, None) => None,
                    };
                    if let Some(sub) = sub
                        && let Some(v) = map.get_mut(&k)
                    {
                        self.descend_key(v, &k, sub, depth);
                    }
                }
            }
            Value::Array(items) => {
                let Some(items_schema) = s.items.as_deref() else {
                    return;
                };
                for (i, v) in items.iter_mut().enumerate() {
                    if depth >= MAX_VALUE_DEPTH {
                        break;
                    }
                    let len = self.enter_index(i);
                    self.skip_prune(v, items_schema, items_schema.embedded, depth + 1);
                    self.path.truncate(len);
                }
            }
            _ => {}
        }
    }
}

/// kube's PruneNonNullableNullsWithoutDefaults.
fn prune_nulls(x: &mut Value, s: Option<&Node>, depth: usize) {
    if depth >= MAX_VALUE_DEPTH {
        return;
    }
    match x {
        Value::Object(map) => {
            map.retain(|k, v| {
                let schema = s.and_then(|s| s.field(k));
                let drop =
                    v.is_null() && schema.is_some_and(|s| !s.nullable && s.default.is_none());
                if !drop {
                    prune_nulls(v, schema, depth + 1);
                }
                !drop
            });
        }
        Value::Array(items) => {
            let schema = s.and_then(|s| s.items.as_deref());
            for v in items {
                prune_nulls(v, schema, depth + 1);
            }
        }
        _ => {}
    }
}
