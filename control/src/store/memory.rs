//! [`Storage`] in memory, with etcd's semantics (one revision per transaction, compare-
//! and-swap writes with claims, ranged reads at past revisions, prefix watches with
//! progress notifications, compaction). For unit tests of the registry and the watch
//! cache: no etcd, and time can be paused.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{
    CLAIMS_PREFIX, ClaimChange, StoreError,
    backend::{
        Change, KeyValue, ProgressRequester, Range, RangeRequest, Storage, Watch, WatchMessage,
    },
};

type Sender = mpsc::UnboundedSender<Result<WatchMessage, StoreError>>;

#[derive(Default)]
struct State {
    keys: BTreeMap<String, KeyValue>,
    /// Every change since revision 1, in order (for past reads and watches from the past).
    history: Vec<Change>,
    revision: i64,
    /// Revisions before this one are compacted.
    compacted: i64,
    watchers: Vec<(String, Sender)>,
}

impl State {
    fn commit(&mut self, changes: Vec<Change>) -> i64 {
        for change in &changes {
            match change {
                Change::Put(kv) => {
                    self.keys.insert(kv.key.clone(), kv.clone());
                }
                Change::Delete { key, .. } => {
                    self.keys.remove(key);
                }
            }
        }
        self.watchers.retain(|(prefix, sender)| {
            let seen: Vec<Change> = changes
                .iter()
                .filter(|c| change_key(c).starts_with(prefix.as_str()))
                .cloned()
                .collect();
            seen.is_empty() || sender.send(Ok(WatchMessage::Changes(seen))).is_ok()
        });
        self.history.extend(changes);
        self.revision
    }

    fn next_revision(&mut self) -> i64 {
        self.revision += 1;
        self.revision
    }

    fn claims_free(&self, change: &ClaimChange) -> Result<(), StoreError> {
        for claim in &change.take {
            if let Some(holder) = self.keys.get(&format!("{CLAIMS_PREFIX}{claim}")) {
                return Err(StoreError::Claimed {
                    claim: claim.clone(),
                    holder: String::from_utf8_lossy(&holder.value).into_owned(),
                });
            }
        }
        Ok(())
    }

    fn claim_changes(change: &ClaimChange, holder: &str, revision: i64) -> Vec<Change> {
        let takes = change.take.iter().map(|c| {
            Change::Put(KeyValue {
                key: format!("{CLAIMS_PREFIX}{c}"),
                value: holder.as_bytes().to_vec(),
                revision,
            })
        });
        let releases = change.release.iter().map(|c| Change::Delete {
            key: format!("{CLAIMS_PREFIX}{c}"),
            revision,
        });
        takes.chain(releases).collect()
    }

    /// The keys as they were at `revision`.
    fn keys_at(&self, revision: i64) -> BTreeMap<String, KeyValue> {
        let mut keys = BTreeMap::new();
        for change in &self.history {
            match change {
                Change::Put(kv) if kv.revision <= revision => {
                    keys.insert(kv.key.clone(), kv.clone());
                }
                Change::Delete { key, revision: r } if *r <= revision => {
                    keys.remove(key);
                }
                _ => {}
            }
        }
        keys
    }
}

fn change_key(change: &Change) -> &str {
    match change {
        Change::Put(kv) => &kv.key,
        Change::Delete { key, .. } => key,
    }
}

/// An in-memory etcd.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    state: Arc<Mutex<State>>,
}

