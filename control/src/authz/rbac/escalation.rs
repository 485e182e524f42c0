//! Privilege-escalation prevention, as kube's RBAC storage does it: a user may create or
//! update a Role or ClusterRole, or bind one, only if they already hold every permission it
//! grants (`Covers` in `k8s.io/component-helpers/auth/rbac/validation`, `ConfirmNoEscalation`
//! in `pkg/registry/rbac/validation/rule.go`), unless they are in `system:masters` or are
//! allowed the `escalate` verb on the role (`bind` on the referenced role, for bindings)
//! (`pkg/registry/rbac/escalation_check.go`).
//!
//! The caller decides when to check: on create/update of a Role or ClusterRole
//! ([`escalation_allowed`], then the authorizer on [`escalate_attributes`], then
//! [`confirm_no_escalation`] with the role's rules), and on create/update of a binding
//! ([`escalation_allowed`], then the authorizer on [`bind_attributes`], then
//! [`confirm_no_escalation`] with [`super::RbacPolicy::role_reference_rules`]).

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};

use super::{
    format::{compact_string, go_quote, go_quote_list},
    policy::ResolvedRules,
    rules::{API_GROUP_ALL, NON_RESOURCE_ALL, RESOURCE_ALL, VERB_ALL, values},
};
use crate::{
    authz::Attributes,
    model::user::{MASTERS, UserInfo},
};

/// The detail of the 403 a ClusterRole with an aggregationRule gets from a user without
/// full authority (kube: only cluster-admins may aggregate, since aggregation can gather
/// anything).
pub const AGGREGATION_RULE_FORBIDDEN: &str =
    "must have cluster-admin privileges to use the aggregationRule";

/// A refused grant: the user lacks some of the permissions the role would grant.
/// Displays as kube words it, one missing rule a line in the compact form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.message())]
pub struct EscalationError {
    /// The user's name.
    pub user: String,
    /// The user's groups.
    pub groups: Vec<String>,
    /// The permissions not held, compacted (rules of one group and resource merged).
    pub missing: Vec<PolicyRule>,
    /// Errors met resolving the user's own rules (a binding to a missing role).
    pub resolution_errors: Vec<String>,
}

impl EscalationError {
    fn message(&self) -> String {
        let descriptions: BTreeSet<String> = self.missing.iter().map(compact_string).collect();
        let lines: Vec<String> = descriptions.into_iter().collect();
        let mut message = format!(
            "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
            go_quote(&self.user),
            go_quote_list(&self.groups),
            lines.join("\n")
        );
        if !self.resolution_errors.is_empty() {
            // kube appends the resolver's one aggregate error as a Go slice: `[error]`.
            message.push_str(&format!(
                "; resolution errors: [{}]",
                super::format::aggregate_errors(&self.resolution_errors)
            ));
        }
        message
    }
}

/// True if the user may grant anything without checks: members of `system:masters`.
pub fn escalation_allowed(user: &UserInfo) -> bool {
    user.in_group(MASTERS)
}

/// The request to authorize for "may this user create or update a role granting more than
/// they hold": verb `escalate` on the Role or ClusterRole being written. `resource` is
/// `roles` or `clusterroles`; `namespace` is "" for ClusterRoles.
pub fn escalate_attributes(
    user: &UserInfo,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: "escalate".to_owned(),
        resource_request: true,
        namespace: namespace.to_owned(),
        api_group: "rbac.authorization.k8s.io".to_owned(),
        api_version: "v1".to_owned(),
        resource: resource.to_owned(),
        name: name.to_owned(),
        ..Attributes::default()
    }
}

/// The request to authorize for "may this user bind this role here whatever it grants":
/// verb `bind` on the referenced Role or ClusterRole, in the binding's namespace ("" for a
/// ClusterRoleBinding). `None` for a reference to another kind (never authorized).
pub fn bind_attributes(
    user: &UserInfo,
    role_ref: &RoleRef,
    binding_namespace: &str,
) -> Option<Attributes> {
    let resource = match role_ref.kind.as_str() {
        "ClusterRole" => "clusterroles",
        "Role" => "roles",
        _ => return None,
    };
    Some(Attributes {
        user: user.clone(),
        verb: "bind".to_owned(),
        resource_request: true,
        namespace: binding_namespace.to_owned(),
        api_group: role_ref.api_group.clone(),
        resource: resource.to_owned(),
        name: role_ref.name.clone(),
        ..Attributes::default()
    })
}

