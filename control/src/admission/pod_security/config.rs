//! Pod Security's configuration, as kube's PodSecurityConfiguration: the policy of
//! namespaces without labels, and the namespaces, users and runtime classes exempt from it.

use std::collections::BTreeMap;

use super::level::{
    AUDIT_LEVEL_LABEL, AUDIT_VERSION_LABEL, ENFORCE_LEVEL_LABEL, ENFORCE_VERSION_LABEL, Level,
    Policy, WARN_LEVEL_LABEL, WARN_VERSION_LABEL, policy_to_evaluate,
};
use crate::model::validation::FieldError;

/// Who and what Pod Security leaves alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exemptions {
    /// Authenticated user names whose writes are not checked.
    pub usernames: Vec<String>,
    /// Namespaces whose pods are not checked.
    pub namespaces: Vec<String>,
    /// Runtime classes whose pods are not checked.
    pub runtime_classes: Vec<String>,
}

/// Pod Security admission's configuration. The default is kube's: every mode
/// `privileged:latest`, nothing exempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Configuration {
    /// The policy for modes a namespace does not label.
    pub defaults: Policy,
    /// What is exempt.
    pub exemptions: Exemptions,
}

impl Configuration {
    /// With these defaults.
    #[must_use]
    pub fn with_defaults(mut self, defaults: Policy) -> Self {
        self.defaults = defaults;
        self
    }

    /// With these exemptions.
    #[must_use]
    pub fn with_exemptions(mut self, exemptions: Exemptions) -> Self {
        self.exemptions = exemptions;
        self
    }

    /// A namespace's policy from its labels over the defaults (see
    /// [`policy_to_evaluate`]).
    pub fn policy_for(&self, labels: &BTreeMap<String, String>) -> (Policy, Vec<FieldError>) {
        policy_to_evaluate(labels, &self.defaults)
    }

    /// True when `namespace` is exempt ("" never is).
    pub fn exempt_namespace(&self, namespace: &str) -> bool {
        !namespace.is_empty() && self.exemptions.namespaces.iter().any(|n| n == namespace)
    }

    /// True when the user `username` is exempt ("" never is).
    pub fn exempt_user(&self, username: &str) -> bool {
        !username.is_empty() && self.exemptions.usernames.iter().any(|u| u == username)
    }

    /// True when a pod of this runtime class is exempt (none or "" never is).
    pub fn exempt_runtime_class(&self, runtime_class: Option<&str>) -> bool {
        runtime_class.is_some_and(|class| {
            !class.is_empty() && self.exemptions.runtime_classes.iter().any(|c| c == class)
        })
    }

    /// The warning for labelling an exempt namespace with a policy that will not apply:
    /// `namespace "x" is exempt from Pod Security, and the policy (enforce=restricted:latest)
    /// will be ignored`. None when the policy is fully privileged or equivalent to the
    /// defaults. Only modes that are not privileged and were set by a label are listed.
    pub fn exempt_namespace_warning(
        &self,
        namespace: &str,
        policy: &Policy,
        labels: &BTreeMap<String, String>,
    ) -> Option<String> {
        if policy.fully_privileged() || policy.equivalent(&self.defaults) {
            return None;
        }
        let modes = [
            (
                "enforce",
                policy.enforce,
                ENFORCE_LEVEL_LABEL,
                ENFORCE_VERSION_LABEL,
            ),
            (
                "audit",
                policy.audit,
                AUDIT_LEVEL_LABEL,
                AUDIT_VERSION_LABEL,
            ),
            ("warn", policy.warn, WARN_LEVEL_LABEL, WARN_VERSION_LABEL),
        ];
        let listed: Vec<String> = modes
            .into_iter()
            .filter(|(_, lv, level_label, version_label)| {
                lv.level != Level::Privileged
                    && (labels.contains_key(*level_label) || labels.contains_key(*version_label))
            })
            .map(|(mode, lv, ..)| format!("{mode}={lv}"))
            .collect();
        Some(format!(
            "namespace \"{namespace}\" is exempt from Pod Security, and the policy ({}) will be ignored",
            listed.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::pod_security::level::{LevelVersion, Version};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn config() -> Configuration {
        Configuration::default().with_exemptions(Exemptions {
            usernames: vec!["admin".into()],
            namespaces: vec!["kube-system".into()],
            runtime_classes: vec!["kata".into()],
        })
    }

    #[test]
    fn exemptions() {
        let config = config();
        assert!(config.exempt_namespace("kube-system"));
        assert!(!config.exempt_namespace("default"));
        assert!(!config.exempt_namespace(""));
        assert!(config.exempt_user("admin"));
        assert!(!config.exempt_user("bob"));
        assert!(config.exempt_runtime_class(Some("kata")));
        assert!(!config.exempt_runtime_class(Some("")));
        assert!(!config.exempt_runtime_class(None));
    }

    #[test]
    fn exempt_namespace_warnings_as_upstream() {
        let config = config();
        let labelled = labels(&[
            (ENFORCE_LEVEL_LABEL, "restricted"),
            (ENFORCE_VERSION_LABEL, "v1.0"),
            (AUDIT_LEVEL_LABEL, "restricted"),
            (WARN_LEVEL_LABEL, "baseline"),
        ]);
        let (policy, _) = config.policy_for(&labelled);
        assert_eq!(
            config
                .exempt_namespace_warning("test", &policy, &labelled)
                .as_deref(),
            Some(
                "namespace \"test\" is exempt from Pod Security, and the policy \
                 (enforce=restricted:v1.0, audit=restricted:latest, warn=baseline:latest) will be ignored"
            )
        );
        // Warn defaulted from enforce is not listed: it has no label.
        let enforce_only = labels(&[(ENFORCE_LEVEL_LABEL, "restricted")]);
        let (policy, _) = config.policy_for(&enforce_only);
        assert_eq!(
            policy.warn,
            LevelVersion::new(Level::Restricted, Version::Latest)
        );
        assert_eq!(
            config
                .exempt_namespace_warning("test", &policy, &enforce_only)
                .as_deref(),
            Some(
                "namespace \"test\" is exempt from Pod Security, and the policy (enforce=restricted:latest) will be ignored"
            )
        );
        let privileged = labels(&[(ENFORCE_LEVEL_LABEL, "privileged")]);
        let (policy, _) = config.policy_for(&privileged);
        assert_eq!(
            config.exempt_namespace_warning("test", &policy, &privileged),
            None
        );
    }

    #[test]
    fn a_policy_equal_to_the_defaults_warns_nothing() {
        let baseline = LevelVersion::new(Level::Baseline, Version::Latest);
        let defaults = Policy {
            enforce: baseline,
            warn: baseline,
            ..Policy::default()
        };
        let config = config().with_defaults(defaults);
        let same = labels(&[(ENFORCE_LEVEL_LABEL, "baseline")]);
        let (policy, _) = config.policy_for(&same);
        assert_eq!(
            config.exempt_namespace_warning("kube-system", &policy, &same),
            None
        );
    }
}
