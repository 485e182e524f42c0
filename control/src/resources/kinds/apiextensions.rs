//! apiextensions.k8s.io/v1 CustomResourceDefinition: kube's defaults and validation of a
//! definition (names, scope, versions, schemas, subresources, printer columns). The
//! status — accepted names, conditions, stored versions — is the CRD controller's.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition, CustomResourceDefinitionCondition,
    CustomResourceDefinitionStatus, CustomResourceDefinitionVersion,
};

use super::immutable;
use crate::{
    crd::schema::{CompileOptions, Schema},
    model::validation::{self, ErrorList, FieldError},
    resources::strategy::Kind,
};

/// The finalizer that holds a CRD's deletion until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
const SCOPES: &[&str] = &["Cluster", "Namespaced"];
const CONVERSIONS: &[&str] = &["None", "Webhook"];
const COLUMN_TYPES: &[&str] = &["boolean", "date", "integer", "number", "string"];

/// A DNS-1035 label (`[a-z]([-a-z0-9]*[a-z0-9])?`), as plural, singular and short names
/// and version names are.
fn dns1035_label(value: &str) -> Option<&'static str> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!ok).then_some(
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an \
         alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', \
         regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
    )
}

fn names(crd: &CustomResourceDefinition, errors: &mut ErrorList) {
    let names = &crd.spec.names;
    for (field, value) in [
        ("spec.names.plural", names.plural.as_str()),
        (
            "spec.names.singular",
            names.singular.as_deref().unwrap_or_default(),
        ),
    ] {
        if value.is_empty() {
            errors.push(FieldError::required(field, ""));
        } else if let Some(why) = dns1035_label(value) {
            errors.push(FieldError::invalid(field, value, why));
        }
    }
    for (field, value) in [
        ("spec.names.kind", names.kind.as_str()),
        (
            "spec.names.listKind",
            names.list_kind.as_deref().unwrap_or_default(),
        ),
    ] {
        if value.is_empty() {
            errors.push(FieldError::required(field, ""));
        } else if let Some(why) = dns1035_label(&value.to_lowercase()) {
            errors.push(FieldError::invalid(field, value, why));
        }
    }
    if names.kind == names.list_kind.as_deref().unwrap_or_default() {
        errors.push(FieldError::invalid(
            "spec.names.listKind",
            &names.kind,
            "kind and listKind may not be the same",
        ));
    }
    for (i, short) in names.short_names.iter().flatten().enumerate() {
        if let Some(why) = dns1035_label(short) {
            errors.push(FieldError::invalid(
                format!("spec.names.shortNames[{i}]"),
                short,
                why,
            ));
        }
    }
    for (i, category) in names.categories.iter().flatten().enumerate() {
        if let Some(why) = dns1035_label(category) {
            errors.push(FieldError::invalid(
                format!("spec.names.categories[{i}]"),
                category,
                why,
            ));
        }
    }
}