/// Rules granting everything (cluster-admin's): what a user must hold to set an
/// aggregationRule.
pub fn full_authority() -> Vec<PolicyRule> {
    vec![
        PolicyRule {
            verbs: vec![VERB_ALL.to_owned()],
            api_groups: Some(vec![API_GROUP_ALL.to_owned()]),
            resources: Some(vec![RESOURCE_ALL.to_owned()]),
            ..PolicyRule::default()
        },
        PolicyRule {
            verbs: vec![VERB_ALL.to_owned()],
            non_resource_urls: Some(vec![NON_RESOURCE_ALL.to_owned()]),
            ..PolicyRule::default()
        },
    ]
}

/// Ok if `owner` (the user's rules where the role applies: [`super::RbacPolicy::rules_for`]
/// in the role's or binding's namespace, "" for cluster-wide) covers every permission in
/// `requested`; otherwise the error kube returns.
pub fn confirm_no_escalation(
    user: &UserInfo,
    owner: &ResolvedRules,
    requested: &[PolicyRule],
) -> Result<(), EscalationError> {
    let (covered, missing) = covers(&owner.rules, requested);
    if covered {
        return Ok(());
    }
    Err(EscalationError {
        user: user.name.clone(),
        groups: user.groups.clone(),
        missing: compact_rules(missing),
        resolution_errors: owner.errors.clone(),
    })
}

/// Most atomic rules a coverage check looks at. A rule's atoms are the product of its
/// groups, resources, verbs and names — a 16 KB Role can ask for 10^12 — so beyond this the
/// check refuses instead of working for ever (kube walks them all).
pub const MAX_ATOMS: usize = 100_000;
/// Most uncovered atomic rules reported.
const MAX_REPORTED: usize = 100;

/// Whether `owner` covers `requested`, and the atomic rules it does not cover. Each
/// requested rule is broken into rules of one verb, one group, one resource and at most one
/// resource name (or one verb and one URL); each must be covered by a single owner rule.
/// A requested rule that one owner rule covers whole is not broken down; past
/// [`MAX_ATOMS`] atoms the answer is "not covered".
pub fn covers(owner: &[PolicyRule], requested: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let mut uncovered = Vec::new();
    let mut looked_at = 0usize;
    let mut exhausted = false;
    for rule in requested {
        if owner.iter().any(|o| rule_covers(o, rule)) {
            continue;
        }
        for atom in breakdown(rule) {
            looked_at += 1;
            if looked_at > MAX_ATOMS {
                exhausted = true;
                break;
            }
            if !owner.iter().any(|o| rule_covers(o, &atom)) && uncovered.len() < MAX_REPORTED {
                uncovered.push(atom);
            }
        }
        if exhausted {
            break;
        }
    }
    if exhausted && uncovered.is_empty() {
        // Refuse, naming the rule that was too large to check.
        uncovered.extend(requested.iter().take(1).cloned());
    }
    (uncovered.is_empty(), uncovered)
}

/// A rule as equivalent atomic rules: one per (group, resource, verb[, resource name]) and
/// one per (non-resource URL, verb).
pub fn breakdown_rule(rule: &PolicyRule) -> Vec<PolicyRule> {
    breakdown(rule).collect()
}

/// [`breakdown_rule`], lazily.
fn breakdown(rule: &PolicyRule) -> impl Iterator<Item = PolicyRule> + '_ {
    let names = values(&rule.resource_names);
    let resource_atoms = values(&rule.api_groups).iter().flat_map(move |group| {
        values(&rule.resources).iter().flat_map(move |resource| {
            rule.verbs.iter().flat_map(move |verb| {
                let atomic = move |names: Option<Vec<String>>| PolicyRule {
                    api_groups: Some(vec![group.clone()]),
                    resources: Some(vec![resource.clone()]),
                    verbs: vec![verb.clone()],
                    resource_names: names,
                    non_resource_urls: None,
                };
                let unnamed = names.is_empty().then(|| atomic(None));
                unnamed.into_iter().chain(
                    names
                        .iter()
                        .map(move |name| atomic(Some(vec![name.clone()]))),
                )
            })
        })
    });
    let url_atoms = values(&rule.non_resource_urls).iter().flat_map(move |url| {
        rule.verbs.iter().map(move |verb| PolicyRule {
            non_resource_urls: Some(vec![url.clone()]),
            verbs: vec![verb.clone()],
            ..PolicyRule::default()
        })
    });
    resource_atoms.chain(url_atoms)
}

/// Missing rules merged for display as kube does (`CompactRules`): rules with one group, one
/// resource, verbs and nothing else are merged per (group, resource); others stay as they are.
pub fn compact_rules(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut compacted = Vec::with_capacity(rules.len());
    let mut simple: Vec<PolicyRule> = Vec::new();
    let mut simple_index: HashMap<(String, String), usize> = HashMap::new();
    for rule in rules {
        match simple_key(&rule) {
            Some(key) => match simple_index.get(&key) {
                Some(&index) => {
                    if let Some(existing) = simple.get_mut(index) {
                        existing.verbs.extend(rule.verbs);
                    }
                }
                None => {
                    simple_index.insert(key, simple.len());
                    simple.push(rule);
                }
            },
            None => compacted.push(rule),
        }
    }
    compacted.extend(simple);
    compacted
}

