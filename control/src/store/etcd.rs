//! [`Storage`] on a real etcd: compare-and-swap transactions, ranged reads at a revision,
//! and prefix watches with progress notifications. Every call runs under
//! [`ETCD_DEADLINE`], so an outage is answered with 503, never a hung request.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType as EtcdEventType, GetOptions, PutOptions,
    Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
};
use futures::StreamExt;
use tokio::sync::OnceCell;

use super::{
    CLAIMS_PREFIX, ClaimChange, ETCD_DEADLINE, StoreError,
    backend::{
        Change, KeyValue, ProgressRequester, Range, RangeRequest, Storage, Watch, WatchMessage,
        prefix_end,
    },
};

/// Run an etcd operation under [`ETCD_DEADLINE`].
async fn bounded<T>(
    operation: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(ETCD_DEADLINE, operation)
        .await
        .unwrap_or(Err(StoreError::Timeout))
}

/// Client TLS toward etcd: the CA etcd's certificate is checked against, and this
/// client's certificate and key (PEM).
#[derive(Clone)]
pub struct EtcdTls {
    /// CA certificate(s).
    pub ca: String,
    /// Client certificate.
    pub cert: String,
    /// Client key.
    pub key: String,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EtcdTls { .. }")
    }
}

/// The cluster's etcd.
pub struct EtcdStorage {
    endpoints: Vec<String>,
    tls: Option<EtcdTls>,
    /// Connected once; the gRPC channel reconnects by itself when etcd comes back.
    client: OnceCell<Client>,
}

impl EtcdStorage {
    /// A backend for `endpoints`; nothing is connected until first use.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self::with_tls(endpoints, None)
    }

    /// A backend for `endpoints` over mutual TLS when `tls` is given (https endpoints).
    pub fn with_tls(endpoints: Vec<String>, tls: Option<EtcdTls>) -> Self {
        Self {
            endpoints,
            tls,
            client: OnceCell::new(),
        }
    }

    /// A connected client (cloning is cheap: it shares the gRPC channel).
    async fn client(&self) -> Result<Client, StoreError> {
        let client = self
            .client
            .get_or_try_init(|| async {
                let mut options = ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout(ETCD_DEADLINE)
                    .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
                if let Some(tls) = &self.tls {
                    options = options.with_tls(
                        etcd_client::TlsOptions::new()
                            .ca_certificate(etcd_client::Certificate::from_pem(&tls.ca))
                            .identity(etcd_client::Identity::from_pem(&tls.cert, &tls.key)),
                    );
                }
                bounded(async { Ok(Client::connect(&self.endpoints, Some(options)).await?) }).await
            })
            .await?;
        Ok(client.clone())
    }

    /// Run `operation` on `key` (with the claim changes) if its revision is still
    /// `expected`.
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
            compares.extend(claim_compares(claims));
            let mut operations = vec![operation];
            operations.extend(claim_operations(claims, key));
            let mut reads = vec![TxnOp::get(key, None)];
            reads.extend(claim_reads(claims));
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
}

fn claim_compares(change: &ClaimChange) -> Vec<Compare> {
    change
        .take
        .iter()
        .map(|c| Compare::version(format!("{CLAIMS_PREFIX}{c}"), CompareOp::Equal, 0))
        .collect()
}

fn claim_operations(change: &ClaimChange, holder: &str) -> Vec<TxnOp> {
    let takes = change
        .take
        .iter()
        .map(|c| TxnOp::put(format!("{CLAIMS_PREFIX}{c}"), holder, None));
    let releases = change
        .release
        .iter()
        .map(|c| TxnOp::delete(format!("{CLAIMS_PREFIX}{c}"), None));
    takes.chain(releases).collect()
}

fn claim_reads(change: &ClaimChange) -> Vec<TxnOp> {
    change
        .take
        .iter()
        .map(|c| TxnOp::get(format!("{CLAIMS_PREFIX}{c}"), None))
        .collect()
}

/// The first claim of a failed transaction that is held (its reads came after the
/// object's own read), with its holder.
fn held_claim(response: &TxnResponse, change: &ClaimChange) -> Option<StoreError> {
    let gets: Vec<_> = response
        .op_responses()
        .into_iter()
        .filter_map(|op| match op {
            TxnOpResponse::Get(get) => Some(get),
            _ => None,
        })
        .collect();
    let offset = gets.len().saturating_sub(change.take.len());
    gets.get(offset..)?
        .iter()
        .zip(&change.take)
        .find_map(|(get, claim)| {
            get.kvs().first().map(|kv| StoreError::Claimed {
                claim: claim.clone(),
                holder: String::from_utf8_lossy(kv.value()).into_owned(),
            })
        })
}

