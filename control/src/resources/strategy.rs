//! Per-kind rules applied to every write, implemented once over k8s-openapi types.
//!
//! Decoding a request body into the typed struct and encoding it back normalizes the object
//! (dropping fields the type does not have) and tells which fields were unknown — that is
//! what `fieldValidation=Strict` reports — and what is malformed.

use std::marker::PhantomData;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::model::validation::{ErrorList, FieldError};

/// An exclusive resource an object holds (a cluster IP, a node port): a store claim, and
/// the error a write gets when another object holds it.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Claim name (`serviceips/10.96.0.5`).
    pub name: String,
    /// What to tell a writer who asked for it explicitly while it is held.
    pub error: FieldError,
}

/// A kind's defaulting and validation on its typed form.
pub trait Kind:
    Serialize + DeserializeOwned + schemars::JsonSchema + Send + Sync + 'static
{
    /// Fill in defaults (kube-apiserver's defaulting functions and defaulting admission).
    fn default_fields(&mut self) {}
    /// Update-time preparation before validation (kube's PrepareForUpdate): keep or drop
    /// fields relative to the stored object.
    fn carry_over(&mut self, _old: &Self) {}
    /// Kind-specific validation; `old` is the stored object on updates.
    fn validate(&self, _old: Option<&Self>, _errors: &mut ErrorList) {}
    /// Whether objects of the kind hold claims (then [`Kind::claims`] and
    /// [`Kind::allocate`] are consulted on every write).
    const HOLDS_CLAIMS: bool = false;
    /// The claims the object holds.
    fn claims(&self) -> Vec<Claim> {
        Vec::new()
    }
    /// Allocate from shared pools what the object needs and lacks, avoiding claims `held`
    /// reports; returns the claims chosen here.
    fn allocate(&mut self, _held: &dyn Fn(&str) -> bool, _errors: &mut ErrorList) -> Vec<String> {
        Vec::new()
    }
    /// Kind-specific finalization that holds a deletion back (namespaces: `spec.finalizers`,
    /// processed by the namespace controller). Marks the object and returns true if so.
    fn hold_deletion(&mut self) -> bool {
        false
    }
}

/// The outcome of preparing a written object.
#[derive(Debug)]
pub struct Prepared {
    /// The normalized, defaulted object.
    pub object: Value,
    /// Paths of fields the type does not know (`spec.foo`).
    pub unknown_fields: Vec<String>,
    /// Validation errors.
    pub errors: ErrorList,
}

/// Object-safe rules of one resource.
pub trait Strategy: Send + Sync {
    /// Decode, default and validate `object` (`old`: the stored object on updates).
    /// Err(message) if the body cannot be decoded as the kind at all.
    fn prepare(&self, object: &Value, old: Option<&Value>) -> Result<Prepared, String>;

    /// Kind-specific deletion hold: mark `object` and return true if its deletion must wait.
    fn hold_deletion(&self, object: &mut Value) -> bool;

    /// The claims `object` holds (none for most kinds).
    fn claims(&self, object: &Value) -> Vec<Claim>;

    /// Allocate what `object` needs from shared pools (see [`Kind::allocate`]); Ok(claims
    /// chosen here) or the allocation errors.
    fn allocate(
        &self,
        object: &mut Value,
        held: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, ErrorList>;

    /// Add the kind's OpenAPI schema (and every schema it references) to `generator`;
    /// returns the kind's schema name (`io.k8s.api.core.v1.Pod`).
    fn add_schema(&self, generator: &mut schemars::SchemaGenerator) -> String;

    /// Table columns beyond NAME (a CRD version's additionalPrinterColumns); `None`: the
    /// table module's built-in columns for the kind.
    fn printer_columns(&self) -> Option<Vec<PrinterColumn>> {
        None
    }

    /// Where replicas and the selector live, for kinds whose `scale` subresource is
    /// described by paths (custom resources); `None`: the built-in typed scale.
    fn scale_paths(&self) -> Option<ScalePaths> {
        None
    }

    /// Whether strategic merge patches apply (built-in kinds); custom resources answer
    /// 415 to them, as kube does.
    fn strategic_merge(&self) -> bool {
        true
    }

    /// How objects convert between the versions of the resource (custom resources of a
    /// CRD); `None`: one version, stored as served.
    fn conversion(&self) -> Option<std::sync::Arc<crate::crd::conversion::Conversion>> {
        None
    }

    /// The `Warning` every request to this version earns (a deprecated CRD version).
    fn deprecation_warning(&self) -> Option<String> {
        None
    }
}

/// One table column of a custom resource (a CRD's additionalPrinterColumns entry).
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    /// Header.
    pub name: String,
    /// OpenAPI type (`string`, `integer`, `number`, `boolean`, `date`).
    pub type_: String,
    /// OpenAPI format.
    pub format: String,
    /// Description.
    pub description: String,
    /// Priority: 0 shows by default, more only with `-o wide`.
    pub priority: i32,
    /// The simple JSONPath the value is read at (`.spec.replicas`).
    pub json_path: String,
}

