//! The content store: writing blobs (manifests, configs, layers) and reading them back, and
//! leases that keep fresh content from garbage collection while an image is assembled.

use std::collections::HashMap;

use containerd_client::services::v1::{
    CreateRequest as CreateLeaseRequest, DeleteRequest as DeleteLeaseRequest, InfoRequest,
    ReadContentRequest, WriteAction, WriteContentRequest, content_client::ContentClient,
    leases_client::LeasesClient,
};
use futures::StreamExt;

use super::{Runtime, RuntimeError, call_error};

/// Largest chunk sent in one write message (containerd's gRPC limit is 16 MiB).
const CHUNK: usize = 1 << 20;

impl Runtime {
    /// True if the content store has a blob with this digest.
    pub async fn has_content(&self, digest: &str) -> Result<bool, RuntimeError> {
        let request = self.request(
            InfoRequest {
                digest: digest.to_owned(),
            },
            None,
        );
        match ContentClient::new(self.channel()).info(request).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == containerd_client::tonic::Code::NotFound => Ok(false),
            Err(status) => Err(call_error(format!("content info {digest}"))(status)),
        }
    }

    /// Write a blob under its digest with GC labels; a blob already present is left as is
    /// (its labels are the same by construction).
    pub async fn write_content(
        &self,
        digest: &str,
        data: &[u8],
        labels: HashMap<String, String>,
        lease: &str,
    ) -> Result<(), RuntimeError> {
        let total = i64::try_from(data.len()).unwrap_or(i64::MAX);
        let reference = format!("skiff-{digest}");
        let mut messages = Vec::new();
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[][..]]
        } else {
            data.chunks(CHUNK).collect()
        };
        let last = chunks.len() - 1;
        let mut offset = 0i64;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let commit = i == last;
            messages.push(WriteContentRequest {
                action: if commit {
                    WriteAction::Commit as i32
                } else {
                    WriteAction::Write as i32
                },
                r#ref: reference.clone(),
                total,
                expected: digest.to_owned(),
                offset,
                data: chunk.to_vec(),
                labels: if commit {
                    labels.clone()
                } else {
                    HashMap::new()
                },
            });
            offset += i64::try_from(chunk.len()).unwrap_or(0);
        }
        let request = self.request(futures::stream::iter(messages), Some(lease));
        match ContentClient::new(self.channel()).write(request).await {
            Ok(response) => {
                let mut replies = response.into_inner();
                while let Some(reply) = replies.next().await {
                    if let Err(status) = reply {
                        if status.code() == containerd_client::tonic::Code::AlreadyExists {
                            return Ok(());
                        }
                        return Err(call_error(format!("content write {digest}"))(status));
                    }
                }
                Ok(())
            }
            Err(status) if status.code() == containerd_client::tonic::Code::AlreadyExists => Ok(()),
            Err(status) => Err(call_error(format!("content write {digest}"))(status)),
        }
    }

    /// Read a whole blob.
    pub async fn read_content(&self, digest: &str) -> Result<Vec<u8>, RuntimeError> {
        let request = self.request(
            ReadContentRequest {
                digest: digest.to_owned(),
                offset: 0,
                size: 0,
            },
            None,
        );
        let mut stream = ContentClient::new(self.channel())
            .read(request)
            .await
            .map_err(call_error(format!("content read {digest}")))?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(call_error(format!("content read {digest}")))?;
            data.extend_from_slice(&chunk.data);
        }
        Ok(data)
    }

    /// Start a lease that expires by itself after an hour (so a crash leaks nothing).
    pub async fn create_lease(&self) -> Result<String, RuntimeError> {
        let expire = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
        let labels = HashMap::from([(
            "containerd.io/gc.expire".to_owned(),
            expire.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )]);
        let id = format!(
            "skiff-{}",
            jiff::Timestamp::now().as_nanosecond().unsigned_abs()
        );
        LeasesClient::new(self.channel())
            .create(self.request(
                CreateLeaseRequest {
                    id: id.clone(),
                    labels,
                },
                None,
            ))
            .await
            .map_err(call_error("lease create"))?;
        Ok(id)
    }

    /// End a lease (what it protected is now referenced, or may be collected).
    pub async fn delete_lease(&self, id: &str) {
        let request = self.request(
            DeleteLeaseRequest {
                id: id.to_owned(),
                sync: false,
            },
            None,
        );
        if let Err(e) = LeasesClient::new(self.channel()).delete(request).await {
            tracing::debug!(lease = id, error = %e.message(), "lease delete failed; it expires by itself");
        }
    }
}
