//! The watch cache of one resource (kube-apiserver's "cacher"): a single etcd watch keeps
//! an in-memory copy of every object and a window of recent events, and fans events out to
//! any number of API watchers. A thousand watchers cost one etcd watch.
//!
//! The cache is a state machine driven by one task: list (at revision R) → watch from R+1
//! → on a broken or compacted watch, list again and emit the differences as events, so
//! watchers never miss a change; if a watcher's revision falls out of the window it gets
//! 410 Expired and relists, as with kube-apiserver.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, RwLock},
    time::Duration,
};

use etcd_client::{EventType as EtcdEventType, GetOptions, WatchOptions};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, warn};

use super::{
    Store, StoreError,
    object::{CachedObject, Projection, decode},
    prefix_end,
};

/// Events kept for watchers that resume from an older resourceVersion.
const HISTORY: usize = 10_000;
/// Events buffered per watcher before it is considered too slow and dropped.
const FANOUT_BUFFER: usize = 8_192;

/// Kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Deleted (the object is its last state, at the deletion revision).
    Deleted,
}

/// One change of one object.
#[derive(Debug)]
pub struct Event {
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for deletes: the last state).
    pub object: Arc<CachedObject>,
    /// The object before the change, for updates and deletes.
    pub previous: Option<Arc<CachedObject>>,
    /// Revision of the change.
    pub revision: i64,
}

/// Why a watch cannot start.
#[derive(Debug, Error)]
pub enum WatchError {
    /// The requested revision is older than the cache's window.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// Revision asked for.
        requested: i64,
        /// Oldest revision the cache can resume from.
        oldest: i64,
    },
    /// The cache has not synced yet or could not catch up in time.
    #[error("the watch cache of {0} is not ready; etcd may be unavailable")]
    NotReady(String),
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<Event>>,
    /// Highest revision reflected in `objects`.
    revision: i64,
    /// Watchers may resume from any revision ≥ this one.
    oldest: i64,
    synced: bool,
}

/// The cache of one resource.
pub struct WatchCache {
    prefix: String,
    state: RwLock<State>,
    events: broadcast::Sender<Arc<Event>>,
    revision: watch::Sender<i64>,
    progress: mpsc::Sender<()>,
}

/// A point-in-time copy of the cache.
pub struct Snapshot {
    /// Objects in key order.
    pub objects: Vec<Arc<CachedObject>>,
    /// Revision of the snapshot.
    pub revision: i64,
}

/// A watch subscription: events after the requested revision, then live events.
pub struct Subscription {
    /// Events already in the window after the requested revision.
    pub backlog: Vec<Arc<Event>>,
    /// Live events.
    pub live: broadcast::Receiver<Arc<Event>>,
    /// The revision the subscription starts after.
    pub revision: i64,
}

