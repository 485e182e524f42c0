//! What kube refuses in a CRD's openAPIV3Schema, with its messages: the OpenAPI features
//! CRDs do not support and the list and map types (apiextensions validation's
//! ValidateCustomResourceDefinitionOpenAPISchema), and the status subresource's and the
//! root's restrictions. The structural schema rules are in `structural`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

use super::{node::MAX_SCHEMA_DEPTH, path, values::bad_str};
use crate::model::validation::{ErrorList, FieldError};

const OPENAPI_TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];
const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

pub(super) fn forbidden(at: &str, field: &str, detail: impl Into<String>) -> FieldError {
    FieldError::forbidden(path::child(at, field), detail)
}

pub(super) fn required(at: &str, field: &str, detail: impl Into<String>) -> FieldError {
    FieldError::required(path::child(at, field), detail)
}

pub(super) fn props(p: &JSONSchemaProps) -> impl Iterator<Item = (&String, &JSONSchemaProps)> {
    p.properties.iter().flatten()
}

pub(super) fn items(p: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match &p.items {
        Some(JSONSchemaPropsOrArray::Schema(s)) => Some(s),
        _ => None,
    }
}

pub(super) fn additional(p: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match &p.additional_properties {
        Some(JSONSchemaPropsOrBool::Schema(s)) => Some(s),
        _ => None,
    }
}

pub(super) fn ty(p: &JSONSchemaProps) -> &str {
    p.type_.as_deref().unwrap_or_default()
}

/// The checks kube makes at the root of a version's schema (`at` is its path):
/// `status_subresource` says whether the version has the status subresource.
pub(crate) fn root(
    p: &JSONSchemaProps,
    at: &str,
    status_subresource: bool,
    errors: &mut ErrorList,
) {
    if status_subresource {
        if !ty(p).is_empty() && ty(p) != "object" {
            errors.push(FieldError::invalid(
                path::child(at, "type"),
                bad_str(ty(p)),
                "only \"object\" is allowed as the type at the root of the schema if the status subresource is enabled",
            ));
        } else {
            let mut rest = p.clone();
            for clear in [
                &mut rest.description,
                &mut rest.type_,
                &mut rest.format,
                &mut rest.title,
                &mut rest.pattern,
            ] {
                *clear = None;
            }
            rest.maximum = None;
            rest.exclusive_maximum = None;
            rest.minimum = None;
            rest.exclusive_minimum = None;
            rest.max_length = None;
            rest.min_length = None;
            rest.max_items = None;
            rest.min_items = None;
            rest.unique_items = None;
            rest.multiple_of = None;
            rest.required = None;
            rest.items = None;
            rest.properties = None;
            rest.external_docs = None;
            rest.example = None;
            rest.x_kubernetes_preserve_unknown_fields = None;
            rest.x_kubernetes_validations = None;
            if rest != JSONSchemaProps::default() {
                errors.push(FieldError::invalid(
                    at,
                    serde_json::to_string(p).unwrap_or_default(),
                    "only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled",
                ));
            }
        }
    }
    if p.nullable == Some(true) {
        errors.push(forbidden(
            at,
            "nullable",
            "nullable cannot be true at the root",
        ));
    }
}

/// How the OpenAPI checks see a node (kube's specStandardValidator).
#[derive(Clone, Default)]
struct Ctx {
    forbid_defaults: Option<String>,
    inside_meta: bool,
}

/// kube's ValidateCustomResourceDefinitionOpenAPISchema (without the CEL part).
pub(crate) fn openapi(p: &JSONSchemaProps, at: &str, errors: &mut ErrorList) {
    openapi_node(p, at, &Ctx::default(), true, errors, 0);
}

