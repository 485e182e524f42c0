//! The loop every kube-runtime controller here runs in: each reconcile is counted and timed
//! on /metrics under the controller's name, a failed one is logged and retried after a
//! fixed delay, and the stream of outcomes is drained until the task is aborted. Most
//! reconciles take a [`Context`]. [`drive`] runs a kube-runtime `Controller`;
//! [`drive_queue`] runs the same machinery (per-key queue, requeues, one reconcile per key
//! at a time) over a trigger stream the controller builds itself from its watch caches.

use std::{fmt::Debug, future::Future, hash::Hash, sync::Arc, time::Duration};

use futures::{Stream, StreamExt, TryStream};
use kube::{
    Client, Resource,
    runtime::{
        Controller, applier,
        controller::{Action, Config},
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use skiff_events::Recorder;

/// What a reconcile needs besides its object: the API client and an event recorder that
/// reports as the controller's component.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Events as `component`.
    pub recorder: Recorder,
}

impl Context {
    /// A context whose events come from `component` (e.g. `deployment-controller`).
    pub fn new(client: Client, component: &'static str) -> Arc<Self> {
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), component),
            client,
        })
    }
}

/// Why a reconcile failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Run `controller` with `reconcile` until aborted: syncs recorded as `name`, failures
/// retried after `retry`.
pub async fn drive<K, C, Fut>(
    controller: Controller<K>,
    name: &'static str,
    retry: Duration,
    reconcile: impl FnMut(Arc<K>, Arc<C>) -> Fut,
    ctx: Arc<C>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Debug + Unpin,
    C: Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let mut reconcile = reconcile;
    controller
        .run(
            move |object, ctx| super::metrics::instrumented(name, reconcile(object, ctx)),
            move |_object, error: &Error, _ctx| {
                tracing::warn!(controller = name, %error, "sync failed; retrying");
                Action::requeue(retry)
            },
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(controller = name, error = %e, "reconcile failed");
            }
        })
        .await;
}

/// Run `reconcile` for every key `queue` yields, reading the objects from `store` (a key not
/// in the store is skipped), until aborted: keys are deduplicated while they wait, a key is
/// reconciled once at a time, reconciles are requeued as they ask; syncs are recorded as
/// `name`, failures retried after `retry`.
pub async fn drive_queue<K, C, Fut, Q>(
    store: Store<K>,
    queue: Q,
    name: &'static str,
    retry: Duration,
    reconcile: impl FnMut(Arc<K>, Arc<C>) -> Fut,
    ctx: Arc<C>,
) where
    K: Resource + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Debug + Unpin,
    C: Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
    Q: TryStream<Ok = ObjectRef<K>>,
    Q::Error: std::error::Error + 'static,
{
    let mut reconcile = reconcile;
    applier(
        move |object, ctx| Box::pin(super::metrics::instrumented(name, reconcile(object, ctx))),
        move |_object, error: &Error, _ctx| {
            tracing::warn!(controller = name, %error, "sync failed; retrying");
            Action::requeue(retry)
        },
        ctx,
        store,
        queue,
        Config::default(),
    )
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(controller = name, error = %e, "reconcile failed");
        }
    })
    .await;
}

/// Apply `handle` to every object of a watch `stream` (one that feeds a cache), logging watch
/// errors as `name`'s; returns when the stream ends.
pub async fn feed<K, S>(name: &'static str, stream: S, mut handle: impl FnMut(K))
where
    S: Stream<Item = Result<K, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(object) => handle(object),
            Err(e) => tracing::debug!(controller = name, error = %e, "watch error"),
        }
    }
}

/// Keep `writer`'s cache of every `K` from `api`, waking `wake` on every change; watch
/// errors are logged as `name`'s. Returns when the watch ends.
pub async fn cache_waking<K>(
    name: &'static str,
    api: kube::Api<K>,
    writer: kube::runtime::reflector::store::Writer<K>,
    wake: Arc<tokio::sync::Notify>,
) where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    use kube::runtime::WatchStreamExt;
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    feed(name, stream, move |_event: watcher::Event<K>| {
        wake.notify_one()
    })
    .await;
}
