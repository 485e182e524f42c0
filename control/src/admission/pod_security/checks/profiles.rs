//! Checks on security profiles: AppArmor and SELinux (baseline), seccomp (baseline and
//! restricted) (check_appArmorProfile.go, check_seLinuxOptions.go,
//! check_seccompProfile_baseline.go, check_seccompProfile_restricted.go).

use std::collections::BTreeSet;

use k8s_openapi::{
    api::core::v1::{PodSpec, SELinuxOptions, SeccompProfile},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use super::{CheckResult, containers, go_quote, join_quote, named, pluralize};

const APP_ARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

/// SELinux types baseline allows before v1.31.
const SELINUX_TYPES_1_0: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];
/// SELinux types baseline allows from v1.31.
const SELINUX_TYPES_1_31: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn annotations(meta: &ObjectMeta) -> impl Iterator<Item = (&String, &String)> {
    meta.annotations.iter().flatten()
}

/// `appArmorProfile`: profile types RuntimeDefault or Localhost only; the deprecated
/// annotations `runtime/default`, `localhost/*` or empty only.
pub(super) fn app_armor_profile_1_0(meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let allowed_type = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    if let Some(profile) = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.app_armor_profile.as_ref())
        && !allowed_type(&profile.type_)
    {
        setters.push("pod".to_owned());
        bad_values.insert(profile.type_.clone());
    }
    let mut bad_containers = Vec::new();
    for container in containers(spec) {
        if let Some(profile) = container
            .security_context
            .and_then(|sc| sc.app_armor_profile.as_ref())
            && !allowed_type(&profile.type_)
        {
            bad_containers.push(container.name);
            bad_values.insert(profile.type_.clone());
        }
    }
    if !bad_containers.is_empty() {
        setters.push(named("container", "containers", &bad_containers));
    }
    let mut forbidden_annotations: Vec<String> = annotations(meta)
        .filter(|(key, value)| {
            key.starts_with(APP_ARMOR_ANNOTATION_PREFIX)
                && !(value.is_empty()
                    || *value == "runtime/default"
                    || value.starts_with("localhost/"))
        })
        .map(|(key, value)| format!("{key}={}", go_quote(value)))
        .collect();
    let mut bad_value_list: Vec<String> = bad_values.into_iter().collect();
    if !forbidden_annotations.is_empty() {
        forbidden_annotations.sort();
        setters
            .push(pluralize("annotation", "annotations", forbidden_annotations.len()).to_owned());
        bad_value_list.extend(forbidden_annotations);
    }
    if setters.is_empty() {
        return CheckResult::allow();
    }
    CheckResult::forbid(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            bad_value_list.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&bad_value_list),
        ),
    )
}

/// `seLinuxOptions` before v1.31.
pub(super) fn se_linux_options_1_0(meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    se_linux_options(meta, spec, SELINUX_TYPES_1_0)
}

/// `seLinuxOptions` from v1.31 (allows `container_engine_t`).
pub(super) fn se_linux_options_1_31(meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    se_linux_options(meta, spec, SELINUX_TYPES_1_31)
}

