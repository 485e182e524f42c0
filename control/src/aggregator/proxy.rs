//! Forwarding one request to an extension API server, as kube-aggregator's proxy handler:
//! 503 while the APIService is not available; the caller's credentials and impersonation
//! headers never leave the control plane, the authenticated user goes in `X-Remote-*`
//! headers instead (any such header the client sent is dropped first); the answer streams
//! back unchanged, so watches work through the proxy.

use axum::{
    body::Body,
    http::{HeaderMap, HeaderName, HeaderValue, header},
    response::{IntoResponse, Response},
};

use super::{Aggregator, ApiServiceView, BackendError, front_proxy};
use crate::model::{ApiError, user::UserInfo};

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded either way.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a request header stays behind at the proxy.
fn dropped_request_header(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
        || name == "host"
        || name == "authorization"
        || name.starts_with("impersonate-")
        || name.starts_with("x-remote-")
}

/// A header key escaped as kube escapes `X-Remote-Extra-` keys (url.PathEscape).
fn escape_extra_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The headers sent to the backend: the client's, minus what stays behind, plus the user.
pub fn forwarded_headers(incoming: &HeaderMap, user: &UserInfo, host: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in incoming {
        if !dropped_request_header(name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Ok(host) = HeaderValue::from_str(host) {
        headers.insert(header::HOST, host);
    }
    let mut add = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    };
    add(front_proxy::USER_HEADER, &user.name);
    for group in &user.groups {
        add(front_proxy::GROUP_HEADER, group);
    }
    for (key, values) in &user.extra {
        let name = format!("{}{}", front_proxy::EXTRA_PREFIX, escape_extra_key(key));
        for value in values {
            add(&name, value);
        }
    }
    headers
}

/// Proxy `request` to `view`'s backend for `user`.
pub async fn forward(
    aggregator: &Aggregator,
    view: &ApiServiceView,
    user: &UserInfo,
    request: hyper::Request<Body>,
) -> Response {
    let Some(backend) = &view.backend else {
        return ApiError::no_route().into_response();
    };
    if !view.available {
        return ApiError::unavailable("service unavailable").into_response();
    }
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut outgoing = hyper::Request::new(body);
    *outgoing.method_mut() = parts.method;
    *outgoing.uri_mut() = match path.parse() {
        Ok(uri) => uri,
        Err(_) => return ApiError::bad_request("invalid request path").into_response(),
    };
    *outgoing.headers_mut() = forwarded_headers(&parts.headers, user, &backend.server_name());
    match aggregator.send(backend, outgoing).await {
        Ok((_, response)) => {
            let (mut parts, body) = response.into_parts();
            for name in HOP_BY_HOP {
                parts.headers.remove(*name);
            }
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::new(body))
        }
        Err(BackendError::Endpoint(e)) => {
            ApiError::unavailable(format!("service unavailable: {e}")).into_response()
        }
        Err(e) => {
            ApiError::unavailable(format!("error trying to reach service: {e}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn credentials_stay_behind_and_the_user_travels_in_headers() {
        let mut incoming = HeaderMap::new();
        incoming.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secret"),
        );
        incoming.insert("impersonate-user", HeaderValue::from_static("root"));
        incoming.insert("x-remote-user", HeaderValue::from_static("spoofed"));
        incoming.insert(header::CONNECTION, HeaderValue::from_static("close"));
        incoming.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let user = UserInfo {
            name: "alice".to_owned(),
            uid: String::new(),
            groups: vec!["dev".to_owned(), "system:authenticated".to_owned()],
            extra: BTreeMap::from([(
                "authentication.kubernetes.io/pod-name".to_owned(),
                vec!["p".to_owned()],
            )]),
        };
        let headers = forwarded_headers(&incoming, &user, "svc.ns.svc");
        let all = |name: &str| -> Vec<&str> {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect()
        };
        assert!(all("authorization").is_empty() && all("impersonate-user").is_empty());
        assert!(all("connection").is_empty());
        assert_eq!(all("x-remote-user"), ["alice"]);
        assert_eq!(all("x-remote-group"), ["dev", "system:authenticated"]);
        assert_eq!(
            all("x-remote-extra-authentication.kubernetes.io%2Fpod-name"),
            ["p"]
        );
        assert_eq!(all("accept"), ["application/json"]);
        assert_eq!(all("host"), ["svc.ns.svc"]);
    }
}
