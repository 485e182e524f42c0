//! The HTTP surface of skiff-control: one handler that authenticates, then routes to
//! health, discovery, OpenAPI or the generic REST handler.

pub mod agent_client;
pub mod auth;
pub mod authorize;
mod body;
mod discovery;
mod health;
pub mod limits;
mod metrics;
mod openapi;
pub mod request;
mod response;
mod rest;
pub mod serve;
mod table;
mod version;

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{Method, header},
    response::{IntoResponse, Response},
};

pub use metrics::Metrics;

use self::auth::{Identity, Tokens};
use crate::{
    admission,
    authz::{self, Authorizer, Decision},
    model::ApiError,
    registry::Registry,
    store::Store,
};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The etcd store.
    pub store: Arc<Store>,
    /// Every resource's writes, through the admission chain.
    pub registry: Arc<Registry>,
    /// Request counters.
    pub metrics: Arc<Metrics>,
    /// Bearer tokens.
    pub tokens: Arc<Tokens>,
    /// ServiceAccount tokens: issuing (TokenRequest), authenticating, OIDC discovery.
    pub service_accounts: Option<Arc<crate::authn::ServiceAccountTokens>>,
    /// Who may do what (`--authorization-mode`).
    pub authorizer: Arc<dyn Authorizer>,
    /// Concurrent requests allowed (max in flight).
    pub in_flight: Arc<limits::InFlight>,
    /// The RBAC authorizer, when RBAC is on (rules reviews read it).
    pub rbac: Option<Arc<authz::rbac_source::RbacAuthorizer>>,
    /// TLS towards node agents (logs, exec), when the server has a client identity.
    pub agent_tls: Option<Arc<rustls::ClientConfig>>,
    /// API aggregation: remote APIServices proxied, their groups in discovery.
    pub aggregator: Option<Arc<crate::aggregator::Aggregator>>,
}

impl AppState {
    /// The same state, talking to node agents with this TLS client configuration.
    pub fn with_agent_tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.agent_tls = Some(config);
        self
    }

    /// The same state, proxying remote APIServices through `aggregator`.
    pub fn with_aggregator(mut self, aggregator: Arc<crate::aggregator::Aggregator>) -> Self {
        self.aggregator = Some(aggregator);
        self
    }

    /// The same state, issuing and accepting ServiceAccount tokens with `tokens`.
    pub fn with_service_accounts(
        mut self,
        tokens: Arc<crate::authn::ServiceAccountTokens>,
    ) -> Self {
        self.service_accounts = Some(tokens);
        self
    }

    /// The same state, authorizing with `authorization` and admitting writes through the
    /// default admission chain with its checks (RBAC escalation) and `settings`.
    pub fn with_authorization(
        mut self,
        authorization: &authz::modes::Authorization,
        settings: &admission::Settings,
    ) -> Self {
        let chain = admission::default_chain(&self.store, Some(authorization), settings);
        self.registry = Arc::new(Registry::new(Arc::clone(&self.store), chain));
        self.authorizer = Arc::clone(&authorization.authorizer);
        self.rbac = authorization.rbac.clone();
        self
    }

    /// State over `store`, admitting writes through the default admission chain and
    /// authorizing only the superuser group until [`AppState::with_authorizer`].
    pub fn new(store: Arc<Store>, tokens: Tokens) -> Self {
        let chain = admission::default_chain(&store, None, &admission::Settings::default());
        Self {
            registry: Arc::new(Registry::new(Arc::clone(&store), chain)),
            store,
            metrics: Arc::new(Metrics::default()),
            tokens: Arc::new(tokens),
            service_accounts: None,
            in_flight: Arc::new(limits::InFlight::default()),
            rbac: None,
            authorizer: Arc::new(authz::Chain::new(vec![Arc::new(
                authz::privileged::PrivilegedGroups,
            )])),
            agent_tls: None,
            aggregator: None,
        }
    }
}

