//! OpenAPI v3: the root index and one document per group-version, with the operations,
//! `x-kubernetes-group-version-kind` and the `fieldValidation` parameter kubectl looks for
//! before it relies on server-side field validation, and the component schemas that
//! `kubectl explain` walks.

use std::collections::HashMap;

use axum::{http::StatusCode, response::Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{Cached, GVK_EXTENSION, endpoints, gv_path, schemas};
use crate::{
    api::response,
    model::ApiError,
    resources::{group_versions, served},
};

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

fn operation(id: &str, gvk: &Value, params: &[Value]) -> Value {
    json!({
        "operationId": id,
        GVK_EXTENSION: gvk,
        "parameters": params,
        "responses": {"200": {"description": "OK"}},
    })
}

/// GET /openapi/v3/{api/v1 | apis/g/v}.
pub fn group_version(path: &str) -> Result<Response, ApiError> {
    static DOCS: Cached<HashMap<String, Bytes>> = Cached::new();
    let docs = DOCS.get(|| {
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
    let write_params = [
        param("dryRun", "query"),
        param("fieldManager", "query"),
        param("fieldValidation", "query"),
    ];
    let all = served();
    let resources = || {
        all.iter()
            .copied()
            .filter(|r| r.group == g && r.version == v)
    };
    let mut paths = Map::new();
    for endpoint in resources().flat_map(endpoints) {
        let item: Map<String, Value> = endpoint
            .operations
            .iter()
            .map(|op| {
                let params: &[Value] = if op.writes { &write_params } else { &[] };
                (op.method.to_owned(), operation(&op.id, &op.gvk, params))
            })
            .collect();
        paths.insert(endpoint.path, Value::Object(item));
    }
    let (definitions, _) = schemas(resources());
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": definitions},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_version_document_has_its_kinds_operations_and_schemas() {
        let doc = document("apps", "v1");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["operationId"], "patchDeploymentv1");
        assert_eq!(patch[GVK_EXTENSION]["kind"], "Deployment");
        assert!(
            patch["parameters"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == "fieldValidation"))
        );
        let scale =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["put"];
        assert_eq!(scale[GVK_EXTENSION]["kind"], "Scale");
        let deployment = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment[GVK_EXTENSION],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"].is_null());
    }
}
