//! Subresources with their own object shapes over HTTP: scale (autoscaling/v1 Scale),
//! binding and eviction.

use axum::{http::StatusCode, response::Response};
use bytes::Bytes;
use serde_json::Value;

use super::Ctx;
use crate::{
    api::{body, response},
    model::{ApiError, meta},
    registry::scale_of,
};

/// GET …/scale.
pub async fn get_scale(ctx: &Ctx<'_>, name: &str) -> Result<Response, ApiError> {
    let object = ctx.load(name).await?;
    Ok(response::json(
        StatusCode::OK,
        &scale_of(ctx.info(), &object),
    ))
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

/// POST pods/{name}/eviction: evict the pod as its disruption budget allows (the registry's
/// [`evict`](crate::registry::Registry::evict)), deleting it with the eviction's
/// `deleteOptions`.
pub async fn evict(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let eviction = body::decode_object(ctx.headers, raw)?;
    if meta::name(&eviction) != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let delete_options = eviction
        .get("deleteOptions")
        .cloned()
        .unwrap_or(Value::Null);
    let options = super::delete::options_from(ctx, &delete_options)?;
    let request = crate::registry::Request {
        dry_run: eviction_dry_run(ctx.query.get("dryRun"), &delete_options)?,
        ..ctx.request()?
    };
    ctx.registry().evict(&request, name, &options).await?;
    Ok(response::json(StatusCode::CREATED, &response::success(201)))
}

/// The dry run of an eviction: the request's (`?dryRun=All`) or its delete options' (kube's
/// `propagateDryRun`; both given and different is an error).
fn eviction_dry_run(query: Option<&str>, delete_options: &Value) -> Result<bool, ApiError> {
    let from_body: Vec<&str> = delete_options
        .get("dryRun")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let from_query: Vec<&str> = query.into_iter().filter(|q| !q.is_empty()).collect();
    if let Some(bad) = from_body.iter().chain(&from_query).find(|v| **v != "All") {
        return Err(ApiError::bad_request(format!(
            "unsupported dryRun value {bad:?}: only \"All\" is supported"
        )));
    }
    if !from_body.is_empty() && !from_query.is_empty() && from_body != from_query {
        return Err(ApiError::bad_request(format!(
            "Non-matching dry-run options in request and content: {from_query:?} and {from_body:?}"
        )));
    }
    Ok(!from_body.is_empty() || !from_query.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_dry_run_comes_from_the_query_or_the_delete_options() {
        assert_eq!(eviction_dry_run(None, &Value::Null), Ok(false));
        assert_eq!(eviction_dry_run(Some("All"), &Value::Null), Ok(true));
        assert_eq!(
            eviction_dry_run(None, &json!({"dryRun": ["All"]})),
            Ok(true)
        );
        assert_eq!(
            eviction_dry_run(Some("All"), &json!({"dryRun": ["All"]})),
            Ok(true)
        );
        assert!(eviction_dry_run(None, &json!({"dryRun": ["Some"]})).is_err());
        assert!(eviction_dry_run(Some("All"), &json!({"dryRun": ["All", "All"]})).is_err());
    }
}