/// SELinux options: the type from the allowed set, no user, no role.
fn se_linux_options(_meta: &ObjectMeta, spec: &PodSpec, allowed_types: &[&str]) -> CheckResult {
    let mut bad_types = BTreeSet::new();
    let mut set_user = false;
    let mut set_role = false;
    let mut valid = |options: &SELinuxOptions| {
        let mut valid = true;
        let selinux_type = options.type_.as_deref().unwrap_or_default();
        if !allowed_types.contains(&selinux_type) {
            valid = false;
            bad_types.insert(selinux_type.to_owned());
        }
        if options.user.as_deref().is_some_and(|u| !u.is_empty()) {
            valid = false;
            set_user = true;
        }
        if options.role.as_deref().is_some_and(|r| !r.is_empty()) {
            valid = false;
            set_role = true;
        }
        valid
    };
    let mut setters = Vec::new();
    if let Some(options) = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.se_linux_options.as_ref())
        && !valid(options)
    {
        setters.push("pod".to_owned());
    }
    let mut bad_containers = Vec::new();
    for container in containers(spec) {
        if let Some(options) = container
            .security_context
            .and_then(|sc| sc.se_linux_options.as_ref())
            && !valid(options)
        {
            bad_containers.push(container.name);
        }
    }
    if !bad_containers.is_empty() {
        setters.push(named("container", "containers", &bad_containers));
    }
    if setters.is_empty() {
        return CheckResult::allow();
    }
    let mut bad_data = Vec::new();
    if !bad_types.is_empty() {
        let types: Vec<String> = bad_types.into_iter().collect();
        bad_data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&types)
        ));
    }
    if set_user {
        bad_data.push("user may not be set".to_owned());
    }
    if set_role {
        bad_data.push("role may not be set".to_owned());
    }
    CheckResult::forbid(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            bad_data.join("; "),
        ),
    )
}

fn valid_seccomp(profile: &SeccompProfile) -> bool {
    matches!(profile.type_.as_str(), "Localhost" | "RuntimeDefault")
}

fn valid_seccomp_annotation(value: &str) -> bool {
    value == "runtime/default" || value == "docker/default" || value.starts_with("localhost/")
}

/// `seccompProfile_baseline` before v1.19: the alpha seccomp annotations, if set, name the
/// runtime default or a localhost profile.
pub(super) fn seccomp_profile_baseline_1_0(meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let annotation = |key: &str| meta.annotations.as_ref().and_then(|a| a.get(key));
    let mut forbidden = BTreeSet::new();
    if let Some(value) = annotation(SECCOMP_POD_ANNOTATION)
        && !valid_seccomp_annotation(value)
    {
        forbidden.insert(format!("{SECCOMP_POD_ANNOTATION}={}", go_quote(value)));
    }
    for container in containers(spec) {
        let key = format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", container.name);
        if let Some(value) = annotation(&key)
            && !valid_seccomp_annotation(value)
        {
            forbidden.insert(format!("{key}={}", go_quote(value)));
        }
    }
    if forbidden.is_empty() {
        return CheckResult::allow();
    }
    let forbidden: Vec<String> = forbidden.into_iter().collect();
    CheckResult::forbid(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", forbidden.len()),
            forbidden.join(", "),
        ),
    )
}

/// Who set a bad seccomp profile type, and which containers rely on a pod-level one that
/// is missing.
struct SeccompFindings<'a> {
    setters: Vec<String>,
    bad_values: BTreeSet<String>,
    implicitly_bad: Vec<&'a str>,
}

fn seccomp_findings(spec: &PodSpec) -> SeccompFindings<'_> {
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    let mut pod_seccomp_set = false;
    if let Some(profile) = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.seccomp_profile.as_ref())
    {
        if valid_seccomp(profile) {
            pod_seccomp_set = true;
        } else {
            setters.push("pod".to_owned());
            bad_values.insert(profile.type_.clone());
        }
    }
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for container in containers(spec) {
        match container
            .security_context
            .and_then(|sc| sc.seccomp_profile.as_ref())
        {
            Some(profile) if !valid_seccomp(profile) => {
                explicitly_bad.push(container.name);
                bad_values.insert(profile.type_.clone());
            }
            Some(_) => {}
            None if !pod_seccomp_set => implicitly_bad.push(container.name),
            None => {}
        }
    }
    if !explicitly_bad.is_empty() {
        setters.push(named("container", "containers", &explicitly_bad));
    }
    SeccompFindings {
        setters,
        bad_values,
        implicitly_bad,
    }
}

fn bad_seccomp_setters(findings: SeccompFindings<'_>) -> CheckResult {
    let values: Vec<String> = findings.bad_values.into_iter().collect();
    CheckResult::forbid(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            findings.setters.join(" and "),
            join_quote(&values),
        ),
    )
}

