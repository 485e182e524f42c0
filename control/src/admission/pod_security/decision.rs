//! The decision on one write of a pod or workload, as kube's `Admission.ValidatePod`,
//! `ValidatePodController` and `EvaluatePod` (admission/admission.go, response.go) and the
//! in-tree plugin that prefixes the audit annotations: enforce refuses pods, audit
//! annotates, warn warns.

use std::collections::BTreeMap;

use k8s_openapi::{api::core::v1::PodSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use serde_json::Value;

use super::config::Configuration;
use super::evaluate::{
    AggregateCheckResult, enforce_message, evaluate_aggregate, would_violate_message,
};
use super::level::{Level, LevelVersion, Policy, errors_message};
use super::template::{PodSpecKind, is_significant_pod_update, pod_template_of};
use crate::model::validation::FieldError;

/// Audit annotation: why the write was exempt (`namespace`, `user`, `runtimeClass`).
pub const EXEMPT_ANNOTATION: &str = "pod-security.kubernetes.io/exempt";
/// Audit annotation: the enforced level-version (pods).
pub const ENFORCE_POLICY_ANNOTATION: &str = "pod-security.kubernetes.io/enforce-policy";
/// Audit annotation: the audited level's violations.
pub const AUDIT_VIOLATIONS_ANNOTATION: &str = "pod-security.kubernetes.io/audit-violations";
/// Audit annotation: what went wrong reading the policy or the object.
pub const ERROR_ANNOTATION: &str = "pod-security.kubernetes.io/error";

/// Why a write is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 403 Forbidden: the pod violates the enforced level. The message is
    /// `violates PodSecurity "baseline:latest": …`; kube's status message is
    /// `pods "<name>" is forbidden: <message>`
    /// (`ApiError::admission_forbidden("", "pods", name, &message)`).
    Forbidden(String),
    /// 400 Bad Request with this message: the pod could not be read.
    BadRequest(String),
}

/// What Pod Security says about one write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Set when the write is refused.
    pub refusal: Option<Refusal>,
    /// Warnings for the client (`Warning: 299` headers), in order.
    pub warnings: Vec<String>,
    /// Audit annotations, keys prefixed `pod-security.kubernetes.io/`.
    pub audit_annotations: BTreeMap<String, String>,
}

impl Decision {
    /// True unless refused.
    pub fn allowed(&self) -> bool {
        self.refusal.is_none()
    }

    fn annotated(key: &str, value: impl Into<String>) -> Self {
        Self {
            audit_annotations: BTreeMap::from([(key.to_owned(), value.into())]),
            ..Self::default()
        }
    }

    fn refused(refusal: Refusal, error: String) -> Self {
        Self {
            refusal: Some(refusal),
            ..Self::annotated(ERROR_ANNOTATION, error)
        }
    }
}

/// One create or update of a pod (or a pod subresource) or of a workload that embeds a
/// pod template.
#[derive(Clone, Copy, Debug)]
pub struct PodWrite<'a> {
    /// What is written.
    pub kind: PodSpecKind,
    /// The object's namespace.
    pub namespace: &'a str,
    /// The authenticated user.
    pub username: &'a str,
    /// The subresource written ("" for the object itself).
    pub subresource: &'a str,
    /// The new object, as JSON.
    pub object: &'a Value,
    /// The stored object on update, None on create.
    pub old_object: Option<&'a Value>,
}

/// Pod Security's decision on a write, given the labels of the write's namespace (the
/// caller looks the namespace up; when that fails kube refuses pod writes with 500
/// `failed to lookup namespace "<ns>"` and lets workload writes through, unless the
/// namespace or user is exempt).
pub fn admit_write(
    config: &Configuration,
    namespace_labels: &BTreeMap<String, String>,
    write: &PodWrite<'_>,
) -> Decision {
    if !write.kind.checks_subresource(write.subresource) {
        return Decision::default();
    }
    if config.exempt_namespace(write.namespace) {
        return Decision::annotated(EXEMPT_ANNOTATION, "namespace");
    }
    if config.exempt_user(write.username) {
        return Decision::annotated(EXEMPT_ANNOTATION, "user");
    }
    let (policy, errors) = config.policy_for(namespace_labels);
    if write.kind.is_pod() {
        admit_pod(config, &policy, &errors, write)
    } else {
        admit_workload(config, &policy, &errors, write)
    }
}

