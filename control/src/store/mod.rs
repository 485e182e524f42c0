//! Storage. Keys are `/registry/<group>/<resource>/<namespace>/<name>` (no namespace
//! segment for cluster-scoped resources; group `core` for the legacy group); values are the
//! objects' JSON without `metadata.resourceVersion`, which is always the store's revision
//! of the object's last write (etcd's `mod_revision`).
//!
//! [`Store`] is what the rest of the server uses: objects in, objects out, over a
//! [`Storage`] backend ([`EtcdStorage`] in production, [`MemoryStorage`] in unit tests).
//! Writes go straight to the backend with compare-and-swap transactions; reads of whole
//! collections and watches are served by one [`WatchCache`] per resource, fed by a single
//! backend watch.
//!
//! Some objects hold exclusive *claims* (a Service's cluster IP and node ports): keys under
//! [`CLAIMS_PREFIX`] written in the same transaction as the object, which fails if another
//! object already holds one, and released in the transaction that deletes or changes it.
//! So no two objects ever hold the same claim, also with several API servers racing.

pub mod backend;
mod cache;
pub mod encryption;
pub mod etcd;
pub mod memory;
mod object;

use std::{collections::HashMap, sync::Arc, time::Duration};

use serde_json::Value;
use thiserror::Error;

pub use backend::{Storage, prefix_end};
pub use cache::{Event, EventType, Snapshot, Subscription, WatchCache, WatchError};
pub use etcd::{EtcdStorage, EtcdTls};
pub use memory::MemoryStorage;
pub use object::{CachedObject, Projection};

use backend::RangeRequest;

/// Errors of storage operations.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The key does not exist.
    #[error("not found")]
    NotFound,
    /// A create found the key already present.
    #[error("already exists")]
    AlreadyExists,
    /// A claim the write needs is held by another object.
    #[error("{claim} is held by {holder}")]
    Claimed {
        /// The claim (its name under [`CLAIMS_PREFIX`]).
        claim: String,
        /// Key of the object holding it.
        holder: String,
    },
    /// The object's revision is not the expected one.
    #[error("conflict: the object has been modified")]
    Conflict,
    /// The requested revision has been compacted away.
    #[error("revision {requested} is compacted (oldest available {oldest})")]
    Compacted {
        /// Revision asked for.
        requested: i64,
        /// Oldest revision still available.
        oldest: i64,
    },
    /// A stored value is not a JSON object.
    #[error("stored object at {key} is corrupt: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// etcd could not be reached or answered with an error.
    #[error("etcd is unavailable: {0}")]
    Unavailable(#[from] etcd_client::Error),
    /// etcd did not answer in time.
    #[error("etcd did not answer within {} s", ETCD_DEADLINE.as_secs())]
    Timeout,
    /// A value could not be encrypted or decrypted (encryption at rest).
    #[error(transparent)]
    Encryption(#[from] encryption::EncryptionError),
}

/// Deadline of every etcd call: an outage is answered with 503, never a hung request.
pub const ETCD_DEADLINE: Duration = Duration::from_secs(5);

/// The key prefix of a resource (`/registry/apps/deployments/`).
pub fn resource_prefix(group: &str, resource: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    format!("/registry/{group}/{resource}/")
}

/// The key of one object.
pub fn object_key(group: &str, resource: &str, namespace: &str, name: &str) -> String {
    let prefix = resource_prefix(group, resource);
    if namespace.is_empty() {
        format!("{prefix}{name}")
    } else {
        format!("{prefix}{namespace}/{name}")
    }
}

/// Where claims live (outside `/registry/`, so no resource listing sees them).
pub const CLAIMS_PREFIX: &str = "/skiff/claims/";

/// The claims a write takes and gives back (names relative to [`CLAIMS_PREFIX`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClaimChange {
    /// Claims to take: the write fails with [`StoreError::Claimed`] if one is held.
    pub take: Vec<String>,
    /// Claims to release.
    pub release: Vec<String>,
}