/// (group, resource) of a rule with exactly one of each and only verbs besides.
fn simple_key(rule: &PolicyRule) -> Option<(String, String)> {
    if !values(&rule.resource_names).is_empty() || !values(&rule.non_resource_urls).is_empty() {
        return None;
    }
    match (values(&rule.api_groups), values(&rule.resources)) {
        ([group], [resource]) => Some((group.clone(), resource.clone())),
        _ => None,
    }
}

fn has(set: &[String], element: &str) -> bool {
    set.iter().any(|item| item == element)
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|item| has(set, item))
}

/// True if the owner's resources cover all of `wanted`: `*`, exact, or `*/sub` for a
/// subresource.
fn resources_cover_all(owner: &[String], wanted: &[String]) -> bool {
    if has(owner, RESOURCE_ALL) || has_all(owner, wanted) {
        return true;
    }
    wanted.iter().all(|path| {
        has(owner, path)
            || path
                .split_once('/')
                .is_some_and(|(_, sub)| has(owner, &format!("*/{sub}")))
    })
}

fn non_resource_urls_cover_all(owner: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|path| {
        owner.iter().any(|url| {
            url == path || (url.ends_with('*') && path.starts_with(url.trim_end_matches('*')))
        })
    })
}

/// True if one owner rule covers one atomic rule (kube's `ruleCovers`).
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, VERB_ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = has(values(&owner.api_groups), API_GROUP_ALL)
        || has_all(values(&owner.api_groups), values(&sub.api_groups));
    let resources = resources_cover_all(values(&owner.resources), values(&sub.resources));
    let urls = non_resource_urls_cover_all(
        values(&owner.non_resource_urls),
        values(&sub.non_resource_urls),
    );
    let owner_names = values(&owner.resource_names);
    let sub_names = values(&sub.resource_names);
    let names = if sub_names.is_empty() {
        owner_names.is_empty()
    } else {
        owner_names.is_empty() || has_all(owner_names, sub_names)
    };
    verbs && groups && resources && names && urls
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    fn list(n: usize, prefix: &str) -> Option<Vec<String>> {
        Some((0..n).map(|i| format!("{prefix}{i}")).collect())
    }

    #[test]
    fn a_huge_rule_is_refused_quickly_not_expanded() {
        let huge = PolicyRule {
            api_groups: list(1_000, "g"),
            resources: list(1_000, "r"),
            verbs: list(1_000, "v").unwrap_or_default(),
            resource_names: list(1_000, "n"),
            non_resource_urls: None,
        };
        let started = std::time::Instant::now();
        let (covered, missing) = covers(&[], std::slice::from_ref(&huge));
        assert!(!covered);
        assert!(missing.len() <= MAX_REPORTED);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Held whole by a wildcard owner rule: covered without a breakdown.
        let everything = full_authority();
        assert!(covers(&everything, std::slice::from_ref(&huge)).0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::rbac::rules::tests::{rule, strings, url_rule};

    fn named(groups: &[&str], resources: &[&str], names: &[&str], verbs: &[&str]) -> PolicyRule {
        PolicyRule {
            resource_names: Some(strings(names)),
            ..rule(groups, resources, verbs)
        }
    }

    fn owner(rules: Vec<PolicyRule>) -> ResolvedRules {
        ResolvedRules {
            rules,
            errors: vec![],
        }
    }

    #[test]
    fn breaks_rules_into_atoms() {
        let atoms = breakdown_rule(&named(&["", "apps"], &["pods"], &["a", "b"], &["get"]));
        assert_eq!(
            atoms,
            vec![
                named(&[""], &["pods"], &["a"], &["get"]),
                named(&[""], &["pods"], &["b"], &["get"]),
                named(&["apps"], &["pods"], &["a"], &["get"]),
                named(&["apps"], &["pods"], &["b"], &["get"]),
            ]
        );
        assert_eq!(
            breakdown_rule(&url_rule(&["/a", "/b"], &["get", "post"])).len(),
            4
        );
        // A rule with resources but no groups grants nothing, so requests nothing.
        let no_groups = PolicyRule {
            resources: Some(strings(&["pods"])),
            verbs: strings(&["get"]),
            ..PolicyRule::default()
        };
        assert!(breakdown_rule(&no_groups).is_empty());
    }

    #[test]
    fn wildcards_cover() {
        let admin = full_authority();
        let (ok, missing) = covers(
            &admin,
            &[
                named(&["apps"], &["deployments/scale"], &["x"], &["update"]),
                url_rule(&["/metrics"], &["get"]),
            ],
        );
        assert!(ok, "{missing:?}");
        let scale = vec![rule(&["*"], &["*/scale"], &["get", "update"])];
        assert!(covers(&scale, &[rule(&["apps"], &["deployments/scale"], &["get"])]).0);
        assert!(!covers(&scale, &[rule(&["apps"], &["deployments"], &["get"])]).0);
        let prefix = vec![url_rule(&["/apis/*"], &["get"])];
        assert!(covers(&prefix, &[url_rule(&["/apis/apps"], &["get"])]).0);
        assert!(!covers(&prefix, &[url_rule(&["/api"], &["get"])]).0);
    }

    #[test]
    fn refusals() {
        let pods = vec![rule(&[""], &["pods"], &["get", "list"])];
        // A subresource is not covered by its bare resource.
        let (ok, missing) = covers(&pods, &[rule(&[""], &["pods/exec"], &["get"])]);
        assert!(!ok);
        assert_eq!(missing, vec![rule(&[""], &["pods/exec"], &["get"])]);
        // Names restrict the owner, not a requested rule without names.
        let one = vec![named(&[""], &["configmaps"], &["a"], &["get"])];
        assert!(covers(&one, &[named(&[""], &["configmaps"], &["a"], &["get"])]).0);
        assert!(!covers(&one, &[named(&[""], &["configmaps"], &["b"], &["get"])]).0);
        assert!(!covers(&one, &[rule(&[""], &["configmaps"], &["get"])]).0);
        // Wrong group, wrong verb.
        assert!(!covers(&pods, &[rule(&["apps"], &["pods"], &["get"])]).0);
        assert!(!covers(&pods, &[rule(&[""], &["pods"], &["delete"])]).0);
    }

    #[test]
    fn the_error_reads_as_kube_writes_it() {
        let user = UserInfo::authenticated("bob", vec!["dev".into()]);
        let held = owner(vec![rule(&[""], &["pods"], &["get"])]);
        let requested = vec![
            rule(&[""], &["pods", "secrets"], &["get", "list"]),
            url_rule(&["/metrics"], &["get"]),
            named(&["apps"], &["deployments"], &["web"], &["update"]),
        ];
        let error = confirm_no_escalation(&user, &held, &requested).expect_err("escalation");
        assert_eq!(
            error.to_string(),
            "user \"bob\" (groups=[\"dev\" \"system:authenticated\"]) is attempting to grant RBAC \
             permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"list\"]}\n\
             {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}\n\
             {APIGroups:[\"apps\"], Resources:[\"deployments\"], ResourceNames:[\"web\"], Verbs:[\"update\"]}\n\
             {NonResourceURLs:[\"/metrics\"], Verbs:[\"get\"]}"
        );
        assert!(confirm_no_escalation(&user, &held, &[rule(&[""], &["pods"], &["get"])]).is_ok());
        let broken = ResolvedRules {
            rules: vec![],
            errors: vec!["clusterrole.rbac.authorization.k8s.io \"x\" not found".into()],
        };
        let error = confirm_no_escalation(&user, &broken, &[rule(&[""], &["pods"], &["get"])])
            .expect_err("escalation");
        assert!(
            error.to_string().ends_with(
                "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\"]}; resolution errors: \
                 [clusterrole.rbac.authorization.k8s.io \"x\" not found]"
            ),
            "{error}"
        );
    }

    #[test]
    fn who_may_skip_the_check() {
        assert!(escalation_allowed(&UserInfo::authenticated(
            "root",
            vec![MASTERS.into()]
        )));
        assert!(!escalation_allowed(&UserInfo::authenticated("bob", vec![])));
        let bob = UserInfo::authenticated("bob", vec![]);
        let escalate = escalate_attributes(&bob, "clusterroles", "", "view");
        assert_eq!(
            (
                escalate.verb.as_str(),
                escalate.api_group.as_str(),
                escalate.resource.as_str()
            ),
            ("escalate", "rbac.authorization.k8s.io", "clusterroles")
        );
        let role_ref = RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "admin".into(),
        };
        let bind = bind_attributes(&bob, &role_ref, "dev").expect("a role kind");
        assert_eq!(
            (
                bind.verb.as_str(),
                bind.resource.as_str(),
                bind.name.as_str(),
                bind.namespace.as_str()
            ),
            ("bind", "clusterroles", "admin", "dev")
        );
        let odd = RoleRef {
            kind: "Group".into(),
            ..role_ref
        };
        assert_eq!(bind_attributes(&bob, &odd, "dev"), None);
    }
}
