//! WATCH: newline-delimited `{"type","object"}` events from the resource's watch cache,
//! filtered by selectors (with kube's ADDED/DELETED transitions when an object starts or
//! stops matching), bookmarks, `sendInitialEvents`, and 410 Expired as an in-stream ERROR
//! event on a 200 response (an HTTP 410 makes some clients retry forever).

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::Response,
};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{
    Ctx,
    read::{Filter, namespace_prefix},
};
use crate::{
    api::{request::Query, table},
    model::{ApiError, selector::FieldRequirement},
    registry::Registry,
    resources::ResourceInfo,
    store::{CachedObject, EventType, WatchCache, WatchError},
};

/// kube-apiserver's --min-request-timeout: a watch without timeoutSeconds lasts between
/// this and twice this (randomized, to spread reconnections).
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);
/// The longest timeoutSeconds honoured: kube-apiserver multiplies it into a Go
/// time.Duration (int64 nanoseconds), which ends at about 292 years; larger values are
/// capped here (where Go would wrap around).
const MAX_TIMEOUT: Duration = Duration::from_secs(i64::MAX as u64 / 1_000_000_000);
/// How often an idle watch with bookmarks enabled gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(15);
/// How long a watch from a future resourceVersion waits for the cache.
const FUTURE_RV_WAIT: Duration = Duration::from_secs(3);

/// How events are rendered.
#[derive(Clone)]
struct Renderer {
    info: &'static ResourceInfo,
    table: bool,
    query: Query,
    columns_sent: bool,
    registry: Arc<Registry>,
}

impl Renderer {
    /// The event for `object` in the watched version (a custom object stored in another
    /// version is converted; a failed conversion is the stream's ERROR event).
    async fn converted(&mut self, kind: &str, object: &Arc<CachedObject>) -> Result<Bytes, Bytes> {
        match self
            .registry
            .converter()
            .cached_to_served(self.info, object)
            .await
        {
            Ok(object) => Ok(self.event(kind, &object)),
            Err(e) => Err(error_event(&ApiError::from(e))),
        }
    }

    fn event(&mut self, kind: &str, object: &CachedObject) -> Bytes {
        let mut out = BytesMut::with_capacity(object.raw.len() + 32);
        out.put_slice(b"{\"type\":\"");
        out.put_slice(kind.as_bytes());
        out.put_slice(b"\",\"object\":");
        if self.table {
            let value = object.value();
            let mut t = table::table(
                self.info,
                std::slice::from_ref(&value),
                &self.query,
                json!({"resourceVersion": object.revision.to_string()}),
            );
            if self.columns_sent {
                t["columnDefinitions"] = json!([]);
            }
            self.columns_sent = true;
            out.put_slice(&serde_json::to_vec(&t).unwrap_or_default());
        } else {
            out.put_slice(&object.raw);
        }
        out.put_slice(b"}\n");
        out.freeze()
    }

    fn bookmark(&self, revision: i64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (kind, api_version) = if self.table {
            ("Table", "meta.k8s.io/v1".to_owned())
        } else {
            (self.info.kind, self.info.api_version())
        };
        line(
            &json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata}}),
        )
    }
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// The in-stream ERROR event for `error`.
fn error_event(error: &ApiError) -> Bytes {
    line(&json!({"type": "ERROR", "object": error.to_status()}))
}

/// WATCH of one object by name (`…/pods/web?watch=true`).
pub async fn watch_one(ctx: &Ctx<'_>, name: &str) -> Result<Response, ApiError> {
    let mut filter = Filter::from_query(ctx)?;
    filter.fields.0.push(FieldRequirement {
        field: "metadata.name".to_owned(),
        value: name.to_owned(),
        negated: false,
    });
    start(ctx, filter).await
}

/// WATCH of a collection.
pub async fn watch(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let filter = Filter::from_query(ctx)?;
    start(ctx, filter).await
}

fn streaming_response(rx: mpsc::Receiver<Result<Bytes, Infallible>>) -> Response {
    let mut response = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    response
}

async fn start(ctx: &Ctx<'_>, filter: Filter) -> Result<Response, ApiError> {
    let info = ctx.info();
    let cache = ctx.state.store.cache(&info.prefix(), info.projection());
    let sub_prefix = namespace_prefix(ctx);
    let send_initial = ctx.query.flag("sendInitialEvents");
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let timeout = watch_timeout(ctx.query.number("timeoutSeconds")?);
    let requested = match ctx.query.get("resourceVersion").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {v:?}")))?,
        ),
    };
    let renderer = Renderer {
        info,
        table: table::wanted(ctx.headers),
        query: ctx.query.clone(),
        columns_sent: false,
        registry: Arc::clone(&ctx.state.registry),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);

    // Where the stream starts: a snapshot (synthetic ADDED events) or a resourceVersion.
    let resume_from = match requested {
        Some(rv) if rv > 0 && !send_initial => Some(rv),
        _ => None,
    };
    if let Some(rv) = resume_from
        && rv > cache.revision()
        && cache.wait_for(rv, FUTURE_RV_WAIT).await.is_err()
    {
        return Err(ApiError::timeout(format!(
            "Too large resource version: {rv}, current: {}",
            cache.revision()
        )));
    }
    if resume_from.is_none() && requested != Some(0) {
        // A consistent start: the snapshot must include everything written before the watch.
        ctx.fresh_cache(FUTURE_RV_WAIT).await?;
    }
    let subscribed = cache.subscribe(resume_from, &sub_prefix);
    let (subscription, snapshot) = match subscribed {
        Ok(pair) => pair,
        Err(WatchError::Expired { requested, oldest }) => {
            let error =
                ApiError::expired(format!("too old resource version: {requested} ({oldest})"));
            let _ = tx.send(Ok(error_event(&error))).await;
            return Ok(streaming_response(rx));
        }
        Err(e @ WatchError::NotReady(_)) => return Err(ApiError::unavailable(e.to_string())),
    };
    tokio::spawn(pump(
        cache,
        subscription,
        snapshot,
        filter,
        renderer,
        tx,
        bookmarks,
        send_initial,
        timeout,
        sub_prefix,
    ));
    Ok(streaming_response(rx))
}

