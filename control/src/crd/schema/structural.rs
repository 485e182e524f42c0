//! kube's structural schema rules (apiextensions-apiserver schema/validation.go and
//! complete.go): every field typed, value validations only inside allOf/anyOf/oneOf/not and
//! only about fields that exist, metadata restricted, x-kubernetes extensions consistent.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;

use super::{
    check::{additional, forbidden, items, props, required, ty, type_must_be},
    node::MAX_SCHEMA_DEPTH,
    path,
    values::bad_str,
};
use crate::model::validation::{ErrorList, FieldError};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// kube's ValidateStructural: invariants and completeness.
pub(crate) fn check(p: &JSONSchemaProps, at: &str, errors: &mut ErrorList) {
    invariants(p, Level::Root, at, errors, 0);
    completeness_junctors(p, Some(p), at, at, errors, 0);
}

fn is_int_or_string_any_of(list: Option<&Vec<JSONSchemaProps>>) -> bool {
    let only_type = |p: &JSONSchemaProps, t: &str| {
        let mut rest = p.clone();
        rest.type_ = None;
        ty(p) == t && rest == JSONSchemaProps::default()
    };
    matches!(list, Some(l) if l.len() == 2 && only_type(&l[0], "integer") && only_type(&l[1], "string"))
}

fn invariants(p: &JSONSchemaProps, lvl: Level, at: &str, errors: &mut ErrorList, depth: usize) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    let t = ty(p);
    if t == "array" && p.items.is_none() {
        errors.push(required(at, "items", "must be specified"));
    }
    if let Some(item) = items(p) {
        invariants(
            item,
            Level::Item,
            &path::child(at, "items"),
            errors,
            depth + 1,
        );
    }
    for (name, prop) in props(p) {
        invariants(
            prop,
            Level::Field,
            &path::key(&path::child(at, "properties"), name),
            errors,
            depth + 1,
        );
    }
    if p.additional_properties.is_some() {
        if lvl == Level::Root {
            errors.push(forbidden(
                at,
                "additionalProperties",
                "must not be used at the root",
            ));
        }
        if let Some(a) = additional(p) {
            invariants(
                a,
                Level::Field,
                &path::child(at, "additionalProperties"),
                errors,
                depth + 1,
            );
        }
    }
    let int_or_string = p.x_kubernetes_int_or_string == Some(true);
    let preserve = p.x_kubernetes_preserve_unknown_fields == Some(true);
    let embedded = p.x_kubernetes_embedded_resource == Some(true);
    if int_or_string && preserve {
        errors.push(FieldError::invalid(
            path::child(at, "x-kubernetes-preserve-unknown-fields"),
            "true",
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if int_or_string && embedded {
        errors.push(FieldError::invalid(
            path::child(at, "x-kubernetes-embedded-resource"),
            "true",
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    let skip_any_of = is_int_or_string_any_of(p.any_of.as_ref());
    let skip_first_all_of_any_of = p
        .all_of
        .as_ref()
        .and_then(|l| l.first())
        .is_some_and(|first| is_int_or_string_any_of(first.any_of.as_ref()));
    value_validation(
        p,
        skip_any_of,
        skip_first_all_of_any_of,
        lvl,
        at,
        errors,
        depth,
    );
    if embedded && t != "object" {
        errors.push(type_must_be(
            at,
            t,
            "must be object if x-kubernetes-embedded-resource is true",
        ));
    } else if t.is_empty() && !int_or_string && !preserve {
        errors.push(required(
            at,
            "type",
            match lvl {
                Level::Root => "must not be empty at the root",
                Level::Item => "must not be empty for specified array items",
                Level::Field => "must not be empty for specified object fields",
            },
        ));
    }
    if embedded && p.additional_properties.is_some() {
        errors.push(forbidden(
            at,
            "additionalProperties",
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !t.is_empty() && t != "object" {
        errors.push(FieldError::invalid(
            path::child(at, "type"),
            bad_str(t),
            "must be object at the root",
        ));
    }
    let check_metadata = lvl == Level::Root || embedded;
    let properties = p.properties.as_ref();
    for field in ["kind", "apiVersion"] {
        if let Some(s) = properties.and_then(|m| m.get(field))
            && check_metadata
            && ty(s) != "string"
        {
            errors.push(FieldError::invalid(
                path::child(&path::key(&path::child(at, "properties"), field), "type"),
                bad_str(ty(s)),
                "must be string",
            ));
        }
    }
    if let Some(meta) = properties.and_then(|m| m.get("metadata")) {
        let meta_at = path::key(&path::child(at, "properties"), "metadata");
        if check_metadata && ty(meta) != "object" {
            errors.push(FieldError::invalid(
                path::child(&meta_at, "type"),
                bad_str(ty(meta)),
                "must be object",
            ));
        }
        if lvl == Level::Root {
            let mut rest = meta.clone();
            if let Some(m) = &rest.properties
                && m.keys().all(|k| k == "name" || k == "generateName")
            {
                rest.properties = None;
            }
            rest.type_ = None;
            rest.default = None;
            rest.external_docs = None;
            rest.example = None;
            if rest != JSONSchemaProps::default() {
                errors.push(FieldError::forbidden(
                    meta_at,
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                ));
            }
        }
    }
    if embedded && !preserve && p.properties.as_ref().is_none_or(|m| m.is_empty()) {
        errors.push(required(
            at,
            "properties",
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// The allOf/anyOf/oneOf/not of a structural node.
fn value_validation(
    p: &JSONSchemaProps,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    lvl: Level,
    at: &str,
    errors: &mut ErrorList,
    depth: usize,
) {
    if !skip_any_of {
        for (i, s) in p.any_of.iter().flatten().enumerate() {
            nested(
                s,
                false,
                lvl,
                &path::index(&path::child(at, "anyOf"), i),
                errors,
                depth + 1,
            );
        }
    }
    for (i, s) in p.all_of.iter().flatten().enumerate() {
        let skip = skip_first_all_of_any_of && i == 0;
        nested(
            s,
            skip,
            lvl,
            &path::index(&path::child(at, "allOf"), i),
            errors,
            depth + 1,
        );
    }
    for (i, s) in p.one_of.iter().flatten().enumerate() {
        nested(
            s,
            false,
            lvl,
            &path::index(&path::child(at, "oneOf"), i),
            errors,
            depth + 1,
        );
    }
    if let Some(not) = &p.not {
        nested(not, false, lvl, &path::child(at, "not"), errors, depth + 1);
    }
}

/// kube's validateNestedValueValidation: value validations only, inside junctors.
fn nested(
    p: &JSONSchemaProps,
    skip_any_of: bool,
    lvl: Level,
    at: &str,
    errors: &mut ErrorList,
    depth: usize,
) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    value_validation(p, skip_any_of, false, lvl, at, errors, depth);
    if let Some(item) = items(p) {
        nested(
            item,
            false,
            lvl,
            &path::child(at, "items"),
            errors,
            depth + 1,
        );
    }
    for (name, prop) in props(p) {
        nested(
            prop,
            false,
            Level::Field,
            &path::key(&path::child(at, "properties"), name),
            errors,
            depth + 1,
        );
    }
    if !ty(p).is_empty() {
        errors.push(forbidden(at, "type", "must be empty to be structural"));
    }
    if p.additional_properties.is_some() {
        errors.push(forbidden(
            at,
            "additionalProperties",
            "must be undefined to be structural",
        ));
    }
    if p.default.is_some() {
        errors.push(forbidden(
            at,
            "default",
            "must be undefined to be structural",
        ));
    }
    if p.title.as_deref().is_some_and(|s| !s.is_empty()) {
        errors.push(forbidden(at, "title", "must be empty to be structural"));
    }
    if p.description.as_deref().is_some_and(|s| !s.is_empty()) {
        errors.push(forbidden(
            at,
            "description",
            "must be empty to be structural",
        ));
    }
    if p.nullable == Some(true) {
        errors.push(forbidden(at, "nullable", "must be false to be structural"));
    }
    for (field, set) in [
        (
            "x-kubernetes-preserve-unknown-fields",
            p.x_kubernetes_preserve_unknown_fields,
        ),
        (
            "x-kubernetes-embedded-resource",
            p.x_kubernetes_embedded_resource,
        ),
        ("x-kubernetes-int-or-string", p.x_kubernetes_int_or_string),
    ] {
        if set == Some(true) {
            errors.push(forbidden(at, field, "must be false to be structural"));
        }
    }
    if p.x_kubernetes_list_map_keys
        .as_ref()
        .is_some_and(|k| !k.is_empty())
    {
        errors.push(forbidden(
            at,
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        ));
    }
    if p.x_kubernetes_list_type.is_some() {
        errors.push(forbidden(
            at,
            "x-kubernetes-list-type",
            "must be undefined to be structural",
        ));
    }
    if p.x_kubernetes_map_type.is_some() {
        errors.push(forbidden(
            at,
            "x-kubernetes-map-type",
            "must be undefined to be structural",
        ));
    }
    if p.x_kubernetes_validations
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        errors.push(forbidden(
            at,
            "x-kubernetes-validations",
            "must be empty to be structural",
        ));
    }
    if p.properties
        .as_ref()
        .is_some_and(|m| m.contains_key("metadata"))
    {
        errors.push(FieldError::forbidden(
            path::key(&path::child(at, "properties"), "metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// kube's validateStructuralCompleteness: what junctors name must exist structurally.
fn completeness_junctors(
    v: &JSONSchemaProps,
    s: Option<&JSONSchemaProps>,
    s_at: &str,
    v_at: &str,
    errors: &mut ErrorList,
    depth: usize,
) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    let has_junctors =
        v.not.is_some() || v.all_of.is_some() || v.any_of.is_some() || v.one_of.is_some();
    if !has_junctors {
        return;
    }
    let Some(s) = s else {
        errors.push(FieldError::required(
            s_at,
            format!("because it is defined in {v_at}"),
        ));
        return;
    };
    if let Some(not) = &v.not {
        completeness_nested(
            not,
            Some(s),
            s_at,
            &path::child(v_at, "not"),
            errors,
            depth + 1,
        );
    }
    for (field, list) in [
        ("allOf", &v.all_of),
        ("anyOf", &v.any_of),
        ("oneOf", &v.one_of),
    ] {
        for (i, n) in list.iter().flatten().enumerate() {
            completeness_nested(
                n,
                Some(s),
                s_at,
                &path::index(&path::child(v_at, field), i),
                errors,
                depth + 1,
            );
        }
    }
}

fn completeness_nested(
    v: &JSONSchemaProps,
    s: Option<&JSONSchemaProps>,
    s_at: &str,
    v_at: &str,
    errors: &mut ErrorList,
    depth: usize,
) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    let Some(s) = s else {
        errors.push(FieldError::required(
            s_at,
            format!("because it is defined in {v_at}"),
        ));
        return;
    };
    completeness_junctors(v, Some(s), s_at, v_at, errors, depth + 1);
    if let Some(v_item) = items(v) {
        completeness_nested(
            v_item,
            items(s),
            &path::child(s_at, "items"),
            &path::child(v_at, "items"),
            errors,
            depth + 1,
        );
    }
    for (name, v_prop) in props(v) {
        let s_prop_at = path::key(&path::child(s_at, "properties"), name);
        let v_prop_at = path::key(&path::child(v_at, "properties"), name);
        match s.properties.as_ref().and_then(|m| m.get(name)) {
            None => errors.push(FieldError::required(
                s_prop_at,
                format!("because it is defined in {v_prop_at}"),
            )),
            Some(s_prop) => completeness_nested(
                v_prop,
                Some(s_prop),
                &s_prop_at,
                &v_prop_at,
                errors,
                depth + 1,
            ),
        }
    }
}
