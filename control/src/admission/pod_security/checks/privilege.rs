//! Checks on container privileges: privileged (baseline), capabilities (baseline and
//! restricted), allowPrivilegeEscalation (restricted), procMount (baseline)
//! (check_privileged.go, check_capabilities_baseline.go, check_capabilities_restricted.go,
//! check_allowPrivilegeEscalation.go, check_procMount.go).
//!
//! kube relaxes procMount (and runAsNonRoot, runAsUser) for pods with `hostUsers: false`
//! only under the alpha feature gate UserNamespacesPodSecurityStandards, off by default;
//! Skiff does not relax them.

use std::collections::BTreeSet;

use k8s_openapi::{api::core::v1::PodSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};

use super::{CheckResult, containers, join_quote, named};

/// The capabilities baseline lets containers add (the container runtimes' default set).
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// True for a pod that declares `spec.os.name: windows` (exempt from Linux-only restricted
/// checks from v1.25).
fn is_windows(spec: &PodSpec) -> bool {
    spec.os.as_ref().is_some_and(|os| os.name == "windows")
}

/// `privileged`: no container sets securityContext.privileged=true.
pub(super) fn privileged_1_0(_meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let bad: Vec<&str> = containers(spec)
        .filter(|c| c.security_context.and_then(|sc| sc.privileged) == Some(true))
        .map(|c| c.name)
        .collect();
    if bad.is_empty() {
        return CheckResult::allow();
    }
    CheckResult::forbid(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            named("container", "containers", &bad)
        ),
    )
}

/// `capabilities_baseline`: containers add only capabilities of the default set.
pub(super) fn capabilities_baseline_1_0(_meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let mut bad_containers = Vec::new();
    let mut non_default = BTreeSet::new();
    for container in containers(spec) {
        let Some(capabilities) = container
            .security_context
            .and_then(|sc| sc.capabilities.as_ref())
        else {
            continue;
        };
        let mut valid = true;
        for added in capabilities.add.iter().flatten() {
            if !BASELINE_CAPABILITIES.contains(&added.as_str()) {
                valid = false;
                non_default.insert(added.as_str());
            }
        }
        if !valid {
            bad_containers.push(container.name);
        }
    }
    if bad_containers.is_empty() {
        return CheckResult::allow();
    }
    let non_default: Vec<&str> = non_default.into_iter().collect();
    CheckResult::forbid(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            named("container", "containers", &bad_containers),
            join_quote(&non_default),
        ),
    )
}

/// `capabilities_restricted` from v1.22: containers drop ALL and add at most
/// NET_BIND_SERVICE.
pub(super) fn capabilities_restricted_1_22(_meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let mut missing_drop_all = Vec::new();
    let mut adding_forbidden = Vec::new();
    let mut forbidden_capabilities = BTreeSet::new();
    for container in containers(spec) {
        let Some(capabilities) = container
            .security_context
            .and_then(|sc| sc.capabilities.as_ref())
        else {
            missing_drop_all.push(container.name);
            continue;
        };
        if !capabilities.drop.iter().flatten().any(|c| c == "ALL") {
            missing_drop_all.push(container.name);
        }
        let mut added_forbidden = false;
        for added in capabilities.add.iter().flatten() {
            if added != "NET_BIND_SERVICE" {
                added_forbidden = true;
                forbidden_capabilities.insert(added.as_str());
            }
        }
        if added_forbidden {
            adding_forbidden.push(container.name);
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            named("container", "containers", &missing_drop_all)
        ));
    }
    if !adding_forbidden.is_empty() {
        let forbidden: Vec<&str> = forbidden_capabilities.into_iter().collect();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            named("container", "containers", &adding_forbidden),
            join_quote(&forbidden),
        ));
    }
    if details.is_empty() {
        return CheckResult::allow();
    }
    CheckResult::forbid("unrestricted capabilities", details.join("; "))
}

/// `capabilities_restricted` from v1.25: Windows pods are exempt.
pub(super) fn capabilities_restricted_1_25(meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    if is_windows(spec) {
        return CheckResult::allow();
    }
    capabilities_restricted_1_22(meta, spec)
}

/// `allowPrivilegeEscalation` from v1.8: every container sets
/// securityContext.allowPrivilegeEscalation=false.
pub(super) fn allow_privilege_escalation_1_8(_meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let bad: Vec<&str> = containers(spec)
        .filter(|c| {
            c.security_context
                .and_then(|sc| sc.allow_privilege_escalation)
                != Some(false)
        })
        .map(|c| c.name)
        .collect();
    if bad.is_empty() {
        return CheckResult::allow();
    }
    CheckResult::forbid(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            named("container", "containers", &bad)
        ),
    )
}

/// `allowPrivilegeEscalation` from v1.25: Windows pods are exempt.
pub(super) fn allow_privilege_escalation_1_25(meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    if is_windows(spec) {
        return CheckResult::allow();
    }
    allow_privilege_escalation_1_8(meta, spec)
}

