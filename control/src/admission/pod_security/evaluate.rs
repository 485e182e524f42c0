//! Running a level's checks on a pod and wording the outcome as kube's admission does
//! (policy/registry.go `EvaluatePod`, policy/checks.go `AggregateCheckResults`,
//! admission/admission.go messages).

use k8s_openapi::{api::core::v1::PodSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};

use super::checks::{CheckResult, applicable_checks};
use super::level::LevelVersion;

/// kube's placeholder for a check that forbids without a reason.
const UNKNOWN_FORBIDDEN_REASON: &str = "unknown forbidden reason";

/// Every check of `level_version` run on the pod, allowed ones included, in kube's order.
/// Empty for `privileged`.
pub fn evaluate(
    level_version: LevelVersion,
    meta: &ObjectMeta,
    spec: &PodSpec,
) -> Vec<CheckResult> {
    applicable_checks(level_version)
        .into_iter()
        .map(|(_, check)| check(meta, spec))
        .collect()
}

/// The forbidding checks' reasons and details together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AggregateCheckResult {
    /// True when no check forbade.
    pub allowed: bool,
    /// One reason per forbidding check, in order.
    pub forbidden_reasons: Vec<String>,
    /// The matching details (possibly empty strings).
    pub forbidden_details: Vec<String>,
}

impl AggregateCheckResult {
    /// The reasons alone, comma-separated: `hostPath volumes, privileged` (kube uses this
    /// form when summarizing existing pods).
    pub fn forbidden_reason(&self) -> String {
        self.forbidden_reasons.join(", ")
    }