/// Every route the server answers.
pub fn router(state: AppState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// The health checks alone (the plain-HTTP listener): /healthz, /livez, /readyz.
pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(health_only))
        .route("/readyz", axum::routing::get(health_only))
        .route("/livez", axum::routing::get(|| async { health::livez() }))
        .with_state(state)
}

async fn health_only(State(state): State<AppState>) -> Response {
    health::healthz(&state).await
}

/// Authenticate: the connection's certificate identity, a static bearer token or a
/// ServiceAccount token. `None` for an anonymous request or one whose credentials do not
/// authenticate.
fn identify(state: &AppState, request: &Request) -> Option<Identity> {
    if let Some(identity) = request.extensions().get::<Identity>() {
        return Some(identity.clone());
    }
    let header = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    if let Some(user) = state.tokens.authenticate(header) {
        return Some(user);
    }
    let token = header.strip_prefix("Bearer ")?.trim();
    match state.service_accounts.as_ref()?.authenticate(token) {
        Ok(verified) => verified.map(|v| v.user),
        Err(e) => {
            tracing::debug!(error = %e, "ServiceAccount token refused");
            None
        }
    }
}

async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match identify(&state, &request) {
        Some(user) => match authorize(&state, &user, &request) {
            Ok((user, attributes)) => bounded(&state, &user, &attributes, request).await,
            Err(denied) => denied.into_response(),
        },
        None if auth::is_public(&path) => {
            route(&state, &crate::model::user::UserInfo::anonymous(), request).await
        }
        None => ApiError::unauthorized().into_response(),
    };
    state.metrics.observe(
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Route a request within the server's budget: long-running requests (watches, streams)
/// go straight through; others take an in-flight slot (429 when none is left) and get
/// their timeout (504 after it).
async fn bounded(
    state: &AppState,
    user: &Identity,
    attributes: &authz::Attributes,
    request: Request,
) -> Response {
    let query = request::Query::parse(request.uri().query());
    if limits::long_running(attributes, &query) {
        return route(state, user, request).await;
    }
    let _slot = match state.in_flight.admit(request.method()) {
        Ok(slot) => slot,
        Err(refused) => {
            let mut response = refused.into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return response;
        }
    };
    let limit = limits::timeout(&query);
    match tokio::time::timeout(limit, route(state, user, request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout(format!(
            "the request did not complete within the allowed timeout of {} s",
            limit.as_secs()
        ))
        .into_response(),
    }
}

/// Impersonate if asked, then authorize: the user the request acts as, or the 403.
fn authorize(
    state: &AppState,
    user: &Identity,
    request: &Request,
) -> Result<(Identity, authz::Attributes), ApiError> {
    let user = authorize::impersonate(state.authorizer.as_ref(), user, request.headers())?;
    let query = request::Query::parse(request.uri().query());
    let attributes =
        authorize::request_attributes(&user, request.method(), request.uri().path(), &query);
    match state.authorizer.authorize(&attributes) {
        Decision::Allow(_) => Ok((user, attributes)),
        Decision::Deny(reason) | Decision::NoOpinion(reason) => {
            tracing::debug!(user = %user.name, verb = %attributes.verb, resource = %attributes.resource,
                            path = %attributes.path, %reason, "forbidden");
            Err(authorize::forbidden(&attributes, &reason))
        }
    }
}

async fn route(state: &AppState, user: &Identity, request: Request) -> Response {
    if let Some(aggregator) = &state.aggregator
        && let Some(remote) = aggregator.remote_for_path(request.uri().path())
    {
        return aggregator.proxy(&remote, user, request).await;
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().trim_end_matches('/').to_owned();
    let get = parts.method == Method::GET;
    let result = match path.as_str() {
        "/healthz" | "/readyz" => return health::healthz(state).await,
        "/livez" => return health::livez(),
        "/version" => return version::version(),
        "/metrics" => return metrics::render(state).await,
        crate::authn::discovery::OPENID_CONFIGURATION_PATH | crate::authn::discovery::JWKS_PATH
            if get =>
        {
            return service_account_issuer(state, &path);
        }
        "/api" if get => Ok(discovery::core(&parts.headers)),
        "/apis" if get => Ok(discovery::groups(&parts.headers, remote_groups(state))),
        "/openapi/v2" if get => return openapi::serve_v2(&parts.headers),
        "/openapi/v3" if get => Ok(openapi::root()),
        p if get && p.starts_with("/openapi/v3/") => {
            openapi::group_version(&p["/openapi/v3/".len()..])
        }
        p => match p
            .trim_start_matches('/')
            .split('/')
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["api", version] if get => discovery::resource_list("", version),
            ["apis", group] if get => match discovery::group(group, remote_groups(state)) {
                Err(_) => {
                    crate::crd::serve::catch_up(&state.store).await;
                    discovery::group(group, remote_groups(state))
                }
                found => found,
            },
            ["apis", group, version] if get => match discovery::resource_list(group, version) {
                Err(_) => {
                    crate::crd::serve::catch_up(&state.store).await;
                    discovery::resource_list(group, version)
                }
                found => found,
            },
            ["api" | "apis", ..] => match parse_resource_path(state, p).await {
                Ok(target) => {
                    let query = request::Query::parse(parts.uri.query());
                    let upgrading = parts.headers.contains_key(header::UPGRADE);
                    if upgrading
                        && target.info.kind == "Pod"
                        && target.subresource.as_deref() == Some("exec")
                    {
                        let request = axum::extract::Request::from_parts(parts, body);
                        return rest::upgrade(state, user, &target, &query, request).await;
                    }
                    let bytes = match body::read(Body::new(body)).await {
                        Ok(b) => b,
                        Err(body::Unread::TooLarge { drained: true }) => {
                            return ApiError::too_large(body::MAX_BODY).into_response();
                        }
                        Err(_) => return too_large(),
                    };
                    return rest::dispatch(
                        state,
                        user,
                        &parts.method,
                        &target,
                        &query,
                        &parts.headers,
                        bytes,
                    )
                    .await;
                }
                Err(e) => Err(e),
            },
            _ => Err(ApiError::no_route()),
        },
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The groups extension API servers serve now (none without an aggregator).
fn remote_groups(state: &AppState) -> Vec<crate::aggregator::discovery::RemoteGroup> {
    state
        .aggregator
        .as_ref()
        .map(|a| crate::aggregator::discovery::remote_groups(a.documents()))
        .unwrap_or_default()
}

/// Parse a resource path; a path naming a resource this replica does not serve (yet)
/// waits for the CRD cache to catch up with etcd once before it is answered 404.
async fn parse_resource_path(state: &AppState, path: &str) -> Result<request::Target, ApiError> {
    match request::parse_path(path) {
        Err(_) if path.starts_with("/apis/") => {
            crate::crd::serve::catch_up(&state.store).await;
            request::parse_path(path)
        }
        parsed => parsed,
    }
}

/// The ServiceAccount issuer's OIDC discovery documents (404 when not served).
fn service_account_issuer(state: &AppState, path: &str) -> Response {
    use crate::authn::discovery as oidc;
    let Some(metadata) = state
        .service_accounts
        .as_ref()
        .and_then(|s| s.metadata.as_ref())
    else {
        return ApiError::no_route().into_response();
    };
    let (body, content_type) = if path == oidc::JWKS_PATH {
        (metadata.keyset_json(), oidc::JWKS_CONTENT_TYPE)
    } else {
        (
            metadata.configuration_json(),
            oidc::CONFIGURATION_CONTENT_TYPE,
        )
    };
    let mut response = Response::new(Body::from(body.to_owned()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(oidc::CACHE_CONTROL),
    );
    response
}

/// 413 for a body over the limit whose rest could not be drained, so the connection cannot
/// carry another request: `Connection: close` tells the client not to reuse it (a pooled
/// client would otherwise send its next request into a closing connection).
fn too_large() -> Response {
    let mut response = ApiError::too_large(body::MAX_BODY).into_response();
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}
