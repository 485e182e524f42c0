//! create, update, patch, apply and finalize over HTTP: decode the body, hand it to the
//! registry, encode the answer (with `Warning` headers).

use axum::{
    http::{HeaderValue, StatusCode},
    response::Response,
};
use bytes::Bytes;
use serde_json::{Value, json};

use super::{Ctx, check_type, read::object_response};
use crate::{
    api::body,
    model::{ApiError, meta},
    registry::Written,
};

/// The response for a written object, with its warnings as `Warning` headers.
pub(super) fn written_response(ctx: &Ctx<'_>, status: StatusCode, written: &Written) -> Response {
    let mut response = object_response(ctx, status, &written.object);
    for warning in &written.warnings {
        let text = format!("299 - {warning:?}");
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

/// POST on a collection.
pub async fn create(ctx: &Ctx<'_>, raw: &Bytes) -> Result<Response, ApiError> {
    let object = body::decode_object(ctx.headers, raw)?;
    let object = check_type(ctx.info(), object)?;
    let written = ctx.registry().create(&ctx.request()?, object).await?;
    Ok(written_response(ctx, StatusCode::CREATED, &written))
}

/// PUT of an object or its status.
pub async fn update(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let object = body::decode_object(ctx.headers, raw)?;
    let object = check_type(ctx.info(), object)?;
    let body_name = meta::name(&object);
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let written = ctx.registry().update(&ctx.request()?, name, object).await?;
    Ok(written_response(ctx, StatusCode::OK, &written))
}

/// PATCH of an object or its status (JSON, merge, strategic merge; apply is
/// [`server_side_apply`]).
pub async fn patch(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    if raw.len() > body::MAX_BODY {
        return Err(ApiError::too_large(body::MAX_BODY));
    }
    let content_type = body::content_type(ctx.headers);
    if content_type == crate::patch::APPLY {
        return server_side_apply(ctx, name, raw).await;
    }
    let info = ctx.info();
    if content_type == crate::patch::STRATEGIC && !info.strategy.strategic_merge() {
        // kube's answer for custom resources, which have no patch strategies.
        return Err(ApiError::unsupported_media_type(&format!(
            "{content_type} - accepted media types include: {}, {}, {}",
            crate::patch::JSON,
            crate::patch::MERGE,
            crate::patch::APPLY
        )));
    }
    let api_version = info.api_version();
    let written = ctx
        .registry()
        .patch(&ctx.request()?, name, |current| {
            crate::patch::apply(&content_type, current, raw, &api_version, info.kind)
        })
        .await?;
    Ok(written_response(ctx, StatusCode::OK, &written))
}

/// PATCH with `application/apply-patch+yaml`: server-side apply as `fieldManager`, creating
/// the object if it does not exist.
async fn server_side_apply(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let info = ctx.info();
    let manager = ctx
        .query
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::bad_request("fieldManager must be set for apply requests"))?
        .to_owned();
    let force = ctx.query.flag("force");
    let text = std::str::from_utf8(raw)
        .map_err(|_| ApiError::bad_request("the apply body is not UTF-8"))?;
    let config: Value = serde_saphyr::from_str(text).map_err(|e| {
        ApiError::bad_request(format!("error decoding the apply configuration: {e}"))
    })?;
    let mut config = check_type(info, config)?;
    let body_name = meta::name(&config).to_owned();
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    meta::set_meta(&mut config, "name", json!(name));
    crate::registry::metadata::settle_identity(info, ctx.namespace(), &mut config)?;
    let (written, created) = ctx
        .registry()
        .apply(&ctx.request()?, name, &config, &manager, force)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(written_response(ctx, status, &written))
}

/// PUT namespaces/{name}/finalize: set `spec.finalizers`; a terminating namespace whose
/// finalizers are all gone is deleted.
pub async fn finalize(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let body = body::decode_object(ctx.headers, raw)?;
    let body = check_type(ctx.info(), body)?;
    let finalizers = body
        .pointer("/spec/finalizers")
        .cloned()
        .unwrap_or_else(|| json!([]));
    let written = ctx
        .registry()
        .finalize(&ctx.request()?, name, &finalizers)
        .await?;
    Ok(object_response(ctx, StatusCode::OK, &written.object))
}
