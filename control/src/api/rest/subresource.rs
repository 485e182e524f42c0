//! Subresources with their own object shapes over HTTP: scale (autoscaling/v1 Scale),
//! binding and eviction.

use axum::{http::StatusCode, response::Response};
use bytes::Bytes;
use serde_json::json;

use super::Ctx;
use crate::{
    api::{body, response},
    model::ApiError,
    registry::scale_of,
};

/// GET …/scale.
pub async fn get_scale(ctx: &Ctx<'_>, name: &str) -> Result<Response, ApiError> {
    let object = ctx.load(name).await?;
    Ok(response::json(StatusCode::OK, &scale_of(&object)))
}

/// PUT …/scale.
pub async fn update_scale(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let scale = body::decode_object(ctx.headers, raw)?;
    let scale = ctx
        .registry()
        .scale(&ctx.request()?, name, |_| Ok(scale.clone()))
        .await?;
    Ok(response::json(StatusCode::OK, &scale))
}

/// PATCH …/scale (the patch applies to the Scale view).
pub async fn patch_scale(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let content_type = body::content_type(ctx.headers);
    let scale = ctx
        .registry()
        .scale(&ctx.request()?, name, |current| {
            crate::patch::apply(&content_type, current, raw, "autoscaling/v1", "Scale")
        })
        .await?;
    Ok(response::json(StatusCode::OK, &scale))
}

/// POST pods/{name}/binding: assign the pod to a node (once).
pub async fn bind(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let binding = body::decode_object(ctx.headers, raw)?;
    ctx.registry().bind(&ctx.request()?, name, &binding).await?;
    Ok(response::json(StatusCode::CREATED, &response::success(201)))
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
    // The eviction deletes the pod itself.
    let target = crate::api::request::Target {
        subresource: None,
        ..ctx.target.clone()
    };
    let inner = Ctx {
        headers: &headers,
        target: &target,
        ..*ctx
    };
    super::delete::delete(&inner, name, &options).await?;
    Ok(response::json(StatusCode::CREATED, &response::success(201)))
}