impl WatchCache {
    /// Start the cache task for `prefix`.
    pub(super) fn start(store: Arc<Store>, prefix: String, projection: Projection) -> Arc<Self> {
        let (events, _) = broadcast::channel(FANOUT_BUFFER);
        let (revision, _) = watch::channel(0);
        let (progress, progress_rx) = mpsc::channel(16);
        let cache = Arc::new(Self {
            prefix,
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                revision: 0,
                oldest: 0,
                synced: false,
            }),
            events,
            revision,
            progress,
        });
        tokio::spawn(run(Arc::downgrade(&cache), store, projection, progress_rx));
        cache
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait until the cache reflects at least `revision` (asking etcd for a progress
    /// notification if nothing else moves it), up to `limit`.
    pub async fn wait_for(&self, revision: i64, limit: Duration) -> Result<(), WatchError> {
        let mut seen = self.revision.subscribe();
        if *seen.borrow() >= revision && self.read().synced {
            return Ok(());
        }
        let _ = self.progress.try_send(());
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let wait = tokio::time::timeout_at(deadline, seen.changed()).await;
            if *seen.borrow() >= revision && self.read().synced {
                return Ok(());
            }
            match wait {
                Ok(Ok(())) => {
                    let _ = self.progress.try_send(());
                }
                _ => return Err(WatchError::NotReady(self.prefix.clone())),
            }
        }
    }

    /// Every object whose key starts with `self.prefix + sub_prefix`, and the revision.
    pub fn snapshot(&self, sub_prefix: &str) -> Result<Snapshot, WatchError> {
        let state = self.read();
        if !state.synced {
            return Err(WatchError::NotReady(self.prefix.clone()));
        }
        Ok(self.snapshot_locked(&state, sub_prefix))
    }

    fn snapshot_locked(&self, state: &State, sub_prefix: &str) -> Snapshot {
        let start = format!("{}{sub_prefix}", self.prefix);
        let objects = state
            .objects
            .range(start.clone()..)
            .take_while(|(k, _)| k.starts_with(&start))
            .map(|(_, v)| Arc::clone(v))
            .collect();
        Snapshot {
            objects,
            revision: state.revision,
        }
    }

    /// Subscribe to events after `revision` (`None`: after the current revision, together
    /// with a snapshot for synthetic ADDED events).
    pub fn subscribe(
        &self,
        revision: Option<i64>,
        sub_prefix: &str,
    ) -> Result<(Subscription, Option<Snapshot>), WatchError> {
        let state = self.read();
        if !state.synced {
            return Err(WatchError::NotReady(self.prefix.clone()));
        }
        // Subscribing under the read lock: the cache task publishes under the write lock, so
        // nothing falls between the backlog/snapshot and the live stream.
        let live = self.events.subscribe();
        match revision {
            None => {
                let snapshot = self.snapshot_locked(&state, sub_prefix);
                let revision = snapshot.revision;
                Ok((
                    Subscription {
                        backlog: Vec::new(),
                        live,
                        revision,
                    },
                    Some(snapshot),
                ))
            }
            Some(requested) => {
                if requested < state.oldest {
                    return Err(WatchError::Expired {
                        requested,
                        oldest: state.oldest,
                    });
                }
                let backlog = state
                    .history
                    .iter()
                    .filter(|e| e.revision > requested)
                    .cloned()
                    .collect();
                Ok((
                    Subscription {
                        backlog,
                        live,
                        revision: requested,
                    },
                    None,
                ))
            }
        }
    }

    /// One object by full key, if the cache has synced and holds it.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        let state = self.read();
        if !state.synced {
            return None;
        }
        state.objects.get(key).cloned()
    }

    /// The highest revision reflected.
    pub fn revision(&self) -> i64 {
        self.read().revision
    }

    /// Number of objects held.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    /// True if the cache holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn publish(&self, state: &mut State, event: Event) {
        let event = Arc::new(event);
        state.revision = state.revision.max(event.revision);
        state.history.push_back(Arc::clone(&event));
        while state.history.len() > HISTORY {
            if let Some(dropped) = state.history.pop_front() {
                state.oldest = dropped.revision;
            }
        }
        let _ = self.events.send(event);
    }

    /// Replace the cache's content with a fresh list, emitting the differences as events.
    fn reset(&self, objects: BTreeMap<String, Arc<CachedObject>>, revision: i64) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.synced {
            let old = std::mem::take(&mut state.objects);
            for (key, object) in &objects {
                match old.get(key) {
                    None => self.publish(
                        &mut state,
                        Event {
                            kind: EventType::Added,
                            object: Arc::clone(object),
                            previous: None,
                            revision,
                        },
                    ),
                    Some(prev) if prev.revision != object.revision => self.publish(
                        &mut state,
                        Event {
                            kind: EventType::Modified,
                            object: Arc::clone(object),
                            previous: Some(Arc::clone(prev)),
                            revision,
                        },
                    ),
                    Some(_) => {}
                }
            }
            for (key, prev) in &old {
                if !objects.contains_key(key) {
                    self.publish(
                        &mut state,
                        Event {
                            kind: EventType::Deleted,
                            object: Arc::clone(prev),
                            previous: Some(Arc::clone(prev)),
                            revision,
                        },
                    );
                }
            }
        } else {
            state.oldest = revision;
        }
        state.objects = objects;
        state.revision = revision;
        state.synced = true;
        drop(state);
        self.revision.send_replace(revision);
    }

    fn apply(&self, key: String, kind: EventType, object: Arc<CachedObject>, revision: i64) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let previous = match kind {
            EventType::Deleted => state.objects.remove(&key),
            _ => state.objects.insert(key, Arc::clone(&object)),
        };
        let kind = match (kind, &previous) {
            (EventType::Deleted, _) => EventType::Deleted,
            (_, None) => EventType::Added,
            (_, Some(_)) => EventType::Modified,
        };
        let object = if kind == EventType::Deleted {
            // The deleted object is reported in its last state at the deletion revision.
            previous
                .as_ref()
                .map_or(object, |p| with_revision(p, revision))
        } else {
            object
        };
        self.publish(
            &mut state,
            Event {
                kind,
                object,
                previous,
                revision,
            },
        );
        drop(state);
        self.revision.send_replace(revision);
    }

    fn progress_to(&self, revision: i64) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.revision = state.revision.max(revision);
        let current = state.revision;
        drop(state);
        self.revision.send_replace(current);
    }
}

