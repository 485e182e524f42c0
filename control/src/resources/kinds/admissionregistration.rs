//! admissionregistration.k8s.io/v1: MutatingWebhookConfiguration and
//! ValidatingWebhookConfiguration, with kube's defaults (failurePolicy Fail, matchPolicy
//! Equivalent, empty selectors, timeoutSeconds 10, reinvocationPolicy Never, rules' scope
//! `*`, a service's port 443) and validation (kube's `ValidateValidatingWebhookConfiguration`
//! and its mutating twin).

use std::collections::BTreeSet;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::label_selector;
use crate::{
    model::validation::{self, ErrorList, FieldError},
    resources::strategy::Kind,
};

const FAILURE_POLICIES: &[&str] = &["Fail", "Ignore"];
const MATCH_POLICIES: &[&str] = &["Equivalent", "Exact"];
const SIDE_EFFECTS: &[&str] = &["None", "NoneOnDryRun"];
const REINVOCATION_POLICIES: &[&str] = &["IfNeeded", "Never"];
const OPERATIONS: &[&str] = &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
const SCOPES: &[&str] = &["*", "Cluster", "Namespaced"];
/// AdmissionReview versions the API server can send.
pub const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// The fields both webhook kinds share, borrowed for defaulting-free validation.
struct Common<'a> {
    name: &'a str,
    client_config: &'a WebhookClientConfig,
    rules: Option<&'a [RuleWithOperations]>,
    failure_policy: Option<&'a str>,
    match_policy: Option<&'a str>,
    namespace_selector: Option<&'a LabelSelector>,
    object_selector: Option<&'a LabelSelector>,
    side_effects: &'a str,
    timeout_seconds: Option<i32>,
    admission_review_versions: &'a [String],
}

impl<'a> From<&'a ValidatingWebhook> for Common<'a> {
    fn from(h: &'a ValidatingWebhook) -> Self {
        Self {
            name: &h.name,
            client_config: &h.client_config,
            rules: h.rules.as_deref(),
            failure_policy: h.failure_policy.as_deref(),
            match_policy: h.match_policy.as_deref(),
            namespace_selector: h.namespace_selector.as_ref(),
            object_selector: h.object_selector.as_ref(),
            side_effects: &h.side_effects,
            timeout_seconds: h.timeout_seconds,
            admission_review_versions: &h.admission_review_versions,
        }
    }
}

impl<'a> From<&'a MutatingWebhook> for Common<'a> {
    fn from(h: &'a MutatingWebhook) -> Self {
        Self {
            name: &h.name,
            client_config: &h.client_config,
            rules: h.rules.as_deref(),
            failure_policy: h.failure_policy.as_deref(),
            match_policy: h.match_policy.as_deref(),
            namespace_selector: h.namespace_selector.as_ref(),
            object_selector: h.object_selector.as_ref(),
            side_effects: &h.side_effects,
            timeout_seconds: h.timeout_seconds,
            admission_review_versions: &h.admission_review_versions,
        }
    }
}

/// kube's defaults for the fields both kinds share.
fn default_common(
    failure_policy: &mut Option<String>,
    match_policy: &mut Option<String>,
    namespace_selector: &mut Option<LabelSelector>,
    object_selector: &mut Option<LabelSelector>,
    timeout_seconds: &mut Option<i32>,
    rules: &mut Option<Vec<RuleWithOperations>>,
    client_config: &mut WebhookClientConfig,
) {
    failure_policy.get_or_insert_with(|| "Fail".to_owned());
    match_policy.get_or_insert_with(|| "Equivalent".to_owned());
    namespace_selector.get_or_insert_with(LabelSelector::default);
    object_selector.get_or_insert_with(LabelSelector::default);
    timeout_seconds.get_or_insert(10);
    for rule in rules.iter_mut().flatten() {
        rule.scope.get_or_insert_with(|| "*".to_owned());
    }
    if let Some(service) = &mut client_config.service {
        service.port.get_or_insert(443);
    }
}

