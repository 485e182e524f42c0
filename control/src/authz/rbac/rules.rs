//! Whether one PolicyRule allows one request, as kube decides it
//! (`pkg/apis/rbac/v1/evaluation_helpers.go` and `RuleAllows` in
//! `plugin/pkg/auth/authorizer/rbac/rbac.go`).

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::authz::Attributes;

/// Verb that matches every verb.
pub const VERB_ALL: &str = "*";
/// API group that matches every group.
pub const API_GROUP_ALL: &str = "*";
/// Resource that matches every resource and subresource.
pub const RESOURCE_ALL: &str = "*";
/// Non-resource URL that matches every path.
pub const NON_RESOURCE_ALL: &str = "*";

/// The values of an optional list field (`None` reads as empty, as Go's nil slice).
pub fn values(field: &Option<Vec<String>>) -> &[String] {
    field.as_deref().unwrap_or_default()
}

/// True if the rule names `verb` or `*`.
pub fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == VERB_ALL || v == verb)
}

/// True if the rule names the API group (`""` is core) or `*`.
pub fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    values(&rule.api_groups)
        .iter()
        .any(|g| g == API_GROUP_ALL || g == group)
}

/// True if the rule names the resource: `*`, exactly `resource` (or `resource/subresource`
/// for a subresource request), or `*/subresource`. A bare resource does not grant its
/// subresources.
pub fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    values(&rule.resources).iter().any(|r| {
        r == RESOURCE_ALL
            || is_combined(r, resource, subresource)
            || (!subresource.is_empty()
                && r.len() == subresource.len() + 2
                && r.starts_with("*/")
                && r.ends_with(subresource))
    })
}

/// `rule_resource == resource` (no subresource) or `rule_resource == resource/subresource`,
/// without building the combined string.
fn is_combined(rule_resource: &str, resource: &str, subresource: &str) -> bool {
    if subresource.is_empty() {
        return rule_resource == resource;
    }
    rule_resource.len() == resource.len() + 1 + subresource.len()
        && rule_resource.starts_with(resource)
        && rule_resource.as_bytes().get(resource.len()) == Some(&b'/')
        && rule_resource.ends_with(subresource)
}

/// True if the rule has no resourceNames or names `name`. A rule with resourceNames never
/// matches a request without a name (list, watch, create of a collection).
pub fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    let names = values(&rule.resource_names);
    names.is_empty() || names.iter().any(|n| n == name)
}

/// True if the rule names the path exactly, `*`, or a prefix of it ending in `*`
/// (`/apis/*` matches `/apis/apps/v1`; `/healthz*` matches `/healthzx`).
pub fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    values(&rule.non_resource_urls).iter().any(|url| {
        url == NON_RESOURCE_ALL
            || url == path
            || (url.ends_with('*') && path.starts_with(url.trim_end_matches('*')))
    })
}

/// True if the rule allows the request: verb, API group, resource (with subresource) and
/// name for resource requests; verb and path for non-resource requests.
pub fn rule_allows(attributes: &Attributes, rule: &PolicyRule) -> bool {
    if attributes.resource_request {
        verb_matches(rule, &attributes.verb)
            && api_group_matches(rule, &attributes.api_group)
            && resource_matches(rule, &attributes.resource, &attributes.subresource)
            && resource_name_matches(rule, &attributes.name)
    } else {
        verb_matches(rule, &attributes.verb) && non_resource_url_matches(rule, &attributes.path)
    }
}

