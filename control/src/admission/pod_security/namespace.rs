//! Writes to namespaces, as kube's `Admission.ValidateNamespace` and
//! `EvaluatePodsInNamespace` (admission/admission.go): Pod Security labels must be valid,
//! and tightening the enforce level warns about existing pods that would now be refused.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec};

use super::config::Configuration;
use super::evaluate::evaluate_aggregate;
use super::level::{Level, LevelVersion};
use crate::model::validation::FieldError;

/// How many existing pods kube checks at most when a namespace's enforce level tightens.
pub const DEFAULT_MAX_PODS_TO_CHECK: usize = 3000;

/// What to do with a namespace write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceCheck {
    /// Allowed, with these warnings (usually none).
    Allowed(Vec<String>),
    /// Refused, 422: `ApiError::invalid("", "Namespace", name, &errors)`, e.g.
    /// `Namespace "x" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]:
    /// Invalid value: "strict": must be one of privileged, baseline, restricted`.
    Invalid(Vec<FieldError>),
    /// Allowed; the enforce level tightened: list the namespace's pods and return
    /// [`existing_pod_warnings`] for this level as warnings.
    CheckExistingPods(LevelVersion),
}

/// The check of a namespace create (`old_labels` None) or update. Labels must be valid on
/// create, and on update unless the same invalid labels were already there. An update
/// that tightens enforce (not to privileged; a new version, or a stricter level at the
/// same version) checks existing pods, unless the namespace is exempt: then, as on
/// create, it only warns that a non-default policy will be ignored. Subresource writes
/// (`status`, `finalize`) are not checked.
pub fn check_namespace_write(
    config: &Configuration,
    name: &str,
    subresource: &str,
    labels: &BTreeMap<String, String>,
    old_labels: Option<&BTreeMap<String, String>>,
) -> NamespaceCheck {
    if !subresource.is_empty() {
        return NamespaceCheck::Allowed(Vec::new());
    }
    let (policy, errors) = config.policy_for(labels);
    let exempt_warning = || {
        let warning = if config.exempt_namespace(name) {
            config.exempt_namespace_warning(name, &policy, labels)
        } else {
            None
        };
        NamespaceCheck::Allowed(warning.into_iter().collect())
    };
    let Some(old_labels) = old_labels else {
        if !errors.is_empty() {
            return NamespaceCheck::Invalid(errors);
        }
        return exempt_warning();
    };
    let (old_policy, old_errors) = config.policy_for(old_labels);
    if !errors.is_empty() && (old_errors.is_empty() || errors != old_errors) {
        return NamespaceCheck::Invalid(errors);
    }
    let (new, old) = (policy.enforce, old_policy.enforce);
    if new == old
        || new.level == Level::Privileged
        || (new.version == old.version && new.level <= old.level)
    {
        return NamespaceCheck::Allowed(Vec::new());
    }
    if config.exempt_namespace(name) {
        return exempt_warning();
    }
    NamespaceCheck::CheckExistingPods(new)
}

/// Pods to check first: one per controller (and those without one), then the other
/// replicas; pods of exempt runtime classes are left out (kube's `prioritizePods`).
fn prioritize<'a>(config: &Configuration, pods: &'a [Pod]) -> Vec<&'a Pod> {
    let mut first = Vec::new();
    let mut replicas = Vec::new();
    let mut controllers: Vec<&str> = Vec::new();
    for pod in pods {
        let runtime_class = pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.as_deref());
        if config.exempt_runtime_class(runtime_class) {
            continue;
        }
        let controller = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .map(|owner| owner.uid.as_str());
        match controller {
            Some(uid) if controllers.contains(&uid) => replicas.push(pod),
            Some(uid) => {
                controllers.push(uid);
                first.push(pod);
            }
            None => first.push(pod),
        }
    }
    first.extend(replicas);
    first
}