fn openapi_node(
    p: &JSONSchemaProps,
    at: &str,
    ctx: &Ctx,
    is_root: bool,
    errors: &mut ErrorList,
    depth: usize,
) {
    if depth > MAX_SCHEMA_DEPTH {
        errors.push(FieldError::forbidden(
            at,
            format!("must not be nested more than {MAX_SCHEMA_DEPTH} levels deep"),
        ));
        return;
    }
    let t = ty(p);
    if !t.is_empty() && t != "null" && !OPENAPI_TYPES.contains(&t) {
        errors.push(FieldError::not_supported(
            path::child(at, "type"),
            bad_str(t),
            &OPENAPI_TYPES,
        ));
    }
    if p.default.is_some()
        && let Some(reason) = &ctx.forbid_defaults
    {
        errors.push(forbidden(
            at,
            "default",
            format!("must not be set {reason}"),
        ));
    }
    if p.id.as_deref().is_some_and(|s| !s.is_empty()) {
        errors.push(forbidden(at, "id", "id is not supported"));
    }
    if p.additional_items.is_some() {
        errors.push(forbidden(
            at,
            "additionalItems",
            "additionalItems is not supported",
        ));
    }
    if p.pattern_properties.as_ref().is_some_and(|m| !m.is_empty()) {
        errors.push(forbidden(
            at,
            "patternProperties",
            "patternProperties is not supported",
        ));
    }
    if p.definitions.as_ref().is_some_and(|m| !m.is_empty()) {
        errors.push(forbidden(at, "definitions", "definitions is not supported"));
    }
    if p.dependencies.is_some() {
        errors.push(forbidden(
            at,
            "dependencies",
            "dependencies is not supported",
        ));
    }
    if p.ref_path.is_some() {
        errors.push(forbidden(at, "$ref", "$ref is not supported"));
    }
    if t == "null" {
        errors.push(forbidden(
            at,
            "type",
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    if let Some(JSONSchemaPropsOrArray::Schemas(list)) = &p.items
        && !list.is_empty()
    {
        errors.push(forbidden(
            at,
            "items",
            "items must be a schema object and not an array",
        ));
    }
    let embedded = p.x_kubernetes_embedded_resource == Some(true);
    if ctx.inside_meta && embedded {
        errors.push(forbidden(
            at,
            "x-kubernetes-embedded-resource",
            "must not be used inside of resource meta",
        ));
    }
    if p.unique_items == Some(true) {
        errors.push(forbidden(
            at,
            "uniqueItems",
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if let Some(a) = &p.additional_properties {
        let has_props = p.properties.as_ref().is_some_and(|m| !m.is_empty());
        if has_props && !matches!(a, JSONSchemaPropsOrBool::Bool(true)) {
            errors.push(forbidden(
                at,
                "additionalProperties",
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if let JSONSchemaPropsOrBool::Schema(s) = a {
            let mut sub = ctx.clone();
            if ctx.inside_meta {
                sub.forbid_defaults =
                    Some("inside additionalProperties applying to object metadata".to_owned());
            }
            openapi_node(
                s,
                &path::child(at, "additionalProperties"),
                &sub,
                false,
                errors,
                depth + 1,
            );
        }
    }
    for (name, prop) in props(p) {
        let mut sub = ctx.clone();
        if (is_root || embedded) && META_FIELDS.contains(&name.as_str()) {
            sub.inside_meta = true;
            if is_root {
                sub.forbid_defaults = Some(format!("in top-level {name}"));
            }
        }
        openapi_node(
            prop,
            &path::key(&path::child(at, "properties"), name),
            &sub,
            false,
            errors,
            depth + 1,
        );
    }
    if let Some(not) = &p.not {
        openapi_node(not, &path::child(at, "not"), ctx, false, errors, depth + 1);
    }
    for (field, list) in [
        ("allOf", &p.all_of),
        ("oneOf", &p.one_of),
        ("anyOf", &p.any_of),
    ] {
        for (i, s) in list.iter().flatten().enumerate() {
            openapi_node(
                s,
                &path::index(&path::child(at, field), i),
                ctx,
                false,
                errors,
                depth + 1,
            );
        }
    }
    if let Some(item) = items(p) {
        openapi_node(
            item,
            &path::child(at, "items"),
            ctx,
            false,
            errors,
            depth + 1,
        );
    }
    if p.x_kubernetes_preserve_unknown_fields == Some(false) {
        errors.push(FieldError::invalid(
            path::child(at, "x-kubernetes-preserve-unknown-fields"),
            "false",
            "must be true or undefined",
        ));
    }
    if let Some(map_type) = &p.x_kubernetes_map_type {
        if t != "object" {
            errors.push(type_must_be(
                at,
                t,
                "must be object if x-kubernetes-map-type is specified",
            ));
        }
        if map_type != "atomic" && map_type != "granular" {
            errors.push(FieldError::not_supported(
                path::child(at, "x-kubernetes-map-type"),
                bad_str(map_type),
                &["atomic", "granular"],
            ));
        }
    }
    list_type(p, at, errors);
}

pub(super) fn type_must_be(at: &str, t: &str, detail: &str) -> FieldError {
    if t.is_empty() {
        required(at, "type", detail)
    } else {
        FieldError::invalid(path::child(at, "type"), bad_str(t), detail)
    }
}

/// x-kubernetes-list-type and x-kubernetes-list-map-keys.
fn list_type(p: &JSONSchemaProps, at: &str, errors: &mut ErrorList) {
    let t = ty(p);
    let list_type = p.x_kubernetes_list_type.as_deref();
    let keys = p.x_kubernetes_list_map_keys.clone().unwrap_or_default();
    let item = items(p);
    if let Some(lt) = list_type {
        if t != "array" {
            errors.push(type_must_be(
                at,
                t,
                "must be array if x-kubernetes-list-type is specified",
            ));
        } else if lt == "set"
            && let Some(item) = item
        {
            match ty(item) {
                "array" => {
                    if let Some(inner) = item.x_kubernetes_list_type.as_deref()
                        && inner != "atomic"
                    {
                        errors.push(FieldError::invalid(
                            path::child(&path::child(at, "items"), "x-kubernetes-list-type"),
                            bad_str(inner),
                            "must be atomic as item of a list with x-kubernetes-list-type=set",
                        ));
                    }
                }
                "object" if item.x_kubernetes_map_type.as_deref() != Some("atomic") => {
                    errors.push(FieldError::invalid(
                        path::child(&path::child(at, "items"), "x-kubernetes-map-type"),
                        "null",
                        "must be atomic as item of a list with x-kubernetes-list-type=set",
                    ));
                }
                _ => {}
            }
        }
        if !matches!(lt, "atomic" | "set" | "map") {
            errors.push(FieldError::not_supported(
                path::child(at, "x-kubernetes-list-type"),
                bad_str(lt),
                &["atomic", "set", "map"],
            ));
        }
    }
    if !keys.is_empty() {
        match list_type {
            None => errors.push(required(
                at,
                "x-kubernetes-list-type",
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            Some("map") => {}
            Some(lt) => errors.push(FieldError::invalid(
                path::child(at, "x-kubernetes-list-type"),
                bad_str(lt),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
        }
    }
    let keys_json = serde_json::to_string(&keys).unwrap_or_default();
    if list_type == Some("map") {
        if keys.is_empty() {
            errors.push(required(
                at,
                "x-kubernetes-list-map-keys",
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match &p.items {
            None => errors.push(required(
                at,
                "items",
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(JSONSchemaPropsOrArray::Schemas(_)) => errors.push(FieldError::invalid(
                path::child(at, "items"),
                "null",
                "must only have a single schema if x-kubernetes-list-type is map",
            )),
            Some(JSONSchemaPropsOrArray::Schema(_)) => {}
        }
        if let Some(item) = item {
            if ty(item) != "object" {
                errors.push(FieldError::invalid(
                    path::child(&path::child(at, "items"), "type"),
                    bad_str(ty(item)),
                    "must be object if parent array's x-kubernetes-list-type is map",
                ));
            } else {
                let mut seen = std::collections::HashSet::new();
                for k in &keys {
                    match item.properties.as_ref().and_then(|m| m.get(k)) {
                        Some(s) if matches!(ty(s), "array" | "object") => {
                            errors.push(FieldError::invalid(
                                path::child(
                                    &path::key(&path::child(&path::child(at, "items"), "properties"), k),
                                    "type",
                                ),
                                bad_str(ty(item)),
                                "must be a scalar type if parent array's x-kubernetes-list-type is map",
                            ));
                        }
                        Some(_) => {}
                        None => errors.push(FieldError::invalid(
                            path::child(at, "x-kubernetes-list-map-keys"),
                            keys_json.clone(),
                            "entries must all be names of item properties",
                        )),
                    }
                    if !seen.insert(k) {
                        errors.push(FieldError::invalid(
                            path::child(at, "x-kubernetes-list-map-keys"),
                            keys_json.clone(),
                            "must not contain duplicate entries",
                        ));
                    }
                }
            }
        }
    }
    // Keys and items of map and set lists (requireMapListKeysMapSetValidation).
    if let (Some(lt @ ("set" | "map")), Some(item)) = (list_type, item) {
        let items_at = path::child(at, "items");
        if item.nullable == Some(true) {
            errors.push(forbidden(
                &items_at,
                "nullable",
                format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
            ));
        }
        if lt == "map" {
            let required_keys = item.required.clone().unwrap_or_default();
            for k in &keys {
                let Some(s) = item.properties.as_ref().and_then(|m| m.get(k)) else {
                    continue;
                };
                let at_key = path::key(&path::child(&items_at, "properties"), k);
                if !required_keys.contains(k) && s.default.is_none() {
                    errors.push(required(
                        &at_key,
                        "default",
                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                    ));
                }
                if s.nullable == Some(true) {
                    errors.push(forbidden(
                        &at_key,
                        "nullable",
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    ));
                }
            }
        }
    }
}

/// Sort like kube sorts structural errors (by their message).
pub(crate) fn sort(errors: &mut ErrorList) {
    errors.sort_by_key(|e| e.to_string());
}
