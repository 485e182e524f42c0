//! core/v1 ResourceQuota and LimitRange: defaults and validation as kube-apiserver's
//! (`ValidateResourceQuota`, `ValidateLimitRange`, `SetDefaults_LimitRangeItem`). What they
//! do to other objects lives in admission (`LimitRanger`, `ResourceQuota`) and in the quota
//! controller.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{LimitRange, LimitRangeItem, ResourceQuota, ResourceQuotaSpec},
    apimachinery::pkg::api::resource::Quantity as ApiQuantity,
};
use skiff_quantity::Quantity;

use crate::{
    model::{
        quota::SCOPES,
        validation::{self, ErrorList, FieldError},
    },
    resources::strategy::Kind,
};

/// LimitRange item types.
const LIMIT_TYPES: &[&str] = &["Pod", "Container", "PersistentVolumeClaim"];
/// Scope selector operators.
const OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];
/// Quota resources counted in whole objects (must be integers).
const INTEGER_RESOURCES: &[&str] = &[
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];
/// The standard quota resource names (besides `requests.*`, `limits.*`, `count/*`,
/// `hugepages-*` and qualified extended names).
const STANDARD_QUOTA: &[&str] = &["cpu", "memory", "ephemeral-storage", "storage"];
/// What pod-only scopes may limit, besides pod counts.
const POD_COMPUTE: &[&str] = &[
    "cpu",
    "memory",
    "limits.cpu",
    "limits.memory",
    "requests.cpu",
    "requests.memory",
];

/// kube's ValidateResourceQuotaResourceName, shortened: a qualified name that is standard
/// unless it is namespaced by a domain.
fn quota_resource_name(name: &str, field: &str, errors: &mut ErrorList) {
    if let Some(why) = validation::qualified_name(name.trim_start_matches("count/"))
        && !name.starts_with("count/")
    {
        errors.push(FieldError::invalid(field, name, why));
        return;
    }
    let standard = INTEGER_RESOURCES.contains(&name)
        || STANDARD_QUOTA.contains(&name)
        || name.starts_with("requests.")
        || name.starts_with("limits.")
        || name.starts_with("count/")
        || name.starts_with("hugepages-")
        || name.contains('/');
    if !standard {
        errors.push(FieldError::invalid(
            field,
            name,
            "must be a standard resource for quota",
        ));
    }
}

/// A non-negative quantity at `field`; None if it is not one.
fn quantity(value: &ApiQuantity, field: &str, errors: &mut ErrorList) -> Option<Quantity> {
    match Quantity::parse(&value.0) {
        Ok(q) if q.is_negative() => {
            errors.push(FieldError::invalid(
                field,
                &q,
                "must be greater than or equal to 0",
            ));
            None
        }
        Ok(q) => Some(q),
        Err(e) => {
            errors.push(FieldError::invalid(field, &value.0, e.to_string()));
            None
        }
    }
}

/// True if `scope` may limit `resource` (kube's IsResourceQuotaScopeValidForResource).
fn scope_allows(scope: &str, resource: &str) -> bool {
    let pod_count = matches!(resource, "pods" | "count/pods");
    match scope {
        "BestEffort" | "CrossNamespacePodAffinity" => pod_count,
        "Terminating" | "NotTerminating" | "NotBestEffort" | "PriorityClass" => {
            pod_count || POD_COMPUTE.contains(&resource)
        }
        _ => true,
    }
}

