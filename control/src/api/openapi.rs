//! OpenAPI v3 documents generated from the resource registry: the root index and one
//! document per group-version, with the operations, `x-kubernetes-group-version-kind` and
//! the `fieldValidation` parameter kubectl looks for before it relies on server-side field
//! validation, and the component schemas (from k8s-openapi, with kube's names and
//! descriptions) that `kubectl explain` walks. Documents are built once and cached.

use std::{collections::HashMap, sync::OnceLock};

use axum::{http::StatusCode, response::Response};
use bytes::Bytes;
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
    static DOCS: OnceLock<HashMap<String, Bytes>> = OnceLock::new();
    let docs = DOCS.get_or_init(|| {
        group_versions()
            .into_iter()
            .map(|(g, v)| {
                (
                    gv_path(g, v),
                    Bytes::from(serde_json::to_vec(&document(g, v)).unwrap_or_default()),
                )
            })
            .collect()
    });
    let doc = docs
        .get(path.trim_matches('/'))
        .ok_or_else(ApiError::no_route)?;
    Ok(response::raw_json(StatusCode::OK, doc.clone()))
}

/// The OpenAPI document of one group-version.
fn document(g: &str, v: &str) -> Value {
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
        if !r.stored() {
            paths.insert(
                base.clone(),
                json!({"post": operation(format!("create{id}"), &gvk, &write_params)}),
            );
            continue;
        }
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
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas(g, v)},
    })
}

/// Component schemas of a group-version's kinds, each kind tagged with its GVK.
fn schemas(g: &str, v: &str) -> Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    for r in REGISTRY.iter().filter(|r| r.group == g && r.version == v) {
        kinds.push((r.strategy.add_schema(&mut generator), r));
    }
    let mut definitions = generator.take_definitions(true);
    for (name, r) in kinds {
        if let Some(Value::Object(schema)) = definitions.get_mut(&name) {
            schema.insert(
                "x-kubernetes-group-version-kind".to_owned(),
                json!([{"group": r.group, "version": r.version, "kind": r.kind}]),
            );
        }
    }
    Value::Object(definitions)
}
