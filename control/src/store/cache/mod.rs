//! The watch cache of one resource (kube-apiserver's "cacher"): a single etcd watch keeps
//! an in-memory copy of every object and a window of recent events, and fans events out to
//! any number of API watchers. A thousand watchers cost one etcd watch.
//!
//! The cache is a state machine driven by one task: list (at revision R) → watch from R+1
//! → on a broken or compacted watch, list again and emit the differences as events, so
//! watchers never miss a change; if a watcher's revision falls out of the window it gets
//! 410 Expired and relists, as with kube-apiserver.

mod pump;
mod state;

use std::{
    sync::{Arc, RwLock, RwLockReadGuard},
    time::Duration,
};

use thiserror::Error;
use tokio::sync::{broadcast, mpsc, watch};

pub use state::{CacheState, HISTORY};

use super::{
    Storage,
    object::{CachedObject, Projection},
};

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

/// The cache of one resource.
pub struct WatchCache {
    prefix: String,
    state: RwLock<CacheState>,
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
    /// Start the cache task for `prefix`, fed by `backend`.
    pub(crate) fn start(
        backend: Arc<dyn Storage>,
        encryption: Option<Arc<super::encryption::EncryptionConfig>>,
        prefix: String,
        projection: Projection,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(FANOUT_BUFFER);
        let (revision, _) = watch::channel(0);
        let (progress, progress_rx) = mpsc::channel(16);
        let cache = Arc::new(Self {
            prefix,
            state: RwLock::new(CacheState::new(HISTORY)),
            events,
            revision,
            progress,
        });
        tokio::spawn(pump::run(
            Arc::downgrade(&cache),
            backend,
            encryption,
            projection,
            progress_rx,
        ));
        cache
    }

    fn read(&self) -> RwLockReadGuard<'_, CacheState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Change the state under the write lock and fan out the events it produced (under
    /// the lock, so a subscriber taking the read lock sees each event exactly once: in
    /// its backlog or live).
    fn change(&self, transition: impl FnOnce(&mut CacheState) -> Vec<Arc<Event>>) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        for event in transition(&mut state) {
            let _ = self.events.send(event);
        }
        let revision = state.revision();
        drop(state);
        self.revision.send_replace(revision);
    }

    /// Wait until the cache reflects at least `revision` (asking etcd for a progress
    /// notification if nothing else moves it), up to `limit`.
    pub async fn wait_for(&self, revision: i64, limit: Duration) -> Result<(), WatchError> {
        let mut seen = self.revision.subscribe();
        if *seen.borrow() >= revision && self.read().synced() {
            return Ok(());
        }
        let _ = self.progress.try_send(());
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let wait = tokio::time::timeout_at(deadline, seen.changed()).await;
            if *seen.borrow() >= revision && self.read().synced() {
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
        if !state.synced() {
            return Err(WatchError::NotReady(self.prefix.clone()));
        }
        Ok(state.snapshot(&format!("{}{sub_prefix}", self.prefix)))
    }

    /// Subscribe to events after `revision` (`None`: after the current revision, together
    /// with a snapshot for synthetic ADDED events).
    pub fn subscribe(
        &self,
        revision: Option<i64>,
        sub_prefix: &str,
    ) -> Result<(Subscription, Option<Snapshot>), WatchError> {
        let state = self.read();
        if !state.synced() {
            return Err(WatchError::NotReady(self.prefix.clone()));
        }
        // Subscribing under the read lock: events are fanned out under the write lock, so
        // nothing falls between the backlog/snapshot and the live stream.
        let live = self.events.subscribe();
        match revision {
            None => {
                let snapshot = state.snapshot(&format!("{}{sub_prefix}", self.prefix));
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
            Some(requested) => Ok((
                Subscription {
                    backlog: state.events_after(requested)?,
                    live,
                    revision: requested,
                },
                None,
            )),
        }
    }

    /// One object by full key, if the cache has synced and holds it.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        let state = self.read();
        if !state.synced() {
            return None;
        }
        state.get(key)
    }

    /// The highest revision reflected.
    pub fn revision(&self) -> i64 {
        self.read().revision()
    }

    /// A receiver that sees every revision the cache moves to from now on.
    pub fn revisions(&self) -> watch::Receiver<i64> {
        self.revision.subscribe()
    }

    /// How many times the objects changed (0 before the first list).
    pub fn generation(&self) -> u64 {
        self.read().generation()
    }

    /// True once the first list is in.
    pub fn synced(&self) -> bool {
        self.read().synced()
    }

    /// Number of objects held.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True if the cache holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key prefix the cache holds.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

#[cfg(test)]
mod tests;
