//! Objects as the cache holds them: the JSON bytes served to clients (resourceVersion
//! already set) plus the few fields selectors need, so lists and watches never re-parse.

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use serde_json::Value;

use super::StoreError;
use crate::model::meta;

/// Which fields of an object the cache extracts for field selectors.
#[derive(Clone, Copy, Debug)]
pub struct Projection {
    /// Dotted paths of the selectable fields (besides metadata.name/namespace).
    pub fields: &'static [&'static str],
}

/// An object as served: JSON bytes and the fields selectors match on.
#[derive(Debug)]
pub struct CachedObject {
    /// The object's JSON, resourceVersion included.
    pub raw: Bytes,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// Selectable field values, in the order of [`Projection::fields`].
    pub fields: Vec<(&'static str, String)>,
    /// The resourceVersion.
    pub revision: i64,
}

impl CachedObject {
    /// Build from a decoded object.
    pub fn new(object: &Value, revision: i64, projection: Projection) -> Arc<Self> {
        Arc::new(Self {
            raw: Bytes::from(serde_json::to_vec(object).unwrap_or_default()),
            namespace: meta::namespace(object).to_owned(),
            name: meta::name(object).to_owned(),
            labels: meta::string_map(object, "labels"),
            fields: projection
                .fields
                .iter()
                .map(|f| (*f, meta::field_value(object, f)))
                .collect(),
            revision,
        })
    }

    /// The value of a selectable field ("" if not projected or absent).
    pub fn field(&self, path: &str) -> String {
        match path {
            "metadata.name" => self.name.clone(),
            "metadata.namespace" => self.namespace.clone(),
            _ => self
                .fields
                .iter()
                .find(|(f, _)| *f == path)
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        }
    }

    /// A copy of `object` whose resourceVersion is `revision` (a deleted object reported
    /// at the deletion's revision).
    pub fn with_revision(object: &Arc<Self>, revision: i64) -> Arc<Self> {
        let mut value = object.value();
        meta::set_meta(
            &mut value,
            "resourceVersion",
            Value::String(revision.to_string()),
        );
        Arc::new(Self {
            raw: Bytes::from(serde_json::to_vec(&value).unwrap_or_default()),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            labels: object.labels.clone(),
            fields: object.fields.clone(),
            revision,
        })
    }

    /// Parse the JSON back (for conversions such as tables).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.raw).unwrap_or(Value::Null)
    }
}

/// Serialize an object for etcd (resourceVersion is never stored).
pub fn encode(object: &Value) -> Vec<u8> {
    let mut object = object.clone();
    meta::remove_meta(&mut object, "resourceVersion");
    serde_json::to_vec(&object).unwrap_or_default()
}

/// Decrypt (when `encryption` covers `key`) and parse a stored value.
pub fn decode_stored(
    encryption: Option<&super::encryption::EncryptionConfig>,
    key: &str,
    bytes: &[u8],
    revision: i64,
) -> Result<Value, StoreError> {
    match encryption {
        Some(config) => decode(key, &config.decrypt(key, bytes)?, revision),
        None => decode(key, bytes, revision),
    }
}

/// Parse a stored value and set its resourceVersion.
pub fn decode(key: &str, bytes: &[u8], revision: i64) -> Result<Value, StoreError> {
    let mut object: Value = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })?;
    if !object.is_object() {
        return Err(StoreError::Corrupt {
            key: key.to_owned(),
            reason: "not a JSON object".to_owned(),
        });
    }
    meta::set_meta(
        &mut object,
        "resourceVersion",
        Value::String(revision.to_string()),
    );
    Ok(object)
}
