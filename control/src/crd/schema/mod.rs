//! The structural schema engine of CustomResourceDefinitions, as kube-apiserver's
//! apiextensions-apiserver has it (k8s.io/apiextensions-apiserver/pkg/apiserver/schema and
//! k8s.io/kube-openapi/pkg/validation, Kubernetes 1.33): a version's openAPIV3Schema is
//! checked and compiled once; custom resources are then defaulted, pruned and validated with
//! it, with kube's field paths and messages. Pure: no I/O.
//!
//! - `check`, `structural`: what kube refuses in a schema (unsupported OpenAPI, list types,
//!   not structural).
//! - `node`: the compiled tree; `pattern`, `formats`: strings; `cel`: x-kubernetes-validations.
//! - `default`, `prune`: defaulting and pruning.
//! - `validate`: kube-openapi's value validation; `list_type`, `objectmeta`: set/map lists
//!   and embedded resources.
//!
//! Order of use, as kube-apiserver: on decoding `prune` (its paths are the unknown fields
//! fieldValidation=Strict/Warn reports), then `apply_defaults`, then (after admission)
//! `validate`. The resource's own root metadata (name a DNS subdomain, labels, annotations)
//! is validated by the generic registry, as kube validates ObjectMeta apart from the schema;
//! what the schema says of metadata.name/generateName is validated here.

mod cel;
mod check;
mod default;
mod formats;
mod list_type;
mod node;
mod objectmeta;
mod path;
mod pattern;
mod prune;
mod structural;
mod validate;
mod values;

#[cfg(test)]
mod tests;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use serde_json::Value;

use crate::model::validation::{ErrorKind, ErrorList, FieldError};
use node::{CompileErrors, Node};

/// How a schema is compiled.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompileOptions {
    /// The version has the status subresource: the root may then only have properties,
    /// required, description and the like (kube's restriction).
    pub status_subresource: bool,
}

/// A compiled structural schema of one CRD version.
#[derive(Debug)]
pub struct Schema {
    root: Node,
}

impl Schema {
    /// Compile `props`; the field errors (at paths under `path`, e.g.
    /// "spec.versions[0].schema.openAPIV3Schema") when the schema is not structural or uses
    /// what kube forbids.
    pub fn compile(props: &JSONSchemaProps, path: &str) -> Result<Schema, ErrorList> {
        Self::compile_with(props, path, CompileOptions::default())
    }

    /// [`Schema::compile`] with options.
    pub fn compile_with(
        props: &JSONSchemaProps,
        path: &str,
        options: CompileOptions,
    ) -> Result<Schema, ErrorList> {
        let mut errors = ErrorList::new();
        check::root(props, path, options.status_subresource, &mut errors);
        let mut compiled = CompileErrors::default();
        let root = Node::compile(props, path, 0, false, &mut compiled);
        // Structural errors (kube sorts them), then defaults (only for structural schemas),
        // then the OpenAPI checks, then CEL (only when nothing else is wrong).
        let mut structural = compiled.structural;
        structural::check(props, path, &mut structural);
        check::sort(&mut structural);
        let structural_ok = structural.is_empty();
        errors.extend(structural);
        let mut openapi = ErrorList::new();
        check::openapi(props, path, &mut openapi);
        if structural_ok && openapi.is_empty() {
            default::check(&root, path, &mut errors);
        }
        errors.extend(openapi);
        if errors.is_empty() {
            errors.extend(compiled.cel);
            cel::check_old_self(&root, path, None, &mut errors, 0);
        }
        if errors.is_empty() {
            Ok(Schema { root })
        } else {
            Err(errors)
        }
    }

    /// Apply `default`s: absent properties get their defaults, also inside array items and
    /// additionalProperties maps (metadata is not touched: kube forbids defaults there).
    pub fn apply_defaults(&self, object: &mut Value) {
        default::apply(object, &self.root, 0);
    }

    /// Drop fields the schema does not specify (unless x-kubernetes-preserve-unknown-fields),
    /// keeping apiVersion/kind/metadata at the root and inside x-kubernetes-embedded-resource
    /// values, and nulls of non-nullable fields without a default; the dropped paths, sorted
    /// (`spec.foo`, `spec.items[0].bar`), for fieldValidation Strict/Warn.
    pub fn prune(&self, object: &mut Value) -> Vec<String> {
        prune::prune(object, &self.root)
    }

    /// Validate a (defaulted, pruned) object; `old` is the stored object on updates (for
    /// CEL transition rules with oldSelf, and for kube 1.33's ratcheting: errors in values an
    /// update did not change, correlated through properties and map-list keys, are dropped).
    pub fn validate(&self, object: &Value, old: Option<&Value>, errors: &mut ErrorList) {
        let mut errs = validate::validate_value(&self.root, object, None, old);
        objectmeta::validate(&self.root, object, &mut errs);
        // On updates, list types are only enforced if the old object satisfied them.
        let old_lists_ok = old.is_none_or(|old| {
            let mut old_errors = ErrorList::new();
            list_type::validate(&self.root, old, &mut old_errors);
            old_errors.is_empty()
        });
        if old_lists_ok {
            list_type::validate(&self.root, object, &mut errs);
        }
        let blocking = errs.iter().any(|e| {
            matches!(
                e.kind,
                ErrorKind::NotSupported(..)
                    | ErrorKind::Required
                    | ErrorKind::TooLong(_)
                    | ErrorKind::TooMany(..)
                    | ErrorKind::TypeInvalid(_)
            )
        });
        if blocking {
            if self.has_rules() {
                errs.push(FieldError::invalid(
                    "<nil>",
                    "null",
                    "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
                ));
            }
        } else if self.has_rules() {
            let root = &self.root;
            let evaluated = cel::on_cel_stack(|| {
                let mut budget = cel::Budget::new();
                cel::validate("", root, object, old, true, &mut budget, 0);
                budget.errors
            });
            match evaluated {
                Some(cel_errors) => errs.extend(cel_errors),
                None => errs.push(FieldError::invalid(
                    "<nil>",
                    "\"\"",
                    "internal error evaluating x-kubernetes-validations rules",
                )),
            }
        }
        errors.extend(errs);
    }

    fn has_rules(&self) -> bool {
        fn any(n: &Node, depth: usize) -> bool {
            depth <= node::MAX_SCHEMA_DEPTH
                && (!n.rules.is_empty()
                    || n.properties.values().any(|p| any(p, depth + 1))
                    || n.items.as_deref().is_some_and(|i| any(i, depth + 1))
                    || matches!(&n.additional, Some(node::Additional::Schema(a)) if any(a, depth + 1)))
        }
        any(&self.root, 0)
    }
}
