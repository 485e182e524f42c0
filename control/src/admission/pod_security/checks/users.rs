//! Restricted checks on the user containers run as: runAsNonRoot and runAsUser
//! (check_runAsNonRoot.go, check_runAsUser.go).

use k8s_openapi::{api::core::v1::PodSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};

use super::{CheckResult, containers, named};

/// `runAsNonRoot`: the pod sets runAsNonRoot=true (and no container sets false), or every
/// container sets it true.
pub(super) fn run_as_non_root_1_0(_meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let mut setters = Vec::new();
    let mut pod_run_as_non_root = false;
    match spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.run_as_non_root)
    {
        Some(false) => setters.push("pod".to_owned()),
        Some(true) => pod_run_as_non_root = true,
        None => {}
    }
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for container in containers(spec) {
        match container.security_context.and_then(|sc| sc.run_as_non_root) {
            Some(false) => explicitly_bad.push(container.name),
            Some(true) => {}
            None if !pod_run_as_non_root => implicitly_bad.push(container.name),
            None => {}
        }
    }
    if !explicitly_bad.is_empty() {
        setters.push(named("container", "containers", &explicitly_bad));
    }
    if !setters.is_empty() {
        return CheckResult::forbid(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if !implicitly_bad.is_empty() {
        return CheckResult::forbid(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                named("container", "containers", &implicitly_bad)
            ),
        );
    }
    CheckResult::allow()
}

/// `runAsUser` from v1.23: neither the pod nor a container sets runAsUser=0.
pub(super) fn run_as_user_1_23(_meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let mut setters = Vec::new();
    if spec.security_context.as_ref().and_then(|sc| sc.run_as_user) == Some(0) {
        setters.push("pod".to_owned());
    }
    let bad: Vec<&str> = containers(spec)
        .filter(|c| c.security_context.and_then(|sc| sc.run_as_user) == Some(0))
        .map(|c| c.name)
        .collect();
    if !bad.is_empty() {
        setters.push(named("container", "containers", &bad));
    }
    if setters.is_empty() {
        return CheckResult::allow();
    }
    CheckResult::forbid(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{forbidden, spec};
    use super::*;
    use serde_json::json;

    fn meta() -> ObjectMeta {
        ObjectMeta::default()
    }

    #[test]
    fn run_as_non_root() {
        let pod_level =
            spec(json!({"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "a"}]}));
        assert!(run_as_non_root_1_0(&meta(), &pod_level).allowed);
        let per_container =
            spec(json!({"containers": [{"name": "a", "securityContext": {"runAsNonRoot": true}}]}));
        assert!(run_as_non_root_1_0(&meta(), &per_container).allowed);
        let unset = spec(
            json!({"containers": [{"name": "a"}, {"name": "b", "securityContext": {"runAsNonRoot": true}}]}),
        );
        assert_eq!(
            forbidden(run_as_non_root_1_0(&meta(), &unset)),
            (
                "runAsNonRoot != true".into(),
                "pod or container \"a\" must set securityContext.runAsNonRoot=true".into()
            )
        );
        let explicit = spec(json!({
            "securityContext": {"runAsNonRoot": false},
            "containers": [{"name": "a", "securityContext": {"runAsNonRoot": false}}, {"name": "b"}],
        }));
        assert_eq!(
            forbidden(run_as_non_root_1_0(&meta(), &explicit)).1,
            "pod and container \"a\" must not set securityContext.runAsNonRoot=false"
        );
        let override_pod = spec(json!({
            "securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "a", "securityContext": {"runAsNonRoot": false}}],
        }));
        assert_eq!(
            forbidden(run_as_non_root_1_0(&meta(), &override_pod)).1,
            "container \"a\" must not set securityContext.runAsNonRoot=false"
        );
    }

    #[test]
    fn run_as_user() {
        let ok =
            spec(json!({"securityContext": {"runAsUser": 1000}, "containers": [{"name": "a"}]}));
        assert!(run_as_user_1_23(&meta(), &ok).allowed);
        let root = spec(json!({
            "securityContext": {"runAsUser": 0},
            "initContainers": [{"name": "i", "securityContext": {"runAsUser": 0}}],
            "containers": [{"name": "a", "securityContext": {"runAsUser": 0}}, {"name": "b", "securityContext": {"runAsUser": 1}}],
        }));
        assert_eq!(
            forbidden(run_as_user_1_23(&meta(), &root)),
            (
                "runAsUser=0".into(),
                "pod and containers \"i\", \"a\" must not set runAsUser=0".into()
            )
        );
    }
}