fn version(version: &CustomResourceDefinitionVersion, field: &str, errors: &mut ErrorList) {
    if let Some(why) = dns1035_label(&version.name) {
        errors.push(FieldError::invalid(
            format!("{field}.name"),
            &version.name,
            why,
        ));
    }
    if let Some(warning) = &version.deprecation_warning {
        let at = format!("{field}.deprecationWarning");
        if version.deprecated != Some(true) {
            errors.push(FieldError::invalid(
                &at,
                warning,
                "can only be set for deprecated versions",
            ));
        } else if warning.len() > 256 {
            errors.push(FieldError::too_long(&at, 256));
        } else if warning.chars().any(char::is_control) {
            errors.push(FieldError::invalid(
                &at,
                warning,
                "must only contain printable UTF-8 characters",
            ));
        }
    }
    match version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
    {
        None => errors.push(FieldError::required(
            format!("{field}.schema.openAPIV3Schema"),
            "schemas are required",
        )),
        Some(props) => {
            let options = CompileOptions {
                status_subresource: version
                    .subresources
                    .as_ref()
                    .is_some_and(|s| s.status.is_some()),
            };
            if let Err(schema_errors) =
                Schema::compile_with(props, &format!("{field}.schema.openAPIV3Schema"), options)
            {
                errors.extend(schema_errors);
            }
        }
    }
    if let Some(scale) = version.subresources.as_ref().and_then(|s| s.scale.as_ref()) {
        for (name, path, root) in [
            (
                "specReplicasPath",
                Some(&scale.spec_replicas_path),
                ".spec.",
            ),
            (
                "statusReplicasPath",
                Some(&scale.status_replicas_path),
                ".status.",
            ),
            (
                "labelSelectorPath",
                scale.label_selector_path.as_ref(),
                ".status.",
            ),
        ] {
            let Some(path) = path else { continue };
            let ok = (path.starts_with(root)
                || (name == "labelSelectorPath" && path.starts_with(".spec.")))
                && path.len() > root.len()
                && !path.contains('[');
            if !ok {
                errors.push(FieldError::invalid(
                    format!("{field}.subresources.scale.{name}"),
                    path,
                    format!("should be a json path under {}", root.trim_end_matches('.')),
                ));
            }
        }
    }
    for (i, column) in version
        .additional_printer_columns
        .iter()
        .flatten()
        .enumerate()
    {
        let at = format!("{field}.additionalPrinterColumns[{i}]");
        if column.name.is_empty() {
            errors.push(FieldError::required(format!("{at}.name"), ""));
        }
        if !COLUMN_TYPES.contains(&column.type_.as_str()) {
            errors.push(FieldError::not_supported(
                format!("{at}.type"),
                &column.type_,
                COLUMN_TYPES,
            ));
        }
        if column.json_path.is_empty() {
            errors.push(FieldError::required(format!("{at}.jsonPath"), ""));
        } else if !column.json_path.starts_with('.') {
            errors.push(FieldError::invalid(
                format!("{at}.jsonPath"),
                &column.json_path,
                "must be a simple json path starting with .",
            ));
        }
    }
}

/// spec.conversion: a known strategy; under Webhook a clientConfig with exactly one of
/// url and service and a ConversionReview version kube speaks; under None no webhook.
fn conversion(conversion: &CustomResourceConversion, errors: &mut ErrorList) {
    if !CONVERSIONS.contains(&conversion.strategy.as_str()) {
        errors.push(FieldError::not_supported(
            "spec.conversion.strategy",
            &conversion.strategy,
            CONVERSIONS,
        ));
        return;
    }
    let Some(webhook) = &conversion.webhook else {
        if conversion.strategy == "Webhook" {
            errors.push(FieldError::required(
                "spec.conversion.webhook",
                "required when strategy is set to Webhook",
            ));
        }
        return;
    };
    if conversion.strategy != "Webhook" {
        errors.push(FieldError::forbidden(
            "spec.conversion.webhook",
            "should not be set when strategy is not set to Webhook",
        ));
        return;
    }
    match &webhook.client_config {
        None => errors.push(FieldError::required(
            "spec.conversion.webhook.clientConfig",
            "required when strategy is set to Webhook",
        )),
        Some(config) => match (&config.url, &config.service) {
            (Some(_), Some(_)) | (None, None) => errors.push(FieldError::required(
                "spec.conversion.webhook.clientConfig",
                "exactly one of url or service is required",
            )),
            (Some(url), None) if !url.starts_with("https://") => {
                errors.push(FieldError::invalid(
                    "spec.conversion.webhook.clientConfig.url",
                    url,
                    "'https' is the only allowed URL scheme",
                ));
            }
            (None, Some(service)) => {
                if service.name.is_empty() {
                    errors.push(FieldError::required(
                        "spec.conversion.webhook.clientConfig.service.name",
                        "service name is required",
                    ));
                }
                if service.namespace.is_empty() {
                    errors.push(FieldError::required(
                        "spec.conversion.webhook.clientConfig.service.namespace",
                        "service namespace is required",
                    ));
                }
            }
            _ => {}
        },
    }
    let versions = &webhook.conversion_review_versions;
    let field = "spec.conversion.webhook.conversionReviewVersions";
    if versions.is_empty() {
        errors.push(FieldError::required(field, ""));
    } else if crate::crd::conversion::review::review_version(versions).is_none() {
        errors.push(FieldError::invalid(
            field,
            format!("{versions:?}"),
            "must include at least one of v1, v1beta1",
        ));
    }
}

