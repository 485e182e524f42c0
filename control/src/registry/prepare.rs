//! Defaulting and validation of a written object: the kind's strategy (decode into the
//! typed form, default, validate), the metadata every object has, and `fieldValidation`'s
//! treatment of unknown fields.

use serde_json::Value;

use super::{FieldValidation, RegistryError};
use crate::{
    model::{ApiError, meta, validation::ErrorList},
    resources::ResourceInfo,
};

/// A defaulted, valid object and the warnings it earned.
pub(super) struct Checked {
    /// The object as it will be stored.
    pub object: Value,
    /// Unknown-field warnings (fieldValidation=Warn).
    pub warnings: Vec<String>,
}

/// Run the kind's strategy and the metadata rules on `object` (`old` on updates).
pub(super) fn check(
    resource: &ResourceInfo,
    directive: FieldValidation,
    object: &Value,
    old: Option<&Value>,
) -> Result<Checked, RegistryError> {
    let prepared = resource.strategy.prepare(object, old).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            resource.kind, resource.version, resource.kind
        ))
    })?;
    let unknown: Vec<String> = prepared
        .unknown_fields
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if directive == FieldValidation::Strict && !unknown.is_empty() {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            unknown.join(", ")
        ))
        .into());
    }
    let mut errors: ErrorList = prepared.errors;
    super::metadata::validate(resource, &prepared.object, &mut errors);
    if !errors.is_empty() {
        errors.sort_by(|a, b| a.field.cmp(&b.field));
        return Err(
            ApiError::invalid(resource.group, resource.kind, meta::name(object), &errors).into(),
        );
    }
    let warnings = if directive == FieldValidation::Warn {
        unknown
    } else {
        Vec::new()
    };
    Ok(Checked {
        object: prepared.object,
        warnings,
    })
}
