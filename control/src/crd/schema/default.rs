//! Defaulting as apiextensions-apiserver does it (`structuraldefaulting.Default`): absent
//! properties with a `default` get it, also inside array items and additionalProperties
//! maps; a null where the schema is not nullable counts as absent.

use serde_json::Value;

use super::node::{Additional, MAX_SCHEMA_DEPTH, Node};

/// Apply the defaults of `s` to `x`.
pub(crate) fn apply(x: &mut Value, s: &Node, depth: usize) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    match x {
        Value::Object(map) => {
            for (k, prop) in &s.properties {
                let Some(default) = &prop.default else {
                    continue;
                };
                let absent = match map.get(k) {
                    None => true,
                    Some(v) => v.is_null() && !prop.nullable,
                };
                if absent {
                    map.insert(k.clone(), default.clone());
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(prop) = s.properties.get(k) {
                    apply(v, prop, depth + 1);
                } else if let Some(Additional::Schema(additional)) = &s.additional {
                    if v.is_null()
                        && !additional.nullable
                        && let Some(default) = &additional.default
                    {
                        *v = default.clone();
                    }
                    apply(v, additional, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            let Some(item) = s.items.as_deref() else {
                return;
            };
            for v in items.iter_mut() {
                if v.is_null()
                    && !item.nullable
                    && let Some(default) = &item.default
                {
                    *v = default.clone();
                }
                apply(v, item, depth + 1);
            }
        }
        _ => {}
    }
}

/// kube's ValidateDefaults: every default (not inside additionalProperties) must be pruned,
/// valid against its schema (and its CEL rules), and make valid embedded resources. `at` is
/// the schema path of `s`.
pub(crate) fn check(s: &Node, at: &str, errors: &mut crate::model::validation::ErrorList) {
    check_node(s, at, false, true, errors, 0);
}

fn check_node(
    s: &Node,
    at: &str,
    inside_meta: bool,
    is_root: bool,
    errors: &mut crate::model::validation::ErrorList,
    depth: usize,
) {
    use super::{cel, objectmeta, path, prune, validate, values::bad_value};
    use crate::model::validation::FieldError;
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    let embedded = s.embedded || is_root;
    let inside_meta = inside_meta && !embedded;
    if let Some(default) = &s.default {
        let at_default = path::child(at, "default");
        let before = errors.len();
        if !inside_meta {
            let mut pruned = default.clone();
            prune::prune_value(&mut pruned, s);
            if !super::values::deep_equal(&pruned, default) {
                errors.push(FieldError::invalid(
                    &at_default,
                    bad_value(default),
                    "must not have unknown fields",
                ));
            }
            if s.embedded
                && let Value::Object(map) = default
            {
                objectmeta::validate_embedded(&at_default, map, errors);
            }
        }
        if errors.len() == before {
            errors.extend(validate::validate_value(
                s,
                default,
                Some(&at_default),
                None,
            ));
        }
        if errors.len() == before {
            cel::validate_default(&at_default, s, default, errors);
        }
    }
    if let Some(item) = s.items.as_deref() {
        check_node(
            item,
            &path::child(at, "items"),
            inside_meta,
            false,
            errors,
            depth + 1,
        );
    }
    for (k, prop) in &s.properties {
        let meta =
            inside_meta || (embedded && matches!(k.as_str(), "metadata" | "apiVersion" | "kind"));
        let at_prop = path::key(&path::child(at, "properties"), k);
        check_node(prop, &at_prop, meta, false, errors, depth + 1);
    }
}
