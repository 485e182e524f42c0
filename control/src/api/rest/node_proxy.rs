//! Pod subresources the node agent serves, proxied to the agent of the pod's node the way
//! kube-apiserver proxies to kubelet (over TLS with its client certificate):
//! `pods/log` → `GET /containerLogs/{ns}/{pod}/{container}`, `pods/exec` → `/exec/…` with a
//! WebSocket upgrade, on the node's InternalIP and kubelet port (from the Node's status).

use axum::{body::Body, http::StatusCode, response::Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::Ctx;
use crate::{
    api::request::Query,
    model::{
        ApiError, meta,
        validation::{ErrorList, FieldError},
    },
    store::object_key,
};

/// Boolean pods/log parameters passed on to the agent.
const LOG_FLAGS: &[&str] = &["follow", "timestamps", "previous"];
/// Integer pods/log parameters passed on to the agent.
const LOG_NUMBERS: &[&str] = &["tailLines", "sinceSeconds", "limitBytes"];

/// A query boolean as apimachinery converts one: present means true unless `0`/`false`.
fn query_flag(value: &str) -> bool {
    !(value == "0" || value.eq_ignore_ascii_case("false"))
}

/// pods/log options as kube-apiserver reads them: decoded as PodLogOptions (a malformed
/// number or time is a 400), then ValidatePodLogOptions (tailLines ≥ 0, limitBytes > 0,
/// sinceSeconds > 0, not both sinceSeconds and sinceTime: a 422 for PodLogOptions
/// `name`). Returns the normalized query the agent gets; any valid value, however large,
/// passes (the agent reads them without overflowing).
fn log_query(query: &Query, name: &str) -> Result<String, ApiError> {
    let mut params = Vec::new();
    for flag in LOG_FLAGS {
        if query.get(flag).is_some_and(query_flag) {
            params.push(format!("{flag}=true"));
        }
    }
    let mut numbers = std::collections::BTreeMap::new();
    for key in LOG_NUMBERS {
        if let Some(text) = query.get(key) {
            let value = text.parse::<i64>().map_err(|e| {
                let why = match e.kind() {
                    std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                        "value out of range"
                    }
                    _ => "invalid syntax",
                };
                ApiError::bad_request(format!("strconv.ParseInt: parsing {text:?}: {why}"))
            })?;
            numbers.insert(*key, value);
        }
    }
    let since_time = match query.get("sinceTime").filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => Some(text.parse::<jiff::Timestamp>().map_err(|e| {
            ApiError::bad_request(format!(
                "parsing time {text:?} as \"2006-01-02T15:04:05Z07:00\": {e}"
            ))
        })?),
    };
    let mut errors = ErrorList::new();
    if let Some(tail) = numbers.get("tailLines").filter(|n| **n < 0) {
        errors.push(FieldError::invalid(
            "tailLines",
            tail,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(limit) = numbers.get("limitBytes").filter(|n| **n < 1) {
        errors.push(FieldError::invalid(
            "limitBytes",
            limit,
            "must be greater than 0",
        ));
    }
    match (numbers.get("sinceSeconds"), since_time) {
        (Some(_), Some(_)) => errors.push(FieldError::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(seconds), None) if *seconds < 1 => errors.push(FieldError::invalid(
            "sinceSeconds",
            seconds,
            "must be greater than 0",
        )),
        _ => {}
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid("", "PodLogOptions", name, &errors));
    }
    params.extend(numbers.iter().map(|(key, value)| format!("{key}={value}")));
    if let Some(time) = since_time {
        params.push(format!("sinceTime={}", encode(&time.to_string())));
    }
    Ok(params.join("&"))
}

/// The container a request means: `?container=`, or the only one, or the default-container
/// annotation; otherwise the error kube-apiserver gives.
fn container_name(ctx: &Ctx<'_>, pod: &Value, name: &str) -> Result<String, ApiError> {
    let names: Vec<String> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| {
            pod.pointer(&format!("/spec/{list}"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c.get("name")?.as_str().map(str::to_owned))
        .collect();
    let apps: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name")?.as_str().map(str::to_owned))
        .collect();
    match ctx.query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if names.iter().any(|n| n == c) => Ok(c.to_owned()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            if let Some(default) = pod
                .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
                .and_then(Value::as_str)
            {
                return Ok(default.to_owned());
            }
            match apps.as_slice() {
                [only] => Ok(only.clone()),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    apps.join(" ")
                ))),
            }
        }
    }
}

