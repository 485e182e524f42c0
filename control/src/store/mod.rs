//! etcd access. A single connection is opened lazily and re-opened after failures, so the
//! server starts (and recovers) while etcd is down.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use thiserror::Error;
use tokio::sync::Mutex;

/// Errors talking to etcd.
#[derive(Debug, Error)]
pub enum StoreError {
    /// etcd could not be reached or answered with an error.
    #[error("etcd is unavailable: {0}")]
    Unavailable(#[from] etcd_client::Error),
}

/// Handle to the cluster's etcd.
pub struct Store {
    endpoints: Vec<String>,
    client: Mutex<Option<Client>>,
}

impl Store {
    /// A store for `endpoints`; nothing is connected until first use.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            client: Mutex::new(None),
        }
    }

    /// A connected client (cloning is cheap: it shares the gRPC channel).
    pub async fn client(&self) -> Result<Client, StoreError> {
        let mut guard = self.client.lock().await;
        if let Some(client) = guard.as_ref() {
            return Ok(client.clone());
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5));
        let client = Client::connect(&self.endpoints, Some(options)).await?;
        *guard = Some(client.clone());
        Ok(client)
    }

    /// Check that etcd answers; on failure the connection is dropped so the next call
    /// reconnects.
    pub async fn check(&self) -> Result<(), StoreError> {
        let result = async {
            self.client()
                .await?
                .status()
                .await
                .map_err(StoreError::from)
        }
        .await;
        if result.is_err() {
            *self.client.lock().await = None;
        }
        result.map(drop)
    }
}
