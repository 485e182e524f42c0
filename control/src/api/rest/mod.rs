//! The generic REST handler: one implementation of every verb for every resource, driven
//! by the resource's [`ResourceInfo`](crate::resources::ResourceInfo) — the equivalent of
//! kube-apiserver's generic registry store.

mod claims;
mod delete;
mod meta;
mod node_proxy;
mod read;
mod runtime_class;
mod subresource;
mod watch;
mod write;

use axum::{
    http::{HeaderMap, Method},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde_json::Value;

use super::{
    AppState,
    request::{Query, Target},
};
use crate::{
    model::ApiError,
    resources::ResourceInfo,
    store::{StoreError, WatchCache, object_key},
};

/// Everything a verb needs about one request.
pub struct Ctx<'a> {
    /// Server state.
    pub state: &'a AppState,
    /// Addressed resource.
    pub target: &'a Target,
    /// Query parameters.
    pub query: &'a Query,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

impl Ctx<'_> {
    fn info(&self) -> &'static ResourceInfo {
        self.target.info
    }

    fn namespace(&self) -> &str {
        self.target.namespace.as_deref().unwrap_or_default()
    }

    fn key(&self, name: &str) -> String {
        object_key(
            self.info().group,
            self.info().plural,
            self.namespace(),
            name,
        )
    }

    /// The stored object `name` (resourceVersion set), or the API error for its absence.
    async fn load(&self, name: &str) -> Result<Value, ApiError> {
        self.state
            .store
            .get(&self.key(name))
            .await
            .map_err(|e| self.storage_error(name, e))
    }

    /// The resource's watch cache once it reflects everything etcd has committed (a
    /// consistent read), waiting at most `limit`.
    async fn fresh_cache(
        &self,
        limit: std::time::Duration,
    ) -> Result<std::sync::Arc<WatchCache>, ApiError> {
        let info = self.info();
        let cache = self.state.store.cache(&info.prefix(), info.projection());
        let current = self
            .state
            .store
            .current_revision()
            .await
            .map_err(|e| self.storage_error("", e))?;
        cache
            .wait_for(current, limit)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        Ok(cache)
    }

    /// Map a storage error to the API error kube-apiserver would give for `name`.
    fn storage_error(&self, name: &str, error: StoreError) -> ApiError {
        let info = self.info();
        match error {
            StoreError::NotFound => ApiError::not_found(info.group, info.plural, name),
            StoreError::AlreadyExists => ApiError::already_exists(info.group, info.plural, name),
            StoreError::Claimed { claim, holder } => ApiError::conflict(
                info.group,
                info.plural,
                name,
                &format!("{claim} is already held by {holder}"),
            ),
            StoreError::Conflict => ApiError::modified(info.group, info.plural, name),
            StoreError::Compacted { .. } => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a \
                 new list without the continue parameter.",
            ),
            StoreError::Corrupt { key, reason } => {
                ApiError::internal(format!("stored object {key} is corrupt: {reason}"))
            }
            StoreError::Unavailable(e) => {
                ApiError::unavailable(format!("etcd is unavailable: {e}"))
            }
            StoreError::Timeout => ApiError::unavailable(StoreError::Timeout.to_string()),
        }
    }
}

/// Serve a connection-upgrading subresource request (`pods/exec` over WebSocket).
pub async fn upgrade(
    state: &AppState,
    target: &Target,
    query: &Query,
    request: axum::extract::Request,
) -> Response {
    let headers = request.headers().clone();
    let ctx = Ctx {
        state,
        target,
        query,
        headers: &headers,
    };
    let name = target.name.clone().unwrap_or_default();
    match node_proxy::exec(&ctx, &name, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// Serve one resource request.
pub async fn dispatch(
    state: &AppState,
    method: &Method,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = Ctx {
        state,
        target,
        query,
        headers,
    };
    let result = route(&ctx, method, body).await;
    match result {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn route(ctx: &Ctx<'_>, method: &Method, body: Bytes) -> Result<Response, ApiError> {
    let info = ctx.info();
    let name = ctx.target.name.as_deref();
    let sub = ctx.target.subresource.as_deref();
    let watch = ctx.target.watch_path || ctx.query.flag("watch");
    match (method.as_str(), name, sub) {
        ("GET", None, None) if watch => watch::watch(ctx).await,
        ("GET", None, None) => read::list(ctx).await,
        ("GET", Some(name), None) if watch => watch::watch_one(ctx, name).await,
        ("GET", Some(name), None | Some("status")) => read::get(ctx, name).await,
        ("GET", Some(name), Some("scale")) => subresource::get_scale(ctx, name).await,
        ("POST", None, None) => write::create(ctx, &body).await,
        ("POST", Some(name), Some("binding")) => subresource::bind(ctx, name, &body).await,
        ("POST", Some(name), Some("eviction")) => subresource::evict(ctx, name, &body).await,
        ("PUT", Some(name), None | Some("status")) => write::update(ctx, name, &body).await,
        ("PUT", Some(name), Some("scale")) => subresource::update_scale(ctx, name, &body).await,
        ("PUT", Some(name), Some("finalize")) => write::finalize(ctx, name, &body).await,
        ("PATCH", Some(name), None | Some("status")) => write::patch(ctx, name, &body).await,
        ("PATCH", Some(name), Some("scale")) => subresource::patch_scale(ctx, name, &body).await,
        ("DELETE", Some(name), None) => delete::delete(ctx, name, &body).await,
        ("DELETE", None, None) => delete::delete_collection(ctx, &body).await,
        ("GET", Some(name), Some("log")) => node_proxy::logs(ctx, name).await,
        (_, Some(name), Some("exec")) => node_proxy::exec_without_upgrade(ctx, name).await,
        (verb, _, _) => Err(ApiError::method_not_allowed(verb, info.kind)),
    }
}

/// The `kind`/`apiVersion` of a body must be the resource's (filled in when absent only
/// for subresource bodies).
fn check_type(info: &ResourceInfo, body: &Value) -> Result<(), ApiError> {
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = body
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in the request body (expected {})",
            info.kind
        )));
    }
    if api_version != info.api_version() || kind != info.kind {
        return Err(ApiError::bad_request(format!(
            "the object in the request body ({api_version}, Kind={kind}) does not match the resource of the URL \
             ({}, Kind={})",
            info.api_version(),
            info.kind
        )));
    }
    Ok(())
}
