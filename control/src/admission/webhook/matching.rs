//! Which webhooks a request goes to, as kube's webhook `Matcher`: rules (operations, API
//! groups, versions, resources with `*` and `resource/subresource`, scope), matchPolicy
//! (an equivalent served version of the same resource), namespaceSelector (the namespace's
//! labels; cluster-scoped objects always match, a namespace is matched by its own labels)
//! and objectSelector (the new or the old object's labels). No I/O: namespace labels that
//! must be looked up are returned as a [`NamespaceLabels::Lookup`].

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::RuleWithOperations;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::Hook;
use crate::{
    admission::{Attributes, Operation},
    model::selector,
    resources::{self, ResourceInfo},
};

/// True if `values` holds `*` or `value`.
fn listed(values: Option<&Vec<String>>, value: &str) -> bool {
    values.into_iter().flatten().any(|v| v == "*" || v == value)
}

/// True if `rule` covers the request, taken as made to `version` of its resource.
pub fn rule_matches(rule: &RuleWithOperations, attributes: &Attributes<'_>, version: &str) -> bool {
    let resource = attributes.resource;
    let operation = attributes.operation.as_str();
    if !listed(rule.operations.as_ref(), operation)
        || !listed(rule.api_groups.as_ref(), resource.group)
        || !listed(rule.api_versions.as_ref(), version)
    {
        return false;
    }
    let resource_matches = rule.resources.iter().flatten().any(|r| {
        let (name, sub) = r.split_once('/').unwrap_or((r.as_str(), ""));
        (name == "*" || name == resource.plural) && (sub == "*" || sub == attributes.subresource)
    });
    if !resource_matches {
        return false;
    }
    let is_namespace = resource.group.is_empty() && resource.plural == "namespaces";
    match rule.scope.as_deref().unwrap_or("*") {
        "Cluster" => attributes.namespace.is_empty() || is_namespace,
        "Namespaced" => !attributes.namespace.is_empty() && !is_namespace,
        _ => true,
    }
}

/// The resource version the request is sent to `hook` as: its own if a rule matches it,
/// else (matchPolicy Equivalent) another served version of the same resource a rule
/// matches; `None` if the hook does not want it.
pub fn matching_resource(
    hook: &Hook,
    attributes: &Attributes<'_>,
) -> Option<&'static ResourceInfo> {
    let own = attributes.resource;
    if hook
        .rules
        .iter()
        .any(|rule| rule_matches(rule, attributes, own.version))
    {
        return Some(own);
    }
    if hook.exact {
        return None;
    }
    resources::served()
        .iter()
        .copied()
        .filter(|r| r.group == own.group && r.plural == own.plural && r.version != own.version)
        .find(|r| {
            hook.rules
                .iter()
                .any(|rule| rule_matches(rule, attributes, r.version))
        })
}

/// True if `selector` selects nothing in particular (matches everything).
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// True if `labels` satisfy `selector` (a malformed selector matches nothing, as kube's
/// parse error does).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector::LabelSelector::from_api(selector).is_ok_and(|s| s.matches(labels))
}

/// `metadata.labels` of an object.
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// kube's MatchObjectSelector: an empty selector matches; otherwise the new or the old
/// object must match (an absent object matches nothing).
pub fn object_selector_matches(
    selector: Option<&LabelSelector>,
    object: Option<&Value>,
    old: Option<&Value>,
) -> bool {
    let Some(selector) = selector.filter(|s| !is_empty(s)) else {
        return true;
    };
    [object, old]
        .into_iter()
        .flatten()
        .filter(|o| !o.is_null())
        .any(|o| selector_matches(selector, &labels_of(o)))
}

/// Where the labels a namespaceSelector is matched against come from.
#[derive(Debug, PartialEq)]
pub enum NamespaceLabels<'a> {
    /// A cluster-scoped object other than a namespace: never exempted, always matches.
    NotNeeded,
    /// A namespace being created or updated: its own (new) labels.
    Given(BTreeMap<String, String>),
    /// The stored namespace of this name.
    Lookup(&'a str),
}

