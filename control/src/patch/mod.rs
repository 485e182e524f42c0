//! Patches: JSON merge patch (RFC 7396), JSON patch (RFC 6902) and Kubernetes' strategic
//! merge patch, applied to objects held as JSON.

pub mod apply;
pub mod strategic;

use serde_json::Value;

use crate::{model::ApiError, protobuf};

/// Patch content types.
pub const MERGE: &str = "application/merge-patch+json";
/// RFC 6902.
pub const JSON: &str = "application/json-patch+json";
/// Kubernetes strategic merge patch.
pub const STRATEGIC: &str = "application/strategic-merge-patch+json";
/// Server-side apply.
pub const APPLY: &str = "application/apply-patch+yaml";

/// Apply a patch document of `content_type` to `current` (an object of `api_version`/`kind`).
pub fn apply(
    content_type: &str,
    current: &Value,
    patch: &[u8],
    api_version: &str,
    kind: &str,
) -> Result<Value, ApiError> {
    let mut target = current.clone();
    match content_type {
        MERGE => {
            let patch: Value = serde_json::from_slice(patch)
                .map_err(|e| ApiError::bad_request(format!("invalid merge patch: {e}")))?;
            json_patch::merge(&mut target, &patch);
        }
        JSON => {
            let patch: json_patch::Patch = serde_json::from_slice(patch)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            // `target` is a copy that an error discards, so no rollback is needed — and
            // json_patch::patch's rollback panics when a failed `move` already removed its
            // source (found by fuzzing: replace /a, then move /a to a missing parent).
            json_patch::patch_unsafe(&mut target, &patch).map_err(|e| {
                ApiError::unprocessable(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
        }
        STRATEGIC => {
            let patch: Value = serde_json::from_slice(patch).map_err(|e| {
                ApiError::bad_request(format!("invalid strategic merge patch: {e}"))
            })?;
            let schema = protobuf::message_for(api_version, kind);
            target = strategic::apply(current, &patch, schema).map_err(|e| e.into_api_error())?;
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_json_patch_failing_after_a_move_is_refused_not_a_panic() {
        let current = json!({"apiVersion": "v1", "kind": "ConfigMap", "a": 1});
        let patch = br#"[{"op": "replace", "path": "/a", "value": 2},
                         {"op": "move", "from": "/a", "path": "/missing/b"}]"#;
        let error = apply(JSON, &current, patch, "v1", "ConfigMap").expect_err("refused");
        assert_eq!(error.to_status()["code"], 422);
        let fine = br#"[{"op": "replace", "path": "/a", "value": 2}]"#;
        assert_eq!(
            apply(JSON, &current, fine, "v1", "ConfigMap").expect("applies")["a"],
            2
        );
    }
}