/// `procMount`: containers leave procMount unset or `Default`.
pub(super) fn proc_mount_1_0(_meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let mut bad_containers = Vec::new();
    let mut forbidden_types = BTreeSet::new();
    for container in containers(spec) {
        let Some(proc_mount) = container
            .security_context
            .and_then(|sc| sc.proc_mount.as_deref())
        else {
            continue;
        };
        if proc_mount != "Default" {
            bad_containers.push(container.name);
            forbidden_types.insert(proc_mount);
        }
    }
    if bad_containers.is_empty() {
        return CheckResult::allow();
    }
    let forbidden: Vec<&str> = forbidden_types.into_iter().collect();
    CheckResult::forbid(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            named("container", "containers", &bad_containers),
            join_quote(&forbidden),
        ),
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
    fn privileged() {
        let ok =
            spec(json!({"containers": [{"name": "a", "securityContext": {"privileged": false}}]}));
        assert!(privileged_1_0(&meta(), &ok).allowed);
        let bad = spec(json!({
            "containers": [{"name": "c", "securityContext": {"privileged": true}}],
            "ephemeralContainers": [{"name": "debug", "securityContext": {"privileged": true}}],
        }));
        assert_eq!(
            forbidden(privileged_1_0(&meta(), &bad)),
            (
                "privileged".into(),
                "containers \"c\", \"debug\" must not set securityContext.privileged=true".into()
            )
        );
    }

    #[test]
    fn capabilities_baseline() {
        let ok = spec(
            json!({"containers": [{"name": "a", "securityContext": {"capabilities": {"add": ["CHOWN", "NET_BIND_SERVICE"]}}}]}),
        );
        assert!(capabilities_baseline_1_0(&meta(), &ok).allowed);
        let bad = spec(json!({"containers": [
            {"name": "a", "securityContext": {"capabilities": {"add": ["SYS_ADMIN", "CHOWN"]}}},
            {"name": "b", "securityContext": {"capabilities": {"add": ["NET_RAW", "SYS_ADMIN"]}}},
        ]}));
        assert_eq!(
            forbidden(capabilities_baseline_1_0(&meta(), &bad)),
            (
                "non-default capabilities".into(),
                "containers \"a\", \"b\" must not include \"NET_RAW\", \"SYS_ADMIN\" in securityContext.capabilities.add".into()
            )
        );
    }

    #[test]
    fn capabilities_restricted() {
        let ok = spec(
            json!({"containers": [{"name": "a", "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]}),
        );
        assert!(capabilities_restricted_1_22(&meta(), &ok).allowed);
        let bare = spec(json!({"containers": [{"name": "a"}]}));
        assert_eq!(
            forbidden(capabilities_restricted_1_22(&meta(), &bare)),
            (
                "unrestricted capabilities".into(),
                "container \"a\" must set securityContext.capabilities.drop=[\"ALL\"]".into()
            )
        );
        let both = spec(json!({"containers": [
            {"name": "a", "securityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
            {"name": "b", "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["SYS_TIME", "CHOWN"]}}},
        ]}));
        assert_eq!(
            forbidden(capabilities_restricted_1_22(&meta(), &both)).1,
            "container \"a\" must set securityContext.capabilities.drop=[\"ALL\"]; \
             container \"b\" must not include \"CHOWN\", \"SYS_TIME\" in securityContext.capabilities.add"
        );
        let windows = spec(json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]}));
        assert!(!capabilities_restricted_1_22(&meta(), &windows).allowed);
        assert!(capabilities_restricted_1_25(&meta(), &windows).allowed);
    }

    #[test]
    fn allow_privilege_escalation() {
        let ok = spec(
            json!({"containers": [{"name": "a", "securityContext": {"allowPrivilegeEscalation": false}}]}),
        );
        assert!(allow_privilege_escalation_1_8(&meta(), &ok).allowed);
        let bad = spec(json!({"containers": [
            {"name": "a"},
            {"name": "b", "securityContext": {"allowPrivilegeEscalation": true}},
            {"name": "c", "securityContext": {"allowPrivilegeEscalation": false}},
        ]}));
        assert_eq!(
            forbidden(allow_privilege_escalation_1_8(&meta(), &bad)),
            (
                "allowPrivilegeEscalation != false".into(),
                "containers \"a\", \"b\" must set securityContext.allowPrivilegeEscalation=false"
                    .into()
            )
        );
        let windows = spec(json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]}));
        assert!(allow_privilege_escalation_1_25(&meta(), &windows).allowed);
        let linux = spec(json!({"os": {"name": "linux"}, "containers": [{"name": "a"}]}));
        assert!(!allow_privilege_escalation_1_25(&meta(), &linux).allowed);
    }

    #[test]
    fn proc_mount() {
        let ok = spec(
            json!({"containers": [{"name": "a", "securityContext": {"procMount": "Default"}}]}),
        );
        assert!(proc_mount_1_0(&meta(), &ok).allowed);
        let bad = spec(
            json!({"hostUsers": false, "containers": [{"name": "a", "securityContext": {"procMount": "Unmasked"}}]}),
        );
        assert_eq!(
            forbidden(proc_mount_1_0(&meta(), &bad)),
            (
                "procMount".into(),
                "container \"a\" must not set securityContext.procMount to \"Unmasked\"".into()
            )
        );
    }
}