/// kube's MatchNamespaceSelector / GetNamespaceLabels for a request.
pub fn namespace_of<'a>(
    attributes: &Attributes<'a>,
    object: Option<&Value>,
    old: Option<&Value>,
) -> NamespaceLabels<'a> {
    let resource = attributes.resource;
    let is_namespace = resource.group.is_empty() && resource.plural == "namespaces";
    if !is_namespace {
        return if attributes.namespace.is_empty() {
            NamespaceLabels::NotNeeded
        } else {
            NamespaceLabels::Lookup(attributes.namespace)
        };
    }
    let writes = matches!(attributes.operation, Operation::Create | Operation::Update);
    if attributes.subresource.is_empty()
        && writes
        && let Some(object) = object.or(old)
    {
        return NamespaceLabels::Given(labels_of(object));
    }
    NamespaceLabels::Lookup(attributes.name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::user::UserInfo;

    fn rule(value: Value) -> RuleWithOperations {
        serde_json::from_value(value).expect("a rule")
    }

    fn attrs<'a>(
        user: &'a UserInfo,
        operation: Operation,
        plural: &str,
        group: &str,
        subresource: &'a str,
        namespace: &'a str,
    ) -> Attributes<'a> {
        let resource = resources::served()
            .iter()
            .copied()
            .find(|r| r.group == group && r.plural == plural)
            .expect("served");
        Attributes {
            operation,
            resource,
            subresource,
            namespace,
            name: "x",
            user,
            dry_run: false,
        }
    }

    #[test]
    fn rules_match_operations_groups_versions_and_subresources() {
        let user = UserInfo::default();
        let pods = attrs(&user, Operation::Create, "pods", "", "", "default");
        let status = attrs(&user, Operation::Update, "pods", "", "status", "default");
        let deploy = attrs(
            &user,
            Operation::Create,
            "deployments",
            "apps",
            "",
            "default",
        );
        let plain = rule(
            json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                "resources": ["pods"]}),
        );
        assert!(rule_matches(&plain, &pods, "v1"));
        assert!(
            !rule_matches(&plain, &status, "v1"),
            "subresources are named"
        );
        assert!(!rule_matches(&plain, &deploy, "v1"));
        let sub = rule(
            json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                              "resources": ["pods/status"]}),
        );
        assert!(rule_matches(&sub, &status, "v1"));
        assert!(!rule_matches(&sub, &pods, "v1"));
        let all_sub = rule(
            json!({"operations": ["*"], "apiGroups": [""], "apiVersions": ["*"],
                                  "resources": ["pods/*"]}),
        );
        assert!(rule_matches(&all_sub, &pods, "v1") && rule_matches(&all_sub, &status, "v1"));
        let star = rule(
            json!({"operations": ["UPDATE", "CREATE"], "apiGroups": ["*"],
                               "apiVersions": ["*"], "resources": ["*"]}),
        );
        assert!(rule_matches(&star, &deploy, "v1"));
        assert!(
            !rule_matches(&star, &status, "v1"),
            "`*` is resources, not subresources"
        );
        let everything = rule(
            json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                                     "resources": ["*/*"]}),
        );
        assert!(rule_matches(&everything, &status, "v1"));
    }

    #[test]
    fn scopes_tell_namespaced_from_cluster_objects_and_namespaces_are_cluster() {
        let user = UserInfo::default();
        let cm = attrs(&user, Operation::Create, "configmaps", "", "", "default");
        let node = attrs(&user, Operation::Create, "nodes", "", "", "");
        let ns = attrs(&user, Operation::Create, "namespaces", "", "", "");
        let scoped = |scope: &str| {
            rule(
                json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                        "resources": ["*"], "scope": scope}),
            )
        };
        assert!(rule_matches(&scoped("Namespaced"), &cm, "v1"));
        assert!(!rule_matches(&scoped("Namespaced"), &node, "v1"));
        assert!(!rule_matches(&scoped("Namespaced"), &ns, "v1"));
        assert!(rule_matches(&scoped("Cluster"), &ns, "v1"));
        assert!(!rule_matches(&scoped("Cluster"), &cm, "v1"));
        assert!(rule_matches(&scoped("*"), &cm, "v1"));
    }

    #[test]
    fn object_selectors_match_the_new_or_the_old_object() {
        let selector: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"deny": "true"}})).expect("selector");
        let yes = json!({"metadata": {"labels": {"deny": "true"}}});
        let no = json!({"metadata": {"labels": {"deny": "false"}}});
        assert!(object_selector_matches(Some(&selector), Some(&yes), None));
        assert!(object_selector_matches(
            Some(&selector),
            Some(&no),
            Some(&yes)
        ));
        assert!(!object_selector_matches(Some(&selector), Some(&no), None));
        assert!(object_selector_matches(
            Some(&LabelSelector::default()),
            Some(&no),
            None
        ));
        assert!(object_selector_matches(None, None, None));
    }

    #[test]
    fn namespace_labels_come_from_the_namespace_or_the_namespace_itself() {
        let user = UserInfo::default();
        let cm = attrs(&user, Operation::Create, "configmaps", "", "", "team");
        assert_eq!(
            namespace_of(&cm, None, None),
            NamespaceLabels::Lookup("team")
        );
        let node = attrs(&user, Operation::Create, "nodes", "", "", "");
        assert_eq!(namespace_of(&node, None, None), NamespaceLabels::NotNeeded);
        let ns = attrs(&user, Operation::Update, "namespaces", "", "", "").named("team");
        let object = json!({"metadata": {"name": "team", "labels": {"env": "prod"}}});
        let NamespaceLabels::Given(labels) = namespace_of(&ns, Some(&object), None) else {
            panic!("a namespace's own labels");
        };
        assert_eq!(labels.get("env").map(String::as_str), Some("prod"));
        let delete = Attributes {
            operation: Operation::Delete,
            ..ns
        };
        assert_eq!(
            namespace_of(&delete, None, Some(&object)),
            NamespaceLabels::Lookup("team")
        );
    }
}