/// `seccompProfile_baseline` from v1.19: seccompProfile.type, where set, is RuntimeDefault
/// or Localhost.
pub(super) fn seccomp_profile_baseline_1_19(_meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let findings = seccomp_findings(spec);
    if findings.setters.is_empty() {
        return CheckResult::allow();
    }
    bad_seccomp_setters(findings)
}

/// `seccompProfile_restricted` from v1.19: as baseline, and every container has a profile
/// (its own or the pod's).
pub(super) fn seccomp_profile_restricted_1_19(_meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    let findings = seccomp_findings(spec);
    if !findings.setters.is_empty() {
        return bad_seccomp_setters(findings);
    }
    if findings.implicitly_bad.is_empty() {
        return CheckResult::allow();
    }
    CheckResult::forbid(
        "seccompProfile",
        format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            named("container", "containers", &findings.implicitly_bad)
        ),
    )
}

/// `seccompProfile_restricted` from v1.25: Windows pods are exempt.
pub(super) fn seccomp_profile_restricted_1_25(meta: &ObjectMeta, spec: &PodSpec) -> CheckResult {
    if spec.os.as_ref().is_some_and(|os| os.name == "windows") {
        return CheckResult::allow();
    }
    seccomp_profile_restricted_1_19(meta, spec)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{annotated, forbidden, spec};
    use super::*;
    use serde_json::json;

    fn meta() -> ObjectMeta {
        ObjectMeta::default()
    }

    #[test]
    fn app_armor_fields() {
        let ok = spec(json!({
            "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "a", "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "p"}}}],
        }));
        assert!(app_armor_profile_1_0(&meta(), &ok).allowed);
        let pod = spec(
            json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}, "containers": []}),
        );
        assert_eq!(
            forbidden(app_armor_profile_1_0(&meta(), &pod)),
            (
                "forbidden AppArmor profile".into(),
                "pod must not set AppArmor profile type to \"Unconfined\"".into()
            )
        );
        let init = spec(json!({
            "containers": [{"name": "foo"}],
            "initContainers": [{"name": "bar", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}],
        }));
        assert_eq!(
            forbidden(app_armor_profile_1_0(&meta(), &init)).1,
            "container \"bar\" must not set AppArmor profile type to \"Unconfined\""
        );
    }

    #[test]
    fn app_armor_annotations_as_upstream() {
        let meta = annotated(&[
            ("container.apparmor.security.beta.kubernetes.io/", "bogus"),
            ("container.apparmor.security.beta.kubernetes.io/a", ""),
            (
                "container.apparmor.security.beta.kubernetes.io/b",
                "runtime/default",
            ),
            (
                "container.apparmor.security.beta.kubernetes.io/c",
                "localhost/",
            ),
            (
                "container.apparmor.security.beta.kubernetes.io/d",
                "localhost/foo",
            ),
            (
                "container.apparmor.security.beta.kubernetes.io/e",
                "unconfined",
            ),
            (
                "container.apparmor.security.beta.kubernetes.io/f",
                "unknown",
            ),
            ("env", "prod"),
        ]);
        let spec = spec(json!({"containers": []}));
        assert_eq!(
            forbidden(app_armor_profile_1_0(&meta, &spec)),
            (
                "forbidden AppArmor profiles".into(),
                "annotations must not set AppArmor profile type to \
                 \"container.apparmor.security.beta.kubernetes.io/=\"bogus\"\", \
                 \"container.apparmor.security.beta.kubernetes.io/e=\"unconfined\"\", \
                 \"container.apparmor.security.beta.kubernetes.io/f=\"unknown\"\""
                    .into()
            )
        );
    }

    #[test]
    fn se_linux() {
        let ok = spec(json!({
            "securityContext": {"seLinuxOptions": {"type": "container_t", "level": "s0:c1,c2"}},
            "containers": [{"name": "a", "securityContext": {"seLinuxOptions": {}}}],
        }));
        assert!(se_linux_options_1_0(&meta(), &ok).allowed);
        let bad = spec(json!({
            "securityContext": {"seLinuxOptions": {"type": "foo", "user": "u"}},
            "containers": [
                {"name": "a", "securityContext": {"seLinuxOptions": {"type": "bar", "role": "r"}}},
                {"name": "b", "securityContext": {"seLinuxOptions": {"type": "container_t"}}},
            ],
        }));
        assert_eq!(
            forbidden(se_linux_options_1_0(&meta(), &bad)),
            (
                "seLinuxOptions".into(),
                "pod and container \"a\" set forbidden securityContext.seLinuxOptions: \
                 types \"bar\", \"foo\"; user may not be set; role may not be set"
                    .into()
            )
        );
        // container_engine_t is allowed from v1.31.
        let engine = spec(
            json!({"securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}, "containers": []}),
        );
        assert_eq!(
            forbidden(se_linux_options_1_0(&meta(), &engine)).1,
            "pod set forbidden securityContext.seLinuxOptions: type \"container_engine_t\""
        );
        assert!(se_linux_options_1_31(&meta(), &engine).allowed);
    }

    #[test]
    fn seccomp_annotations_before_1_19() {
        let meta = annotated(&[
            ("seccomp.security.alpha.kubernetes.io/pod", "unconfined"),
            (
                "container.seccomp.security.alpha.kubernetes.io/a",
                "docker/default",
            ),
            ("container.seccomp.security.alpha.kubernetes.io/b", "bogus"),
            (
                "container.seccomp.security.alpha.kubernetes.io/z",
                "not-a-container",
            ),
        ]);
        let spec = spec(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
        assert_eq!(
            forbidden(seccomp_profile_baseline_1_0(&meta, &spec)),
            (
                "seccompProfile".into(),
                "forbidden annotations container.seccomp.security.alpha.kubernetes.io/b=\"bogus\", \
                 seccomp.security.alpha.kubernetes.io/pod=\"unconfined\""
                    .into()
            )
        );
        // From v1.19 the annotations are not looked at.
        assert!(seccomp_profile_baseline_1_19(&meta, &spec).allowed);
    }

    #[test]
    fn seccomp_baseline_fields() {
        let unset = spec(json!({"containers": [{"name": "a"}]}));
        assert!(seccomp_profile_baseline_1_19(&meta(), &unset).allowed);
        let bad = spec(json!({
            "securityContext": {"seccompProfile": {"type": "Unconfined"}},
            "containers": [{"name": "a", "securityContext": {"seccompProfile": {"type": "Bogus"}}}],
        }));
        assert_eq!(
            forbidden(seccomp_profile_baseline_1_19(&meta(), &bad)).1,
            "pod and container \"a\" must not set securityContext.seccompProfile.type to \"Bogus\", \"Unconfined\""
        );
    }

    #[test]
    fn seccomp_restricted() {
        let pod_level = spec(json!({
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "a"}],
        }));
        assert!(seccomp_profile_restricted_1_19(&meta(), &pod_level).allowed);
        let missing = spec(json!({"containers": [
            {"name": "a"},
            {"name": "b", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "p"}}},
            {"name": "c"},
        ]}));
        assert_eq!(
            forbidden(seccomp_profile_restricted_1_19(&meta(), &missing)),
            (
                "seccompProfile".into(),
                "pod or containers \"a\", \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"".into()
            )
        );
        let explicit = spec(json!({"containers": [
            {"name": "a"},
            {"name": "b", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
        ]}));
        assert_eq!(
            forbidden(seccomp_profile_restricted_1_19(&meta(), &explicit)).1,
            "container \"b\" must not set securityContext.seccompProfile.type to \"Unconfined\""
        );
        let windows = spec(json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]}));
        assert!(!seccomp_profile_restricted_1_19(&meta(), &windows).allowed);
        assert!(seccomp_profile_restricted_1_25(&meta(), &windows).allowed);
    }
}