fn validate_quota_spec(spec: &ResourceQuotaSpec, errors: &mut ErrorList) {
    let scopes = spec.scopes.as_deref().unwrap_or_default();
    let expressions = spec
        .scope_selector
        .as_ref()
        .and_then(|s| s.match_expressions.as_deref())
        .unwrap_or_default();
    let mut named: Vec<&str> = scopes.iter().map(String::as_str).collect();
    named.extend(expressions.iter().map(|e| e.scope_name.as_str()));
    for (name, value) in spec.hard.iter().flatten() {
        let at = format!("spec.hard[{name}]");
        quota_resource_name(name, &at, errors);
        if let Some(q) = quantity(value, &at, errors)
            && (INTEGER_RESOURCES.contains(&name.as_str()) || name.starts_with("count/"))
            && !q.is_integer()
        {
            errors.push(FieldError::invalid(&at, &q, "must be an integer"));
        }
        for scope in &named {
            if SCOPES.contains(scope) && !scope_allows(scope, name) {
                errors.push(FieldError::invalid(
                    &at,
                    name,
                    "unsupported scope applied to resource",
                ));
            }
        }
    }
    for (i, scope) in scopes.iter().enumerate() {
        if !SCOPES.contains(&scope.as_str()) {
            errors.push(FieldError::not_supported(
                format!("spec.scopes[{i}]"),
                scope,
                SCOPES,
            ));
        }
    }
    for (i, expression) in expressions.iter().enumerate() {
        let at = format!("spec.scopeSelector.matchExpressions[{i}]");
        let scope = expression.scope_name.as_str();
        if !SCOPES.contains(&scope) {
            errors.push(FieldError::not_supported(
                format!("{at}.scopeName"),
                scope,
                SCOPES,
            ));
        }
        let operator = expression.operator.as_str();
        let values = expression.values.as_deref().unwrap_or_default();
        if !OPERATORS.contains(&operator) {
            errors.push(FieldError::not_supported(
                format!("{at}.operator"),
                operator,
                OPERATORS,
            ));
        } else if scope != "PriorityClass" && SCOPES.contains(&scope) && operator != "Exists" {
            errors.push(FieldError::invalid(
                format!("{at}.operator"),
                operator,
                "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, \
                 ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, \
                 ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
            ));
        } else if matches!(operator, "In" | "NotIn") && values.is_empty() {
            errors.push(FieldError::required(
                format!("{at}.values"),
                "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
            ));
        } else if matches!(operator, "Exists" | "DoesNotExist") && !values.is_empty() {
            errors.push(FieldError::invalid(
                format!("{at}.values"),
                values.join(","),
                "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
            ));
        }
    }
    let has = |s: &str| named.contains(&s);
    if (has("Terminating") && has("NotTerminating")) || (has("BestEffort") && has("NotBestEffort"))
    {
        errors.push(FieldError::invalid(
            "spec.scopes",
            named.join(","),
            "conflicting scopes",
        ));
    }
}

impl Kind for ResourceQuota {
    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        if let Some(spec) = &self.spec {
            validate_quota_spec(spec, errors);
        }
        if let Some(status) = &self.status {
            for (key, list) in [("hard", &status.hard), ("used", &status.used)] {
                for (name, value) in list.iter().flatten() {
                    let at = format!("status.{key}[{name}]");
                    quota_resource_name(name, &at, errors);
                    quantity(value, &at, errors);
                }
            }
        }
    }
}

/// kube's SetDefaults_LimitRangeItem for Container items: the default limit is the max, the
/// default request the default limit, else the min.
fn default_item(item: &mut LimitRangeItem) {
    if item.type_ != "Container" {
        return;
    }
    let default = item.default.get_or_insert_with(BTreeMap::new);
    for (name, value) in item.max.iter().flatten() {
        default.entry(name.clone()).or_insert_with(|| value.clone());
    }
    let request = item.default_request.get_or_insert_with(BTreeMap::new);
    for (name, value) in default.iter() {
        request.entry(name.clone()).or_insert_with(|| value.clone());
    }
    for (name, value) in item.min.iter().flatten() {
        request.entry(name.clone()).or_insert_with(|| value.clone());
    }
}

/// A LimitRange item's parsed lists.
type Parsed = BTreeMap<String, Quantity>;

fn parsed(
    list: Option<&BTreeMap<String, ApiQuantity>>,
    field: &str,
    errors: &mut ErrorList,
) -> Parsed {
    list.into_iter()
        .flatten()
        .filter_map(|(name, value)| {
            let at = format!("{field}[{name}]");
            if let Some(why) = validation::qualified_name(name) {
                errors.push(FieldError::invalid(&at, name, why));
            }
            Some((name.clone(), quantity(value, &at, errors)?))
        })
        .collect()
}