impl MemoryStorage {
    /// An empty store at revision 1 (as a fresh etcd).
    pub fn new() -> Self {
        let storage = Self::default();
        storage.lock().revision = 1;
        storage
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Compact every revision before `revision` (watches and reads from before it fail
    /// with Compacted, as etcd's).
    pub fn compact(&self, revision: i64) {
        let mut state = self.lock();
        state.compacted = state.compacted.max(revision);
    }

    /// End every running watch with an error (as a broken etcd connection does).
    pub fn break_watches(&self) {
        let mut state = self.lock();
        for (_, sender) in state.watchers.drain(..) {
            let _ = sender.send(Err(StoreError::Timeout));
        }
    }
}

struct MemoryProgress {
    state: Arc<Mutex<State>>,
    sender: Sender,
}

#[async_trait]
impl ProgressRequester for MemoryProgress {
    async fn request_progress(&mut self) -> Result<(), StoreError> {
        let revision = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .revision;
        let _ = self.sender.send(Ok(WatchMessage::Progress(revision)));
        Ok(())
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn current_revision(&self) -> Result<i64, StoreError> {
        Ok(self.lock().revision)
    }

    async fn get(&self, key: &str) -> Result<KeyValue, StoreError> {
        self.lock()
            .keys
            .get(key)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        claims: &ClaimChange,
    ) -> Result<i64, StoreError> {
        let mut state = self.lock();
        if state.keys.contains_key(key) {
            return Err(StoreError::AlreadyExists);
        }
        state.claims_free(claims)?;
        let revision = state.next_revision();
        let mut changes = vec![Change::Put(KeyValue {
            key: key.to_owned(),
            value,
            revision,
        })];
        changes.extend(State::claim_changes(claims, key, revision));
        Ok(state.commit(changes))
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
        claims: &ClaimChange,
    ) -> Result<i64, StoreError> {
        let mut state = self.lock();
        match state.keys.get(key) {
            None => return Err(StoreError::NotFound),
            Some(kv) if kv.revision != expected => return Err(StoreError::Conflict),
            Some(_) => {}
        }
        state.claims_free(claims)?;
        let revision = state.next_revision();
        let mut changes = vec![Change::Put(KeyValue {
            key: key.to_owned(),
            value,
            revision,
        })];
        changes.extend(State::claim_changes(claims, key, revision));
        Ok(state.commit(changes))
    }

    async fn delete(
        &self,
        key: &str,
        expected: i64,
        claims: &ClaimChange,
    ) -> Result<i64, StoreError> {
        let mut state = self.lock();
        match state.keys.get(key) {
            None => return Err(StoreError::NotFound),
            Some(kv) if kv.revision != expected => return Err(StoreError::Conflict),
            Some(_) => {}
        }
        state.claims_free(claims)?;
        let revision = state.next_revision();
        let mut changes = vec![Change::Delete {
            key: key.to_owned(),
            revision,
        }];
        changes.extend(State::claim_changes(claims, key, revision));
        Ok(state.commit(changes))
    }

    async fn put_expiring(&self, key: &str, value: &str, _ttl: i64) -> Result<(), StoreError> {
        let mut state = self.lock();
        let revision = state.next_revision();
        state.commit(vec![Change::Put(KeyValue {
            key: key.to_owned(),
            value: value.as_bytes().to_vec(),
            revision,
        })]);
        Ok(())
    }

    async fn range(&self, request: RangeRequest<'_>) -> Result<Range, StoreError> {
        let state = self.lock();
        if request.revision > 0 && request.revision < state.compacted {
            return Err(StoreError::Compacted {
                requested: request.revision,
                oldest: state.compacted,
            });
        }
        let revision = if request.revision > 0 {
            request.revision
        } else {
            state.revision
        };
        let past;
        let keys = if revision == state.revision {
            &state.keys
        } else {
            past = state.keys_at(revision);
            &past
        };
        let in_range: Vec<&KeyValue> = keys
            .range(request.prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(request.prefix))
            .filter(|(k, _)| k.as_str() >= request.start)
            .map(|(_, kv)| kv)
            .collect();
        let limit = usize::try_from(request.limit)
            .ok()
            .filter(|l| *l > 0)
            .unwrap_or(usize::MAX);
        let kvs: Vec<KeyValue> = in_range
            .iter()
            .take(limit)
            .map(|kv| KeyValue {
                value: if request.keys_only {
                    Vec::new()
                } else {
                    kv.value.clone()
                },
                ..(*kv).clone()
            })
            .collect();
        Ok(Range {
            more: in_range.len() > kvs.len(),
            count: i64::try_from(in_range.len()).unwrap_or(i64::MAX),
            kvs,
            revision,
        })
    }

    async fn watch(&self, prefix: &str, from: i64) -> Result<Watch, StoreError> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut state = self.lock();
        if from < state.compacted {
            let _ = sender.send(Ok(WatchMessage::Compacted {
                oldest: state.compacted,
            }));
        } else {
            let backlog: Vec<Change> = state
                .history
                .iter()
                .filter(|c| change_revision(c) >= from && change_key(c).starts_with(prefix))
                .cloned()
                .collect();
            if !backlog.is_empty() {
                let _ = sender.send(Ok(WatchMessage::Changes(backlog)));
            }
            state.watchers.push((prefix.to_owned(), sender.clone()));
        }
        drop(state);
        Ok(Watch {
            progress: Box::new(MemoryProgress {
                state: Arc::clone(&self.state),
                sender,
            }),
            messages: UnboundedReceiverStream::new(receiver).boxed(),
        })
    }
}

fn change_revision(change: &Change) -> i64 {
    match change {
        Change::Put(kv) => kv.revision,
        Change::Delete { revision, .. } => *revision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(value: &str) -> Vec<u8> {
        value.as_bytes().to_vec()
    }

    #[tokio::test]
    async fn writes_compare_and_swap_like_etcd() {
        let store = MemoryStorage::new();
        let none = ClaimChange::default();
        let r1 = store.create("/a", put("1"), &none).await.expect("create");
        assert!(matches!(
            store.create("/a", put("1"), &none).await,
            Err(StoreError::AlreadyExists)
        ));
        assert!(matches!(
            store.update("/a", put("2"), r1 - 1, &none).await,
            Err(StoreError::Conflict)
        ));
        let r2 = store
            .update("/a", put("2"), r1, &none)
            .await
            .expect("update");
        assert!(r2 > r1);
        assert!(matches!(
            store.delete("/b", 1, &none).await,
            Err(StoreError::NotFound)
        ));
        // Past reads see the old value; compacted ones fail.
        let past = store
            .range(RangeRequest {
                prefix: "/",
                start: "/",
                revision: r1,
                limit: 0,
                keys_only: false,
            })
            .await
            .expect("past");
        assert_eq!(past.kvs[0].value, put("1"));
        store.compact(r2);
        assert!(matches!(
            store
                .range(RangeRequest {
                    prefix: "/",
                    start: "/",
                    revision: r1,
                    limit: 0,
                    keys_only: false,
                })
                .await,
            Err(StoreError::Compacted { .. })
        ));
    }

    #[tokio::test]
    async fn claims_are_exclusive() {
        let store = MemoryStorage::new();
        let take = ClaimChange {
            take: vec!["ip/1".into()],
            release: vec![],
        };
        store.create("/s1", put("x"), &take).await.expect("first");
        match store.create("/s2", put("y"), &take).await {
            Err(StoreError::Claimed { claim, holder }) => {
                assert_eq!((claim.as_str(), holder.as_str()), ("ip/1", "/s1"));
            }
            other => panic!("expected Claimed, got {other:?}"),
        }
        assert!(
            store.get("/s2").await.is_err(),
            "a failed create writes nothing"
        );
    }

    #[tokio::test]
    async fn watches_replay_then_follow() {
        let store = MemoryStorage::new();
        let none = ClaimChange::default();
        let r1 = store.create("/p/a", put("1"), &none).await.expect("a");
        store.create("/q/b", put("1"), &none).await.expect("b");
        let mut watch = store.watch("/p/", r1).await.expect("watch");
        store.create("/p/c", put("1"), &none).await.expect("c");
        let first = watch.messages.next().await.expect("backlog").expect("ok");
        assert!(matches!(first, WatchMessage::Changes(ref c) if c.len() == 1));
        let second = watch.messages.next().await.expect("live").expect("ok");
        assert!(
            matches!(second, WatchMessage::Changes(ref c) if matches!(&c[0], Change::Put(kv) if kv.key == "/p/c"))
        );
        watch.progress.request_progress().await.expect("progress");
        let progress = watch.messages.next().await.expect("progress").expect("ok");
        assert!(matches!(progress, WatchMessage::Progress(r) if r > r1));
    }
}