impl Kind for ValidatingWebhookConfiguration {
    fn default_fields(&mut self) {
        for h in self.webhooks.iter_mut().flatten() {
            default_common(
                &mut h.failure_policy,
                &mut h.match_policy,
                &mut h.namespace_selector,
                &mut h.object_selector,
                &mut h.timeout_seconds,
                &mut h.rules,
                &mut h.client_config,
            );
        }
    }

    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        let hooks: Vec<Common<'_>> = self.webhooks.iter().flatten().map(Common::from).collect();
        validate_webhooks(&hooks, errors);
    }
}

impl Kind for MutatingWebhookConfiguration {
    fn default_fields(&mut self) {
        for h in self.webhooks.iter_mut().flatten() {
            default_common(
                &mut h.failure_policy,
                &mut h.match_policy,
                &mut h.namespace_selector,
                &mut h.object_selector,
                &mut h.timeout_seconds,
                &mut h.rules,
                &mut h.client_config,
            );
            h.reinvocation_policy
                .get_or_insert_with(|| "Never".to_owned());
        }
    }

    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        let hooks: Vec<Common<'_>> = self.webhooks.iter().flatten().map(Common::from).collect();
        validate_webhooks(&hooks, errors);
        for (i, h) in self.webhooks.iter().flatten().enumerate() {
            if let Some(policy) = &h.reinvocation_policy
                && !REINVOCATION_POLICIES.contains(&policy.as_str())
            {
                errors.push(FieldError::not_supported(
                    format!("webhooks[{i}].reinvocationPolicy"),
                    policy,
                    REINVOCATION_POLICIES,
                ));
            }
        }
    }
}

