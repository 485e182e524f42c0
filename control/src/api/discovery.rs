//! Discovery: /api, /apis, per group-version resource lists, and aggregated discovery
//! (apidiscovery.k8s.io/v2 APIGroupDiscoveryList) when the client asks for it.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use serde_json::{Value, json};

use super::response;
use crate::{
    aggregator::discovery::RemoteGroup,
    model::ApiError,
    resources::{ResourceInfo, group_versions, served},
};

/// Content type of aggregated discovery responses.
const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split(',').next())
        .is_some_and(|first| {
            first.contains("as=APIGroupDiscoveryList")
                && first.contains("v=v2")
                && !first.contains("v=v2beta1")
        })
}

fn resources_of(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceInfo> {
    let (group, version) = (group.to_owned(), version.to_owned());
    served()
        .iter()
        .filter(move |r| r.group == group && r.version == version)
        .copied()
        .collect::<Vec<_>>()
        .into_iter()
}

fn aggregated_group(group: &str) -> Value {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| {
            let resources: Vec<Value> = resources_of(g, v)
                .map(|r| {
                    let subresources: Vec<Value> = r
                        .subresources
                        .iter()
                        .map(|s| {
                            let (sg, sv, sk) = s.response_kind().unwrap_or((r.group, r.version, r.kind));
                            json!({"subresource": s.name(), "responseKind": {"group": sg, "version": sv, "kind": sk}, "verbs": s.verbs()})
                        })
                        .collect();
                    json!({
                        "resource": r.plural,
                        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular,
                        "verbs": r.verbs,
                        "shortNames": r.short_names,
                        "categories": r.categories,
                        "subresources": subresources,
                    })
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group}, "versions": versions})
}

fn aggregated(groups: &[&str], remote: &[RemoteGroup]) -> Response {
    let items: Vec<Value> = groups
        .iter()
        .map(|g| aggregated_group(g))
        .chain(remote.iter().map(RemoteGroup::aggregated))
        .collect();
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
    let mut response = response::json(StatusCode::OK, &body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(AGGREGATED_V2),
    );
    response
}

fn named_groups() -> Vec<&'static str> {
    let mut groups: Vec<&str> = Vec::new();
    for (g, _) in group_versions() {
        if !g.is_empty() && !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups
}

fn api_group(group: &str) -> Value {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(json!({}));
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

/// GET /api.
pub fn core(headers: &HeaderMap) -> Response {
    if wants_aggregated(headers) {
        return aggregated(&[""], &[]);
    }
    response::json(
        StatusCode::OK,
        &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}),
    )
}

/// GET /apis: the groups served here, then those of available extension API servers.
pub fn groups(headers: &HeaderMap, remote: Vec<RemoteGroup>) -> Response {
    let groups = named_groups();
    let remote: Vec<RemoteGroup> = remote
        .into_iter()
        .filter(|r| !groups.contains(&r.name.as_str()))
        .collect();
    if wants_aggregated(headers) {
        return aggregated(&groups, &remote);
    }
    let list: Vec<Value> = groups
        .iter()
        .map(|g| api_group(g))
        .chain(remote.iter().map(RemoteGroup::api_group))
        .collect();
    response::json(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}),
    )
}

/// GET /apis/{group}.
pub fn group(group: &str, remote: Vec<RemoteGroup>) -> Result<Response, ApiError> {
    let mut body = if named_groups().contains(&group) {
        api_group(group)
    } else {
        remote
            .iter()
            .find(|r| r.name == group)
            .map(RemoteGroup::api_group)
            .ok_or_else(ApiError::no_route)?
    };
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Ok(response::json(StatusCode::OK, &body))
}

/// GET /api/v1 or /apis/{group}/{version}: the APIResourceList.
pub fn resource_list(group: &str, version: &str) -> Result<Response, ApiError> {
    if !group_versions().contains(&(group, version)) {
        return Err(ApiError::no_route());
    }
    let mut resources = Vec::new();
    for r in resources_of(group, version) {
        resources.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
            "verbs": r.verbs, "shortNames": r.short_names, "categories": r.categories,
        }));
        for s in r.subresources {
            let (sg, sv, sk) = s.response_kind().unwrap_or((r.group, r.version, r.kind));
            let mut entry = json!({"name": format!("{}/{}", r.plural, s.name()), "singularName": "", "namespaced": r.namespaced, "kind": sk, "verbs": s.verbs()});
            if sg != r.group || sv != r.version {
                entry["group"] = json!(sg);
                entry["version"] = json!(sv);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Ok(response::json(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    ))
}
