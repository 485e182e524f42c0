//! [`Kind`](super::strategy::Kind) implementations: the defaults kube-apiserver applies and
//! the validation it performs, kind by kind.

mod cluster;
pub mod pod;
mod rbac;
mod reviews;
mod service;
pub mod service_alloc;
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