fn key_value(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        revision: kv.mod_revision(),
    }
}

struct EtcdProgress(etcd_client::WatchRequestSender);

#[async_trait]
impl ProgressRequester for EtcdProgress {
    async fn request_progress(&mut self) -> Result<(), StoreError> {
        Ok(self.0.request_progress().await?)
    }
}

#[async_trait]
impl Storage for EtcdStorage {
    async fn check(&self) -> Result<(), StoreError> {
        bounded(async {
            self.client()
                .await?
                .status()
                .await
                .map(drop)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn current_revision(&self) -> Result<i64, StoreError> {
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

    async fn get(&self, key: &str) -> Result<KeyValue, StoreError> {
        bounded(async {
            let mut client = self.client().await?;
            let response = client.get(key, None).await?;
            response
                .kvs()
                .first()
                .map(key_value)
                .ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        claims: &ClaimChange,
    ) -> Result<i64, StoreError> {
        bounded(async {
            let mut client = self.client().await?;
            let mut compares = vec![Compare::version(key, CompareOp::Equal, 0)];
            compares.extend(claim_compares(claims));
            let mut operations = vec![TxnOp::put(key, value, None)];
            operations.extend(claim_operations(claims, key));
            let mut reads = vec![TxnOp::get(key, None)];
            reads.extend(claim_reads(claims));
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

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
        claims: &ClaimChange,
    ) -> Result<i64, StoreError> {
        self.when_unchanged(key, expected, TxnOp::put(key, value, None), claims)
            .await
    }

    async fn delete(
        &self,
        key: &str,
        expected: i64,
        claims: &ClaimChange,
    ) -> Result<i64, StoreError> {
        self.when_unchanged(key, expected, TxnOp::delete(key, None), claims)
            .await
    }

    async fn put_expiring(&self, key: &str, value: &str, ttl: i64) -> Result<(), StoreError> {
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

    async fn range(&self, request: RangeRequest<'_>) -> Result<Range, StoreError> {
        bounded(async {
            let mut client = self.client().await?;
            let mut options = GetOptions::new().with_range(prefix_end(request.prefix));
            if request.limit > 0 {
                options = options.with_limit(request.limit);
            }
            if request.revision > 0 {
                options = options.with_revision(request.revision);
            }
            if request.keys_only {
                options = options.with_keys_only();
            }
            let response = match client.get(request.start, Some(options)).await {
                Err(etcd_client::Error::GRpcStatus(status))
                    if status.message().contains("compacted") =>
                {
                    return Err(StoreError::Compacted {
                        requested: request.revision,
                        oldest: 0,
                    });
                }
                other => other?,
            };
            let revision = if request.revision > 0 {
                request.revision
            } else {
                response.header().map_or(0, |h| h.revision())
            };
            Ok(Range {
                kvs: response.kvs().iter().map(key_value).collect(),
                revision,
                more: response.more(),
                count: response.count(),
            })
        })
        .await
    }

    async fn watch(&self, prefix: &str, from: i64) -> Result<Watch, StoreError> {
        let mut client = self.client().await?;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_prev_key()
            .with_progress_notify();
        let (requests, responses) =
            bounded(async { Ok(client.watch(prefix, Some(options)).await?) })
                .await?
                .split();
        let messages = futures::stream::unfold(responses, |mut responses| async move {
            let message = match responses.message().await {
                Err(e) => Err(StoreError::from(e)),
                Ok(None) => Err(StoreError::Unavailable(etcd_client::Error::WatchError(
                    "watch stream ended".into(),
                ))),
                Ok(Some(response)) if response.canceled() => Ok(WatchMessage::Compacted {
                    oldest: response.compact_revision(),
                }),
                Ok(Some(response)) if response.events().is_empty() => Ok(WatchMessage::Progress(
                    response.header().map_or(0, |h| h.revision()),
                )),
                Ok(Some(response)) => Ok(WatchMessage::Changes(
                    response
                        .events()
                        .iter()
                        .filter_map(|event| {
                            let kv = event.kv()?;
                            Some(match event.event_type() {
                                EtcdEventType::Put => Change::Put(key_value(kv)),
                                EtcdEventType::Delete => Change::Delete {
                                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                                    revision: kv.mod_revision(),
                                },
                            })
                        })
                        .collect(),
                )),
            };
            Some((message, responses))
        })
        .boxed();
        Ok(Watch {
            progress: Box::new(EtcdProgress(requests)),
            messages,
        })
    }
}
