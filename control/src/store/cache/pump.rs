//! The feed of a watch cache: list (at revision R) → watch from R+1 → on a broken or
//! compacted watch, back off and list again. Drives the cache's state transitions; ends
//! when the cache is dropped.

use std::{
    collections::BTreeMap,
    sync::{Arc, Weak},
    time::Duration,
};

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::WatchCache;
use crate::store::{
    CachedObject, Projection, Storage, StoreError,
    backend::{Change, RangeRequest, WatchMessage},
    encryption::EncryptionConfig,
    object::decode_stored,
};

/// Page size of the cache's lists.
const LIST_PAGE: i64 = 1_000;

/// List every object under `prefix` (paged, at one revision).
async fn list_all(
    backend: &dyn Storage,
    encryption: Option<&EncryptionConfig>,
    prefix: &str,
    projection: Projection,
) -> Result<(BTreeMap<String, Arc<CachedObject>>, i64), StoreError> {
    let mut objects = BTreeMap::new();
    let mut start = prefix.to_owned();
    let mut revision = 0;
    loop {
        let range = backend
            .range(RangeRequest {
                prefix,
                start: &start,
                revision,
                limit: LIST_PAGE,
                keys_only: false,
            })
            .await?;
        revision = range.revision;
        for kv in &range.kvs {
            match decode_stored(encryption, &kv.key, &kv.value, kv.revision) {
                Ok(value) => {
                    objects.insert(
                        kv.key.clone(),
                        CachedObject::new(&value, kv.revision, projection),
                    );
                }
                Err(e) => warn!(key = %kv.key, error = %e, "skipping corrupt object"),
            }
        }
        match (range.more, range.kvs.last()) {
            (true, Some(last)) => start = format!("{}\0", last.key),
            _ => return Ok((objects, revision)),
        }
    }
}

/// The cache task: list, watch, repeat on failure.
pub(super) async fn run(
    cache: Weak<WatchCache>,
    backend: Arc<dyn Storage>,
    encryption: Option<Arc<EncryptionConfig>>,
    projection: Projection,
    mut progress: mpsc::Receiver<()>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(prefix) = cache.upgrade().map(|c| c.prefix.clone()) else {
            return;
        };
        let encryption = encryption.as_deref();
        match watch_once(
            &cache,
            backend.as_ref(),
            encryption,
            &prefix,
            projection,
            &mut progress,
        )
        .await
        {
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
    cache: &Weak<WatchCache>,
    backend: &dyn Storage,
    encryption: Option<&EncryptionConfig>,
    prefix: &str,
    projection: Projection,
    progress: &mut mpsc::Receiver<()>,
) -> Result<(), StoreError> {
    let (objects, revision) = list_all(backend, encryption, prefix, projection).await?;
    match cache.upgrade() {
        Some(c) => c.change(|state| state.reset(objects, revision)),
        None => return Ok(()),
    }
    let mut watch = backend.watch(prefix, revision + 1).await?;
    loop {
        tokio::select! {
            asked = progress.recv() => {
                if asked.is_none() {
                    return Ok(());
                }
                watch.progress.request_progress().await?;
            }
            message = watch.messages.next() => {
                let message = message.ok_or(StoreError::Timeout)??;
                let Some(cache) = cache.upgrade() else { return Ok(()) };
                match message {
                    WatchMessage::Compacted { oldest } => {
                        return Err(StoreError::Compacted { requested: revision + 1, oldest });
                    }
                    WatchMessage::Progress(revision) => {
                        cache.change(|state| {
                            state.progress_to(revision);
                            Vec::new()
                        });
                    }
                    WatchMessage::Changes(changes) => {
                        cache.change(|state| {
                            let mut events = Vec::new();
                            for change in changes {
                                match change {
                                    Change::Put(kv) => match decode_stored(encryption, &kv.key, &kv.value, kv.revision) {
                                        Ok(value) => events.extend(state.apply(
                                            kv.key,
                                            Some(CachedObject::new(&value, kv.revision, projection)),
                                            kv.revision,
                                        )),
                                        // Never serve a stale copy (RBAC objects grant
                                        // through it): the object leaves the cache.
                                        Err(e) => {
                                            warn!(key = %kv.key, error = %e, "dropping an object that cannot be decoded");
                                            events.extend(state.apply(kv.key, None, kv.revision));
                                        }
                                    },
                                    Change::Delete { key, revision } => {
                                        events.extend(state.apply(key, None, revision));
                                    }
                                }
                            }
                            events
                        });
                    }
                }
            }
        }
    }
}