fn validate_item(item: &LimitRangeItem, at: &str, errors: &mut ErrorList) {
    if item.type_.is_empty() {
        errors.push(FieldError::required(format!("{at}.type"), ""));
    } else if !LIMIT_TYPES.contains(&item.type_.as_str()) {
        errors.push(FieldError::not_supported(
            format!("{at}.type"),
            &item.type_,
            LIMIT_TYPES,
        ));
    }
    let max = parsed(item.max.as_ref(), &format!("{at}.max"), errors);
    let min = parsed(item.min.as_ref(), &format!("{at}.min"), errors);
    let default = parsed(item.default.as_ref(), &format!("{at}.default"), errors);
    let request = parsed(
        item.default_request.as_ref(),
        &format!("{at}.defaultRequest"),
        errors,
    );
    let ratio = parsed(
        item.max_limit_request_ratio.as_ref(),
        &format!("{at}.maxLimitRequestRatio"),
        errors,
    );
    if item.type_ == "Pod" {
        if !default.is_empty() {
            errors.push(FieldError::forbidden(
                format!("{at}.default"),
                "may not be specified when `type` is 'Pod'",
            ));
        }
        if !request.is_empty() {
            errors.push(FieldError::forbidden(
                format!("{at}.defaultRequest"),
                "may not be specified when `type` is 'Pod'",
            ));
        }
    }
    if item.type_ == "PersistentVolumeClaim"
        && !min.contains_key("storage")
        && !max.contains_key("storage")
    {
        errors.push(FieldError::required(
            format!("{at}.limits"),
            "either minimum or maximum storage value is required, but neither was provided",
        ));
    }
    let mut names: Vec<&String> = max
        .keys()
        .chain(min.keys())
        .chain(default.keys())
        .chain(request.keys())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let (lo, hi, def, req) = (
            min.get(name),
            max.get(name),
            default.get(name),
            request.get(name),
        );
        if let (Some(lo), Some(hi)) = (lo, hi)
            && lo > hi
        {
            errors.push(FieldError::invalid(
                format!("{at}.min[{name}]"),
                lo,
                format!("min value {lo} is greater than max value {hi}"),
            ));
        }
        if let Some(req) = req {
            let field = format!("{at}.defaultRequest[{name}]");
            if let Some(lo) = lo
                && lo > req
            {
                errors.push(FieldError::invalid(
                    &field,
                    req,
                    format!("min value {lo} is greater than default request value {req}"),
                ));
            }
            if let Some(hi) = hi
                && req > hi
            {
                errors.push(FieldError::invalid(
                    &field,
                    req,
                    format!("default request value {req} is greater than max value {hi}"),
                ));
            }
            if let Some(def) = def
                && req > def
            {
                errors.push(FieldError::invalid(
                    &field,
                    req,
                    format!(
                        "default request value {req} is greater than default limit value {def}"
                    ),
                ));
            }
        }
        if let Some(def) = def {
            let field = format!("{at}.default[{name}]");
            if let Some(lo) = lo
                && lo > def
            {
                errors.push(FieldError::invalid(
                    &field,
                    def,
                    format!("min value {lo} is greater than default value {def}"),
                ));
            }
            if let Some(hi) = hi
                && def > hi
            {
                errors.push(FieldError::invalid(
                    &field,
                    def,
                    format!("default value {def} is greater than max value {hi}"),
                ));
            }
        }
    }
    for (name, value) in &ratio {
        let field = format!("{at}.maxLimitRequestRatio[{name}]");
        if *value < Quantity::from_i64(1) {
            errors.push(FieldError::invalid(
                &field,
                value,
                format!("ratio {value} is less than 1"),
            ));
        }
        if let (Some(lo), Some(hi)) = (min.get(name), max.get(name))
            && !lo.is_zero()
        {
            let spread = hi.milli_value() as f64 / lo.milli_value() as f64;
            if value.milli_value() as f64 / 1000.0 > spread {
                errors.push(FieldError::invalid(
                    &field,
                    value,
                    format!("ratio {value} is greater than max/min = {spread:.6}"),
                ));
            }
        }
    }
}

impl Kind for LimitRange {
    fn default_fields(&mut self) {
        for item in self.spec.iter_mut().flat_map(|s| s.limits.iter_mut()) {
            default_item(item);
        }
    }

    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        for (i, item) in self.spec.iter().flat_map(|s| s.limits.iter()).enumerate() {
            validate_item(item, &format!("spec.limits[{i}]"), errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn quota_errors(spec: Value) -> Vec<String> {
        let quota: ResourceQuota =
            serde_json::from_value(json!({"metadata": {"name": "q"}, "spec": spec}))
                .expect("a ResourceQuota");
        let mut errors = ErrorList::new();
        quota.validate(None, &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    fn limit_range(limits: Value) -> LimitRange {
        let mut range: LimitRange =
            serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"limits": limits}}))
                .expect("a LimitRange");
        range.default_fields();
        range
    }

