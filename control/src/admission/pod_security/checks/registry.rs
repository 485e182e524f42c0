//! Which checks run for a level at a version (policy/registry.go and each check's
//! `Versions`): baseline checks for baseline; for restricted, the restricted checks plus the
//! baseline checks none of them overrides. Results come in kube's order: baseline check IDs
//! sorted, then restricted check IDs sorted.

use k8s_openapi::{api::core::v1::PodSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};

use super::{CheckResult, host, privilege, profiles, sysctls, users, volumes};
use crate::admission::pod_security::level::{Level, LevelVersion, Version};

/// A check version's function.
pub type CheckFn = fn(&ObjectMeta, &PodSpec) -> CheckResult;

/// A check's ID (kube's `CheckID`): `hostPathVolumes`, `runAsNonRoot`.
pub type CheckId = &'static str;

/// The newest policy version any check changed at (kube: the registry's `maxVersion`).
/// `latest` and every newer version evaluate as this one.
pub const MAX_CHECK_VERSION: Version = Version::V1(32);

/// One check: its level and its revisions.
struct Check {
    id: CheckId,
    /// `Baseline` or `Restricted`.
    level: Level,
    /// Strictly increasing minimum versions.
    versions: &'static [VersionedCheck],
}

/// One revision of a check, in force from `minimum` (a v1 minor) until the next revision.
struct VersionedCheck {
    minimum: u64,
    check: CheckFn,
    /// Baseline checks this restricted check replaces at the restricted level.
    overrides: &'static [CheckId],
}

const fn since(minimum: u64, check: CheckFn) -> VersionedCheck {
    VersionedCheck {
        minimum,
        check,
        overrides: &[],
    }
}

const fn since_overriding(
    minimum: u64,
    check: CheckFn,
    overrides: &'static [CheckId],
) -> VersionedCheck {
    VersionedCheck {
        minimum,
        check,
        overrides,
    }
}

const CAPABILITIES_BASELINE: CheckId = "capabilities_baseline";
const HOST_PATH_VOLUMES: CheckId = "hostPathVolumes";
const SECCOMP_PROFILE_BASELINE: CheckId = "seccompProfile_baseline";

/// Every check of Kubernetes 1.33's Pod Security admission.
const CHECKS: &[Check] = &[
    // Baseline.
    Check {
        id: "appArmorProfile",
        level: Level::Baseline,
        versions: &[since(0, profiles::app_armor_profile_1_0)],
    },
    Check {
        id: CAPABILITIES_BASELINE,
        level: Level::Baseline,
        versions: &[since(0, privilege::capabilities_baseline_1_0)],
    },
    Check {
        id: "hostNamespaces",
        level: Level::Baseline,
        versions: &[since(0, host::host_namespaces_1_0)],
    },
    Check {
        id: HOST_PATH_VOLUMES,
        level: Level::Baseline,
        versions: &[since(0, host::host_path_volumes_1_0)],
    },
    Check {
        id: "hostPorts",
        level: Level::Baseline,
        versions: &[since(0, host::host_ports_1_0)],
    },
    Check {
        id: "privileged",
        level: Level::Baseline,
        versions: &[since(0, privilege::privileged_1_0)],
    },
    Check {
        id: "procMount",
        level: Level::Baseline,
        versions: &[since(0, privilege::proc_mount_1_0)],
    },
    Check {
        id: "seLinuxOptions",
        level: Level::Baseline,
        versions: &[
            since(0, profiles::se_linux_options_1_0),
            since(31, profiles::se_linux_options_1_31),
        ],
    },
    Check {
        id: SECCOMP_PROFILE_BASELINE,
        level: Level::Baseline,
        versions: &[
            since(0, profiles::seccomp_profile_baseline_1_0),
            since(19, profiles::seccomp_profile_baseline_1_19),
        ],
    },
    Check {
        id: "sysctls",
        level: Level::Baseline,
        versions: &[
            since(0, sysctls::sysctls_1_0),
            since(27, sysctls::sysctls_1_27),
            since(29, sysctls::sysctls_1_29),
            since(32, sysctls::sysctls_1_32),
        ],
    },
    Check {
        id: "windowsHostProcess",
        level: Level::Baseline,
        versions: &[since(0, host::windows_host_process_1_0)],
    },
    // Restricted.
    Check {
        id: "allowPrivilegeEscalation",
        level: Level::Restricted,
        versions: &[
            since(8, privilege::allow_privilege_escalation_1_8),
            since(25, privilege::allow_privilege_escalation_1_25),
        ],
    },
    Check {
        id: "capabilities_restricted",
        level: Level::Restricted,
        versions: &[
            since_overriding(
                22,
                privilege::capabilities_restricted_1_22,
                &[CAPABILITIES_BASELINE],
            ),
            since_overriding(
                25,
                privilege::capabilities_restricted_1_25,
                &[CAPABILITIES_BASELINE],
            ),
        ],
    },
    Check {
        id: "restrictedVolumes",
        level: Level::Restricted,
        versions: &[since_overriding(
            0,
            volumes::restricted_volumes_1_0,
            &[HOST_PATH_VOLUMES],
        )],
    },
    Check {
        id: "runAsNonRoot",
        level: Level::Restricted,
        versions: &[since(0, users::run_as_non_root_1_0)],
    },
    Check {
        id: "runAsUser",
        level: Level::Restricted,
        versions: &[since(23, users::run_as_user_1_23)],
    },
    Check {
        id: "seccompProfile_restricted",
        level: Level::Restricted,
        versions: &[
            since_overriding(
                19,
                profiles::seccomp_profile_restricted_1_19,
                &[SECCOMP_PROFILE_BASELINE],
            ),
            since_overriding(
                25,
                profiles::seccomp_profile_restricted_1_25,
                &[SECCOMP_PROFILE_BASELINE],
            ),
        ],
    },
];

