//! The storage backend: the handful of key-value operations the API server needs from etcd
//! (compare-and-swap writes with claims, ranged reads at a revision, prefix watches), as
//! a trait so the registry and the watch cache run against a real etcd in production and
//! against [`MemoryStorage`](super::memory::MemoryStorage) in unit tests.

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::{ClaimChange, StoreError};

/// A stored value with its key and the revision that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value's bytes (empty for keys-only reads).
    pub value: Vec<u8>,
    /// The revision of its last write (etcd's `mod_revision`).
    pub revision: i64,
}

/// One page of a ranged read.
#[derive(Debug, Default)]
pub struct Range {
    /// Key-values in key order.
    pub kvs: Vec<KeyValue>,
    /// The revision the range was read at.
    pub revision: i64,
    /// True if keys remain after the page.
    pub more: bool,
    /// Keys in the whole range (before the limit).
    pub count: i64,
}

/// What to read.
#[derive(Debug, Clone, Copy)]
pub struct RangeRequest<'a> {
    /// Keys start with this prefix.
    pub prefix: &'a str,
    /// First key to return (≥ prefix).
    pub start: &'a str,
    /// Revision to read at (0 = current).
    pub revision: i64,
    /// Most keys to return (0 = no limit).
    pub limit: i64,
    /// Return keys without values.
    pub keys_only: bool,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A key was written.
    Put(KeyValue),
    /// A key was deleted at `revision`.
    Delete {
        /// The key.
        key: String,
        /// Revision of the deletion.
        revision: i64,
    },
}

/// One message of a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// Changes, in revision order.
    Changes(Vec<Change>),
    /// Nothing changed under the prefix up to this revision (a progress notification).
    Progress(i64),
    /// The watch was cancelled because its start revision is compacted.
    Compacted {
        /// Oldest revision still available.
        oldest: i64,
    },
}

/// Asks a running watch for a progress notification (etcd's `RequestProgress`).
#[async_trait]
pub trait ProgressRequester: Send {
    /// Request one [`WatchMessage::Progress`].
    async fn request_progress(&mut self) -> Result<(), StoreError>;
}

/// A running watch: its progress requester and its messages.
pub struct Watch {
    /// Asks for progress notifications.
    pub progress: Box<dyn ProgressRequester>,
    /// The messages; the stream ends (or errs) when the watch breaks.
    pub messages: BoxStream<'static, Result<WatchMessage, StoreError>>,
}

/// A key-value store with etcd's semantics.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Check that the backend answers.
    async fn check(&self) -> Result<(), StoreError>;

    /// The current revision.
    async fn current_revision(&self) -> Result<i64, StoreError>;

    /// One key (NotFound if absent).
    async fn get(&self, key: &str) -> Result<KeyValue, StoreError>;

    /// Create `key` taking `claims` with it; AlreadyExists or Claimed if that fails.
    /// Returns the revision of the write.
    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        claims: &ClaimChange,
    ) -> Result<i64, StoreError>;

    /// Replace `key` if its revision is still `expected` (Conflict if it changed, NotFound
    /// if it is gone, Claimed if a claim to take is held).
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
        claims: &ClaimChange,
    ) -> Result<i64, StoreError>;

    /// Delete `key` if its revision is still `expected`, applying `claims`.
    async fn delete(
        &self,
        key: &str,
        expected: i64,
        claims: &ClaimChange,
    ) -> Result<i64, StoreError>;

    /// Write `key` for `ttl` seconds (it disappears unless written again).
    async fn put_expiring(&self, key: &str, value: &str, ttl: i64) -> Result<(), StoreError>;

    /// A page of keys (Compacted if the revision is gone).
    async fn range(&self, request: RangeRequest<'_>) -> Result<Range, StoreError>;

    /// Watch every key under `prefix` from revision `from` (inclusive).
    async fn watch(&self, prefix: &str, from: i64) -> Result<Watch, StoreError>;
}

/// The first key after every key starting with `prefix` (etcd's range end for a prefix).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
