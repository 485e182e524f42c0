//! etcd storage. Keys are `/registry/<group>/<resource>/<namespace>/<name>` (no namespace
//! segment for cluster-scoped resources; group `core` for the legacy group); values are the
//! objects' JSON without `metadata.resourceVersion`, which is always the etcd `mod_revision`.
//!
//! Writes go straight to etcd with compare-and-swap transactions; reads of whole
//! collections and watches are served by one [`WatchCache`] per resource, fed by a single
//! etcd watch.

mod cache;
mod object;

use std::{collections::HashMap, sync::Arc, time::Duration};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp, TxnOpResponse,
};
use serde_json::Value;
use thiserror::Error;
use tokio::sync::OnceCell;

pub use cache::{Event, EventType, Snapshot, Subscription, WatchCache, WatchError};
pub use object::{CachedObject, Projection};

/// Errors of storage operations.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The key does not exist.
    #[error("not found")]
    NotFound,
    /// A create found the key already present.
    #[error("already exists")]
    AlreadyExists,
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
}

/// Deadline of every etcd call: an outage is answered with 503, never a hung request.
pub const ETCD_DEADLINE: Duration = Duration::from_secs(5);

/// Run an etcd operation under [`ETCD_DEADLINE`].
async fn bounded<T>(
    operation: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(ETCD_DEADLINE, operation)
        .await
        .unwrap_or(Err(StoreError::Timeout))
}

/// The etcd key prefix of a resource (`/registry/apps/deployments/`).
pub fn resource_prefix(group: &str, resource: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    format!("/registry/{group}/{resource}/")
}

/// The etcd key of one object.
pub fn object_key(group: &str, resource: &str, namespace: &str, name: &str) -> String {
    let prefix = resource_prefix(group, resource);
    if namespace.is_empty() {
        format!("{prefix}{name}")
    } else {
        format!("{prefix}{namespace}/{name}")
    }
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

/// One page of a paginated list read from etcd.
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

/// Handle to the cluster's etcd.
pub struct Store {
    endpoints: Vec<String>,
    /// Connected once; the gRPC channel reconnects by itself when etcd comes back.
    client: OnceCell<Client>,
    caches: std::sync::Mutex<HashMap<String, Arc<WatchCache>>>,
}

impl Store {
    /// A store for `endpoints`; nothing is connected until first use.
    pub fn new(endpoints: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            endpoints,
            client: OnceCell::new(),
            caches: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// A connected client (cloning is cheap: it shares the gRPC channel).
    pub async fn client(&self) -> Result<Client, StoreError> {
        let client = self
            .client
            .get_or_try_init(|| async {
                let options = ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout(ETCD_DEADLINE)
                    .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
                bounded(async { Ok(Client::connect(&self.endpoints, Some(options)).await?) }).await
            })
            .await?;
        Ok(client.clone())
    }

    /// Check that etcd answers.
    pub async fn check(&self) -> Result<(), StoreError> {
        bounded(async {
            self.client()
                .await?
                .status()
                .await
                .map_err(StoreError::from)
        })
        .await
        .map(drop)
    }

    /// The current etcd revision.
    pub async fn current_revision(&self) -> Result<i64, StoreError> {
        bounded(async {
            let mut client = self.client().await?;
            let response = client
                .get(
                    "/registry/",
                    Some(GetOptions::new().with_count_only().with_limit(1)),
                )
                .await?;
            Ok(response.header().map_or(0, |h| h.revision()))
        })
        .await
    }

    /// Read one object (resourceVersion set).
    pub async fn get(&self, key: &str) -> Result<Value, StoreError> {
        bounded(async {
            let mut client = self.client().await?;
            let response = client.get(key, None).await?;
            let kv = response.kvs().first().ok_or(StoreError::NotFound)?;
            object::decode(key, kv.value(), kv.mod_revision())
        })
        .await
    }

    /// Create an object; fails with AlreadyExists. Returns the new resourceVersion.
    pub async fn create(&self, key: &str, object: &Value) -> Result<i64, StoreError> {
        let bytes = object::encode(object);
        bounded(async {
            let mut client = self.client().await?;
            let txn = Txn::new()
                .when([Compare::version(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, bytes, None)]);
            let response = client.txn(txn).await?;
            if !response.succeeded() {
                return Err(StoreError::AlreadyExists);
            }
            Ok(response.header().map_or(0, |h| h.revision()))
        })
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
        self.when_unchanged(key, expected, TxnOp::put(key, object::encode(object), None))
            .await
    }

    /// Delete an object whose current resourceVersion is `expected`. Returns the revision
    /// of the deletion.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<i64, StoreError> {
        self.when_unchanged(key, expected, TxnOp::delete(key, None))
            .await
    }

    /// Run `operation` on `key` if its revision is still `expected` (Conflict if it changed,
    /// NotFound if it is gone). Returns the revision of the write.
    async fn when_unchanged(
        &self,
        key: &str,
        expected: i64,
        operation: TxnOp,
    ) -> Result<i64, StoreError> {
        bounded(async {
            let mut client = self.client().await?;
            let txn = Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
                .and_then([operation])
                .or_else([TxnOp::get(key, None)]);
            let response = client.txn(txn).await?;
            if response.succeeded() {
                return Ok(response.header().map_or(0, |h| h.revision()));
            }
            Err(if exists_in(&response) {
                StoreError::Conflict
            } else {
                StoreError::NotFound
            })
        })
        .await
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
        bounded(async {
            let mut client = self.client().await?;
            let mut options = GetOptions::new()
                .with_range(prefix_end(prefix))
                .with_limit(limit);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let response = match client.get(start, Some(options)).await {
                Err(etcd_client::Error::GRpcStatus(status))
                    if status.message().contains("compacted") =>
                {
                    return Err(StoreError::Compacted {
                        requested: revision,
                        oldest: 0,
                    });
                }
                other => other?,
            };
            let revision = if revision > 0 {
                revision
            } else {
                response.header().map_or(0, |h| h.revision())
            };
            let mut objects = Vec::with_capacity(response.kvs().len());
            for kv in response.kvs() {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                objects.push(object::decode(&key, kv.value(), kv.mod_revision())?);
            }
            let next_key = if response.more() {
                response
                    .kvs()
                    .last()
                    .map(|kv| format!("{}\0", String::from_utf8_lossy(kv.key())))
            } else {
                None
            };
            let remaining = response.count() - response.kvs().len() as i64;
            Ok(Page {
                objects,
                revision,
                next_key,
                remaining,
            })
        })
        .await
    }

    /// The watch cache of the resource stored under `prefix`, started on first use.
    pub fn cache(self: &Arc<Self>, prefix: &str, projection: Projection) -> Arc<WatchCache> {
        let mut caches = self.caches.lock().unwrap_or_else(|e| e.into_inner());
        caches
            .entry(prefix.to_owned())
            .or_insert_with(|| WatchCache::start(Arc::clone(self), prefix.to_owned(), projection))
            .clone()
    }
}

fn exists_in(response: &etcd_client::TxnResponse) -> bool {
    response.op_responses().iter().any(|op| match op {
        TxnOpResponse::Get(get) => !get.kvs().is_empty(),
        _ => false,
    })
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
