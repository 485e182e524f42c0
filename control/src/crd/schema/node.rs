//! The compiled schema tree: one `Node` per JSONSchemaProps, with its pattern and CEL
//! rules compiled once. The structural part (properties, items, additionalProperties and the
//! x-kubernetes extensions) drives pruning, defaulting, list types, embedded resources and
//! CEL; the value validations (including allOf/anyOf/oneOf/not, whose entries are `Node`s
//! too) drive kube-openapi's validation.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

use super::{cel::Rule, formats::Format, path, pattern::Pattern};
use crate::model::validation::ErrorList;

/// How deep schemas may nest (Skiff's bound: kube has none but the request size; recursion
/// over deeper schemas could exhaust the stack).
pub(crate) const MAX_SCHEMA_DEPTH: usize = 96;

/// Errors found while compiling: structural ones (invalid patterns) and CEL ones (which
/// kube only reports when the schema is otherwise valid).
#[derive(Default)]
pub(crate) struct CompileErrors {
    pub structural: ErrorList,
    pub cel: ErrorList,
}

/// `additionalProperties`.
#[derive(Debug)]
pub(crate) enum Additional {
    Bool(bool),
    Schema(Box<Node>),
}

/// One compiled schema node.
#[derive(Debug, Default)]
pub(crate) struct Node {
    /// `type` as written ("" when unset).
    pub ty: String,
    pub nullable: bool,
    /// The format kube validates (unsupported formats are dropped, as kube does).
    pub format: Option<Format>,
    /// `format` as written, for messages.
    pub format_name: String,
    pub default: Option<Value>,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub max_length: Option<i64>,
    pub min_length: Option<i64>,
    pub pattern: Option<Pattern>,
    pub max_items: Option<i64>,
    pub min_items: Option<i64>,
    pub multiple_of: Option<f64>,
    pub enum_values: Vec<Value>,
    pub max_properties: Option<i64>,
    pub min_properties: Option<i64>,
    pub required: Vec<String>,
    pub properties: BTreeMap<String, Node>,
    pub additional: Option<Additional>,
    pub items: Option<Box<Node>>,
    pub all_of: Vec<Node>,
    pub any_of: Vec<Node>,
    pub one_of: Vec<Node>,
    pub not: Option<Box<Node>>,
    pub preserve_unknown: bool,
    pub embedded: bool,
    pub int_or_string: bool,
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    pub map_type: Option<String>,
    /// Compiled `x-kubernetes-validations` (only at structural nodes).
    pub rules: Vec<Rule>,
}

impl Node {
    /// Convert `p` (at schema path `at`), compiling patterns and CEL rules; errors of those go
    /// to `errors`. `nested` is true inside allOf/anyOf/oneOf/not.
    pub(crate) fn compile(
        p: &JSONSchemaProps,
        at: &str,
        depth: usize,
        nested: bool,
        errors: &mut CompileErrors,
    ) -> Node {
        let ty = p.type_.clone().unwrap_or_default();
        let format = Format::supported(&ty, p.format.as_deref().unwrap_or_default());
        let mut node = Node {
            format,
            format_name: match format {
                Some(_) => p.format.clone().unwrap_or_default(),
                None => String::new(),
            },
            nullable: p.nullable.unwrap_or(false),
            default: p.default.as_ref().map(|d| d.0.clone()),
            maximum: p.maximum,
            exclusive_maximum: p.exclusive_maximum.unwrap_or(false),
            minimum: p.minimum,
            exclusive_minimum: p.exclusive_minimum.unwrap_or(false),
            max_length: p.max_length,
            min_length: p.min_length,
            max_items: p.max_items,
            min_items: p.min_items,
            multiple_of: p.multiple_of,
            enum_values: p
                .enum_
                .as_ref()
                .map(|e| e.iter().map(|v| v.0.clone()).collect())
                .unwrap_or_default(),
            max_properties: p.max_properties,
            min_properties: p.min_properties,
            required: p.required.clone().unwrap_or_default(),
            preserve_unknown: p.x_kubernetes_preserve_unknown_fields.unwrap_or(false),
            embedded: p.x_kubernetes_embedded_resource.unwrap_or(false),
            int_or_string: p.x_kubernetes_int_or_string.unwrap_or(false),
            list_type: p.x_kubernetes_list_type.clone(),
            list_map_keys: p.x_kubernetes_list_map_keys.clone().unwrap_or_default(),
            map_type: p.x_kubernetes_map_type.clone(),
            ty,
            ..Node::default()
        };
        if let Some(pattern) = p.pattern.as_deref().filter(|p| !p.is_empty()) {
            match Pattern::compile(pattern) {
                Ok(compiled) => node.pattern = Some(compiled),
                Err(why) => errors
                    .structural
                    .push(crate::model::validation::FieldError::invalid(
                        path::child(at, "pattern"),
                        super::values::bad_str(pattern),
                        format!("must be a valid regular expression, but isn't: {why}"),
                    )),
            }
        }
        if depth >= MAX_SCHEMA_DEPTH {
            // Deeper schemas are refused by `check`; stop compiling here.
            return node;
        }
        let sub = |p: &JSONSchemaProps, at: String, nested: bool, errors: &mut CompileErrors| {
            Node::compile(p, &at, depth + 1, nested, errors)
        };
        for (name, prop) in p.properties.iter().flatten() {
            let child = sub(
                prop,
                path::key(&path::child(at, "properties"), name),
                nested,
                errors,
            );
            node.properties.insert(name.clone(), child);
        }
        node.additional = match &p.additional_properties {
            None => None,
            Some(JSONSchemaPropsOrBool::Bool(b)) => Some(Additional::Bool(*b)),
            Some(JSONSchemaPropsOrBool::Schema(s)) => Some(Additional::Schema(Box::new(sub(
                s,
                path::child(at, "additionalProperties"),
                nested,
                errors,
            )))),
        };
        node.items = match &p.items {
            Some(JSONSchemaPropsOrArray::Schema(s)) => {
                Some(Box::new(sub(s, path::child(at, "items"), nested, errors)))
            }
            // Refused by `check` ("items must be a schema object and not an array").
            Some(JSONSchemaPropsOrArray::Schemas(_)) | None => None,
        };
        let junctor =
            |list: &Option<Vec<JSONSchemaProps>>, name: &str, errors: &mut CompileErrors| {
                list.iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, s)| sub(s, path::index(&path::child(at, name), i), true, errors))
                    .collect::<Vec<_>>()
            };
        node.all_of = junctor(&p.all_of, "allOf", errors);
        node.any_of = junctor(&p.any_of, "anyOf", errors);
        node.one_of = junctor(&p.one_of, "oneOf", errors);
        node.not = p
            .not
            .as_ref()
            .map(|s| Box::new(sub(s, path::child(at, "not"), true, errors)));
        if !nested {
            node.rules = super::cel::compile_rules(p, &node, at, &mut errors.cel);
        }
        node
    }

    /// The OpenAPI types a value may have (int-or-string: integer and string).
    pub(crate) fn types(&self) -> Vec<&str> {
        if self.int_or_string {
            vec!["integer", "string"]
        } else if self.ty.is_empty() {
            Vec::new()
        } else {
            vec![self.ty.as_str()]
        }
    }

    /// The schema of property `name`: a declared property or additionalProperties.
    pub(crate) fn field(&self, name: &str) -> Option<&Node> {
        self.properties.get(name).or(match &self.additional {
            Some(Additional::Schema(s)) => Some(s),
            _ => None,
        })
    }
}