impl ClaimChange {
    /// The change from holding `old` to holding `new`.
    pub fn between(old: &[String], new: &[String]) -> Self {
        Self {
            take: new.iter().filter(|c| !old.contains(c)).cloned().collect(),
            release: old.iter().filter(|c| !new.contains(c)).cloned().collect(),
        }
    }

    /// Release `claims`, take nothing.
    pub fn release(claims: &[String]) -> Self {
        Self {
            take: Vec::new(),
            release: claims.to_vec(),
        }
    }
}

/// One page of a paginated list.
pub struct Page {
    /// Objects (with resourceVersion set), in key order.
    pub objects: Vec<Value>,
    /// Revision the page was read at.
    pub revision: i64,
    /// Key to continue from, if more keys remain.
    pub next_key: Option<String>,
    /// Keys left after this page (before filtering).
    pub remaining: i64,
}

/// Objects over a [`Storage`] backend, and the resources' watch caches.
pub struct Store {
    backend: Arc<dyn Storage>,
    /// Encryption at rest of the resources it names.
    encryption: Option<Arc<encryption::EncryptionConfig>>,
    caches: std::sync::Mutex<HashMap<String, Arc<WatchCache>>>,
}

impl Store {
    /// A store on etcd at `endpoints`; nothing is connected until first use.
    pub fn new(endpoints: Vec<String>) -> Arc<Self> {
        Self::on(Arc::new(EtcdStorage::new(endpoints)))
    }

    /// A store on `backend`.
    pub fn on(backend: Arc<dyn Storage>) -> Arc<Self> {
        Self::encrypted(backend, None)
    }

