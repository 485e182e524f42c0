//! A tiny extension API server for the aggregation tests: group `echo.skiff.dev`, version
//! `v1alpha1`, one namespaced read-only resource `echoes` whose only object, `whoami`,
//! reports the user and groups the front proxy forwarded in `X-Remote-User` and
//! `X-Remote-Group` — so a test sees through `kubectl get echoes` who the aggregator said
//! was asking. Lists answer a meta.k8s.io Table when the client asks for one, as kubectl
//! does.

use serde_json::{Value, json};

/// The group-version served.
const GROUP_VERSION: &str = "echo.skiff.dev/v1alpha1";

/// The answer to `GET path`, or None when the path is not the API's.
pub fn answer(path: &str, headers: &[(String, String)]) -> Option<(&'static str, Value)> {
    let rest = path.strip_prefix("/apis/echo.skiff.dev/v1alpha1")?;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let header = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let user = header("x-remote-user")
        .first()
        .copied()
        .unwrap_or("")
        .to_owned();
    let groups: Vec<&str> = header("x-remote-group");
    let table = header("accept").iter().any(|a| a.contains("as=Table"));
    let echo = |namespace: &str| {
        json!({"apiVersion": GROUP_VERSION, "kind": "Echo",
               "metadata": {"name": "whoami", "namespace": namespace,
                            "creationTimestamp": "2026-01-01T00:00:00Z"},
               "user": user, "groups": groups})
    };
    let answer = match segments.as_slice() {
        [] => json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
                     "resources": [{"name": "echoes", "singularName": "echo", "namespaced": true,
                                    "kind": "Echo", "verbs": ["get", "list"]}]}),
        ["echoes"] => list(vec![echo("default")], table),
        ["namespaces", namespace, "echoes"] => list(vec![echo(namespace)], table),
        ["namespaces", namespace, "echoes", "whoami"] => echo(namespace),
        _ => {
            return Some((
                "404 Not Found",
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "NotFound", "code": 404, "message": "not found"}),
            ));
        }
    };
    Some(("200 OK", answer))
}

/// A list of `items`, as a Table (Name, User, Groups) when `table`.
fn list(items: Vec<Value>, table: bool) -> Value {
    if !table {
        return json!({"apiVersion": GROUP_VERSION, "kind": "EchoList", "metadata": {}, "items": items});
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let groups: Vec<&str> = item["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            json!({"cells": [item["metadata"]["name"], item["user"], groups.join(",")],
                   "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                              "metadata": item["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
           "columnDefinitions": [
               {"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0},
               {"name": "User", "type": "string", "format": "", "description": "", "priority": 0},
               {"name": "Groups", "type": "string", "format": "", "description": "", "priority": 0}],
           "rows": rows})
}