/// The v1 minor a level-version evaluates at: `latest` and anything newer than
/// [`MAX_CHECK_VERSION`] are capped to it.
fn effective_minor(version: Version) -> u64 {
    let max = match MAX_CHECK_VERSION {
        Version::V1(minor) => minor,
        Version::Latest => u64::MAX,
    };
    match version {
        Version::V1(minor) => minor.min(max),
        Version::Latest => max,
    }
}

/// The checks that apply to `level_version`, with the revision each runs, in kube's order
/// (baseline IDs sorted, then restricted IDs sorted). None for `privileged`.
pub fn applicable_checks(level_version: LevelVersion) -> Vec<(CheckId, CheckFn)> {
    if level_version.level == Level::Privileged {
        return Vec::new();
    }
    let minor = effective_minor(level_version.version);
    let active: Vec<(&Check, &VersionedCheck)> = CHECKS
        .iter()
        .filter(|check| check.level == Level::Baseline || level_version.level == Level::Restricted)
        .filter_map(|check| {
            let revision = check.versions.iter().rev().find(|v| v.minimum <= minor)?;
            Some((check, revision))
        })
        .collect();
    let overridden: Vec<CheckId> = active
        .iter()
        .filter(|(check, _)| check.level == Level::Restricted)
        .flat_map(|(_, revision)| revision.overrides.iter().copied())
        .collect();
    let mut selected: Vec<(Level, CheckId, CheckFn)> = active
        .into_iter()
        .filter(|(check, _)| check.level == Level::Restricted || !overridden.contains(&check.id))
        .map(|(check, revision)| (check.level, check.id, revision.check))
        .collect();
    selected.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    selected
        .into_iter()
        .map(|(_, id, check)| (id, check))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(level: Level, version: Version) -> Vec<CheckId> {
        applicable_checks(LevelVersion::new(level, version))
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    #[test]
    fn the_table_is_well_formed() {
        let mut newest = 0;
        for (i, check) in CHECKS.iter().enumerate() {
            assert!(
                CHECKS[..i].iter().all(|other| other.id != check.id),
                "{} twice",
                check.id
            );
            assert!(matches!(check.level, Level::Baseline | Level::Restricted));
            assert!(!check.versions.is_empty());
            assert!(
                check
                    .versions
                    .windows(2)
                    .all(|w| w[0].minimum < w[1].minimum)
            );
            for revision in check.versions {
                for id in revision.overrides {
                    assert_eq!(check.level, Level::Restricted);
                    let target = CHECKS.iter().find(|c| c.id == *id).expect("known id");
                    assert_eq!(target.level, Level::Baseline);
                }
            }
            newest = newest.max(check.versions.last().map_or(0, |v| v.minimum));
        }
        assert_eq!(MAX_CHECK_VERSION, Version::V1(newest));
    }

    #[test]
    fn privileged_runs_nothing() {
        assert!(ids(Level::Privileged, Version::Latest).is_empty());
        assert!(ids(Level::Privileged, Version::V1(0)).is_empty());
    }

    #[test]
    fn baseline_runs_every_baseline_check_in_id_order() {
        assert_eq!(
            ids(Level::Baseline, Version::Latest),
            [
                "appArmorProfile",
                "capabilities_baseline",
                "hostNamespaces",
                "hostPathVolumes",
                "hostPorts",
                "privileged",
                "procMount",
                "seLinuxOptions",
                "seccompProfile_baseline",
                "sysctls",
                "windowsHostProcess",
            ]
        );
    }

    #[test]
    fn restricted_replaces_overridden_baseline_checks() {
        assert_eq!(
            ids(Level::Restricted, Version::Latest),
            [
                "appArmorProfile",
                "hostNamespaces",
                "hostPorts",
                "privileged",
                "procMount",
                "seLinuxOptions",
                "sysctls",
                "windowsHostProcess",
                "allowPrivilegeEscalation",
                "capabilities_restricted",
                "restrictedVolumes",
                "runAsNonRoot",
                "runAsUser",
                "seccompProfile_restricted",
            ]
        );
    }

    #[test]
    fn old_versions_run_the_checks_of_their_time() {
        // Before 1.8 no allowPrivilegeEscalation, before 1.19 the seccomp annotations of
        // baseline, before 1.22 baseline capabilities, before 1.23 no runAsUser.
        assert_eq!(
            ids(Level::Restricted, Version::V1(7)),
            [
                "appArmorProfile",
                "capabilities_baseline",
                "hostNamespaces",
                "hostPorts",
                "privileged",
                "procMount",
                "seLinuxOptions",
                "seccompProfile_baseline",
                "sysctls",
                "windowsHostProcess",
                "restrictedVolumes",
                "runAsNonRoot",
            ]
        );
        let at_22 = ids(Level::Restricted, Version::V1(22));
        assert!(at_22.contains(&"capabilities_restricted"));
        assert!(!at_22.contains(&"capabilities_baseline"));
        assert!(!at_22.contains(&"runAsUser"));
        assert!(ids(Level::Restricted, Version::V1(23)).contains(&"runAsUser"));
    }

    #[test]
    fn future_versions_are_latest() {
        let latest = applicable_checks(LevelVersion::new(Level::Restricted, Version::Latest));
        let future = applicable_checks(LevelVersion::new(Level::Restricted, Version::V1(10_000)));
        assert_eq!(latest.len(), future.len());
        for ((a, fa), (b, fb)) in latest.iter().zip(&future) {
            assert_eq!(a, b);
            assert!(std::ptr::fn_addr_eq(*fa, *fb), "{a} runs the same revision");
        }
    }
}