    /// A store on `backend` encrypting what `encryption` names.
    pub fn encrypted(
        backend: Arc<dyn Storage>,
        encryption: Option<encryption::EncryptionConfig>,
    ) -> Arc<Self> {
        Arc::new(Self {
            backend,
            encryption: encryption.map(Arc::new),
            caches: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The bytes stored for `object` at `key` (encrypted when configured).
    fn seal(&self, key: &str, object: &Value) -> Result<Vec<u8>, StoreError> {
        let plain = object::encode(object);
        match &self.encryption {
            Some(config) => Ok(config.encrypt(key, plain)?),
            None => Ok(plain),
        }
    }

    /// The object stored at `key` as `bytes` written at `revision`.
    fn open(&self, key: &str, bytes: &[u8], revision: i64) -> Result<Value, StoreError> {
        object::decode_stored(self.encryption.as_deref(), key, bytes, revision)
    }

    /// A store in memory (unit tests).
    pub fn in_memory() -> Arc<Self> {
        Self::on(Arc::new(MemoryStorage::new()))
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Storage> {
        &self.backend
    }

    /// Check that the backend answers.
    pub async fn check(&self) -> Result<(), StoreError> {
        self.backend.check().await
    }

    /// The current revision.
    pub async fn current_revision(&self) -> Result<i64, StoreError> {
        self.backend.current_revision().await
    }

    /// Read one object (resourceVersion set).
    pub async fn get(&self, key: &str) -> Result<Value, StoreError> {
        let kv = self.backend.get(key).await?;
        self.open(key, &kv.value, kv.revision)
    }

    /// Create an object; fails with AlreadyExists. Returns the new resourceVersion.
    pub async fn create(&self, key: &str, object: &Value) -> Result<i64, StoreError> {
        self.create_claiming(key, object, &ClaimChange::default())
            .await
    }

    /// Create an object taking `claims` with it; fails with AlreadyExists or Claimed.
    pub async fn create_claiming(
        &self,
        key: &str,
        object: &Value,
        claims: &ClaimChange,
    ) -> Result<i64, StoreError> {
        self.backend
            .create(key, self.seal(key, object)?, claims)
            .await
    }

    /// Replace an object whose current resourceVersion is `expected`; fails with Conflict
    /// (or NotFound if it is gone). Returns the new resourceVersion.
    pub async fn update(
        &self,
        key: &str,
        object: &Value,
        expected: i64,
    ) -> Result<i64, StoreError> {
        self.update_claiming(key, object, expected, &ClaimChange::default())
            .await
    }

    /// [`Store::update`] that also takes and releases claims (Claimed if one is held).
    pub async fn update_claiming(
        &self,
        key: &str,
        object: &Value,
        expected: i64,
        claims: &ClaimChange,
    ) -> Result<i64, StoreError> {
        self.backend
            .update(key, self.seal(key, object)?, expected, claims)
            .await
    }

    /// Delete an object whose current resourceVersion is `expected`. Returns the revision
    /// of the deletion.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<i64, StoreError> {
        self.delete_releasing(key, expected, &[]).await
    }

    /// [`Store::delete`] that releases the object's claims with it.
    pub async fn delete_releasing(
        &self,
        key: &str,
        expected: i64,
        claims: &[String],
    ) -> Result<i64, StoreError> {
        self.backend
            .delete(key, expected, &ClaimChange::release(claims))
            .await
    }

    /// Write `value` at `key` for `ttl` seconds: the key disappears unless written again
    /// in time. For presence records such as the API servers' master leases.
    pub async fn put_expiring(&self, key: &str, value: &str, ttl: i64) -> Result<(), StoreError> {
        self.backend.put_expiring(key, value, ttl).await
    }

    /// Keys and values (as text) of every key starting with `prefix`.
    pub async fn raw_entries(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let range = self
            .backend
            .range(RangeRequest {
                prefix,
                start: prefix,
                revision: 0,
                limit: 0,
                keys_only: false,
            })
            .await?;
        Ok(range
            .kvs
            .into_iter()
            .map(|kv| (kv.key, String::from_utf8_lossy(&kv.value).into_owned()))
            .collect())
    }

    /// Names of every held claim starting with `prefix` (`nodeports/`).
    pub async fn claims(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let full = format!("{CLAIMS_PREFIX}{prefix}");
        let range = self
            .backend
            .range(RangeRequest {
                prefix: &full,
                start: &full,
                revision: 0,
                limit: 0,
                keys_only: true,
            })
            .await?;
        Ok(range
            .kvs
            .into_iter()
            .map(|kv| kv.key.trim_start_matches(CLAIMS_PREFIX).to_owned())
            .collect())
    }

    /// Read up to `limit` objects with keys in `[start, end_of prefix)` at `revision`
    /// (0 = current).
    pub async fn list_page(
        &self,
        prefix: &str,
        start: &str,
        revision: i64,
        limit: i64,
    ) -> Result<Page, StoreError> {
        let range = self
            .backend
            .range(RangeRequest {
                prefix,
                start,
                revision,
                limit,
                keys_only: false,
            })
            .await?;
        let mut objects = Vec::with_capacity(range.kvs.len());
        for kv in &range.kvs {
            objects.push(self.open(&kv.key, &kv.value, kv.revision)?);
        }
        let next_key = if range.more {
            range.kvs.last().map(|kv| format!("{}\0", kv.key))
        } else {
            None
        };
        let remaining = range.count - i64::try_from(range.kvs.len()).unwrap_or(i64::MAX);
        Ok(Page {
            objects,
            revision: range.revision,
            next_key,
            remaining,
        })
    }

    /// The watch cache of the resource stored under `prefix`, started on first use.
    pub fn cache(self: &Arc<Self>, prefix: &str, projection: Projection) -> Arc<WatchCache> {
        let mut caches = self.caches.lock().unwrap_or_else(|e| e.into_inner());
        caches
            .entry(prefix.to_owned())
            .or_insert_with(|| {
                WatchCache::start(
                    Arc::clone(&self.backend),
                    self.encryption.clone(),
                    prefix.to_owned(),
                    projection,
                )
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_registry_layout() {
        assert_eq!(
            object_key("", "pods", "default", "web"),
            "/registry/core/pods/default/web"
        );
        assert_eq!(object_key("", "nodes", "", "n1"), "/registry/core/nodes/n1");
        assert_eq!(
            object_key("apps", "deployments", "ns", "d"),
            "/registry/apps/deployments/ns/d"
        );
        assert_eq!(
            prefix_end("/registry/core/pods/"),
            b"/registry/core/pods0".to_vec()
        );
    }
}