/// A copy of `object` whose resourceVersion is `revision`.
fn with_revision(object: &Arc<CachedObject>, revision: i64) -> Arc<CachedObject> {
    let mut value = object.value();
    crate::model::meta::set_meta(
        &mut value,
        "resourceVersion",
        serde_json::Value::String(revision.to_string()),
    );
    let projection_fields: Vec<(&'static str, String)> = object.fields.clone();
    Arc::new(CachedObject {
        raw: bytes::Bytes::from(serde_json::to_vec(&value).unwrap_or_default()),
        namespace: object.namespace.clone(),
        name: object.name.clone(),
        labels: object.labels.clone(),
        fields: projection_fields,
        revision,
    })
}

/// List every object under `prefix` (paged, at one revision).
async fn list_all(
    store: &Store,
    prefix: &str,
    projection: Projection,
) -> Result<(BTreeMap<String, Arc<CachedObject>>, i64), StoreError> {
    let mut client = store.client().await?;
    let mut objects = BTreeMap::new();
    let mut start = prefix.to_owned();
    let mut revision = 0;
    loop {
        let mut options = GetOptions::new()
            .with_range(prefix_end(prefix))
            .with_limit(1_000);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let response = client.get(start.as_str(), Some(options)).await?;
        if revision == 0 {
            revision = response.header().map_or(0, |h| h.revision());
        }
        for kv in response.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            match decode(&key, kv.value(), kv.mod_revision()) {
                Ok(value) => {
                    objects.insert(
                        key,
                        CachedObject::new(&value, kv.mod_revision(), projection),
                    );
                }
                Err(e) => warn!(%key, error = %e, "skipping corrupt object"),
            }
        }
        match (response.more(), response.kvs().last()) {
            (true, Some(last)) => start = format!("{}\0", String::from_utf8_lossy(last.key())),
            _ => return Ok((objects, revision)),
        }
    }
}

/// The cache task: list, watch, repeat on failure. Ends when the cache is dropped.
async fn run(
    cache: std::sync::Weak<WatchCache>,
    store: Arc<Store>,
    projection: Projection,
    mut progress: mpsc::Receiver<()>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(strong) = cache.upgrade() else {
            return;
        };
        let prefix = strong.prefix.clone();
        drop(strong);
        match watch_once(&cache, &store, &prefix, projection, &mut progress).await {
            Ok(()) => return,
            Err(e) => {
                debug!(%prefix, error = %e, "watch cache restarting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One list + watch cycle; returns Ok only when the cache is gone.
async fn watch_once(
    cache: &std::sync::Weak<WatchCache>,
    store: &Store,
    prefix: &str,
    projection: Projection,
    progress: &mut mpsc::Receiver<()>,
) -> Result<(), StoreError> {
    let (objects, revision) = list_all(store, prefix, projection).await?;
    match cache.upgrade() {
        Some(c) => c.reset(objects, revision),
        None => return Ok(()),
    }
    let mut client = store.client().await?;
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1)
        .with_prev_key()
        .with_progress_notify();
    let (mut requests, mut responses) = client.watch(prefix, Some(options)).await?.split();
    loop {
        tokio::select! {
            asked = progress.recv() => {
                if asked.is_none() {
                    return Ok(());
                }
                requests.request_progress().await?;
            }
            message = responses.message() => {
                let Some(response) = message? else {
                    return Err(StoreError::Unavailable(etcd_client::Error::WatchError("watch stream ended".into())));
                };
                let Some(cache) = cache.upgrade() else { return Ok(()) };
                if response.canceled() {
                    return Err(StoreError::Compacted { requested: revision + 1, oldest: response.compact_revision() });
                }
                if response.events().is_empty() {
                    if let Some(header) = response.header() {
                        cache.progress_to(header.revision());
                    }
                    continue;
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    let revision = kv.mod_revision();
                    match event.event_type() {
                        EtcdEventType::Put => match decode(&key, kv.value(), revision) {
                            Ok(value) => cache.apply(key, EventType::Modified, CachedObject::new(&value, revision, projection), revision),
                            Err(e) => warn!(%key, error = %e, "ignoring corrupt object"),
                        },
                        EtcdEventType::Delete => {
                            let placeholder = CachedObject::new(&serde_json::Value::Null, revision, projection);
                            cache.apply(key, EventType::Deleted, placeholder, revision);
                        }
                    }
                }
            }
        }
    }
}
