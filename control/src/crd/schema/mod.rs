//! Placeholder of the structural schema engine (being written on branch `crd-schema`):
//! keeps every field and checks nothing. Replaced wholesale when that branch merges.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use serde_json::Value;

use crate::model::validation::ErrorList;

/// A compiled structural schema of one CRD version.
pub struct Schema;

impl Schema {
    /// Compile `props`.
    pub fn compile(_props: &JSONSchemaProps, _path: &str) -> Result<Schema, ErrorList> {
        Ok(Schema)
    }

    /// Apply defaults.
    pub fn apply_defaults(&self, _object: &mut Value) {}

    /// Drop unknown fields; the dropped paths.
    pub fn prune(&self, _object: &mut Value) -> Vec<String> {
        Vec::new()
    }

    /// Validate.
    pub fn validate(&self, _object: &Value, _old: Option<&Value>, _errors: &mut ErrorList) {}
}
