//! The node HTTP API's pod endpoints, in kubelet's shape (the API server proxies
//! `pods/{name}/log` and `pods/{name}/exec` here):
//! - `GET /containerLogs/{namespace}/{pod}/{container}?follow=&tailLines=&sinceSeconds=&sinceTime=&timestamps=&previous=&limitBytes=`
//! - `GET /exec/{namespace}/{pod}/{container}?command=…&stdin=&stdout=&stderr=&tty=` with a
//!   WebSocket upgrade (`v5.channel.k8s.io` / `v4.channel.k8s.io`).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{Path as UrlPath, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;

use crate::logs::{self, LogOptions};

/// Query of a log request.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    follow: Option<bool>,
    tail_lines: Option<i64>,
    since_seconds: Option<i64>,
    since_time: Option<String>,
    timestamps: Option<bool>,
    previous: Option<bool>,
    limit_bytes: Option<i64>,
}

/// What the pod endpoints need.
#[derive(Clone)]
pub struct NodeApi {
    /// The agent's state directory (logs, exec FIFOs).
    pub state_dir: PathBuf,
    /// containerd, when the kubelet runs.
    pub runtime: Option<crate::runtime::Runtime>,
}

/// Routes of the pod endpoints.
pub fn routes(api: NodeApi) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", get(exec))
        .with_state(api)
}

async fn exec(
    State(api): State<NodeApi>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let Some(runtime) = api.runtime else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the kubelet is not running on this node".into(),
        );
    };
    let filter = format!(
        "labels.\"skiff.io/pod-namespace\"=={namespace},labels.\"skiff.io/pod-name\"=={pod},labels.\"skiff.io/container\"=={container}"
    );
    let mut running = None;
    for found in runtime.list_containers(&filter).await.unwrap_or_default() {
        if matches!(
            runtime.task_state(&found.id).await,
            Ok(crate::runtime::containers::TaskState::Running(_))
        ) {
            running = Some(found.id);
        }
    }
    let Some(container_id) = running else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not valid for pod {pod}: it is not running"),
        );
    };
    let request = crate::exec::ExecRequest::parse(&query.unwrap_or_default());
    let scratch = api.state_dir.join("exec");
    upgrade
        .protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| {
            crate::exec::session(socket, runtime, container_id, request, scratch)
        })
}

/// Log files of a container, oldest start first.
fn log_files(state_dir: &Path, namespace: &str, pod: &str, container: &str) -> Vec<PathBuf> {
    let prefix = format!("{namespace}_{pod}_");
    let Ok(entries) = std::fs::read_dir(state_dir.join("pods")) else {
        return Vec::new();
    };
    let mut files: Vec<(i64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| std::fs::read_dir(e.path().join(container)).ok())
        .flat_map(|dir| dir.flatten())
        .filter_map(|f| {
            let name = f.file_name().to_string_lossy().into_owned();
            let restart: i64 = name.strip_suffix(".log")?.parse().ok()?;
            Some((restart, f.path()))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

fn error(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

async fn container_logs(
    State(api): State<NodeApi>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    let state_dir = api.state_dir;
    let files = log_files(&state_dir, &namespace, &pod, &container);
    let file = if query.previous.unwrap_or(false) {
        match files.len() {
            0 | 1 => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "previous terminated container \"{container}\" in pod \"{pod}\" not found"
                    ),
                );
            }
            n => files[n - 2].clone(),
        }
    } else {
        match files.last() {
            Some(f) => f.clone(),
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!(
                        "container \"{container}\" in pod \"{pod}\" has no logs on this node (is it waiting to start?)"
                    ),
                );
            }
        }
    };
    let since_time = match (&query.since_time, query.since_seconds) {
        (Some(t), _) => match t.parse::<jiff::Timestamp>() {
            Ok(t) => Some(t),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("sinceTime {t:?}: {e}")),
        },
        (None, Some(s)) => Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s.max(0))),
        (None, None) => None,
    };
    let options = LogOptions {
        tail_lines: query.tail_lines.and_then(|n| usize::try_from(n).ok()),
        since_time,
        timestamps: query.timestamps.unwrap_or(false),
        limit_bytes: query.limit_bytes.and_then(|n| usize::try_from(n).ok()),
    };
    let (initial, offset) = match logs::read(&file, &options) {
        Ok(read) => read,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading {}: {e}", file.display()),
            );
        }
    };
    if !query.follow.unwrap_or(false) {
        return ([("content-type", "text/plain")], initial).into_response();
    }
    let follow = LogOptions {
        tail_lines: None,
        limit_bytes: None,
        ..options
    };
    let count = files.len();
    let stream = futures::stream::unfold(
        (
            Some(initial),
            offset,
            file,
            state_dir,
            namespace,
            pod,
            container,
        ),
        move |(first, offset, file, state_dir, namespace, pod, container)| {
            let follow = follow.clone();
            async move {
                if let Some(first) = first {
                    return Some((
                        Ok::<_, std::io::Error>(first),
                        (None, offset, file, state_dir, namespace, pod, container),
                    ));
                }
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    match logs::read_from(&file, offset, &follow) {
                        Ok((chunk, next)) if !chunk.is_empty() => {
                            return Some((
                                Ok(chunk),
                                (None, next, file, state_dir, namespace, pod, container),
                            ));
                        }
                        Ok(_) => {}
                        Err(_) => return None,
                    }
                    // The container restarted or the pod went away: the stream ends, as kubelet's does.
                    if log_files(&state_dir, &namespace, &pod, &container).len() != count {
                        return None;
                    }
                }
            }
        },
    );
    ([("content-type", "text/plain")], Body::from_stream(stream)).into_response()
}
