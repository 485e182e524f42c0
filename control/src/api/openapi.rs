//! OpenAPI v3 documents generated from the resource registry: the root index and one
//! document per group-version, with the operations, `x-kubernetes-group-version-kind` and
//! the `fieldValidation` parameter kubectl looks for before it relies on server-side field
//! validation. (Full schemas, for `kubectl explain`, come with the kubectl-fidelity work.)

use axum::{http::StatusCode, response::Response};
use serde_json::{Map, Value, json};

use super::response;
use crate::{
    model::ApiError,
    resources::{REGISTRY, Subresource, group_versions},
};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// GET /openapi/v3.
pub fn root() -> Response {
    let mut paths = Map::new();
    for (g, v) in group_versions() {
        let path = gv_path(g, v);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}")}),
        );
    }
    response::json(StatusCode::OK, &json!({"paths": paths}))
}

fn param(name: &str, location: &str) -> Value {
    json!({"name": name, "in": location, "schema": {"type": "string"}, "required": location == "path"})
}

fn operation(id: String, gvk: &Value, params: &[Value]) -> Value {
    json!({
        "operationId": id,
        "x-kubernetes-group-version-kind": gvk,
        "parameters": params,
        "responses": {"200": {"description": "OK"}},
    })
}

/// GET /openapi/v3/{api/v1 | apis/g/v}.
pub fn group_version(path: &str) -> Result<Response, ApiError> {
    let (g, v) = group_versions()
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == path.trim_matches('/'))
        .ok_or_else(ApiError::no_route)?;
    let mut paths = Map::new();
    let field_validation = param("fieldValidation", "query");
    let dry_run = param("dryRun", "query");
    let field_manager = param("fieldManager", "query");
    for r in REGISTRY.iter().filter(|r| r.group == g && r.version == v) {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let base = if r.namespaced {
            format!("/{}/namespaces/{{namespace}}/{}", gv_path(g, v), r.plural)
        } else {
            format!("/{}/{}", gv_path(g, v), r.plural)
        };
        let write_params = vec![
            dry_run.clone(),
            field_manager.clone(),
            field_validation.clone(),
        ];
        let id = format!("{}{}", r.kind, r.version);
        paths.insert(
            base.clone(),
            json!({
                "get": operation(format!("list{id}"), &gvk, &[]),
                "post": operation(format!("create{id}"), &gvk, &write_params),
                "delete": operation(format!("deletecollection{id}"), &gvk, &[]),
            }),
        );
        paths.insert(
            format!("{base}/{{name}}"),
            json!({
                "get": operation(format!("read{id}"), &gvk, &[]),
                "put": operation(format!("replace{id}"), &gvk, &write_params),
                "patch": operation(format!("patch{id}"), &gvk, &write_params),
                "delete": operation(format!("delete{id}"), &gvk, &[]),
            }),
        );
        if r.has(Subresource::Status) {
            paths.insert(
                format!("{base}/{{name}}/status"),
                json!({
                    "get": operation(format!("read{id}Status"), &gvk, &[]),
                    "put": operation(format!("replace{id}Status"), &gvk, &write_params),
                    "patch": operation(format!("patch{id}Status"), &gvk, &write_params),
                }),
            );
        }
        if r.has(Subresource::Scale) {
            let scale = json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
            paths.insert(
                format!("{base}/{{name}}/scale"),
                json!({
                    "get": operation(format!("read{id}Scale"), &scale, &[]),
                    "put": operation(format!("replace{id}Scale"), &scale, &write_params),
                    "patch": operation(format!("patch{id}Scale"), &scale, &write_params),
                }),
            );
        }
    }
    let doc = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    });
    Ok(response::json(StatusCode::OK, &doc))
}
