//! Pod Security levels and versions, and a namespace's policy read from its labels, as
//! k8s.io/pod-security-admission/api (constants.go, helpers.go).

use std::{collections::BTreeMap, fmt};

use crate::model::validation::FieldError;

/// Prefix of the Pod Security namespace labels and audit annotations.
pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
/// Namespace label: the level enforced (pods violating it are refused).
pub const ENFORCE_LEVEL_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// Namespace label: the version of the enforced level.
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
/// Namespace label: the level audited (violations are recorded in the audit log).
pub const AUDIT_LEVEL_LABEL: &str = "pod-security.kubernetes.io/audit";
/// Namespace label: the version of the audited level.
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
/// Namespace label: the level warned about (violations come back as warnings).
pub const WARN_LEVEL_LABEL: &str = "pod-security.kubernetes.io/warn";
/// Namespace label: the version of the warned level.
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

const LEVEL_ERROR: &str = "must be one of privileged, baseline, restricted";
const VERSION_ERROR: &str = "must be \"latest\" or \"v1.x\"";

/// A Pod Security Standard level, from least to most strict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Unrestricted.
    Privileged,
    /// Prevents known privilege escalations.
    Baseline,
    /// Current pod hardening best practice.
    Restricted,
}

impl Level {
    /// Parses a level label value (`privileged`, `baseline`, `restricted`).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "privileged" => Some(Self::Privileged),
            "baseline" => Some(Self::Baseline),
            "restricted" => Some(Self::Restricted),
            _ => None,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy version: `latest` or `v1.<minor>`. Ordered by age; `latest` is newer than every
/// numbered version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// `v1.<minor>`.
    V1(u64),
    /// `latest`: the newest checks this server knows.
    Latest,
}

impl Version {
    /// Parses a version label value: `latest` or `v1.x` (no leading zeros), as kube's
    /// `ParseVersion`.
    pub fn parse(value: &str) -> Option<Self> {
        if value == "latest" {
            return Some(Self::Latest);
        }
        let minor = value.strip_prefix("v1.")?;
        let digits_only = !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit());
        if !digits_only || (minor.len() > 1 && minor.starts_with('0')) {
            return None;
        }
        // Go's strconv.Atoi: a value beyond int64 is an error.
        let minor: i64 = minor.parse().ok()?;
        u64::try_from(minor).ok().map(Self::V1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::V1(minor) => write!(f, "v1.{minor}"),
        }
    }
}

/// A level at a version; displays as `baseline:latest`, `restricted:v1.29`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    /// The level.
    pub level: Level,
    /// The version of the level's checks.
    pub version: Version,
}

impl LevelVersion {
    /// A level at a version.
    pub fn new(level: Level, version: Version) -> Self {
        Self { level, version }
    }

    /// `privileged:latest`, kube's default for every mode.
    pub fn privileged() -> Self {
        Self::new(Level::Privileged, Version::Latest)
    }

    /// Functionally the same: both privileged (at any version), or equal.
    pub fn equivalent(&self, other: &Self) -> bool {
        (self.level == Level::Privileged && other.level == Level::Privileged) || self == other
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

/// A namespace's policy: what is enforced, audited and warned about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Violations are refused (pods only).
    pub enforce: LevelVersion,
    /// Violations are recorded in the audit annotations.
    pub audit: LevelVersion,
    /// Violations come back as warnings.
    pub warn: LevelVersion,
}

impl Default for Policy {
    /// `privileged:latest` for every mode, as kube's PodSecurityConfiguration defaults.
    fn default() -> Self {
        Self {
            enforce: LevelVersion::privileged(),
            audit: LevelVersion::privileged(),
            warn: LevelVersion::privileged(),
        }
    }
}

impl Policy {
    /// All three modes privileged: nothing to check.
    pub fn fully_privileged(&self) -> bool {
        self.enforce.level == Level::Privileged
            && self.audit.level == Level::Privileged
            && self.warn.level == Level::Privileged
    }