fn admit_pod(
    config: &Configuration,
    policy: &Policy,
    errors: &[FieldError],
    write: &PodWrite<'_>,
) -> Decision {
    if errors.is_empty() && policy.fully_privileged() {
        return Decision::annotated(
            ENFORCE_POLICY_ANNOTATION,
            LevelVersion::privileged().to_string(),
        );
    }
    let (meta, spec) = match pod_template_of(PodSpecKind::Pod, write.object) {
        Ok(Some(pod)) => pod,
        Ok(None) => (ObjectMeta::default(), PodSpec::default()),
        Err(error) => return bad_request("failed to decode object", &error),
    };
    if let Some(old_object) = write.old_object {
        match pod_template_of(PodSpecKind::Pod, old_object) {
            Ok(old) => {
                let old_spec = old.map(|(_, spec)| spec).unwrap_or_default();
                if !is_significant_pod_update(&spec, &old_spec) {
                    return Decision::default();
                }
            }
            Err(error) => return bad_request("failed to decode old object", &error),
        }
    }
    evaluate_policy(config, policy, errors, &meta, &spec, true)
}

fn bad_request(message: &str, error: &dyn std::error::Error) -> Decision {
    Decision::refused(
        Refusal::BadRequest(message.to_owned()),
        format!("{message}: {error}"),
    )
}

fn admit_workload(
    config: &Configuration,
    policy: &Policy,
    errors: &[FieldError],
    write: &PodWrite<'_>,
) -> Decision {
    if errors.is_empty()
        && policy.warn.level == Level::Privileged
        && policy.audit.level == Level::Privileged
    {
        return Decision::default();
    }
    match pod_template_of(write.kind, write.object) {
        Ok(Some((meta, spec))) => evaluate_policy(config, policy, errors, &meta, &spec, false),
        Ok(None) => Decision::default(),
        Err(error) => Decision::annotated(
            ERROR_ANNOTATION,
            format!("failed to extract pod template: {error}"),
        ),
    }
}

