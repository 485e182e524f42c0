//! The rules a custom object is written under: its CRD version's structural schema
//! (pruning, defaulting, validation), printer columns and scale paths.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use super::{conversion::Conversion, schema::Schema};
use crate::{
    model::validation::ErrorList,
    resources::{Claim, Prepared, PrinterColumn, ScalePaths, Strategy},
};

/// One version of a custom resource, as its CRD describes it.
pub struct CustomStrategy {
    /// `stable.example.com`.
    pub group: String,
    /// `v1`.
    pub version: String,
    /// `CronTab`.
    pub kind: String,
    /// The compiled schema.
    pub schema: Schema,
    /// The schema as JSON, for OpenAPI documents.
    pub openapi: Value,
    /// additionalPrinterColumns.
    pub columns: Vec<PrinterColumn>,
    /// The scale subresource's paths, if it has one.
    pub scale: Option<ScalePaths>,
    /// How objects convert between the CRD's versions (shared by every version).
    pub conversion: Option<Arc<Conversion>>,
    /// The warning requests to a deprecated version earn.
    pub deprecation_warning: Option<String>,
}

impl CustomStrategy {
    /// The OpenAPI definition name kube gives the kind: the group reversed, the version,
    /// the kind (`com.example.stable.v1.CronTab`).
    pub fn definition_name(&self) -> String {
        let reversed: Vec<&str> = self.group.split('.').rev().collect();
        format!("{}.{}.{}", reversed.join("."), self.version, self.kind)
    }
}

impl Strategy for CustomStrategy {
    fn prepare(&self, object: &Value, old: Option<&Value>) -> Result<Prepared, String> {
        if !object.is_object() {
            return Err("the object must be a JSON object".to_owned());
        }
        let mut object = object.clone();
        let unknown_fields = self.schema.prune(&mut object);
        self.schema.apply_defaults(&mut object);
        let mut errors = ErrorList::new();
        self.schema.validate(&object, old, &mut errors);
        Ok(Prepared {
            object,
            unknown_fields,
            errors,
        })
    }

    fn hold_deletion(&self, _object: &mut Value) -> bool {
        false
    }

    fn claims(&self, _object: &Value) -> Vec<Claim> {
        Vec::new()
    }

    fn allocate(
        &self,
        _object: &mut Value,
        _held: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, ErrorList> {
        Ok(Vec::new())
    }

    fn add_schema(&self, generator: &mut schemars::SchemaGenerator) -> String {
        let name = self.definition_name();
        let mut schema = self.openapi.clone();
        // The published schema describes the object's envelope too, as kube's does, so
        // `kubectl explain` walks into metadata.
        let metadata = generator.subschema_for::<ObjectMeta>();
        if let Some(properties) = schema
            .as_object_mut()
            .map(|s| s.entry("properties").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
        {
            properties.insert("apiVersion".to_owned(), json!({"type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object."}));
            properties.insert("kind".to_owned(), json!({"type": "string",
                "description": "Kind is a string value representing the REST resource this object represents."}));
            properties.insert(
                "metadata".to_owned(),
                serde_json::to_value(metadata).unwrap_or_else(|_| json!({"type": "object"})),
            );
        }
        if let Some(fields) = schema.as_object_mut() {
            fields.insert(
                "x-kubernetes-group-version-kind".to_owned(),
                json!([{"group": self.group, "version": self.version, "kind": self.kind}]),
            );
        }
        generator.definitions_mut().insert(name.clone(), schema);
        name
    }

    fn printer_columns(&self) -> Option<Vec<PrinterColumn>> {
        Some(self.columns.clone())
    }

    fn scale_paths(&self) -> Option<ScalePaths> {
        self.scale.clone()
    }

    fn strategic_merge(&self) -> bool {
        false
    }

    fn conversion(&self) -> Option<Arc<Conversion>> {
        self.conversion.clone()
    }

    fn deprecation_warning(&self) -> Option<String> {
        self.deprecation_warning.clone()
    }
}
