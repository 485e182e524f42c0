//! Building responses: objects, lists assembled from cached JSON bytes, Status errors.

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

use crate::model::ApiError;

/// A JSON response with `status`.
pub fn json(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    raw_json(status, Bytes::from(body))
}

/// Already-serialized JSON.
pub fn raw_json(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = json(status, &self.to_status());
        if let Some(seconds) = self.details.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A `<Kind>List` from items that are already JSON bytes (no re-serialization).
pub fn list(
    api_version: &str,
    list_kind: &str,
    resource_version: i64,
    continue_token: Option<&str>,
    remaining: Option<i64>,
    items: impl IntoIterator<Item = Bytes>,
) -> Bytes {
    let mut metadata = serde_json::json!({"resourceVersion": resource_version.to_string()});
    if let Some(token) = continue_token {
        metadata["continue"] = Value::String(token.to_owned());
    }
    if let Some(remaining) = remaining.filter(|r| *r > 0) {
        metadata["remainingItemCount"] = Value::from(remaining);
    }
    let head =
        serde_json::json!({"kind": list_kind, "apiVersion": api_version, "metadata": metadata});
    let head = serde_json::to_vec(&head).unwrap_or_default();
    let mut out = BytesMut::with_capacity(head.len() + 64);
    out.put_slice(&head[..head.len() - 1]);
    out.put_slice(b",\"items\":[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(&item);
    }
    out.put_slice(b"]}");
    out.freeze()
}

/// A `Status` of success (binding, eviction, deletecollection).
pub fn success(code: u16) -> Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_valid_json() {
        let items = vec![
            Bytes::from_static(br#"{"a":1}"#),
            Bytes::from_static(br#"{"b":2}"#),
        ];
        let body = list("v1", "PodList", 42, Some("tok"), Some(3), items);
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["metadata"]["resourceVersion"], "42");
        assert_eq!(v["metadata"]["continue"], "tok");
        assert_eq!(v["items"][1]["b"], 2);
        let empty: Value =
            serde_json::from_slice(&list("v1", "PodList", 1, None, None, Vec::new()))
                .expect("json");
        assert_eq!(empty["items"], serde_json::json!([]));
    }
}