/// How long a watch lasts: timeoutSeconds (capped at [`MAX_TIMEOUT`]), or when absent or
/// zero a random duration in [min-request-timeout, 2 × min-request-timeout), as
/// kube-apiserver's watch handler does.
fn watch_timeout(requested: Option<i64>) -> Duration {
    match requested
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
    {
        Some(seconds) => Duration::from_secs(seconds).min(MAX_TIMEOUT),
        None => MIN_REQUEST_TIMEOUT.mul_f64(1.0 + fastrand::f64()),
    }
}

/// Decide how an event looks to a watcher with `filter` (kube's cacher semantics).
fn transition(
    event: &crate::store::Event,
    filter: &Filter,
    sub_prefix: &str,
) -> Option<&'static str> {
    let in_scope =
        |o: &CachedObject| sub_prefix.is_empty() || format!("{}/", o.namespace) == sub_prefix;
    let now = in_scope(&event.object) && filter.matches_cached(&event.object);
    let before = event
        .previous
        .as_deref()
        .is_some_and(|p| in_scope(p) && filter.matches_cached(p));
    match event.kind {
        EventType::Added => now.then_some("ADDED"),
        EventType::Deleted => (before || now).then_some("DELETED"),
        EventType::Modified => match (before, now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }
}

/// Send an event (or the ERROR event that ends the stream); false when the watch is over.
async fn send(tx: &mpsc::Sender<Result<Bytes, Infallible>>, event: Result<Bytes, Bytes>) -> bool {
    match event {
        Ok(event) => tx.send(Ok(event)).await.is_ok(),
        Err(error) => {
            let _ = tx.send(Ok(error)).await;
            false
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    cache: Arc<WatchCache>,
    mut subscription: crate::store::Subscription,
    snapshot: Option<crate::store::Snapshot>,
    filter: Filter,
    mut renderer: Renderer,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    bookmarks: bool,
    send_initial: bool,
    timeout: Duration,
    sub_prefix: String,
) {
    // sleep() saturates a deadline beyond the clock's range instead of overflowing.
    let expiry = tokio::time::sleep(timeout);
    tokio::pin!(expiry);
    let mut last = subscription.revision;
    if let Some(snapshot) = snapshot {
        last = snapshot.revision;
        for object in snapshot.objects.iter().filter(|o| filter.matches_cached(o)) {
            if !send(&tx, renderer.converted("ADDED", object).await).await {
                return;
            }
        }
        if send_initial && bookmarks && tx.send(Ok(renderer.bookmark(last, true))).await.is_err() {
            return;
        }
    }
    for event in std::mem::take(&mut subscription.backlog) {
        last = event.revision;
        if let Some(kind) = transition(&event, &filter, &sub_prefix)
            && !send(&tx, renderer.converted(kind, &event.object).await).await
        {
            return;
        }
    }
    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = &mut expiry => return,
            _ = tx.closed() => return,
            _ = ticker.tick(), if bookmarks => {
                let revision = cache.revision();
                let revision = if subscription.live.is_empty() { revision.max(last) } else { last };
                if tx.send(Ok(renderer.bookmark(revision, false))).await.is_err() {
                    return;
                }
            }
            received = subscription.live.recv() => match received {
                Ok(event) => {
                    // Subscribed under the cache's lock: live events never repeat the
                    // snapshot or the backlog.
                    last = event.revision;
                    if let Some(kind) = transition(&event, &filter, &sub_prefix)
                        && !send(&tx, renderer.converted(kind, &event.object).await).await
                    {
                        return;
                    }
                }
                // Too slow to keep up: end the stream; the client resumes from its last
                // resourceVersion (or relists after 410), as with kube-apiserver.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_follow_kube_and_are_capped() {
        assert_eq!(watch_timeout(Some(5)), Duration::from_secs(5));
        assert_eq!(watch_timeout(Some(i64::MAX)), MAX_TIMEOUT);
        assert_eq!(MAX_TIMEOUT.as_secs(), 9_223_372_036);
        for requested in [None, Some(0)] {
            let t = watch_timeout(requested);
            assert!(
                (MIN_REQUEST_TIMEOUT..MIN_REQUEST_TIMEOUT * 2).contains(&t),
                "{requested:?}: {t:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_longest_timeout_arms_without_overflow() {
        // Issue 21: timeoutSeconds=9223372036854775807 overflowed `Instant + Duration`.
        for timeout in [MAX_TIMEOUT, Duration::MAX] {
            let expiry = tokio::time::sleep(timeout);
            assert!(
                tokio::time::timeout(Duration::from_secs(3600), expiry)
                    .await
                    .is_err(),
                "a capped watch does not end within the hour"
            );
        }
    }
}
