//! The generic REST handler: one implementation of every verb for every resource, driven
//! by the resource's [`ResourceInfo`](crate::resources::ResourceInfo) — the equivalent of
//! kube-apiserver's generic registry store.

mod delete;
mod node_proxy;
mod read;
mod reviews;
mod subresource;
mod token;
mod watch;
mod write;

use axum::{
    http::{HeaderMap, HeaderValue, Method},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde_json::Value;

use super::{
    AppState,
    request::{Query, Target},
};
use crate::{
    model::{ApiError, user::UserInfo},
    registry::{self, Registry, RegistryError},
    resources::ResourceInfo,
    store::{StoreError, WatchCache},
};

/// Everything a verb needs about one request.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// Server state.
    pub state: &'a AppState,
    /// Addressed resource.
    pub target: &'a Target,
    /// Query parameters.
    pub query: &'a Query,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Who asks.
    pub user: &'a UserInfo,
}

impl Ctx<'_> {
    fn info(&self) -> &'static ResourceInfo {
        self.target.info
    }

    fn namespace(&self) -> &str {
        self.target.namespace.as_deref().unwrap_or_default()
    }

    fn registry(&self) -> &Registry {
        &self.state.registry
    }

    /// The registry request of this HTTP request.
    fn request(&self) -> Result<registry::Request<'_>, ApiError> {
        Ok(registry::Request {
            resource: self.info(),
            namespace: self.namespace(),
            subresource: self.target.subresource.as_deref().unwrap_or_default(),
            user: self.user,
            dry_run: self.query.dry_run(),
            field_validation: registry::field_validation(self.query.get("fieldValidation"))?,
        })
    }

    /// The stored object `name` (resourceVersion set), or the API error for its absence.
    async fn load(&self, name: &str) -> Result<Value, ApiError> {
        let request = self.request()?;
        Ok(self.registry().get(&request, name).await?)
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
        RegistryError::storage(self.info(), name, error).into()
    }
}

/// Serve a connection-upgrading subresource request (`pods/exec` over WebSocket).
pub async fn upgrade(
    state: &AppState,
    user: &UserInfo,
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
        user,
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
    user: &UserInfo,
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
        user,
    };
    let result = route(&ctx, method, body).await;
    let mut response = match result {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    // Every request to a deprecated version is warned, as kube's CRD handler does.
    if let Some(warning) = target.info.strategy.deprecation_warning()
        && let Ok(value) = HeaderValue::from_str(&format!("299 - {warning:?}"))
    {
        response.headers_mut().append("warning", value);
    }
    response
}

async fn route(ctx: &Ctx<'_>, method: &Method, body: Bytes) -> Result<Response, ApiError> {
    let info = ctx.info();
    let name = ctx.target.name.as_deref();
    let sub = ctx.target.subresource.as_deref();
    let watch = ctx.target.watch_path || ctx.query.flag("watch");
    if !info.stored() {
        return match (method.as_str(), name, sub) {
            ("POST", None, None) => reviews::create(ctx, &body).await,
            (verb, _, _) => Err(ApiError::method_not_allowed(verb, info.kind)),
        };
    }
    match (method.as_str(), name, sub) {
        ("GET", None, None) if watch => watch::watch(ctx).await,
        ("GET", None, None) => read::list(ctx).await,
        ("GET", Some(name), None) if watch => watch::watch_one(ctx, name).await,
        ("GET", Some(name), None | Some("status" | "approval")) => read::get(ctx, name).await,
        ("GET", Some(name), Some("scale")) => subresource::get_scale(ctx, name).await,
        ("POST", None, None) => write::create(ctx, &body).await,
        ("POST", Some(name), Some("binding")) => subresource::bind(ctx, name, &body).await,
        ("POST", Some(name), Some("eviction")) => subresource::evict(ctx, name, &body).await,
        ("POST", Some(name), Some("token")) => token::create(ctx, name, &body).await,
        ("PUT", Some(name), None | Some("status" | "approval")) => {
            write::update(ctx, name, &body).await
        }
        ("PUT", Some(name), Some("scale")) => subresource::update_scale(ctx, name, &body).await,
        ("PUT", Some(name), Some("finalize")) => write::finalize(ctx, name, &body).await,
        ("PATCH", Some(name), None | Some("status" | "approval")) => {
            write::patch(ctx, name, &body).await
        }
        ("PATCH", Some(name), Some("scale")) => subresource::patch_scale(ctx, name, &body).await,
        ("DELETE", Some(name), None) => delete::delete(ctx, name, &body).await,
        ("DELETE", None, None) => delete::delete_collection(ctx, &body).await,
        ("GET", Some(name), Some("log")) => node_proxy::logs(ctx, name).await,
        (_, Some(name), Some("exec")) => node_proxy::exec_without_upgrade(ctx, name).await,
        (verb, _, _) => Err(ApiError::method_not_allowed(verb, info.kind)),
    }
}

/// The `kind`/`apiVersion` of a body must be the resource's; a body without them takes
/// the URL's, as kube-apiserver defaults them (common clients send bodies that way).
fn check_type(info: &ResourceInfo, mut body: Value) -> Result<Value, ApiError> {
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = body
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let expected_version = info.api_version();
    if (!kind.is_empty() && kind != info.kind)
        || (!api_version.is_empty() && api_version != expected_version)
    {
        return Err(ApiError::bad_request(format!(
            "the object in the request body ({api_version}, Kind={kind}) does not match the resource of the URL \
             ({expected_version}, Kind={})",
            info.kind
        )));
    }
    if let Some(map) = body.as_object_mut() {
        map.insert("kind".to_owned(), Value::String(info.kind.to_owned()));
        map.insert("apiVersion".to_owned(), Value::String(expected_version));
    }
    Ok(body)
}
