//! The engine end to end: CRD schemas and custom resources in JSON, kube's field paths and
//! messages out. The helpers are here, the tests in a file per idea.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use serde_json::{Value, json};

use super::{CompileOptions, Schema};
use crate::model::validation::ErrorList;

pub(super) const AT: &str = "spec.versions[0].schema.openAPIV3Schema";

pub(super) fn props(schema: Value) -> JSONSchemaProps {
    serde_json::from_value(schema).expect("schema JSON")
}

pub(super) fn compile(schema: Value) -> Schema {
    match Schema::compile(&props(schema), AT) {
        Ok(s) => s,
        Err(errors) => panic!("compile errors: {:#?}", strings(&errors)),
    }
}

pub(super) fn compile_errors(schema: Value) -> Vec<String> {
    match Schema::compile(&props(schema), AT) {
        Ok(_) => Vec::new(),
        Err(errors) => strings(&errors),
    }
}

pub(super) fn strings(errors: &ErrorList) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

/// A resource root with `spec` as given.
pub(super) fn with_spec(spec: Value) -> Value {
    json!({"type": "object", "properties": {"spec": spec}})
}

pub(super) fn object(spec: Value) -> Value {
    json!({"apiVersion": "x.io/v1", "kind": "Thing", "metadata": {"name": "a"}, "spec": spec})
}

pub(super) fn errors_of(schema: &Schema, obj: &Value) -> Vec<String> {
    let mut errors = ErrorList::new();
    schema.validate(obj, None, &mut errors);
    strings(&errors)
}

/// Validate `spec` with `spec_schema`: the errors, in any order (kube's order follows Go's
/// map iteration, which is random).
pub(super) fn check(spec_schema: Value, spec: Value, want: &[&str]) {
    let schema = compile(with_spec(spec_schema));
    assert_same(errors_of(&schema, &object(spec)), want);
}

pub(super) fn assert_same(mut got: Vec<String>, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

mod cel;
mod compile;
mod prune_default;
mod robustness;
mod validation;