/// status.storedVersions: every one still in spec.versions, the storage version among
/// them (kube's `ValidateCustomResourceDefinitionStoredVersions`).
fn stored_versions(crd: &CustomResourceDefinition, errors: &mut ErrorList) {
    let Some(stored) = crd.status.as_ref().and_then(|s| s.stored_versions.as_ref()) else {
        return;
    };
    for (i, version) in stored.iter().enumerate() {
        if !crd.spec.versions.iter().any(|v| &v.name == version) {
            errors.push(FieldError::invalid(
                format!("status.storedVersions[{i}]"),
                version,
                "must appear in spec.versions",
            ));
        }
    }
    if let Some(storage) = crd.spec.versions.iter().find(|v| v.storage)
        && !stored.contains(&storage.name)
    {
        errors.push(FieldError::invalid(
            "status.storedVersions",
            format!("{stored:?}"),
            format!("must have the storage version {}", storage.name),
        ));
    }
}

/// A condition of the definition's status.
pub fn condition<'a>(
    status: &'a CustomResourceDefinitionStatus,
    type_: &str,
) -> Option<&'a CustomResourceDefinitionCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

impl Kind for CustomResourceDefinition {
    fn default_fields(&mut self) {
        let names = &mut self.spec.names;
        if names.singular.as_deref().is_none_or(str::is_empty) {
            names.singular = Some(names.kind.to_lowercase());
        }
        if names.list_kind.as_deref().is_none_or(str::is_empty) {
            names.list_kind = Some(format!("{}List", names.kind));
        }
        self.spec
            .conversion
            .get_or_insert_with(|| CustomResourceConversion {
                strategy: "None".to_owned(),
                webhook: None,
            });
        // The storage version is recorded in status.storedVersions, as kube does on every
        // write of the definition.
        let storage = self
            .spec
            .versions
            .iter()
            .find(|v| v.storage)
            .map(|v| v.name.clone());
        let status = self.status.get_or_insert_with(Default::default);
        if let Some(storage) = storage {
            let stored = status.stored_versions.get_or_insert_with(Vec::new);
            if !stored.contains(&storage) {
                stored.push(storage);
            }
        }
    }

