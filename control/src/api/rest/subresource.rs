//! Subresources with their own object shapes: scale (autoscaling/v1 Scale), binding and
//! eviction.

use axum::{http::StatusCode, response::Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::{Ctx, write};
use crate::{
    api::{body, response},
    model::{ApiError, meta},
    store::StoreError,
};

/// The label selector of a workload as the string form Scale.status.selector uses.
fn selector_string(object: &Value) -> String {
    object
        .pointer("/spec/selector")
        .map(crate::model::selector::render)
        .unwrap_or_default()
}

/// The Scale view of a workload.
fn scale_of(object: &Value) -> Value {
    let metadata = object.get("metadata").cloned().unwrap_or(json!({}));
    let keep = [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ];
    let metadata: serde_json::Map<String, Value> = metadata
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let spec_replicas = object
        .get("spec")
        .and_then(|s| s.get("replicas"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let status_replicas = object
        .get("status")
        .and_then(|s| s.get("replicas"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": spec_replicas},
        "status": {"replicas": status_replicas, "selector": selector_string(object)},
    })
}

/// GET …/scale.
pub async fn get_scale(ctx: &Ctx<'_>, name: &str) -> Result<Response, ApiError> {
    let object = ctx.load(name).await?;
    Ok(response::json(StatusCode::OK, &scale_of(&object)))
}

/// Write `scale` (a Scale object) onto the workload.
async fn apply_scale(
    ctx: &Ctx<'_>,
    name: &str,
    scale: &Value,
    current: &Value,
) -> Result<Response, ApiError> {
    let replicas = scale
        .get("spec")
        .and_then(|s| s.get("replicas"))
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::unprocessable("Scale.spec.replicas: Required value"))?;
    if replicas < 0 {
        let error = crate::model::validation::FieldError::invalid(
            "spec.replicas",
            replicas,
            "must be greater than or equal to 0",
        );
        return Err(ApiError::invalid("autoscaling", "Scale", name, &[error]));
    }
    let mut updated = current.clone();
    updated["spec"]["replicas"] = json!(replicas);
    let precondition = meta::resource_version(scale);
    meta::set_meta(
        &mut updated,
        "resourceVersion",
        json!(if precondition.is_empty() {
            meta::resource_version(current)
        } else {
            precondition
        }),
    );
    let (object, _) = write::replace(ctx, name, updated, current).await?;
    Ok(response::json(StatusCode::OK, &scale_of(&object)))
}

/// PUT …/scale.
pub async fn update_scale(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let scale = body::decode_object(ctx.headers, raw)?;
    let current = ctx.load(name).await?;
    apply_scale(ctx, name, &scale, &current).await
}

/// PATCH …/scale (the patch applies to the Scale view).
pub async fn patch_scale(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let content_type = body::content_type(ctx.headers);
    let current = ctx.load(name).await?;
    let scale = crate::patch::apply(
        &content_type,
        &scale_of(&current),
        raw,
        "autoscaling/v1",
        "Scale",
    )?;
    apply_scale(ctx, name, &scale, &current).await
}

/// POST pods/{name}/binding: assign the pod to a node (once).
pub async fn bind(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let binding = body::decode_object(ctx.headers, raw)?;
    let node = binding
        .get("target")
        .and_then(|t| t.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "",
                "Binding",
                name,
                &[crate::model::validation::FieldError::required(
                    "target.name",
                    "",
                )],
            )
        })?
        .to_owned();
    let info = ctx.info();
    for _ in 0..5 {
        let mut pod = ctx.load(name).await?;
        let assigned = meta::field_value(&pod, "spec.nodeName");
        if !assigned.is_empty() {
            return Err(ApiError::conflict(
                info.group,
                info.plural,
                name,
                &format!("pod {name} is already assigned to node {assigned:?}"),
            ));
        }
        if !meta::meta_str(&pod, "deletionTimestamp").is_empty() {
            return Err(ApiError::conflict(
                info.group,
                info.plural,
                name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        let revision: i64 = meta::resource_version(&pod).parse().unwrap_or(0);
        pod["spec"]["nodeName"] = json!(node);
        let conditions = pod["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut conditions: Vec<Value> = conditions
            .into_iter()
            .filter(|c| c["type"] != "PodScheduled")
            .collect();
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": super::meta::now()}));
        pod["status"]["conditions"] = Value::Array(conditions);
        match ctx.state.store.update(&ctx.key(name), &pod, revision).await {
            Ok(_) => return Ok(response::json(StatusCode::CREATED, &response::success(201))),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(ctx.storage_error(name, e)),
        }
    }
    Err(ApiError::modified(info.group, info.plural, name))
}

/// POST pods/{name}/eviction: delete the pod with the eviction's options.
pub async fn evict(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let eviction = body::decode_object(ctx.headers, raw)?;
    let options = eviction.get("deleteOptions").cloned().unwrap_or(json!({}));
    let options = Bytes::from(serde_json::to_vec(&options).unwrap_or_default());
    let mut headers = ctx.headers.clone();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let inner = Ctx {
        state: ctx.state,
        target: ctx.target,
        query: ctx.query,
        headers: &headers,
    };
    super::delete::delete(&inner, name, &options).await?;
    Ok(response::json(StatusCode::CREATED, &response::success(201)))
}