    fn limit_errors(limits: Value) -> Vec<String> {
        let mut errors = ErrorList::new();
        limit_range(limits).validate(None, &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn quotas_as_kube_validates_them() {
        assert!(
            quota_errors(json!({"hard": {"pods": "2", "requests.cpu": "500m",
            "count/deployments.apps": "3", "services.nodeports": "0"}}))
            .is_empty()
        );
        let errors = quota_errors(json!({"hard": {"requests.cpu": "-1"}}));
        assert_eq!(
            errors,
            ["spec.hard[requests.cpu]: Invalid value: -1: must be greater than or equal to 0"]
        );
        assert_eq!(
            quota_errors(json!({"hard": {"pods": "1500m"}})),
            ["spec.hard[pods]: Invalid value: \"1500m\": must be an integer"]
        );
        assert_eq!(quota_errors(json!({"hard": {"bogus": "1"}})).len(), 1);
        assert!(quota_errors(json!({"hard": {"pods": "1"}, "scopes": ["BestEffort"]})).is_empty());
        assert_eq!(
            quota_errors(json!({"hard": {"requests.cpu": "1"}, "scopes": ["BestEffort"]})),
            [
                "spec.hard[requests.cpu]: Invalid value: \"requests.cpu\": unsupported scope applied to resource"
            ]
        );
        assert_eq!(
            quota_errors(
                json!({"hard": {"pods": "1"}, "scopes": ["Terminating", "NotTerminating"]})
            )
            .len(),
            1
        );
        assert_eq!(quota_errors(json!({"scopes": ["Sometimes"]})).len(), 1);
        assert!(
            quota_errors(
                json!({"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}})
            )
            .is_empty()
        );
        assert_eq!(
            quota_errors(json!({"scopeSelector": {"matchExpressions": [
                {"scopeName": "PriorityClass", "operator": "In"},
                {"scopeName": "BestEffort", "operator": "DoesNotExist"}]}}))
            .len(),
            2
        );
    }

    #[test]
    fn container_items_are_defaulted_as_kube_does() {
        let range = limit_range(
            json!([{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]),
        );
        let item = &range.spec.as_ref().expect("spec").limits[0];
        let text = |l: &Option<BTreeMap<String, ApiQuantity>>, k: &str| {
            l.as_ref().and_then(|l| l.get(k)).map(|q| q.0.clone())
        };
        assert_eq!(text(&item.default, "cpu").as_deref(), Some("2"));
        assert_eq!(text(&item.default_request, "cpu").as_deref(), Some("2"));
        assert_eq!(
            text(&item.default_request, "memory").as_deref(),
            Some("1Mi")
        );
    }

    #[test]
    fn limit_ranges_as_kube_validates_them() {
        assert!(limit_errors(json!([{"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1"},
            "defaultRequest": {"cpu": "200m"}, "default": {"cpu": "500m"}, "maxLimitRequestRatio": {"cpu": "4"}}]))
        .is_empty());
        assert_eq!(
            limit_errors(json!([{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}])),
            [
                "spec.limits[0].min[cpu]: Invalid value: 2: min value 2 is greater than max value 1",
                "spec.limits[0].defaultRequest[cpu]: Invalid value: 1: min value 2 is greater than default request value 1",
                "spec.limits[0].default[cpu]: Invalid value: 1: min value 2 is greater than default value 1"
            ]
        );
        assert_eq!(
            limit_errors(
                json!([{"type": "Container", "defaultRequest": {"cpu": "2"}, "default": {"cpu": "1"}}])
            ),
            [
                "spec.limits[0].defaultRequest[cpu]: Invalid value: 2: default request value 2 is greater than default limit value 1"
            ]
        );
        assert_eq!(
            limit_errors(json!([{"type": "Container", "maxLimitRequestRatio": {"cpu": "500m"}}])),
            [
                "spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value: \"500m\": ratio 500m is less than 1"
            ]
        );
        assert_eq!(
            limit_errors(json!([{"type": "Pod", "default": {"cpu": "1"}}])).len(),
            1
        );
        assert_eq!(
            limit_errors(json!([{"type": "PersistentVolumeClaim"}])).len(),
            1
        );
        assert_eq!(limit_errors(json!([{"type": "Node"}])).len(), 1);
        // The max is also the defaulted limit and request: kube reports each.
        assert_eq!(
            limit_errors(json!([{"type": "Container", "max": {"cpu": "-1"}}])).len(),
            3
        );
    }
}
