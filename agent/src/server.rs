//! The node HTTP API's log endpoint, in kubelet's shape:
//! `GET /containerLogs/{namespace}/{pod}/{container}?follow=&tailLines=&sinceSeconds=&sinceTime=&timestamps=&previous=&limitBytes=`.
//! The API server proxies `pods/{name}/log` here.

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

/// Routes of the log endpoint over the agent's state directory.
pub fn routes(state_dir: PathBuf) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .with_state(state_dir)
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
    State(state_dir): State<PathBuf>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
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
