//! Pod subresources the node agent serves, proxied to the agent of the pod's node the way
//! kube-apiserver proxies to kubelet: `pods/log` → `GET /containerLogs/{ns}/{pod}/{container}`
//! on the node's InternalIP and kubelet port (from the Node's status).

use axum::{body::Body, http::StatusCode, response::Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::Ctx;
use crate::{
    model::{ApiError, meta},
    store::object_key,
};

/// Query parameters of pods/log passed through to the agent.
const LOG_PARAMS: &[&str] = &[
    "follow",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "previous",
    "limitBytes",
];

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
    let params: Vec<String> = LOG_PARAMS
        .iter()
        .filter_map(|p| ctx.query.get(p).map(|v| format!("{p}={}", encode(v))))
        .collect();
    if !params.is_empty() {
        path.push('?');
        path.push_str(&params.join("&"));
    }
    let response = get(&address, &path).await.map_err(|e| {
        ApiError::unavailable(format!(
            "cannot reach the agent of pod {name} at {address}: {e}"
        ))
    })?;
    let status = response.status();
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

/// A plain HTTP/1.1 GET to the agent, with the body streamed.
async fn get(address: &str, path: &str) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let stream = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(address),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| e.to_string())?;
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
