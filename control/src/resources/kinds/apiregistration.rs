//! apiregistration.k8s.io/v1 APIService: a group-version the aggregator serves, either
//! locally (no `spec.service`: a built-in group or a CRD's) or by proxying to a Service
//! (an extension API server such as metrics-server or prometheus-adapter). Validation is
//! kube-aggregator's `ValidateAPIService`.

use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;

use crate::{
    model::validation::{ErrorList, FieldError, dns1123_label, dns1123_subdomain},
    resources::strategy::Kind,
};

/// The port a Service reference defaults to.
pub const DEFAULT_SERVICE_PORT: i32 = 443;

impl Kind for APIService {
    fn default_fields(&mut self) {
        if let Some(service) = self.spec.as_mut().and_then(|s| s.service.as_mut()) {
            service.port.get_or_insert(DEFAULT_SERVICE_PORT);
        }
    }

    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        let Some(spec) = &self.spec else {
            errors.push(FieldError::required("spec", ""));
            return;
        };
        let group = spec.group.as_deref().unwrap_or_default();
        let version = spec.version.as_deref().unwrap_or_default();
        let name = self.metadata.name.as_deref().unwrap_or_default();
        let expected = format!("{version}.{group}");
        if name != expected {
            errors.push(FieldError::invalid(
                "metadata.name",
                name,
                format!("must be spec.version+\".\"+spec.group: \"{expected}\""),
            ));
        }
        if !group.is_empty()
            && let Some(why) = dns1123_subdomain(group)
        {
            errors.push(FieldError::invalid("spec.group", group, why));
        }
        if version.is_empty() {
            errors.push(FieldError::required("spec.version", ""));
        } else if let Some(why) = dns1123_label(version) {
            errors.push(FieldError::invalid("spec.version", version, why));
        }
        if !(1..=20_000).contains(&spec.group_priority_minimum) {
            errors.push(FieldError::invalid(
                "spec.groupPriorityMinimum",
                spec.group_priority_minimum,
                "must be positive and less than 20000",
            ));
        }
        if !(1..=1000).contains(&spec.version_priority) {
            errors.push(FieldError::invalid(
                "spec.versionPriority",
                spec.version_priority,
                "must be positive and less than 1000",
            ));
        }
        let has_bundle = spec.ca_bundle.as_ref().is_some_and(|b| !b.0.is_empty());
        let insecure = spec.insecure_skip_tls_verify.unwrap_or(false);
        match &spec.service {
            None => {
                if has_bundle {
                    errors.push(FieldError::forbidden(
                        "spec.caBundle",
                        "may not be set when spec.service is nil",
                    ));
                }
                if insecure {
                    errors.push(FieldError::forbidden(
                        "spec.insecureSkipTLSVerify",
                        "may not be set when spec.service is nil",
                    ));
                }
            }
            Some(service) => {
                if group.is_empty() {
                    errors.push(FieldError::required(
                        "spec.group",
                        "only local APIServices may serve the core group",
                    ));
                }
                if service.namespace.as_deref().unwrap_or_default().is_empty() {
                    errors.push(FieldError::required("spec.service.namespace", ""));
                }
                if service.name.as_deref().unwrap_or_default().is_empty() {
                    errors.push(FieldError::required("spec.service.name", ""));
                }
                if let Some(port) = service.port {
                    super::port_number(port, "spec.service.port", errors);
                }
                if insecure && has_bundle {
                    errors.push(FieldError::invalid(
                        "spec.insecureSkipTLSVerify",
                        true,
                        "may not be true if caBundle is present",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(object: serde_json::Value) -> Vec<String> {
        let mut service: APIService = serde_json::from_value(object).expect("an APIService");
        service.default_fields();
        let mut errors = ErrorList::new();
        service.validate(None, &mut errors);
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn names_priorities_and_tls_are_checked_as_kube_aggregator_does() {
        let remote = json!({"metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                     "versionPriority": 100, "insecureSkipTLSVerify": true,
                     "service": {"name": "metrics-server", "namespace": "kube-system"}}});
        assert!(fields(remote.clone()).is_empty());
        let local = json!({"metadata": {"name": "v1."},
            "spec": {"version": "v1", "groupPriorityMinimum": 18000, "versionPriority": 1}});
        assert!(fields(local).is_empty());

        let mut wrong = remote.clone();
        wrong["metadata"]["name"] = json!("metrics");
        wrong["spec"]["versionPriority"] = json!(0);
        wrong["spec"]["caBundle"] = json!("Zm9v");
        assert_eq!(
            fields(wrong),
            [
                "metadata.name",
                "spec.versionPriority",
                "spec.insecureSkipTLSVerify"
            ]
        );
        let mut no_namespace = remote;
        no_namespace["spec"]["service"] = json!({"name": "x", "port": 70000});
        assert_eq!(
            fields(no_namespace),
            ["spec.service.namespace", "spec.service.port"]
        );
    }
}