    /// All three modes equivalent (see [`LevelVersion::equivalent`]).
    pub fn equivalent(&self, other: &Self) -> bool {
        self.enforce.equivalent(&other.enforce)
            && self.audit.equivalent(&other.audit)
            && self.warn.equivalent(&other.warn)
    }
}

/// The policy a namespace's labels ask for, over `defaults` for labels not set, as kube's
/// `PolicyToEvaluate`. A usable policy always comes back; the errors (one per bad label,
/// `metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "x": must be one of
/// privileged, baseline, restricted`) say which labels were ignored. A bad enforce level
/// enforces `restricted` (fail closed); a bad audit or warn level is `privileged` (fail
/// open); a bad version is `latest`. When the enforce level is set, valid and stricter than
/// warn, and warn is not set, warn follows enforce (and its version, unless warn-version is
/// set).
pub fn policy_to_evaluate(
    labels: &BTreeMap<String, String>,
    defaults: &Policy,
) -> (Policy, Vec<FieldError>) {
    let mut policy = *defaults;
    let mut errors = Vec::new();
    if labels.is_empty() {
        return (policy, errors);
    }
    let mut has_enforce_level = false;
    if let Some(value) = labels.get(ENFORCE_LEVEL_LABEL) {
        policy.enforce.level = parse_level(ENFORCE_LEVEL_LABEL, value, &mut errors)
            .inspect(|_| has_enforce_level = true)
            .unwrap_or(Level::Restricted);
    }
    if let Some(value) = labels.get(ENFORCE_VERSION_LABEL) {
        policy.enforce.version = parse_version(ENFORCE_VERSION_LABEL, value, &mut errors);
    }
    if let Some(value) = labels.get(AUDIT_LEVEL_LABEL) {
        policy.audit.level =
            parse_level(AUDIT_LEVEL_LABEL, value, &mut errors).unwrap_or(Level::Privileged);
    }
    if let Some(value) = labels.get(AUDIT_VERSION_LABEL) {
        policy.audit.version = parse_version(AUDIT_VERSION_LABEL, value, &mut errors);
    }
    let has_warn_level = labels.contains_key(WARN_LEVEL_LABEL);
    if let Some(value) = labels.get(WARN_LEVEL_LABEL) {
        policy.warn.level =
            parse_level(WARN_LEVEL_LABEL, value, &mut errors).unwrap_or(Level::Privileged);
    }
    let has_warn_version = labels.contains_key(WARN_VERSION_LABEL);
    if let Some(value) = labels.get(WARN_VERSION_LABEL) {
        policy.warn.version = parse_version(WARN_VERSION_LABEL, value, &mut errors);
    }
    if !has_warn_level && has_enforce_level && policy.enforce.level > policy.warn.level {
        policy.warn.level = policy.enforce.level;
        if !has_warn_version {
            policy.warn.version = policy.enforce.version;
        }
    }
    (policy, errors)
}

fn label_field(label: &str) -> String {
    format!("metadata.labels[{label}]")
}

fn parse_level(label: &str, value: &str, errors: &mut Vec<FieldError>) -> Option<Level> {
    let level = Level::parse(value);
    if level.is_none() {
        errors.push(FieldError::invalid(label_field(label), value, LEVEL_ERROR));
    }
    level
}

fn parse_version(label: &str, value: &str, errors: &mut Vec<FieldError>) -> Version {
    Version::parse(value).unwrap_or_else(|| {
        errors.push(FieldError::invalid(
            label_field(label),
            value,
            VERSION_ERROR,
        ));
        Version::Latest
    })
}

/// The errors as one message, as Go's `ErrorList.ToAggregate().Error()`: one error alone,
/// several as `[a, b]` with duplicates dropped. kube records it in the audit annotation
/// `error` as `Failed to parse policy: <message>`.
pub fn errors_message(errors: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for message in errors.iter().map(ToString::to_string) {
        if !seen.contains(&message) {
            seen.push(message);
        }
    }
    match seen.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn lv(level: Level, version: Version) -> LevelVersion {
        LevelVersion::new(level, version)
    }

    #[test]
    fn versions_parse_as_kube() {
        assert_eq!(Version::parse("latest"), Some(Version::Latest));
        assert_eq!(Version::parse("v1.0"), Some(Version::V1(0)));
        assert_eq!(Version::parse("v1.33"), Some(Version::V1(33)));
        for bad in [
            "", "v1", "v1.", "v1.01", "1.25", "v2.0", "v1.x", "v1.-1", "Latest", "v1.2a",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        assert!(Version::V1(32) < Version::V1(33));
        assert!(Version::V1(10_000) < Version::Latest);
        assert_eq!(Version::V1(29).to_string(), "v1.29");
        assert_eq!(
            lv(Level::Baseline, Version::Latest).to_string(),
            "baseline:latest"
        );
    }

    #[test]
    fn no_labels_is_the_defaults() {
        let defaults = Policy {
            enforce: lv(Level::Baseline, Version::V1(30)),
            ..Policy::default()
        };
        let (policy, errors) = policy_to_evaluate(&BTreeMap::new(), &defaults);
        assert_eq!(policy, defaults);
        assert!(errors.is_empty());
        assert!(Policy::default().fully_privileged());
    }

    #[test]
    fn labels_set_each_mode() {
        let (policy, errors) = policy_to_evaluate(
            &labels(&[
                (ENFORCE_LEVEL_LABEL, "baseline"),
                (ENFORCE_VERSION_LABEL, "v1.30"),
                (AUDIT_LEVEL_LABEL, "restricted"),
                (WARN_LEVEL_LABEL, "restricted"),
                (WARN_VERSION_LABEL, "v1.25"),
            ]),
            &Policy::default(),
        );
        assert!(errors.is_empty());
        assert_eq!(policy.enforce, lv(Level::Baseline, Version::V1(30)));
        assert_eq!(policy.audit, lv(Level::Restricted, Version::Latest));
        assert_eq!(policy.warn, lv(Level::Restricted, Version::V1(25)));
    }

    #[test]
    fn warn_follows_a_stricter_enforce_unless_set() {
        let (policy, _) = policy_to_evaluate(
            &labels(&[
                (ENFORCE_LEVEL_LABEL, "restricted"),
                (ENFORCE_VERSION_LABEL, "v1.29"),
            ]),
            &Policy::default(),
        );
        assert_eq!(policy.warn, lv(Level::Restricted, Version::V1(29)));
        let (policy, _) = policy_to_evaluate(
            &labels(&[
                (ENFORCE_LEVEL_LABEL, "restricted"),
                (ENFORCE_VERSION_LABEL, "v1.29"),
                (WARN_VERSION_LABEL, "v1.31"),
            ]),
            &Policy::default(),
        );
        assert_eq!(policy.warn, lv(Level::Restricted, Version::V1(31)));
        // An explicit warn level (even a laxer one) is kept.
        let (policy, _) = policy_to_evaluate(
            &labels(&[
                (ENFORCE_LEVEL_LABEL, "restricted"),
                (WARN_LEVEL_LABEL, "privileged"),
            ]),
            &Policy::default(),
        );
        assert_eq!(policy.warn.level, Level::Privileged);
    }

    #[test]
    fn bad_labels_fail_closed_for_enforce_and_open_for_audit_and_warn() {
        let (policy, errors) = policy_to_evaluate(
            &labels(&[
                (ENFORCE_LEVEL_LABEL, "strict"),
                (ENFORCE_VERSION_LABEL, "1.25"),
                (AUDIT_LEVEL_LABEL, "loud"),
                (WARN_LEVEL_LABEL, "noisy"),
            ]),
            &Policy::default(),
        );
        assert_eq!(policy.enforce, lv(Level::Restricted, Version::Latest));
        assert_eq!(policy.audit.level, Level::Privileged);
        // A bad enforce level does not default warn to restricted.
        assert_eq!(policy.warn.level, Level::Privileged);
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages[0],
            "metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strict\": \
             must be one of privileged, baseline, restricted"
        );
        assert!(
            messages[1].starts_with(
                "metadata.labels[pod-security.kubernetes.io/enforce-version]: Invalid value: "
            ) && messages[1].ends_with(": must be \"latest\" or \"v1.x\""),
            "{}",
            messages[1]
        );
        assert_eq!(errors.len(), 4);
        assert!(errors_message(&errors).starts_with("[metadata.labels[pod-security"));
        assert_eq!(errors_message(&errors[..1]), messages[0]);
    }

    #[test]
    fn equivalence_ignores_privileged_versions() {
        let a = Policy::default();
        let mut b = Policy::default();
        b.audit.version = Version::V1(20);
        assert!(a.equivalent(&b));
        b.warn.level = Level::Baseline;
        assert!(!a.equivalent(&b));
    }
}
