//! Request bodies: size limit, content type, JSON or YAML into a JSON value.

use std::time::Duration;

use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::model::ApiError;

/// Largest request body accepted (kube-apiserver's limit).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// How much of an over-limit body is still read, and thrown away, so that the client —
/// still sending it — gets to read the 413 instead of a connection reset mid-upload.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
/// How long that draining may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// Over [`MAX_BODY`]; `drained` if the rest was read, so the connection can carry on.
    TooLarge {
        /// The whole body was read and dropped.
        drained: bool,
    },
    /// The client's body broke off.
    Failed,
}

/// Read a request body of at most [`MAX_BODY`] bytes. An over-limit body is drained (up to
/// [`DRAIN_LIMIT`] within [`DRAIN_TIMEOUT`]) before the refusal is answered.
pub async fn read(mut body: axum::body::Body) -> Result<Bytes, Unread> {
    let mut collected = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Unread::Failed)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if collected.len() + data.len() > MAX_BODY {
            let seen = collected.len() + data.len();
            drop(collected);
            return Err(Unread::TooLarge {
                drained: drain(body, seen).await,
            });
        }
        collected.extend_from_slice(&data);
    }
    Ok(collected.freeze())
}

/// Read and drop the rest of `body` (`seen` bytes already read); true if it all came.
async fn drain(mut body: axum::body::Body, mut seen: usize) -> bool {
    let rest = async {
        if seen > DRAIN_LIMIT {
            return false;
        }
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > DRAIN_LIMIT {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIMEOUT, rest)
        .await
        .unwrap_or(false)
}

/// The media type of the body, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Decode a body as a JSON object (JSON, or YAML for `application/yaml`).
pub fn decode_object(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::too_large(MAX_BODY));
    }
    let kind = content_type(headers);
    let value: Value = match kind.as_str() {
        "application/json" | "" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("error decoding request body as JSON: {e}"))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("request body is not UTF-8"))?;
            serde_saphyr::from_str(text).map_err(|e| {
                ApiError::bad_request(format!("error decoding request body as YAML: {e}"))
            })?
        }
        crate::protobuf::CONTENT_TYPE => crate::protobuf::decode_request(body).map_err(|e| {
            ApiError::bad_request(format!("error decoding the protobuf request body: {e}"))
        })?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

/// Decode an optional body (DeleteOptions may be absent).
pub fn decode_optional(headers: &HeaderMap, body: &Bytes) -> Result<Option<Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(None)
    } else {
        decode_object(headers, body).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_over_limit_body_is_drained_and_refused() {
        assert_eq!(
            read(axum::body::Body::from(vec![b'x'; 10]))
                .await
                .map(|b| b.len()),
            Ok(10)
        );
        let huge = axum::body::Body::from(vec![b'x'; MAX_BODY + 1]);
        assert_eq!(read(huge).await, Err(Unread::TooLarge { drained: true }));
        let endless = axum::body::Body::from(vec![b'x'; DRAIN_LIMIT + 1]);
        assert_eq!(
            read(endless).await,
            Err(Unread::TooLarge { drained: false })
        );
    }
}
