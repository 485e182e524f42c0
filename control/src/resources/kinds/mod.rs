//! [`Kind`](super::strategy::Kind) implementations: the defaults kube-apiserver applies and
//! the validation it performs, kind by kind.

pub mod admissionregistration;
pub mod apiextensions;
pub mod apiregistration;
pub mod certificates;
mod cluster;
mod networking;
pub mod pod;
mod policy;
mod quota;
mod rbac;
mod reviews;
pub mod scheduling;
mod service;
pub mod service_alloc;
mod storage;
mod workloads;

use crate::model::validation::{ErrorList, FieldError};

/// `value` must be ≥ 0.
pub(crate) fn non_negative(value: Option<i32>, field: &str, errors: &mut ErrorList) {
    if let Some(v) = value
        && v < 0
    {
        errors.push(FieldError::invalid(
            field,
            v,
            "must be greater than or equal to 0",
        ));
    }
}

/// A port number in 1..=65535.
pub(crate) fn port_number(value: i32, field: &str, errors: &mut ErrorList) {
    if !(1..=65535).contains(&value) {
        errors.push(FieldError::invalid(
            field,
            value,
            "must be between 1 and 65535, inclusive",
        ));
    }
}

/// An IANA service name (port names): ≤ 15 chars, lowercase alphanumerics and '-', at least
/// one letter, no leading/trailing/double '-'.
pub(crate) fn port_name(name: &str, field: &str, errors: &mut ErrorList) {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !ok {
        errors.push(FieldError::invalid(
            field,
            name,
            "must contain only lowercase alphanumeric characters or '-', contain at least one letter, not start or \
             end with '-', not contain '--', and be at most 15 characters",
        ));
    }
}

/// A `LabelSelector` at `field`, as kube's ValidateLabelSelector: label keys and values
/// well formed; `In`/`NotIn` need values, `Exists`/`DoesNotExist` may not have any.
pub(crate) fn label_selector(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    field: &str,
    errors: &mut ErrorList,
) {
    if let Some(labels) = &selector.match_labels {
        crate::model::validation::labels(labels, &format!("{field}.matchLabels"), errors);
    }
    for (i, expression) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        if let Some(why) = crate::model::validation::qualified_name(&expression.key) {
            errors.push(FieldError::invalid(
                format!("{at}.key"),
                &expression.key,
                why,
            ));
        }
        let values = expression.values.as_deref().unwrap_or_default();
        match expression.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errors.push(FieldError::required(
                format!("{at}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errors.push(FieldError::forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(FieldError::not_supported(
                format!("{at}.operator"),
                other,
                &["DoesNotExist", "Exists", "In", "NotIn"],
            )),
        }
    }
}

/// `field` may not change between `old` and `new` (kube's ValidateImmutableField).
pub(crate) fn immutable<T: PartialEq + serde::Serialize>(
    new: &T,
    old: &T,
    field: &str,
    errors: &mut ErrorList,
) {
    if new != old {
        let shown = serde_json::to_string(new).unwrap_or_default();
        errors.push(FieldError::invalid(field, shown, "field is immutable"));
    }
}