/// Every webhook of a configuration; names unique within it.
fn validate_webhooks(hooks: &[Common<'_>], errors: &mut ErrorList) {
    let mut names = BTreeSet::new();
    for (i, hook) in hooks.iter().enumerate() {
        let at = format!("webhooks[{i}]");
        validate_webhook(hook, &at, errors);
        if !hook.name.is_empty() && !names.insert(hook.name) {
            errors.push(FieldError::duplicate(format!("{at}.name"), hook.name));
        }
    }
}

fn validate_webhook(hook: &Common<'_>, at: &str, errors: &mut ErrorList) {
    // kube's IsFullyQualifiedName: a DNS subdomain of at least three segments.
    if hook.name.is_empty() {
        errors.push(FieldError::required(format!("{at}.name"), ""));
    } else if let Some(why) = validation::dns1123_subdomain(hook.name) {
        errors.push(FieldError::invalid(format!("{at}.name"), hook.name, why));
    } else if hook.name.split('.').count() < 3 {
        errors.push(FieldError::invalid(
            format!("{at}.name"),
            hook.name,
            "should be a domain with at least three segments separated by dots",
        ));
    }
    for (j, rule) in hook.rules.unwrap_or_default().iter().enumerate() {
        validate_rule(rule, &format!("{at}.rules[{j}]"), errors);
    }
    if let Some(policy) = hook.failure_policy
        && !FAILURE_POLICIES.contains(&policy)
    {
        errors.push(FieldError::not_supported(
            format!("{at}.failurePolicy"),
            policy,
            FAILURE_POLICIES,
        ));
    }
    if let Some(policy) = hook.match_policy
        && !MATCH_POLICIES.contains(&policy)
    {
        errors.push(FieldError::not_supported(
            format!("{at}.matchPolicy"),
            policy,
            MATCH_POLICIES,
        ));
    }
    if hook.side_effects.is_empty() {
        errors.push(FieldError::required(
            format!("{at}.sideEffects"),
            "must specify one of None, NoneOnDryRun",
        ));
    } else if !SIDE_EFFECTS.contains(&hook.side_effects) {
        errors.push(FieldError::not_supported(
            format!("{at}.sideEffects"),
            hook.side_effects,
            SIDE_EFFECTS,
        ));
    }
    if let Some(timeout) = hook.timeout_seconds
        && !(1..=30).contains(&timeout)
    {
        errors.push(FieldError::invalid(
            format!("{at}.timeoutSeconds"),
            timeout,
            "the timeout value must be between 1 and 30 seconds",
        ));
    }
    validate_review_versions(
        hook.admission_review_versions,
        &format!("{at}.admissionReviewVersions"),
        errors,
    );
    if let Some(selector) = hook.namespace_selector {
        label_selector(selector, &format!("{at}.namespaceSelector"), errors);
    }
    if let Some(selector) = hook.object_selector {
        label_selector(selector, &format!("{at}.objectSelector"), errors);
    }
    validate_client_config(hook.client_config, &format!("{at}.clientConfig"), errors);
}

fn validate_review_versions(versions: &[String], at: &str, errors: &mut ErrorList) {
    if versions.is_empty() {
        errors.push(FieldError::required(
            at,
            format!("must specify one of {}", REVIEW_VERSIONS.join(", ")),
        ));
        return;
    }
    let mut seen = BTreeSet::new();
    for (i, version) in versions.iter().enumerate() {
        if let Some(why) = validation::dns1123_label(version) {
            errors.push(FieldError::invalid(format!("{at}[{i}]"), version, why));
        }
        if !seen.insert(version.as_str()) {
            errors.push(FieldError::duplicate(format!("{at}[{i}]"), version));
        }
    }
    if !versions
        .iter()
        .any(|v| REVIEW_VERSIONS.contains(&v.as_str()))
    {
        errors.push(FieldError::invalid(
            at,
            format!("{versions:?}"),
            format!(
                "must include at least one of {}",
                REVIEW_VERSIONS.join(", ")
            ),
        ));
    }
}

/// One list of a rule: required, and `*` alone if present.
fn wildcard_list(values: Option<&[String]>, at: &str, what: &str, errors: &mut ErrorList) {
    let values = values.unwrap_or_default();
    if values.is_empty() {
        errors.push(FieldError::required(at, ""));
    }
    if values.len() > 1 && values.iter().any(|v| v == "*") {
        errors.push(FieldError::invalid(
            at,
            format!("{values:?}"),
            format!("if '*' is present, must not specify other {what}"),
        ));
    }
}

fn validate_rule(rule: &RuleWithOperations, at: &str, errors: &mut ErrorList) {
    let operations = rule.operations.as_deref();
    wildcard_list(
        operations,
        &format!("{at}.operations"),
        "operations",
        errors,
    );
    for (i, op) in operations.unwrap_or_default().iter().enumerate() {
        if !OPERATIONS.contains(&op.as_str()) {
            errors.push(FieldError::not_supported(
                format!("{at}.operations[{i}]"),
                op,
                OPERATIONS,
            ));
        }
    }
    wildcard_list(
        rule.api_groups.as_deref(),
        &format!("{at}.apiGroups"),
        "API groups",
        errors,
    );
    let versions = rule.api_versions.as_deref();
    wildcard_list(
        versions,
        &format!("{at}.apiVersions"),
        "API versions",
        errors,
    );
    for (i, version) in versions.unwrap_or_default().iter().enumerate() {
        if version.is_empty() {
            errors.push(FieldError::required(format!("{at}.apiVersions[{i}]"), ""));
        }
    }
    validate_resources(
        rule.resources.as_deref().unwrap_or_default(),
        &format!("{at}.resources"),
        errors,
    );
    if let Some(scope) = &rule.scope
        && !SCOPES.contains(&scope.as_str())
    {
        errors.push(FieldError::not_supported(
            format!("{at}.scope"),
            scope,
            SCOPES,
        ));
    }
}

/// kube's validateResources: `resource` or `resource/subresource`, `*` wildcards, and no
/// resource listed beside a wildcard that already covers it.
fn validate_resources(resources: &[String], at: &str, errors: &mut ErrorList) {
    if resources.is_empty() {
        errors.push(FieldError::required(at, ""));
        return;
    }
    let has = |r: &str| resources.iter().any(|x| x == r);
    for (i, resource) in resources.iter().enumerate() {
        let item = format!("{at}[{i}]");
        if resource.is_empty() {
            errors.push(FieldError::required(item, ""));
            continue;
        }
        if resource == "*/*" && resources.len() > 1 {
            errors.push(FieldError::invalid(
                item,
                resource,
                "if '*/*' is present, must not specify other resources",
            ));
            continue;
        }
        if resource == "*" && has("*/*") {
            continue;
        }
        let (main, sub) = resource.split_once('/').unwrap_or((resource.as_str(), ""));
        if main.is_empty() || sub.contains('/') {
            errors.push(FieldError::invalid(
                item,
                resource,
                "must be a resource or resource/subresource",
            ));
            continue;
        }
        if sub.is_empty() {
            if main != "*" && has("*") {
                errors.push(FieldError::invalid(
                    item,
                    resource,
                    "if '*' is present, must not specify other resources without subresources",
                ));
            }
        } else {
            if main != "*" && has(&format!("*/{sub}")) {
                errors.push(FieldError::invalid(
                    item.clone(),
                    resource,
                    format!("if '*/{sub}' is present, must not specify {resource}"),
                ));
            }
            if sub != "*" && has(&format!("{main}/*")) {
                errors.push(FieldError::invalid(
                    item,
                    resource,
                    format!("if '{main}/*' is present, must not specify {resource}"),
                ));
            }
        }
    }
}

fn validate_client_config(config: &WebhookClientConfig, at: &str, errors: &mut ErrorList) {
    match (&config.url, &config.service) {
        (Some(url), None) => validate_url(url, &format!("{at}.url"), errors),
        (None, Some(service)) => {
            let sat = format!("{at}.service");
            if service.name.is_empty() {
                errors.push(FieldError::required(
                    format!("{sat}.name"),
                    "service name is required",
                ));
            } else if let Some(why) = validation::dns1123_label(&service.name) {
                errors.push(FieldError::invalid(
                    format!("{sat}.name"),
                    &service.name,
                    why,
                ));
            }
            if service.namespace.is_empty() {
                errors.push(FieldError::required(
                    format!("{sat}.namespace"),
                    "service namespace is required",
                ));
            } else if let Some(why) = validation::dns1123_label(&service.namespace) {
                errors.push(FieldError::invalid(
                    format!("{sat}.namespace"),
                    &service.namespace,
                    why,
                ));
            }
            if let Some(path) = &service.path
                && !path.is_empty()
                && !path.starts_with('/')
            {
                errors.push(FieldError::invalid(
                    format!("{sat}.path"),
                    path,
                    "must start with a '/'",
                ));
            }
            if let Some(port) = service.port {
                super::port_number(port, &format!("{sat}.port"), errors);
            }
        }
        _ => errors.push(FieldError::required(
            at,
            "exactly one of url or service is required",
        )),
    }
}

/// kube's ValidateWebhookURL: an absolute `https` URL with a host, and neither user
/// information, a query nor a fragment.
fn validate_url(url: &str, at: &str, errors: &mut ErrorList) {
    if url.contains('#') {
        errors.push(FieldError::invalid(at, url, "fragments are not permitted"));
    }
    let parsed = match url.parse::<hyper::Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            errors.push(FieldError::invalid(
                at,
                url,
                format!("url must be a valid URL: {e}"),
            ));
            return;
        }
    };
    if parsed.scheme_str() != Some("https") {
        errors.push(FieldError::invalid(
            at,
            url,
            "'https' is the only allowed URL scheme",
        ));
    }
    match parsed.authority() {
        None => errors.push(FieldError::invalid(at, url, "host must be specified")),
        Some(authority) if authority.host().is_empty() => {
            errors.push(FieldError::invalid(at, url, "host must be specified"));
        }
        Some(authority) if authority.as_str().contains('@') => errors.push(FieldError::invalid(
            at,
            url,
            "user information is not permitted in the URL",
        )),
        Some(_) => {}
    }
    if parsed.query().is_some() {
        errors.push(FieldError::invalid(
            at,
            url,
            "query parameters are not permitted",
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(hooks: serde_json::Value) -> ValidatingWebhookConfiguration {
        serde_json::from_value(json!({"metadata": {"name": "c"}, "webhooks": hooks}))
            .expect("a configuration")
    }

    fn hook(name: &str) -> serde_json::Value {
        json!({
            "name": name,
            "clientConfig": {"service": {"name": "hook", "namespace": "default", "path": "/v"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["configmaps"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        })
    }

    fn errors_of(c: &ValidatingWebhookConfiguration) -> Vec<String> {
        let mut errors = ErrorList::new();
        c.validate(None, &mut errors);
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.cause_message()))
            .collect()
    }

    #[test]
    fn webhooks_get_kube_defaults() {
        let mut c = config(json!([hook("a.example.com")]));
        c.default_fields();
        let h = &c.webhooks.as_ref().expect("hooks")[0];
        assert_eq!(h.failure_policy.as_deref(), Some("Fail"));
        assert_eq!(h.match_policy.as_deref(), Some("Equivalent"));
        assert_eq!(h.timeout_seconds, Some(10));
        assert_eq!(h.namespace_selector, Some(LabelSelector::default()));
        assert_eq!(h.object_selector, Some(LabelSelector::default()));
        let rules = h.rules.as_ref().expect("rules");
        assert_eq!(rules[0].scope.as_deref(), Some("*"));
        let service = h.client_config.service.as_ref().expect("service");
        assert_eq!(service.port, Some(443));
        assert!(errors_of(&c).is_empty(), "{:?}", errors_of(&c));

        let mut m: MutatingWebhookConfiguration = serde_json::from_value(
            json!({"metadata": {"name": "m"}, "webhooks": [hook("m.example.com")]}),
        )
        .expect("mutating");
        m.default_fields();
        let h = &m.webhooks.as_ref().expect("hooks")[0];
        assert_eq!(h.reinvocation_policy.as_deref(), Some("Never"));
    }

    #[test]
    fn bad_webhooks_are_refused_field_by_field() {
        let mut dup = config(json!([hook("a.example.com"), hook("a.example.com")]));
        dup.default_fields();
        let errors = errors_of(&dup);
        assert!(
            errors.iter().any(|e| e.starts_with("webhooks[1].name")),
            "{errors:?}"
        );

        let mut bad = hook("short.name");
        bad["clientConfig"] = json!({"url": "http://x.example.com/v?a=b",
                                     "service": {"name": "s", "namespace": "n"}});
        bad["timeoutSeconds"] = json!(31);
        bad["sideEffects"] = json!("Some");
        bad["admissionReviewVersions"] = json!(["v2"]);
        bad["rules"] = json!([{"operations": ["CREATE", "*"], "apiGroups": [],
                               "apiVersions": [""], "resources": ["*", "pods"], "scope": "x"}]);
        let errors = errors_of(&config(json!([bad])));
        for field in [
            "webhooks[0].name",
            "webhooks[0].clientConfig",
            "webhooks[0].timeoutSeconds",
            "webhooks[0].sideEffects",
            "webhooks[0].admissionReviewVersions",
            "webhooks[0].rules[0].operations",
            "webhooks[0].rules[0].apiGroups",
            "webhooks[0].rules[0].apiVersions[0]",
            "webhooks[0].rules[0].resources[1]",
            "webhooks[0].rules[0].scope",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(&format!("{field}:"))),
                "{field}: {errors:?}"
            );
        }

        let mut url = hook("u.example.com");
        url["clientConfig"] = json!({"url": "http://x.example.com/v?a=b"});
        let errors = errors_of(&config(json!([url])));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("'https' is the only allowed URL scheme")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("query parameters are not permitted")),
            "{errors:?}"
        );
    }
}