/// The paths of a custom resource's scale subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// `.spec.replicas`.
    pub spec_replicas: String,
    /// `.status.replicas`.
    pub status_replicas: String,
    /// `.status.selector`, if any.
    pub label_selector: Option<String>,
}

/// [`Strategy`] for a k8s-openapi type implementing [`Kind`].
pub struct Typed<K>(PhantomData<fn() -> K>);

impl<K> Typed<K> {
    /// The strategy (a zero-sized value usable in statics).
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<K> Default for Typed<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Kind> Strategy for Typed<K> {
    fn prepare(&self, object: &Value, old: Option<&Value>) -> Result<Prepared, String> {
        let mut typed: K = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
        let round_trip = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
        let mut unknown_fields = Vec::new();
        unknown(object, &round_trip, "", &mut unknown_fields);
        unknown_fields.sort();
        typed.default_fields();
        let old_typed: Option<K> = old.and_then(|o| serde_json::from_value(o.clone()).ok());
        if let Some(old) = &old_typed {
            typed.carry_over(old);
        }
        let mut errors = ErrorList::new();
        typed.validate(old_typed.as_ref(), &mut errors);
        let object = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
        Ok(Prepared {
            object,
            unknown_fields,
            errors,
        })
    }

    fn claims(&self, object: &Value) -> Vec<Claim> {
        if !K::HOLDS_CLAIMS {
            return Vec::new();
        }
        serde_json::from_value::<K>(object.clone())
            .map(|typed| typed.claims())
            .unwrap_or_default()
    }

    fn allocate(
        &self,
        object: &mut Value,
        held: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, ErrorList> {
        if !K::HOLDS_CLAIMS {
            return Ok(Vec::new());
        }
        let mut typed: K = serde_json::from_value(object.clone())
            .map_err(|e| vec![FieldError::invalid("spec", "", e.to_string())])?;
        let mut errors = ErrorList::new();
        let chosen = typed.allocate(held, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        *object = serde_json::to_value(&typed)
            .map_err(|e| vec![FieldError::invalid("spec", "", e.to_string())])?;
        Ok(chosen)
    }

    fn add_schema(&self, generator: &mut schemars::SchemaGenerator) -> String {
        generator.subschema_for::<K>();
        K::schema_name().into_owned()
    }

    fn hold_deletion(&self, object: &mut Value) -> bool {
        let Ok(mut typed) = serde_json::from_value::<K>(object.clone()) else {
            return false;
        };
        if !typed.hold_deletion() {
            return false;
        }
        match serde_json::to_value(&typed) {
            Ok(marked) => {
                *object = marked;
                true
            }
            Err(_) => false,
        }
    }
}

/// Collect paths present in `input` (with a non-null value) but absent from `output`.
fn unknown(input: &Value, output: &Value, path: &str, found: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(inp), Value::Object(out)) => {
            for (key, value) in inp {
                if value.is_null() {
                    continue;
                }
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match out.get(key) {
                    Some(next) => unknown(value, next, &child, found),
                    None => found.push(child),
                }
            }
        }
        (Value::Array(inp), Value::Array(out)) => {
            for (i, (a, b)) in inp.iter().zip(out).enumerate() {
                unknown(a, b, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    use super::*;

    #[test]
    fn reports_unknown_fields_with_paths() {
        let strategy = Typed::<ConfigMap>::new();
        let body = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "bogus": 1, "labels": {"a": "b"}},
            "data": {"k": "v"}, "extra": {"x": 1}, "nothing": null
        });
        let prepared = strategy.prepare(&body, None).expect("decodes");
        assert_eq!(
            prepared.unknown_fields,
            vec!["extra".to_owned(), "metadata.bogus".to_owned()]
        );
        assert!(prepared.object.get("extra").is_none());
        assert_eq!(prepared.object["data"]["k"], "v");
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let strategy = Typed::<ConfigMap>::new();
        let err = strategy
            .prepare(&json!({"metadata": {"name": 5}}), None)
            .unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
    }
}