/// True if any of the rules allows the request.
pub fn rules_allow(attributes: &Attributes, rules: &[PolicyRule]) -> bool {
    rules.iter().any(|rule| rule_allows(attributes, rule))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::user::UserInfo;

    pub(crate) fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    /// A resource rule.
    pub(crate) fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        PolicyRule {
            api_groups: Some(strings(groups)),
            resources: Some(strings(resources)),
            verbs: strings(verbs),
            ..PolicyRule::default()
        }
    }

    /// A non-resource rule.
    pub(crate) fn url_rule(urls: &[&str], verbs: &[&str]) -> PolicyRule {
        PolicyRule {
            non_resource_urls: Some(strings(urls)),
            verbs: strings(verbs),
            ..PolicyRule::default()
        }
    }

    /// A resource request (`resource` may be `resource/subresource`).
    pub(crate) fn request(
        verb: &str,
        group: &str,
        resource: &str,
        ns: &str,
        name: &str,
    ) -> Attributes {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes {
            user: UserInfo::authenticated("alice", vec![]),
            verb: verb.into(),
            resource_request: true,
            namespace: ns.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            name: name.into(),
            ..Attributes::default()
        }
    }

    /// A non-resource request.
    pub(crate) fn path_request(verb: &str, path: &str) -> Attributes {
        Attributes {
            user: UserInfo::authenticated("alice", vec![]),
            verb: verb.into(),
            path: path.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn verbs_and_groups() {
        let r = rule(&["apps"], &["deployments"], &["get", "list"]);
        assert!(rule_allows(
            &request("get", "apps", "deployments", "d", "x"),
            &r
        ));
        assert!(!rule_allows(
            &request("delete", "apps", "deployments", "d", "x"),
            &r
        ));
        assert!(!rule_allows(
            &request("get", "", "deployments", "d", "x"),
            &r
        ));
        assert!(!rule_allows(
            &request("get", "extensions", "deployments", "d", "x"),
            &r
        ));
        let all = rule(&["*"], &["*"], &["*"]);
        assert!(rule_allows(
            &request("escalate", "rbac.authorization.k8s.io", "roles", "", ""),
            &all
        ));
        assert!(rule_allows(&request("get", "", "pods/log", "d", "p"), &all));
        // A rule without API groups matches no resource request.
        let no_groups = PolicyRule {
            resources: Some(strings(&["pods"])),
            verbs: strings(&["get"]),
            ..PolicyRule::default()
        };
        assert!(!rule_allows(
            &request("get", "", "pods", "d", ""),
            &no_groups
        ));
    }

    #[test]
    fn subresources_need_their_own_grant() {
        let pods = rule(&[""], &["pods"], &["get", "create"]);
        assert!(rule_allows(&request("get", "", "pods", "d", "p"), &pods));
        assert!(!rule_allows(
            &request("get", "", "pods/log", "d", "p"),
            &pods
        ));
        assert!(!rule_allows(
            &request("create", "", "pods/exec", "d", "p"),
            &pods
        ));
        let log = rule(&[""], &["pods/log"], &["get"]);
        assert!(rule_allows(&request("get", "", "pods/log", "d", "p"), &log));
        assert!(!rule_allows(&request("get", "", "pods", "d", "p"), &log));
        assert!(!rule_allows(
            &request("get", "", "pods/status", "d", "p"),
            &log
        ));
        let any_scale = rule(&["*"], &["*/scale"], &["get"]);
        assert!(rule_allows(
            &request("get", "apps", "deployments/scale", "d", "x"),
            &any_scale
        ));
        assert!(!rule_allows(
            &request("get", "apps", "deployments", "d", "x"),
            &any_scale
        ));
        assert!(!rule_allows(
            &request("get", "apps", "deployments/status", "d", "x"),
            &any_scale
        ));
        assert!(!rule_allows(
            &request("get", "apps", "deployments/rescale", "d", "x"),
            &any_scale
        ));
        // `pods/*` is not a wildcard: only `*` and `*/sub` are.
        let pods_star = rule(&[""], &["pods/*"], &["get"]);
        assert!(!rule_allows(
            &request("get", "", "pods/log", "d", "p"),
            &pods_star
        ));
    }

    #[test]
    fn resource_names_restrict() {
        let named = PolicyRule {
            resource_names: Some(strings(&["cluster-info"])),
            ..rule(&[""], &["configmaps"], &["get", "update", "list"])
        };
        assert!(rule_allows(
            &request("get", "", "configmaps", "p", "cluster-info"),
            &named
        ));
        assert!(!rule_allows(
            &request("get", "", "configmaps", "p", "other"),
            &named
        ));
        // A list names no object, so a rule with names does not allow it.
        assert!(!rule_allows(
            &request("list", "", "configmaps", "p", ""),
            &named
        ));
    }

    #[test]
    fn non_resource_urls() {
        let r = url_rule(&["/healthz", "/apis/*", "/version/"], &["get"]);
        assert!(rule_allows(&path_request("get", "/healthz"), &r));
        assert!(!rule_allows(&path_request("get", "/healthz/etcd"), &r));
        assert!(rule_allows(&path_request("get", "/apis/apps/v1"), &r));
        assert!(rule_allows(&path_request("get", "/apis/"), &r));
        assert!(!rule_allows(&path_request("get", "/apis"), &r));
        assert!(!rule_allows(&path_request("get", "/version"), &r));
        assert!(!rule_allows(&path_request("post", "/healthz"), &r));
        let all = url_rule(&["*"], &["*"]);
        assert!(rule_allows(&path_request("delete", "/anything"), &all));
        // A resource rule never allows a path, a path rule never a resource.
        assert!(!rule_allows(
            &path_request("get", "/api"),
            &rule(&["*"], &["*"], &["*"])
        ));
        assert!(!rule_allows(&request("get", "", "pods", "d", ""), &all));
    }
}