    fn carry_over(&mut self, old: &Self) {
        // Stored versions only ever grow (until an operator migrates and trims them
        // through the status subresource).
        let before = old.status.as_ref().and_then(|s| s.stored_versions.clone());
        let status = self.status.get_or_insert_with(Default::default);
        let stored = status.stored_versions.get_or_insert_with(Vec::new);
        for version in before.into_iter().flatten() {
            if !stored.contains(&version) {
                stored.insert(0, version);
            }
        }
    }

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        let spec = &self.spec;
        let name = self.metadata.name.as_deref().unwrap_or_default();
        let expected = format!("{}.{}", spec.names.plural, spec.group);
        if name != expected {
            errors.push(FieldError::invalid(
                "metadata.name",
                name,
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        if spec.group.is_empty() {
            errors.push(FieldError::required("spec.group", ""));
        } else if let Some(why) = validation::dns1123_subdomain(&spec.group) {
            errors.push(FieldError::invalid("spec.group", &spec.group, why));
        } else if !spec.group.contains('.') {
            errors.push(FieldError::invalid(
                "spec.group",
                &spec.group,
                "should be a domain with at least one dot",
            ));
        }
        if !SCOPES.contains(&spec.scope.as_str()) {
            errors.push(FieldError::not_supported("spec.scope", &spec.scope, SCOPES));
        }
        names(self, errors);
        if spec.versions.is_empty() {
            errors.push(FieldError::required(
                "spec.versions",
                "must have exactly one version marked as storage version",
            ));
        }
        let storage = spec.versions.iter().filter(|v| v.storage).count();
        if !spec.versions.is_empty() && storage != 1 {
            errors.push(FieldError::invalid(
                "spec.versions",
                storage,
                "must have exactly one version marked as storage version",
            ));
        }
        for (i, v) in spec.versions.iter().enumerate() {
            if spec.versions[..i].iter().any(|w| w.name == v.name) {
                errors.push(FieldError::duplicate(
                    format!("spec.versions[{i}].name"),
                    &v.name,
                ));
            }
            version(v, &format!("spec.versions[{i}]"), errors);
        }
        if !spec.versions.iter().any(|v| v.served) && !spec.versions.is_empty() {
            errors.push(FieldError::invalid(
                "spec.versions",
                "",
                "must have at least one version served",
            ));
        }
        if spec.preserve_unknown_fields == Some(true) {
            errors.push(FieldError::invalid(
                "spec.preserveUnknownFields",
                true,
                "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
            ));
        }
        if let Some(conversion) = &spec.conversion {
            self::conversion(conversion, errors);
        }
        stored_versions(self, errors);
        if let Some(old) = old {
            immutable(&spec.scope, &old.spec.scope, "spec.scope", errors);
            immutable(&spec.group, &old.spec.group, "spec.group", errors);
            immutable(
                &spec.names.plural,
                &old.spec.names.plural,
                "spec.names.plural",
                errors,
            );
        }
    }

    /// The first deletion of a definition adds the cleanup finalizer (as kube's REST
    /// delete does); once it is being deleted, the finalizer alone holds it.
    fn hold_deletion(&mut self) -> bool {
        if self.metadata.deletion_timestamp.is_some() {
            return false;
        }
        let finalizers = self.metadata.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
            finalizers.push(CLEANUP_FINALIZER.to_owned());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn crd(conversion: Value, stored: &[&str]) -> CustomResourceDefinition {
        let schema = json!({"openAPIV3Schema": {"type": "object"}});
        serde_json::from_value(json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                               "listKind": "WidgetList"},
                     "conversion": conversion,
                     "versions": [
                         {"name": "v1beta1", "served": true, "storage": false, "schema": schema,
                          "deprecated": true, "deprecationWarning": "use v1"},
                         {"name": "v1", "served": true, "storage": true, "schema": schema}]},
            "status": {"storedVersions": stored}}))
        .expect("a CRD")
    }

    fn errors_of(crd: &CustomResourceDefinition) -> Vec<String> {
        let mut errors = ErrorList::new();
        crd.validate(None, &mut errors);
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.cause_message()))
            .collect()
    }

    #[test]
    fn conversion_and_stored_versions_are_validated() {
        assert!(errors_of(&crd(json!({"strategy": "None"}), &["v1"])).is_empty());
        let webhook = json!({"strategy": "Webhook", "webhook": {
            "clientConfig": {"service": {"name": "conv", "namespace": "ns", "path": "/convert"}},
            "conversionReviewVersions": ["v1"]}});
        assert!(errors_of(&crd(webhook, &["v1beta1", "v1"])).is_empty());
        let cases = [
            (
                json!({"strategy": "Webhook"}),
                "spec.conversion.webhook: Required value",
            ),
            (
                json!({"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"]}}),
                "spec.conversion.webhook.clientConfig: Required value",
            ),
            (
                json!({"strategy": "Webhook", "webhook": {
                    "clientConfig": {"url": "https://x.example.com/c"},
                    "conversionReviewVersions": ["v2"]}}),
                "spec.conversion.webhook.conversionReviewVersions: Invalid value",
            ),
            (
                json!({"strategy": "None", "webhook": {
                    "clientConfig": {"url": "https://x.example.com/c"},
                    "conversionReviewVersions": ["v1"]}}),
                "spec.conversion.webhook: Forbidden",
            ),
        ];
        for (conversion, expected) in cases {
            let errors = errors_of(&crd(conversion, &["v1"]));
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{expected}: {errors:?}"
            );
        }
        let errors = errors_of(&crd(json!({"strategy": "None"}), &["v1alpha1", "v1"]));
        assert!(
            errors[0].starts_with("status.storedVersions[0]: Invalid value")
                && errors[0].contains("must appear in spec.versions"),
            "{errors:?}"
        );
        let mut undeprecated = crd(json!({"strategy": "None"}), &["v1"]);
        undeprecated.spec.versions[0].deprecated = None;
        let errors = errors_of(&undeprecated);
        assert!(
            errors[0].contains("can only be set for deprecated versions"),
            "{errors:?}"
        );
    }
}
