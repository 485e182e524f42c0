//! The order kube gives API versions (`version.CompareKubeAwareVersionStrings`): GA before
//! beta before alpha, then the higher major, then the higher minor (`v2`, `v1`,
//! `v11beta2`, `v10beta3`, `v3beta1`, `v12alpha1`…); strings that are not kube versions
//! come after every kube version, in reverse lexical order (`foo1` before `foo10`).
//! Discovery lists a CRD's versions in this order and prefers the first.

use std::cmp::Ordering;

/// Stability of a kube version, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stability {
    Alpha,
    Beta,
    Ga,
}

/// `v<major>[(alpha|beta)<minor>]`, as kube's `parseKubeVersion` reads it.
fn parse(version: &str) -> Option<(u64, Stability, u64)> {
    let rest = version.strip_prefix('v')?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (major, rest) = rest.split_at(digits);
    if major.is_empty() || major.starts_with('0') {
        return None;
    }
    let major = major.parse().ok()?;
    if rest.is_empty() {
        return Some((major, Stability::Ga, 0));
    }
    let (stability, minor) = if let Some(minor) = rest.strip_prefix("alpha") {
        (Stability::Alpha, minor)
    } else if let Some(minor) = rest.strip_prefix("beta") {
        (Stability::Beta, minor)
    } else {
        return None;
    };
    if minor.is_empty() || minor.starts_with('0') || !minor.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((major, stability, minor.parse().ok()?))
}

/// How `a` compares with `b` in priority: `Greater` when `a` comes first.
pub fn priority(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    match (parse(a), parse(b)) {
        (None, None) => b.cmp(a),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some((a_major, a_stability, a_minor)), Some((b_major, b_stability, b_minor))) => {
            a_stability
                .cmp(&b_stability)
                .then(a_major.cmp(&b_major))
                .then(a_minor.cmp(&b_minor))
        }
    }
}

/// Sort `versions` highest priority first.
pub fn sort<T>(versions: &mut [T], name: impl Fn(&T) -> &str) {
    versions.sort_by(|a, b| priority(name(b), name(a)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_aware_order() {
        let mut versions = vec![
            "foo10",
            "v11alpha2",
            "v1",
            "v3beta1",
            "v12alpha1",
            "v2",
            "foo1",
            "v10beta3",
            "v11beta2",
            "v10",
        ];
        sort(&mut versions, |v| v);
        assert_eq!(
            versions,
            [
                "v10",
                "v2",
                "v1",
                "v11beta2",
                "v10beta3",
                "v3beta1",
                "v12alpha1",
                "v11alpha2",
                "foo1",
                "foo10"
            ]
        );
        assert_eq!(priority("v1", "v1beta1"), Ordering::Greater);
        assert_eq!(priority("v1beta1", "v1beta2"), Ordering::Less);
        assert_eq!(priority("v1alpha1", "v1beta1"), Ordering::Less);
        assert_eq!(
            priority("v1", "v0"),
            Ordering::Greater,
            "v0 is no kube version"
        );
    }
}