/// `host:port` of the agent on the pod's node.
async fn agent_address(ctx: &Ctx<'_>, pod: &Value, name: &str) -> Result<String, ApiError> {
    let node_name = meta::field_value(pod, "spec.nodeName");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let node = ctx
        .state
        .store
        .get(&object_key("", "nodes", "", &node_name))
        .await
        .map_err(|_| {
            ApiError::bad_request(format!("node {node_name} of pod {name} is not registered"))
        })?;
    let ip = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .and_then(|a| a.get("address")?.as_str())
        .ok_or_else(|| ApiError::bad_request(format!("node {node_name} has no InternalIP")))?
        .to_owned();
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_i64)
        .unwrap_or(10250);
    Ok(format!("{ip}:{port}"))
}

/// The waiting reason of a container that has not run yet, if so.
fn waiting_reason(pod: &Value, container: &str) -> Option<String> {
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|list| {
            pod.pointer(&format!("/status/{list}"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .find(|s| s.get("name").and_then(Value::as_str) == Some(container))
        .filter(|s| {
            s.pointer("/lastState/terminated").is_none() && s.pointer("/state/waiting").is_some()
        })
        .map(|s| {
            s.pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .unwrap_or("ContainerCreating")
                .to_owned()
        })
}

/// GET pods/{name}/log.
pub async fn logs(ctx: &Ctx<'_>, name: &str) -> Result<Response, ApiError> {
    // Options are checked before the pod is looked up, as kube-apiserver does.
    let params = log_query(ctx.query, name)?;
    let pod = ctx.load(name).await?;
    let container = container_name(ctx, &pod, name)?;
    if let Some(reason) = waiting_reason(&pod, &container) {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    let address = agent_address(ctx, &pod, name).await?;
    let mut path = format!(
        "/containerLogs/{}/{name}/{container}",
        ctx.target.namespace.as_deref().unwrap_or_default()
    );
    if !params.is_empty() {
        path.push('?');
        path.push_str(&params);
    }
    let response = get(ctx, &address, &path).await.map_err(|e| {
        ApiError::unavailable(format!(
            "cannot reach the agent of pod {name} at {address}: {e}"
        ))
    })?;
    let status = response.status();
    if status.is_server_error() {
        // The agent's own failure stays in its log (it may name host paths).
        return Err(ApiError::internal(format!(
            "the agent of pod {name} could not serve its logs ({status})"
        )));
    }
    if !status.is_success() {
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(ApiError::bad_request(body.trim().to_owned()));
    }
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(Body::new(response.into_body()))
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An HTTP/1.1 GET to the agent over TLS, with the body streamed.
async fn get(
    ctx: &Ctx<'_>,
    address: &str,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let config = ctx
        .state
        .agent_tls
        .clone()
        .ok_or("this API server has no client identity for node agents")?;
    let stream = crate::api::agent_client::connect(&config, address).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::get(path)
        .header("host", address)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}

/// `pods/{name}/exec` without a WebSocket upgrade (kubectl's SPDY fallback): report what
/// is wrong with the request first, as the upgrade path would, then that SPDY is not served.
pub async fn exec_without_upgrade(ctx: &Ctx<'_>, name: &str) -> Result<Response, ApiError> {
    let pod = ctx.load(name).await?;
    let container = container_name(ctx, &pod, name)?;
    if let Some(reason) = waiting_reason(&pod, &container) {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    agent_address(ctx, &pod, name).await?;
    Err(ApiError::bad_request(
        "pods/exec needs a WebSocket upgrade (v5.channel.k8s.io); SPDY is not supported by Skiff",
    ))
}

/// `pods/{name}/exec` (and attach) with a WebSocket upgrade: forward the upgrade to the
/// agent's `/exec/…`, answer the client with the agent's 101, then splice the two
/// connections. The channel protocol (v5.channel.k8s.io) passes through untouched.
pub async fn exec(
    ctx: &Ctx<'_>,
    name: &str,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    // Everything needed from the request is copied out first: the body is not Sync, so the
    // request must not be borrowed across awaits.
    let (key, protocols, raw_query) = {
        let header = |h: &str| {
            request
                .headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            header("sec-websocket-key"),
            header("sec-websocket-protocol").unwrap_or_default(),
            request.uri().query().unwrap_or_default().to_owned(),
        )
    };
    let Some(key) = key else {
        // An SPDY upgrade: say what is wrong with the request, else that SPDY is not served.
        return exec_without_upgrade(ctx, name).await;
    };
    let pod = ctx.load(name).await?;
    let container = container_name(ctx, &pod, name)?;
    if let Some(reason) = waiting_reason(&pod, &container) {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    let address = agent_address(ctx, &pod, name).await?;
    let path = format!(
        "/exec/{}/{name}/{container}?{}",
        ctx.target.namespace.as_deref().unwrap_or_default(),
        raw_query
    );
    let unreachable = |e: String| {
        ApiError::unavailable(format!(
            "cannot reach the agent of pod {name} at {address}: {e}"
        ))
    };
    let config = ctx.state.agent_tls.clone().ok_or_else(|| {
        unreachable("this API server has no client identity for node agents".into())
    })?;
    let stream = crate::api::agent_client::connect(&config, &address)
        .await
        .map_err(unreachable)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let upgrade = hyper::Request::get(path.as_str())
        .header(hyper::header::HOST, address.as_str())
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::UPGRADE, "websocket")
        .header(hyper::header::SEC_WEBSOCKET_VERSION, "13")
        .header(hyper::header::SEC_WEBSOCKET_KEY, key.as_str())
        .header(hyper::header::SEC_WEBSOCKET_PROTOCOL, protocols.as_str())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut agent_response = sender
        .send_request(upgrade)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if agent_response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        let status = agent_response.status();
        let body = http_body_util::BodyExt::collect(agent_response.into_body())
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
            .unwrap_or_default();
        return Err(ApiError::bad_request(if body.is_empty() {
            format!("the agent refused the exec: {status}")
        } else {
            body
        }));
    }
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket");
    for name in [
        hyper::header::SEC_WEBSOCKET_ACCEPT,
        hyper::header::SEC_WEBSOCKET_PROTOCOL,
    ] {
        if let Some(value) = agent_response.headers().get(&name) {
            response = response.header(name.clone(), value.clone());
        }
    }
    tokio::spawn(async move {
        let Ok(agent) = hyper::upgrade::on(&mut agent_response).await else {
            return;
        };
        let Ok(client) = hyper::upgrade::on(request).await else {
            return;
        };
        let mut agent = TokioIo::new(agent);
        let mut client = TokioIo::new(client);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
    });
    response
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(query: &str) -> Result<String, serde_json::Value> {
        log_query(&Query::parse(Some(query)), "web").map_err(|e| e.to_status())
    }

    #[test]
    fn valid_options_pass_normalized_however_large() {
        assert_eq!(run(""), Ok(String::new()));
        assert_eq!(
            run("follow&timestamps=1&previous=false&tailLines=9223372036854775807&limitBytes=9223372036854775807&sinceSeconds=9223372036854775807"),
            Ok("follow=true&timestamps=true&limitBytes=9223372036854775807&sinceSeconds=9223372036854775807&tailLines=9223372036854775807".to_owned())
        );
        assert_eq!(
            run("sinceTime=2026-11-22T05:00:00%2B02:00"),
            Ok("sinceTime=2026-11-22T03%3A00%3A00Z".to_owned())
        );
    }

    #[test]
    fn invalid_options_are_refused_as_kube_does() {
        let status = run("tailLines=-1&limitBytes=0&sinceSeconds=0").expect_err("invalid");
        assert_eq!(status["code"], 422);
        assert_eq!(
            status["message"],
            "PodLogOptions \"web\" is invalid: [tailLines: Invalid value: -1: must be greater than or equal to 0, limitBytes: Invalid value: 0: must be greater than 0, sinceSeconds: Invalid value: 0: must be greater than 0]"
        );
        let both = run("sinceSeconds=5&sinceTime=2026-11-22T05:00:00Z").expect_err("invalid");
        assert_eq!(
            both["details"]["causes"][0]["message"],
            "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
        );
        for malformed in [
            "tailLines=abc",
            "limitBytes=99999999999999999999",
            "sinceSeconds=",
            "sinceTime=yesterday",
        ] {
            assert_eq!(
                run(malformed).expect_err(malformed)["code"],
                400,
                "{malformed}"
            );
        }
        assert_eq!(
            run("limitBytes=99999999999999999999").expect_err("too big")["message"],
            "strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
        );
    }
}
