//! delete and deletecollection over HTTP: DeleteOptions from the body and the query, the
//! deletion itself in the registry.

use axum::{http::StatusCode, response::Response};
use bytes::Bytes;
use serde_json::Value;

use super::{
    Ctx,
    read::{Filter, namespace_prefix},
};
use crate::{
    api::{body, response},
    model::ApiError,
    registry::DeleteOptions,
};

/// DeleteOptions from the body and the query.
fn options(ctx: &Ctx<'_>, raw: &Bytes) -> Result<DeleteOptions, ApiError> {
    let body = body::decode_optional(ctx.headers, raw)?.unwrap_or(Value::Null);
    options_from(ctx, &body)
}

/// DeleteOptions from a decoded `DeleteOptions` object (`null` for none) and the query.
pub(super) fn options_from(ctx: &Ctx<'_>, body: &Value) -> Result<DeleteOptions, ApiError> {
    let grace = match body.get("gracePeriodSeconds").and_then(Value::as_i64) {
        Some(g) => Some(g),
        None => ctx
            .query
            .get("gracePeriodSeconds")
            .map(|g| {
                g.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid value for gracePeriodSeconds: {g:?}"))
                })
            })
            .transpose()?,
    };
    let policy = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or(ctx.query.get("propagationPolicy"));
    let orphan_dependents = body.get("orphanDependents").and_then(Value::as_bool) == Some(true)
        || ctx.query.get("orphanDependents") == Some("true");
    let propagation_finalizer = match policy {
        Some("Orphan") => Some("orphan"),
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Background") => None,
        None if orphan_dependents => Some("orphan"),
        None => None,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported propagationPolicy {other:?}"
            )));
        }
    };
    let pre = body.get("preconditions");
    let text = |field: &str| {
        pre.and_then(|p| p.get(field))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(DeleteOptions {
        grace: grace.map(|g| g.max(0)),
        uid: text("uid"),
        resource_version: text("resourceVersion"),
        propagation_finalizer,
    })
}

/// DELETE of one object.
pub async fn delete(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let opts = options(ctx, raw)?;
    let written = ctx.registry().delete(&ctx.request()?, name, &opts).await?;
    Ok(super::write::written_response(
        ctx,
        StatusCode::OK,
        &written,
    ))
}

/// DELETE of a collection (with the list's selectors).
pub async fn delete_collection(ctx: &Ctx<'_>, raw: &Bytes) -> Result<Response, ApiError> {
    let opts = options(ctx, raw)?;
    let filter = Filter::from_query(ctx)?;
    let cache = ctx.fresh_cache(std::time::Duration::from_secs(3)).await?;
    let snapshot = cache
        .snapshot(&namespace_prefix(ctx))
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let request = ctx.request()?;
    for object in snapshot.objects.iter().filter(|o| filter.matches_cached(o)) {
        // Each object of a namespaced list names its own namespace.
        let request = crate::registry::Request {
            namespace: &object.namespace,
            ..request
        };
        match ctx.registry().delete(&request, &object.name, &opts).await {
            Ok(_) => {}
            Err(e) if e.to_api_error().code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(response::json(StatusCode::OK, &response::success(200)))
}