/// The warnings for a namespace whose enforce level tightened to `enforce`, from its
/// existing pods: which violations would now be refused, each with the lexically first
/// pod name and how many other pods share it, sorted, after `existing pods in namespace
/// "<ns>" violate the new PodSecurity enforce level "<level>"`. At most `max_pods` pods are
/// checked ([`DEFAULT_MAX_PODS_TO_CHECK`]); `out_of_time` is asked after each pod (kube
/// stops after one second) — if either cuts the check short, the first warning says
/// `new PodSecurity enforce level only checked against the first N of M existing pods`.
pub fn existing_pod_warnings(
    config: &Configuration,
    namespace: &str,
    enforce: LevelVersion,
    pods: &[Pod],
    max_pods: usize,
    mut out_of_time: impl FnMut() -> bool,
) -> Vec<String> {
    let prioritized = prioritize(config, pods);
    let total = prioritized.len();
    let mut checked = total.min(max_pods);
    // (violations, lexically first pod name, pod count) in first-seen order.
    let mut violations: Vec<(String, &str, usize)> = Vec::new();
    let empty = PodSpec::default();
    for (i, pod) in prioritized.iter().take(max_pods).enumerate() {
        let spec = pod.spec.as_ref().unwrap_or(&empty);
        let result = evaluate_aggregate(enforce, &pod.metadata, spec);
        if !result.allowed {
            let reason = result.forbidden_reason();
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            match violations.iter_mut().find(|(r, ..)| *r == reason) {
                Some((_, first, count)) => {
                    if name < *first {
                        *first = name;
                    }
                    *count += 1;
                }
                None => violations.push((reason, name, 1)),
            }
        }
        if out_of_time() {
            checked = i + 1;
            break;
        }
    }
    let mut warnings = Vec::new();
    if checked < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
        ));
    }
    if !violations.is_empty() {
        warnings.push(format!(
            "existing pods in namespace \"{namespace}\" violate the new PodSecurity enforce level \"{enforce}\""
        ));
    }
    let mut pod_warnings: Vec<String> = violations
        .into_iter()
        .map(|(reason, name, count)| match count {
            1 => format!("{name}: {reason}"),
            2 => format!("{name} (and 1 other pod): {reason}"),
            n => format!("{name} (and {} other pods): {reason}", n.saturating_sub(1)),
        })
        .collect();
    pod_warnings.sort();
    warnings.extend(pod_warnings);
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::pod_security::config::Exemptions;
    use crate::admission::pod_security::level::{
        ENFORCE_LEVEL_LABEL, ENFORCE_VERSION_LABEL, Version,
    };
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn config() -> Configuration {
        Configuration::default().with_exemptions(Exemptions {
            namespaces: vec!["test".into()],
            runtime_classes: vec!["kata".into()],
            ..Exemptions::default()
        })
    }

    #[test]
    fn creates_need_valid_labels() {
        let bad = labels(&[(ENFORCE_LEVEL_LABEL, "unknown")]);
        match check_namespace_write(&config(), "apps", "", &bad, None) {
            NamespaceCheck::Invalid(errors) => assert_eq!(
                crate::model::ApiError::invalid("", "Namespace", "apps", &errors).message,
                "Namespace \"apps\" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: \
                 Invalid value: \"unknown\": must be one of privileged, baseline, restricted"
            ),
            other => panic!("expected invalid, got {other:?}"),
        }
        let good = labels(&[(ENFORCE_LEVEL_LABEL, "restricted")]);
        assert_eq!(
            check_namespace_write(&config(), "apps", "", &good, None),
            NamespaceCheck::Allowed(vec![])
        );
        assert_eq!(
            check_namespace_write(&config(), "test", "", &good, None),
            NamespaceCheck::Allowed(vec![
                "namespace \"test\" is exempt from Pod Security, and the policy (enforce=restricted:latest) will be ignored".into()
            ])
        );
        assert_eq!(
            check_namespace_write(&config(), "apps", "status", &bad, None),
            NamespaceCheck::Allowed(vec![])
        );
    }

    #[test]
    fn updates_as_upstream() {
        let check = |new: &[(&str, &str)], old: &[(&str, &str)]| {
            check_namespace_write(&config(), "apps", "", &labels(new), Some(&labels(old)))
        };
        let allowed = NamespaceCheck::Allowed(vec![]);
        let restricted_v1_0 = [
            (ENFORCE_LEVEL_LABEL, "restricted"),
            (ENFORCE_VERSION_LABEL, "v1.0"),
        ];
        // No-ops, including unchanged bad labels.
        assert_eq!(check(&restricted_v1_0, &restricted_v1_0), allowed);
        let unknown = [(ENFORCE_LEVEL_LABEL, "unknown")];
        assert_eq!(check(&unknown, &unknown), allowed);
        // Relaxing at the same version, or to privileged.
        assert_eq!(
            check(
                &[
                    (ENFORCE_LEVEL_LABEL, "baseline"),
                    (ENFORCE_VERSION_LABEL, "v1.0")
                ],
                &restricted_v1_0
            ),
            allowed
        );
        assert_eq!(
            check(
                &[(ENFORCE_LEVEL_LABEL, "baseline")],
                &[(ENFORCE_LEVEL_LABEL, "restricted")]
            ),
            allowed
        );
        assert_eq!(check(&[], &restricted_v1_0), allowed);
        // Newly bad labels.
        assert!(matches!(
            check(&unknown, &restricted_v1_0),
            NamespaceCheck::Invalid(_)
        ));
        // Tightening.
        assert_eq!(
            check(
                &[(ENFORCE_LEVEL_LABEL, "restricted")],
                &[(ENFORCE_LEVEL_LABEL, "baseline")]
            ),
            NamespaceCheck::CheckExistingPods(LevelVersion::new(
                Level::Restricted,
                Version::Latest
            ))
        );
        assert_eq!(
            check(
                &[
                    (ENFORCE_LEVEL_LABEL, "baseline"),
                    (ENFORCE_VERSION_LABEL, "v1.30")
                ],
                &[(ENFORCE_LEVEL_LABEL, "restricted")]
            ),
            NamespaceCheck::CheckExistingPods(LevelVersion::new(Level::Baseline, Version::V1(30)))
        );
        // Exempt namespaces only warn.
        let exempt = check_namespace_write(
            &config(),
            "test",
            "",
            &labels(&[(ENFORCE_LEVEL_LABEL, "restricted")]),
            Some(&BTreeMap::new()),
        );
        assert!(matches!(exempt, NamespaceCheck::Allowed(w) if w.len() == 1));
    }

    fn pod(name: &str, spec: serde_json::Value, controller: Option<&str>) -> Pod {
        let owners = controller.map(|uid| {
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}])
        });
        serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": owners},
            "spec": spec,
        }))
        .expect("test pod is valid")
    }

    #[test]
    fn existing_pods_are_summarized() {
        let privileged =
            json!({"containers": [{"name": "c", "securityContext": {"privileged": true}}]});
        let host = json!({"hostNetwork": true, "containers": [{"name": "c"}]});
        let fine = json!({"containers": [{"name": "c"}]});
        let mut kata = privileged.clone();
        kata["runtimeClassName"] = json!("kata");
        let pods = [
            pod("web-2", privileged.clone(), Some("rs1")),
            pod("web-1", privileged.clone(), Some("rs1")),
            pod("alone", privileged, None),
            pod("net", host, None),
            pod("ok", fine, None),
            pod("exempt", kata, None),
        ];
        let baseline = LevelVersion::new(Level::Baseline, Version::Latest);
        assert_eq!(
            existing_pod_warnings(
                &config(),
                "apps",
                baseline,
                &pods,
                DEFAULT_MAX_PODS_TO_CHECK,
                || false
            ),
            [
                "existing pods in namespace \"apps\" violate the new PodSecurity enforce level \"baseline:latest\"",
                "alone (and 2 other pods): privileged",
                "net: host namespaces",
            ]
        );
        // Cut short: the replica of rs1 comes last, so it is the one left out.
        assert_eq!(
            existing_pod_warnings(&config(), "apps", baseline, &pods, 3, || false),
            [
                "new PodSecurity enforce level only checked against the first 3 of 5 existing pods",
                "existing pods in namespace \"apps\" violate the new PodSecurity enforce level \"baseline:latest\"",
                "alone (and 1 other pod): privileged",
                "net: host namespaces",
            ]
        );
        let mut calls = 0;
        let warnings = existing_pod_warnings(&config(), "apps", baseline, &pods, 3000, || {
            calls += 1;
            calls >= 1
        });
        assert_eq!(
            warnings[0],
            "new PodSecurity enforce level only checked against the first 1 of 5 existing pods"
        );
        assert_eq!(warnings[2], "web-2: privileged");
        assert!(existing_pod_warnings(&config(), "apps", baseline, &[], 3000, || false).is_empty());
    }
}
