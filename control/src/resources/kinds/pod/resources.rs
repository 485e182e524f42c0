//! Container resource requirements as kube-apiserver's ValidateResourceRequirements: each
//! value a quantity, not negative, whole for extended resources, and a request not above
//! its limit (equal to it for resources that cannot be overcommitted). Any quantity kube
//! accepts is accepted, however large (`cpu: 1e30`): readers saturate instead of
//! overflowing (see skiff_quantity).
//!
//! One deliberate difference: kube-apiserver refuses a malformed quantity while decoding
//! the body (400 BadRequest); here it is a 422 at the field (`…requests[cpu]`) with the same
//! message, since bodies decode quantities as text.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use skiff_quantity::Quantity;

use crate::model::validation::{self, ErrorList, FieldError};

/// kube's IsExtendedResourceName: a qualified name outside `kubernetes.io/`.
fn is_extended(name: &str) -> bool {
    name.contains('/')
        && !name.contains("kubernetes.io/")
        && !name.starts_with("requests.")
        && validation::qualified_name(&format!("requests.{name}")).is_none()
}

/// kube's IsOvercommitAllowed: native resources other than huge pages.
fn overcommit_allowed(name: &str) -> bool {
    !is_extended(name) && !name.starts_with("hugepages-")
}

/// Parse and check one quantity at `field`; None if it is unusable.
fn quantity(
    name: &str,
    value: &ApiQuantity,
    field: &str,
    errors: &mut ErrorList,
) -> Option<Quantity> {
    let parsed = match Quantity::parse(&value.0) {
        Ok(parsed) => parsed,
        Err(e) => {
            errors.push(FieldError::invalid(field, &value.0, e.to_string()));
            return None;
        }
    };
    if parsed.is_negative() {
        errors.push(FieldError::invalid(
            field,
            &parsed,
            "must be greater than or equal to 0",
        ));
    } else if is_extended(name) && parsed.milli_value() % 1000 != 0 {
        errors.push(FieldError::invalid(field, &parsed, "must be an integer"));
    }
    Some(parsed)
}

/// Validate requests and limits under `field` (`spec.containers[0].resources`).
pub(crate) fn requirements(
    requests: Option<&BTreeMap<String, ApiQuantity>>,
    limits: Option<&BTreeMap<String, ApiQuantity>>,
    field: &str,
    errors: &mut ErrorList,
) {
    let limits_field = format!("{field}.limits");
    let requests_field = format!("{field}.requests");
    let mut parsed_limits = BTreeMap::new();
    for (name, value) in limits.into_iter().flatten() {
        let at = format!("{limits_field}[{name}]");
        if let Some(limit) = quantity(name, value, &at, errors) {
            parsed_limits.insert(name.as_str(), limit);
        }
    }
    for (name, value) in requests.into_iter().flatten() {
        let at = format!("{requests_field}[{name}]");
        let Some(request) = quantity(name, value, &at, errors) else {
            continue;
        };
        match parsed_limits.get(name.as_str()) {
            Some(limit) if request != *limit && !overcommit_allowed(name) => {
                errors.push(FieldError::invalid(
                    &requests_field,
                    &request,
                    format!("must be equal to {name} limit of {limit}"),
                ));
            }
            Some(limit) if request > *limit => {
                errors.push(FieldError::invalid(
                    &requests_field,
                    &request,
                    format!("must be less than or equal to {name} limit of {limit}"),
                ));
            }
            None if !overcommit_allowed(name) && limits.is_none_or(|l| !l.contains_key(name)) => {
                errors.push(FieldError::required(
                    &limits_field,
                    "Limit must be set for non overcommitable resources",
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(resources: serde_json::Value) -> Vec<String> {
        let list = |key: &str| -> Option<BTreeMap<String, ApiQuantity>> {
            serde_json::from_value(resources.get(key)?.clone()).ok()
        };
        let mut errors = ErrorList::new();
        requirements(
            list("requests").as_ref(),
            list("limits").as_ref(),
            "spec.containers[0].resources",
            &mut errors,
        );
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn what_kube_accepts_passes_however_large() {
        assert!(check(json!({"requests": {"cpu": "1e30", "memory": "8Ei"}})).is_empty());
        assert!(check(json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}})).is_empty());
        assert!(
            check(
                json!({"requests": {"example.com/gpu": "2"}, "limits": {"example.com/gpu": "2"}})
            )
            .is_empty()
        );
    }

    #[test]
    fn refusals_name_the_field_as_kube_does() {
        assert_eq!(
            check(json!({"requests": {"cpu": "-1"}})),
            [
                "spec.containers[0].resources.requests[cpu]: Invalid value: -1: must be greater than or equal to 0"
            ]
        );
        assert_eq!(
            check(json!({"limits": {"memory": "lots"}})),
            [
                "spec.containers[0].resources.limits[memory]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            ]
        );
        assert_eq!(
            check(json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}})),
            [
                "spec.containers[0].resources.requests: Invalid value: 2: must be less than or equal to cpu limit of 1500m"
            ]
        );
        assert_eq!(
            check(
                json!({"requests": {"example.com/gpu": "500m"}, "limits": {"example.com/gpu": "1"}})
            ),
            [
                "spec.containers[0].resources.requests[example.com/gpu]: Invalid value: \"500m\": must be an integer",
                "spec.containers[0].resources.requests: Invalid value: \"500m\": must be equal to example.com/gpu limit of 1"
            ]
        );
        assert_eq!(
            check(json!({"requests": {"hugepages-2Mi": "1Gi"}})),
            [
                "spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources"
            ]
        );
    }
}
