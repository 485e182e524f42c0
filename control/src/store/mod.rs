//! etcd storage. Keys are `/registry/<group>/<resource>/<namespace>/<name>` (no namespace
//! segment for cluster-scoped resources; group `core` for the legacy group); values are the
//! objects' JSON without `metadata.resourceVersion`, which is always the etcd `mod_revision`.
//!
//! Writes go straight to etcd with compare-and-swap transactions; reads of whole
//! collections and watches are served by one [`WatchCache`] per resource, fed by a single
//! etcd watch.
//!
//! Some objects hold exclusive *claims* (a Service's cluster IP and node ports): keys under
//! [`CLAIMS_PREFIX`] written in the same transaction as the object, which fails if another
//! object already holds one, and released in the transaction that deletes or changes it.
//! So no two objects ever hold the same claim, also with several API servers racing.

mod cache;
mod object;

use std::{collections::HashMap, sync::Arc, time::Duration};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
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

/// Where claims live in etcd (outside `/registry/`, so no resource listing sees them).
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

    fn compares(&self) -> Vec<Compare> {
        self.take
            .iter()
            .map(|c| Compare::version(format!("{CLAIMS_PREFIX}{c}"), CompareOp::Equal, 0))
            .collect()
    }

    fn operations(&self, holder: &str) -> Vec<TxnOp> {
        let takes = self
            .take
            .iter()
            .map(|c| TxnOp::put(format!("{CLAIMS_PREFIX}{c}"), holder, None));
        let releases = self
            .release
            .iter()
            .map(|c| TxnOp::delete(format!("{CLAIMS_PREFIX}{c}"), None));
        takes.chain(releases).collect()
    }

    fn reads(&self) -> Vec<TxnOp> {
        self.take
            .iter()
            .map(|c| TxnOp::get(format!("{CLAIMS_PREFIX}{c}"), None))
            .collect()
    }
}

/// The first claim of a failed transaction that is held (its `reads` came after the
/// object's own read), with its holder.
fn held_claim(response: &etcd_client::TxnResponse, change: &ClaimChange) -> Option<StoreError> {
    let gets = response
        .op_responses()
        .into_iter()
        .filter_map(|op| match op {
            TxnOpResponse::Get(get) => Some(get),
            _ => None,
        });
    // The first get is the object itself when the transaction read it.
    let claims: Vec<_> = gets.collect();
    let offset = claims.len().saturating_sub(change.take.len());
    claims[offset..]
        .iter()
        .zip(&change.take)
        .find_map(|(get, claim)| {
            get.kvs().first().map(|kv| StoreError::Claimed {
                claim: claim.clone(),
                holder: String::from_utf8_lossy(kv.value()).into_owned(),
            })
        })
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
        let bytes = object::encode(object);
        bounded(async {
            let mut client = self.client().await?;
            let mut compares = vec![Compare::version(key, CompareOp::Equal, 0)];
            compares.extend(claims.compares());
            let mut operations = vec![TxnOp::put(key, bytes, None)];
            operations.extend(claims.operations(key));
            let mut reads = vec![TxnOp::get(key, None)];
            reads.extend(claims.reads());
            let txn = Txn::new()
                .when(compares)
                .and_then(operations)
                .or_else(reads);
            let response = client.txn(txn).await?;
            if response.succeeded() {
                return Ok(response.header().map_or(0, |h| h.revision()));
            }
            let object_exists = response
                .op_responses()
                .first()
                .is_some_and(|op| matches!(op, TxnOpResponse::Get(get) if !get.kvs().is_empty()));
            if object_exists {
                return Err(StoreError::AlreadyExists);
            }
            Err(held_claim(&response, claims).unwrap_or(StoreError::Conflict))
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
        self.when_unchanged(
            key,
            expected,
            TxnOp::put(key, object::encode(object), None),
            claims,
        )
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
        let change = ClaimChange {
            take: Vec::new(),
            release: claims.to_vec(),
        };
        self.when_unchanged(key, expected, TxnOp::delete(key, None), &change)
            .await
    }

    /// Run `operation` on `key` (with the claim changes) if its revision is still
    /// `expected` (Conflict if it changed, NotFound if it is gone, Claimed if a claim to
    /// take is held). Returns the revision of the write.
    async fn when_unchanged(
        &self,
        key: &str,
        expected: i64,
        operation: TxnOp,
        claims: &ClaimChange,
    ) -> Result<i64, StoreError> {
        bounded(async {
            let mut client = self.client().await?;
            let mut compares = vec![Compare::mod_revision(key, CompareOp::Equal, expected)];
            compares.extend(claims.compares());
            let mut operations = vec![operation];
            operations.extend(claims.operations(key));
            let mut reads = vec![TxnOp::get(key, None)];
            reads.extend(claims.reads());
            let txn = Txn::new()
                .when(compares)
                .and_then(operations)
                .or_else(reads);
            let response = client.txn(txn).await?;
            if response.succeeded() {
                return Ok(response.header().map_or(0, |h| h.revision()));
            }
            let object = response
                .op_responses()
                .into_iter()
                .next()
                .and_then(|op| match op {
                    TxnOpResponse::Get(get) => Some(get.kvs().first().map(|kv| kv.mod_revision())),
                    _ => None,
                });
            match object {
                Some(Some(revision)) if revision == expected => {
                    Err(held_claim(&response, claims).unwrap_or(StoreError::Conflict))
                }
                Some(Some(_)) => Err(StoreError::Conflict),
                _ => Err(StoreError::NotFound),
            }
        })
        .await
    }

    /// Write `value` at `key` for `ttl` seconds (an etcd lease): the key disappears unless
    /// written again in time. For presence records such as the API servers' master leases.
    pub async fn put_expiring(&self, key: &str, value: &str, ttl: i64) -> Result<(), StoreError> {
        bounded(async {
            let mut client = self.client().await?;
            let lease = client.lease_grant(ttl, None).await?;
            client
                .put(key, value, Some(PutOptions::new().with_lease(lease.id())))
                .await?;
            Ok(())
        })
        .await
    }

    /// Keys and values (as text) of every key starting with `prefix`.
    pub async fn raw_entries(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        bounded(async {
            let mut client = self.client().await?;
            let options = GetOptions::new().with_range(prefix_end(prefix));
            let response = client.get(prefix, Some(options)).await?;
            Ok(response
                .kvs()
                .iter()
                .map(|kv| {
                    (
                        String::from_utf8_lossy(kv.key()).into_owned(),
                        String::from_utf8_lossy(kv.value()).into_owned(),
                    )
                })
                .collect())
        })
        .await
    }

    /// Names of every held claim starting with `prefix` (`nodeports/`).
    pub async fn claims(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        bounded(async {
            let mut client = self.client().await?;
            let full = format!("{CLAIMS_PREFIX}{prefix}");
            let options = GetOptions::new()
                .with_range(prefix_end(&full))
                .with_keys_only();
            let response = client.get(full.as_str(), Some(options)).await?;
            Ok(response
                .kvs()
                .iter()
                .map(|kv| {
                    String::from_utf8_lossy(kv.key())
                        .trim_start_matches(CLAIMS_PREFIX)
                        .to_owned()
                })
                .collect())
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
