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

/// kubelet's checks of a log request (ValidatePodLogOptions) and the options to read with.
/// sinceSeconds reaching back before the start of time means everything.
fn log_options(query: &LogQuery, now: jiff::Timestamp) -> Result<LogOptions, String> {
    if let Some(tail) = query.tail_lines.filter(|n| *n < 0) {
        return Err(format!(
            "tailLines: Invalid value: {tail}: must be greater than or equal to 0"
        ));
    }
    if let Some(limit) = query.limit_bytes.filter(|n| *n < 1) {
        return Err(format!(
            "limitBytes: Invalid value: {limit}: must be greater than 0"
        ));
    }
    let since_time = match (&query.since_time, query.since_seconds) {
        (Some(_), Some(_)) => {
            return Err("at most one of `sinceTime` or `sinceSeconds` may be specified".to_owned());
        }
        (Some(t), None) => Some(
            t.parse::<jiff::Timestamp>()
                .map_err(|e| format!("sinceTime {t:?}: {e}"))?,
        ),
        (None, Some(seconds)) if seconds < 1 => {
            return Err(format!(
                "sinceSeconds: Invalid value: {seconds}: must be greater than 0"
            ));
        }
        (None, Some(seconds)) => now
            .checked_sub(jiff::SignedDuration::from_secs(seconds))
            .ok(),
        (None, None) => None,
    };
    let size = |n: i64| usize::try_from(n).unwrap_or(usize::MAX);
    Ok(LogOptions {
        tail_lines: query.tail_lines.map(size),
        since_time,
        timestamps: query.timestamps.unwrap_or(false),
        limit_bytes: query.limit_bytes.map(size),
    })
}

/// A name that is one path component (URL segments arrive percent-decoded, so `..%2F..`
/// would otherwise lead out of the state directory).
fn is_path_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// A followed log: what was read first, where reading goes on, and what bounds it.
struct Follow {
    first: Option<Vec<u8>>,
    offset: u64,
    /// Bytes still allowed by limitBytes (None: unbounded).
    left: Option<usize>,
    file: PathBuf,
    state_dir: PathBuf,
    namespace: String,
    pod: String,
    container: String,
    /// Log files when following began; another one means the container restarted.
    count: usize,
}

impl Follow {
    /// The next chunk of the stream; None when it ends.
    async fn next(&mut self, options: &LogOptions) -> Option<Vec<u8>> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            if self.left == Some(0) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            match logs::read_from(&self.file, self.offset, options) {
                Ok((mut chunk, next)) if !chunk.is_empty() => {
                    self.offset = next;
                    if let Some(left) = self.left.as_mut() {
                        chunk.truncate(*left);
                        *left -= chunk.len();
                    }
                    return Some(chunk);
                }
                Ok(_) => {}
                Err(_) => return None,
            }
            // The container restarted or the pod went away: the stream ends, as kubelet's does.
            if log_files(&self.state_dir, &self.namespace, &self.pod, &self.container).len()
                != self.count
            {
                return None;
            }
        }
    }
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
    // Checked first, as kubelet does; names are path components and must stay one.
    let options = match log_options(&query, jiff::Timestamp::now()) {
        Ok(options) => options,
        Err(why) => return error(StatusCode::UNPROCESSABLE_ENTITY, why),
    };
    if [&namespace, &pod, &container]
        .iter()
        .any(|name| !is_path_component(name))
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid container reference {namespace}/{pod}/{container}"),
        );
    }
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
    // limitBytes bounds the whole stream, what follows included.
    let left = options
        .limit_bytes
        .map(|limit| limit.saturating_sub(initial.len()));
    let follow = LogOptions {
        tail_lines: None,
        limit_bytes: None,
        ..options
    };
    let state = Follow {
        first: Some(initial),
        offset,
        left,
        file,
        state_dir,
        namespace,
        pod,
        container,
        count: files.len(),
    };
    let stream = futures::stream::unfold(state, move |mut state| {
        let follow = follow.clone();
        async move {
            let chunk = state.next(&follow).await?;
            Some((Ok::<_, std::io::Error>(chunk), state))
        }
    });
    ([("content-type", "text/plain")], Body::from_stream(stream)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> LogQuery {
        let uri: axum::http::Uri = format!("/?{text}").parse().expect("uri");
        Query::<LogQuery>::try_from_uri(&uri).expect("query").0
    }

    #[test]
    fn extreme_values_are_read_without_overflow() {
        let now = jiff::Timestamp::from_second(1_800_000_000).expect("time");
        let all = log_options(
            &query("sinceSeconds=9223372036854775807&tailLines=9223372036854775807&limitBytes=9223372036854775807"),
            now,
        )
        .expect("valid");
        // Further back than time goes: everything.
        assert_eq!(all.since_time, None);
        let most = usize::try_from(i64::MAX).ok();
        assert_eq!(all.tail_lines, most);
        assert_eq!(all.limit_bytes, most);
        let recent = log_options(&query("sinceSeconds=10"), now).expect("valid");
        assert_eq!(
            recent.since_time,
            Some(jiff::Timestamp::from_second(1_799_999_990).expect("time"))
        );
    }

    #[test]
    fn invalid_values_are_refused_as_kubelet_does() {
        let now = jiff::Timestamp::now();
        for (text, why) in [
            (
                "tailLines=-1",
                "tailLines: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                "limitBytes=0",
                "limitBytes: Invalid value: 0: must be greater than 0",
            ),
            (
                "sinceSeconds=-9223372036854775808",
                "sinceSeconds: Invalid value: -9223372036854775808: must be greater than 0",
            ),
            (
                "sinceSeconds=1&sinceTime=2026-11-22T05:00:00Z",
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            ),
        ] {
            assert_eq!(
                log_options(&query(text), now).err().as_deref(),
                Some(why),
                "{text}"
            );
        }
    }

    #[test]
    fn names_stay_single_path_components() {
        for bad in ["", ".", "..", "../../etc", "a/b", "nul\0"] {
            assert!(!is_path_component(bad), "{bad:?}");
        }
        assert!(is_path_component("web-0.x"));
    }

    #[tokio::test]
    async fn a_followed_log_stops_at_limit_bytes() {
        let dir = std::env::temp_dir().join(format!("skiff-follow-{}", std::process::id()));
        let file = dir.join("0.log");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(&file, "").expect("write");
        let mut follow = Follow {
            first: Some(b"abc".to_vec()),
            offset: 0,
            // limitBytes=5, of which the first read used 3.
            left: Some(2),
            file: file.clone(),
            state_dir: dir.clone(),
            namespace: "d".into(),
            pod: "p".into(),
            container: "c".into(),
            count: 0,
        };
        let options = LogOptions::default();
        assert_eq!(follow.next(&options).await.as_deref(), Some(&b"abc"[..]));
        std::fs::write(&file, "2026-11-22T05:00:00Z stdout F hello\n").expect("write");
        assert_eq!(follow.next(&options).await.as_deref(), Some(&b"he"[..]));
        assert_eq!(follow.next(&options).await, None, "the limit is reached");
        let _ = std::fs::remove_dir_all(dir);
    }
}
