//! Pod Security admission without I/O, as Kubernetes 1.33's k8s.io/pod-security-admission
//! (v0.33): the Pod Security Standards' levels and their versioned checks, a namespace's
//! policy from its `pod-security.kubernetes.io/*` labels, and kube's decisions and wording
//! for pod, workload and namespace writes.
//!
//! - [`level`]: levels, versions, a namespace's [`Policy`] from its labels.
//! - [`checks`]: every baseline and restricted check, by version.
//! - [`evaluate()`]: a level's checks on a pod; the `violates PodSecurity …` messages.
//! - [`template`]: where the pod is in a Pod or workload object; insignificant updates.
//! - [`config`]: defaults and exemptions.
//! - [`decision`]: enforce, audit and warn on a pod or workload write.
//! - [`namespace`]: label validation and existing-pod warnings on namespace writes.

pub mod checks;
pub mod config;
pub mod decision;
pub mod evaluate;
pub mod level;
pub mod namespace;
pub mod plugin;
pub mod template;

pub use checks::CheckResult;
pub use config::{Configuration, Exemptions};
pub use decision::{Decision, PodWrite, Refusal, admit_write, evaluate_policy};
pub use evaluate::{
    AggregateCheckResult, aggregate, enforce_message, evaluate, evaluate_aggregate,
    would_violate_message,
};
pub use level::{Level, LevelVersion, Policy, Version, policy_to_evaluate};
pub use namespace::{NamespaceCheck, check_namespace_write, existing_pod_warnings};
pub use template::{PodSpecKind, TemplateError, is_significant_pod_update, pod_template_of};