/// kube's `EvaluatePod`: the pod (or template) against the namespace's policy. Enforce is
/// checked only when `enforce` (pods); audit violations become the `audit-violations`
/// annotation; warn violations a warning, unless the write is already refused. Pods of an
/// exempt runtime class pass untouched.
pub fn evaluate_policy(
    config: &Configuration,
    policy: &Policy,
    policy_errors: &[FieldError],
    meta: &ObjectMeta,
    spec: &PodSpec,
    enforce: bool,
) -> Decision {
    if config.exempt_runtime_class(spec.runtime_class_name.as_deref()) {
        return Decision::annotated(EXEMPT_ANNOTATION, "runtimeClass");
    }
    let mut decision = Decision::default();
    if !policy_errors.is_empty() {
        decision.audit_annotations.insert(
            ERROR_ANNOTATION.to_owned(),
            format!("Failed to parse policy: {}", errors_message(policy_errors)),
        );
    }
    let mut cache: Vec<(LevelVersion, AggregateCheckResult)> = Vec::new();
    let mut result_for = |level_version: LevelVersion| {
        if let Some((_, cached)) = cache.iter().find(|(lv, _)| *lv == level_version) {
            return cached.clone();
        }
        let result = evaluate_aggregate(level_version, meta, spec);
        cache.push((level_version, result.clone()));
        result
    };
    if enforce {
        decision.audit_annotations.insert(
            ENFORCE_POLICY_ANNOTATION.to_owned(),
            policy.enforce.to_string(),
        );
        let result = result_for(policy.enforce);
        if !result.allowed {
            decision.refusal = Some(Refusal::Forbidden(enforce_message(policy.enforce, &result)));
        }
    }
    let audit = result_for(policy.audit);
    if !audit.allowed {
        decision.audit_annotations.insert(
            AUDIT_VIOLATIONS_ANNOTATION.to_owned(),
            would_violate_message(policy.audit, &audit),
        );
    }
    if decision.allowed() {
        let warn = result_for(policy.warn);
        if !warn.allowed {
            decision
                .warnings
                .push(would_violate_message(policy.warn, &warn));
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::pod_security::config::Exemptions;
    use crate::admission::pod_security::level::{
        AUDIT_LEVEL_LABEL, ENFORCE_LEVEL_LABEL, ENFORCE_VERSION_LABEL, WARN_LEVEL_LABEL,
    };
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn host_path_pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web"},
            "spec": {
                "containers": [{"name": "app", "image": "nginx"}],
                "volumes": [{"name": "x", "hostPath": {"path": "/"}}],
            },
        })
    }

    fn pod_create(object: &Value) -> PodWrite<'_> {
        PodWrite {
            kind: PodSpecKind::Pod,
            namespace: "apps",
            username: "alice",
            subresource: "",
            object,
            old_object: None,
        }
    }

    fn config() -> Configuration {
        Configuration::default().with_exemptions(Exemptions {
            usernames: vec!["admin".into()],
            namespaces: vec!["kube-system".into()],
            runtime_classes: vec!["kata".into()],
        })
    }

    #[test]
    fn enforce_refuses_a_violating_pod() {
        let pod = host_path_pod();
        let ns = labels(&[(ENFORCE_LEVEL_LABEL, "baseline")]);
        let decision = admit_write(&config(), &ns, &pod_create(&pod));
        assert_eq!(
            decision.refusal,
            Some(Refusal::Forbidden(
                "violates PodSecurity \"baseline:latest\": hostPath volumes (volume \"x\")".into()
            ))
        );
        // Warn defaulted to enforce, but no warning on a refused write.
        assert!(decision.warnings.is_empty());
        assert_eq!(
            decision.audit_annotations[ENFORCE_POLICY_ANNOTATION],
            "baseline:latest"
        );
    }

    #[test]
    fn warn_and_audit_let_the_pod_through() {
        let pod = host_path_pod();
        let ns = labels(&[
            (ENFORCE_LEVEL_LABEL, "privileged"),
            (WARN_LEVEL_LABEL, "baseline"),
            (AUDIT_LEVEL_LABEL, "restricted"),
        ]);
        let decision = admit_write(&config(), &ns, &pod_create(&pod));
        assert!(decision.allowed());
        assert_eq!(
            decision.warnings,
            ["would violate PodSecurity \"baseline:latest\": hostPath volumes (volume \"x\")"]
        );
        let audit = &decision.audit_annotations[AUDIT_VIOLATIONS_ANNOTATION];
        assert!(
            audit.starts_with(
                "would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false"
            ),
            "{audit}"
        );
        assert_eq!(
            decision.audit_annotations[ENFORCE_POLICY_ANNOTATION],
            "privileged:latest"
        );
    }

    #[test]
    fn workloads_are_warned_never_refused() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "spec": {"template": host_path_pod()},
        });
        let write = PodWrite {
            kind: PodSpecKind::Deployment,
            ..pod_create(&deployment)
        };
        let ns = labels(&[(ENFORCE_LEVEL_LABEL, "restricted")]);
        let decision = admit_write(&config(), &ns, &write);
        assert!(decision.allowed());
        assert_eq!(decision.warnings.len(), 1);
        assert!(decision.warnings[0].contains(
            "restricted volume types (volume \"x\" uses restricted volume type \"hostPath\")"
        ));
        assert!(
            !decision
                .audit_annotations
                .contains_key(ENFORCE_POLICY_ANNOTATION)
        );
        // The scale subresource is not looked at.
        let scale = PodWrite {
            subresource: "scale",
            ..write
        };
        assert_eq!(admit_write(&config(), &ns, &scale), Decision::default());
    }

    #[test]
    fn exemptions_and_privileged_namespaces() {
        let pod = host_path_pod();
        let ns = labels(&[(ENFORCE_LEVEL_LABEL, "restricted")]);
        let in_system = PodWrite {
            namespace: "kube-system",
            ..pod_create(&pod)
        };
        assert_eq!(
            admit_write(&config(), &ns, &in_system).audit_annotations[EXEMPT_ANNOTATION],
            "namespace"
        );
        let by_admin = PodWrite {
            username: "admin",
            ..pod_create(&pod)
        };
        assert_eq!(
            admit_write(&config(), &ns, &by_admin).audit_annotations[EXEMPT_ANNOTATION],
            "user"
        );
        let mut kata = host_path_pod();
        kata["spec"]["runtimeClassName"] = json!("kata");
        let decision = admit_write(&config(), &ns, &pod_create(&kata));
        assert!(decision.allowed());
        assert_eq!(
            decision.audit_annotations[EXEMPT_ANNOTATION],
            "runtimeClass"
        );
        // An unlabelled namespace under the default configuration is fully privileged.
        let decision = admit_write(&config(), &BTreeMap::new(), &pod_create(&pod));
        assert!(decision.allowed() && decision.warnings.is_empty());
        assert_eq!(
            decision.audit_annotations[ENFORCE_POLICY_ANNOTATION],
            "privileged:latest"
        );
        // Status writes are never checked.
        let status = PodWrite {
            subresource: "status",
            ..pod_create(&pod)
        };
        assert_eq!(admit_write(&config(), &ns, &status), Decision::default());
    }

    #[test]
    fn bad_labels_enforce_restricted_and_are_annotated() {
        let pod = host_path_pod();
        let ns = labels(&[
            (ENFORCE_LEVEL_LABEL, "strict"),
            (ENFORCE_VERSION_LABEL, "v1.30"),
        ]);
        let decision = admit_write(&config(), &ns, &pod_create(&pod));
        match &decision.refusal {
            Some(Refusal::Forbidden(message)) => {
                assert!(
                    message.starts_with("violates PodSecurity \"restricted:v1.30\": "),
                    "{message}"
                )
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(
            decision.audit_annotations[ERROR_ANNOTATION],
            "Failed to parse policy: metadata.labels[pod-security.kubernetes.io/enforce]: \
             Invalid value: \"strict\": must be one of privileged, baseline, restricted"
        );
    }

    #[test]
    fn updates_that_change_no_image_are_not_checked() {
        let old = host_path_pod();
        let mut relabelled = host_path_pod();
        relabelled["metadata"]["labels"] = json!({"tier": "web"});
        let ns = labels(&[(ENFORCE_LEVEL_LABEL, "baseline")]);
        let update = PodWrite {
            old_object: Some(&old),
            ..pod_create(&relabelled)
        };
        assert_eq!(admit_write(&config(), &ns, &update), Decision::default());
        let mut new_image = host_path_pod();
        new_image["spec"]["containers"][0]["image"] = json!("nginx:2");
        let update = PodWrite {
            old_object: Some(&old),
            ..pod_create(&new_image)
        };
        assert!(!admit_write(&config(), &ns, &update).allowed());
    }

    #[test]
    fn undecodable_objects() {
        let bad = json!({"spec": {"containers": 5}});
        let ns = labels(&[(ENFORCE_LEVEL_LABEL, "baseline")]);
        let decision = admit_write(&config(), &ns, &pod_create(&bad));
        assert_eq!(
            decision.refusal,
            Some(Refusal::BadRequest("failed to decode object".into()))
        );
        assert!(
            decision.audit_annotations[ERROR_ANNOTATION].starts_with("failed to decode object: ")
        );
        let job = json!({"spec": {"template": {"spec": {"containers": 5}}}});
        let write = PodWrite {
            kind: PodSpecKind::Job,
            ..pod_create(&job)
        };
        let decision = admit_write(&config(), &ns, &write);
        assert!(decision.allowed());
        assert!(
            decision.audit_annotations[ERROR_ANNOTATION]
                .starts_with("failed to extract pod template: ")
        );
    }
}
