//! Remote group-versions in discovery: the APIResourceLists fetched from available
//! backends, grouped by API group (versions ordered by `versionPriority`, highest first,
//! which is also the preferred one), in the legacy APIGroup form and in aggregated
//! discovery's APIGroupDiscovery form.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::ApiServiceView;

/// One API group served by extension API servers.
#[derive(Debug, Clone)]
pub struct RemoteGroup {
    /// Group name.
    pub name: String,
    /// Its versions, preferred first, each with its APIResourceList.
    pub versions: Vec<(String, Value)>,
}

/// Group `documents` (APIService, APIResourceList) by API group; groups ordered by their
/// highest `groupPriorityMinimum`, then name.
pub fn remote_groups(documents: Vec<(ApiServiceView, Value)>) -> Vec<RemoteGroup> {
    let mut by_group: BTreeMap<String, Vec<(ApiServiceView, Value)>> = BTreeMap::new();
    for (view, document) in documents {
        by_group
            .entry(view.group.clone())
            .or_default()
            .push((view, document));
    }
    let mut groups: Vec<(i32, RemoteGroup)> = by_group
        .into_iter()
        .map(|(name, mut versions)| {
            versions.sort_by(|(a, _), (b, _)| {
                b.version_priority
                    .cmp(&a.version_priority)
                    .then_with(|| a.version.cmp(&b.version))
            });
            let priority = versions
                .iter()
                .map(|(v, _)| v.group_priority)
                .max()
                .unwrap_or(0);
            let versions = versions
                .into_iter()
                .map(|(view, document)| (view.version, document))
                .collect();
            (priority, RemoteGroup { name, versions })
        })
        .collect();
    groups.sort_by(|(a, ga), (b, gb)| b.cmp(a).then_with(|| ga.name.cmp(&gb.name)));
    groups.into_iter().map(|(_, group)| group).collect()
}

impl RemoteGroup {
    /// The legacy APIGroup (without kind/apiVersion).
    pub fn api_group(&self) -> Value {
        let versions: Vec<Value> = self
            .versions
            .iter()
            .map(|(v, _)| json!({"groupVersion": format!("{}/{v}", self.name), "version": v}))
            .collect();
        let preferred = versions.first().cloned().unwrap_or(json!({}));
        json!({"name": self.name, "versions": versions, "preferredVersion": preferred})
    }

    /// The aggregated APIGroupDiscovery.
    pub fn aggregated(&self) -> Value {
        let versions: Vec<Value> = self
            .versions
            .iter()
            .map(|(version, document)| {
                json!({"version": version, "resources": aggregated_resources(&self.name, version, document),
                       "freshness": "Current"})
            })
            .collect();
        json!({"metadata": {"name": self.name}, "versions": versions})
    }
}

/// An APIResourceList's resources in aggregated form: `plural/sub` entries become their
/// parent's subresources.
fn aggregated_resources(group: &str, version: &str, document: &Value) -> Vec<Value> {
    let entries: Vec<&Value> = document
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let text = |v: &Value, key: &str| v.get(key).cloned().unwrap_or(Value::Null);
    let kind_of = |entry: &Value| {
        json!({
            "group": entry.get("group").and_then(Value::as_str).unwrap_or(group),
            "version": entry.get("version").and_then(Value::as_str).unwrap_or(version),
            "kind": text(entry, "kind"),
        })
    };
    let mut resources = Vec::new();
    for entry in &entries {
        let Some(name) = entry.get("name").and_then(Value::as_str) else {
            continue;
        };
        if name.contains('/') {
            continue;
        }
        let subresources: Vec<Value> = entries
            .iter()
            .filter_map(|sub| {
                let sub_name = sub.get("name").and_then(Value::as_str)?;
                let (parent, subresource) = sub_name.split_once('/')?;
                (parent == name).then(|| {
                    json!({"subresource": subresource, "responseKind": kind_of(sub),
                           "verbs": text(sub, "verbs")})
                })
            })
            .collect();
        let namespaced = entry
            .get("namespaced")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        resources.push(json!({
            "resource": name,
            "responseKind": kind_of(entry),
            "scope": if namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": entry.get("singularName").and_then(Value::as_str).unwrap_or_default(),
            "verbs": text(entry, "verbs"),
            "shortNames": entry.get("shortNames").cloned().unwrap_or(json!([])),
            "categories": entry.get("categories").cloned().unwrap_or(json!([])),
            "subresources": subresources,
        }));
    }
    resources
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(
        group: &str,
        version: &str,
        group_priority: i32,
        version_priority: i32,
    ) -> ApiServiceView {
        ApiServiceView {
            name: format!("{version}.{group}"),
            group: group.to_owned(),
            version: version.to_owned(),
            group_priority,
            version_priority,
            backend: None,
            available: true,
        }
    }

    #[test]
    fn versions_are_ordered_by_priority_and_subresources_nest() {
        let list = json!({"kind": "APIResourceList", "groupVersion": "metrics.k8s.io/v1beta1",
            "resources": [
                {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
                {"name": "pods/status", "namespaced": true, "kind": "PodMetrics", "verbs": ["get"]},
                {"name": "nodes", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]}]});
        let groups = remote_groups(vec![
            (
                view("metrics.k8s.io", "v1alpha1", 100, 10),
                json!({"resources": []}),
            ),
            (view("metrics.k8s.io", "v1beta1", 100, 100), list),
            (
                view("custom.metrics.k8s.io", "v1beta2", 200, 100),
                json!({"resources": []}),
            ),
        ]);
        assert_eq!(groups[0].name, "custom.metrics.k8s.io");
        let metrics = &groups[1];
        assert_eq!(
            metrics.api_group()["preferredVersion"]["version"],
            json!("v1beta1")
        );
        let aggregated = metrics.aggregated();
        let resources = &aggregated["versions"][0]["resources"];
        assert_eq!(resources.as_array().map(Vec::len), Some(2));
        assert_eq!(resources[0]["scope"], json!("Namespaced"));
        assert_eq!(
            resources[0]["subresources"][0]["subresource"],
            json!("status")
        );
        assert_eq!(resources[1]["responseKind"]["kind"], json!("NodeMetrics"));
        assert_eq!(
            resources[1]["responseKind"]["group"],
            json!("metrics.k8s.io")
        );
    }
}