    /// Each reason with its detail in parentheses:
    /// `hostPath volumes (volume "x"), privileged (container "c" must not set
    /// securityContext.privileged=true)`.
    pub fn forbidden_detail(&self) -> String {
        self.forbidden_reasons
            .iter()
            .zip(&self.forbidden_details)
            .map(|(reason, detail)| {
                if detail.is_empty() {
                    reason.clone()
                } else {
                    format!("{reason} ({detail})")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The forbidding results gathered, as kube's `AggregateCheckResults`.
pub fn aggregate(results: &[CheckResult]) -> AggregateCheckResult {
    let forbidding: Vec<&CheckResult> = results.iter().filter(|r| !r.allowed).collect();
    AggregateCheckResult {
        allowed: forbidding.is_empty(),
        forbidden_reasons: forbidding
            .iter()
            .map(|r| {
                if r.forbidden_reason.is_empty() {
                    UNKNOWN_FORBIDDEN_REASON.to_owned()
                } else {
                    r.forbidden_reason.clone()
                }
            })
            .collect(),
        forbidden_details: forbidding
            .iter()
            .map(|r| r.forbidden_detail.clone())
            .collect(),
    }
}

/// [`evaluate`] then [`aggregate`].
pub fn evaluate_aggregate(
    level_version: LevelVersion,
    meta: &ObjectMeta,
    spec: &PodSpec,
) -> AggregateCheckResult {
    aggregate(&evaluate(level_version, meta, spec))
}

/// Why an enforced level refuses a pod: `violates PodSecurity "baseline:latest": hostPath
/// volumes (volume "x")`. kube wraps it in a 403 Forbidden: `pods "web" is forbidden:
/// <this>` (`ApiError::admission_forbidden("", "pods", name, &message)`).
pub fn enforce_message(level_version: LevelVersion, result: &AggregateCheckResult) -> String {
    format!(
        "violates PodSecurity \"{level_version}\": {}",
        result.forbidden_detail()
    )
}

/// The warning (and audit annotation) for a warned or audited level: `would violate
/// PodSecurity "restricted:latest": allowPrivilegeEscalation != false (...)`.
pub fn would_violate_message(level_version: LevelVersion, result: &AggregateCheckResult) -> String {
    format!(
        "would violate PodSecurity \"{level_version}\": {}",
        result.forbidden_detail()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::pod_security::level::{Level, Version};
    use serde_json::{Value, json};

    fn spec(json: Value) -> PodSpec {
        serde_json::from_value(json).expect("test pod spec is valid")
    }

    fn lv(level: Level, version: Version) -> LevelVersion {
        LevelVersion::new(level, version)
    }

    fn meta() -> ObjectMeta {
        ObjectMeta::default()
    }

    /// A pod that meets restricted.
    fn restricted_pod() -> Value {
        json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app",
                "image": "nginx",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                },
            }],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
        })
    }

    /// Everything baseline refuses at once.
    fn dangerous_pod() -> PodSpec {
        spec(json!({
            "hostNetwork": true,
            "containers": [{
                "name": "c",
                "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}},
            }],
            "volumes": [{"name": "x", "hostPath": {"path": "/"}}],
        }))
    }

    #[test]
    fn baseline_refuses_host_access_and_privilege() {
        let result = evaluate_aggregate(
            lv(Level::Baseline, Version::Latest),
            &meta(),
            &dangerous_pod(),
        );
        assert!(!result.allowed);
        assert_eq!(
            result.forbidden_reason(),
            "non-default capabilities, host namespaces, hostPath volumes, privileged"
        );
        assert_eq!(
            enforce_message(lv(Level::Baseline, Version::Latest), &result),
            "violates PodSecurity \"baseline:latest\": \
             non-default capabilities (container \"c\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add), \
             host namespaces (hostNetwork=true), \
             hostPath volumes (volume \"x\"), \
             privileged (container \"c\" must not set securityContext.privileged=true)"
        );
    }

    #[test]
    fn baseline_message_as_in_the_brief() {
        let pod = spec(json!({
            "containers": [{"name": "c", "securityContext": {"privileged": true}}],
            "volumes": [{"name": "x", "hostPath": {"path": "/"}}],
        }));
        let result = evaluate_aggregate(lv(Level::Baseline, Version::Latest), &meta(), &pod);
        assert_eq!(
            enforce_message(lv(Level::Baseline, Version::Latest), &result),
            "violates PodSecurity \"baseline:latest\": hostPath volumes (volume \"x\"), \
             privileged (container \"c\" must not set securityContext.privileged=true)"
        );
    }

    #[test]
    fn privileged_allows_everything() {
        assert!(
            evaluate(
                lv(Level::Privileged, Version::Latest),
                &meta(),
                &dangerous_pod()
            )
            .is_empty()
        );
        assert!(
            evaluate_aggregate(
                lv(Level::Privileged, Version::V1(20)),
                &meta(),
                &dangerous_pod()
            )
            .allowed
        );
    }

    #[test]
    fn a_plain_pod_passes_baseline_and_fails_restricted() {
        let pod = spec(json!({"containers": [{"name": "app", "image": "nginx"}]}));
        assert!(evaluate_aggregate(lv(Level::Baseline, Version::Latest), &meta(), &pod).allowed);
        let result = evaluate_aggregate(lv(Level::Restricted, Version::Latest), &meta(), &pod);
        assert_eq!(
            would_violate_message(lv(Level::Restricted, Version::Latest), &result),
            "would violate PodSecurity \"restricted:latest\": \
             allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
    }

    #[test]
    fn a_pod_meeting_restricted_passes_every_level_and_version() {
        let pod = spec(restricted_pod());
        for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
            for version in [
                Version::V1(0),
                Version::V1(22),
                Version::V1(33),
                Version::Latest,
            ] {
                let result = evaluate_aggregate(lv(level, version), &meta(), &pod);
                assert!(
                    result.allowed,
                    "{level}:{version}: {}",
                    result.forbidden_detail()
                );
            }
        }
    }

    #[test]
    fn restricted_refuses_each_missing_setting() {
        let cases = [
            ("/securityContext/runAsNonRoot", "runAsNonRoot != true"),
            ("/securityContext/seccompProfile", "seccompProfile"),
            (
                "/containers/0/securityContext/capabilities/drop",
                "unrestricted capabilities",
            ),
            (
                "/containers/0/securityContext/allowPrivilegeEscalation",
                "allowPrivilegeEscalation != false",
            ),
        ];
        for (pointer, reason) in cases {
            let mut pod = restricted_pod();
            let (parent, field) = pointer.rsplit_once('/').expect("pointer has a parent");
            pod.pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .expect("parent object")
                .remove(field);
            let result =
                evaluate_aggregate(lv(Level::Restricted, Version::Latest), &meta(), &spec(pod));
            assert_eq!(result.forbidden_reasons, [reason], "without {pointer}");
        }
        let mut root = restricted_pod();
        root["containers"][0]["securityContext"]["runAsUser"] = json!(0);
        let result =
            evaluate_aggregate(lv(Level::Restricted, Version::Latest), &meta(), &spec(root));
        assert_eq!(
            result.forbidden_detail(),
            "runAsUser=0 (container \"app\" must not set runAsUser=0)"
        );
    }

    #[test]
    fn version_pinning_follows_upstream() {
        let mut pod = restricted_pod();
        // runAsUser=0 is refused from v1.23 on.
        pod["securityContext"]["runAsUser"] = json!(0);
        let root = spec(pod);
        assert!(evaluate_aggregate(lv(Level::Restricted, Version::V1(22)), &meta(), &root).allowed);
        assert!(
            !evaluate_aggregate(lv(Level::Restricted, Version::V1(23)), &meta(), &root).allowed
        );

        // Dropping ALL is required from v1.22; before, restricted checked baseline's
        // capabilities only.
        let mut pod = restricted_pod();
        pod["containers"][0]["securityContext"]["capabilities"] = json!({});
        let keeps_all = spec(pod);
        assert!(
            evaluate_aggregate(lv(Level::Restricted, Version::V1(21)), &meta(), &keeps_all).allowed
        );
        assert!(
            !evaluate_aggregate(lv(Level::Restricted, Version::V1(22)), &meta(), &keeps_all)
                .allowed
        );

        // A newer safe sysctl: refused by baseline v1.31, allowed from v1.32 (and latest).
        let mut pod = restricted_pod();
        pod["securityContext"]["sysctls"] =
            json!([{"name": "net.ipv4.tcp_wmem", "value": "4096 87380 16777216"}]);
        let wmem = spec(pod);
        let old = evaluate_aggregate(lv(Level::Baseline, Version::V1(31)), &meta(), &wmem);
        assert_eq!(
            old.forbidden_detail(),
            "forbidden sysctls (net.ipv4.tcp_wmem)"
        );
        assert!(evaluate_aggregate(lv(Level::Baseline, Version::V1(32)), &meta(), &wmem).allowed);
        assert!(evaluate_aggregate(lv(Level::Baseline, Version::Latest), &meta(), &wmem).allowed);

        // Windows pods are exempt from the Linux-only restricted checks from v1.25.
        let windows = spec(json!({
            "os": {"name": "windows"},
            "securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "app"}],
        }));
        assert!(
            evaluate_aggregate(lv(Level::Restricted, Version::V1(25)), &meta(), &windows).allowed
        );
        assert_eq!(
            evaluate_aggregate(lv(Level::Restricted, Version::V1(24)), &meta(), &windows)
                .forbidden_reasons,
            [
                "allowPrivilegeEscalation != false",
                "unrestricted capabilities",
                "seccompProfile"
            ]
        );
    }

    #[test]
    fn restricted_reports_host_path_as_a_restricted_volume() {
        let mut pod = restricted_pod();
        pod["volumes"] = json!([{"name": "x", "hostPath": {"path": "/"}}]);
        let result =
            evaluate_aggregate(lv(Level::Restricted, Version::Latest), &meta(), &spec(pod));
        assert_eq!(
            result.forbidden_detail(),
            "restricted volume types (volume \"x\" uses restricted volume type \"hostPath\")"
        );
    }

    #[test]
    fn reasons_without_detail_and_unknown_reasons() {
        let results = [
            CheckResult::allow(),
            CheckResult::forbid("a", ""),
            CheckResult::forbid("", "d"),
        ];
        let result = aggregate(&results);
        assert_eq!(result.forbidden_detail(), "a, unknown forbidden reason (d)");
        assert_eq!(result.forbidden_reason(), "a, unknown forbidden reason");
        assert!(aggregate(&[CheckResult::allow()]).allowed);
    }
}
