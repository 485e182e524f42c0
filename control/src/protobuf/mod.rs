//! Decoding Kubernetes protobuf request bodies into JSON objects.
//!
//! client-go's typed clients (`kubectl create deployment|namespace|configmap…`, and every Go
//! controller built on client-go) send `application/vnd.kubernetes.protobuf`: the magic
//! `k8s\0` followed by a `runtime.Unknown` envelope whose `raw` is the object's message.
//! The object is decoded with a table generated from the Kubernetes protobuf definitions
//! ([`schema`]) into exactly the JSON the same object has on the wire, so everything after
//! decoding is shared with JSON requests. Responses are always JSON, which every such
//! client also accepts.

mod decode;
mod schema;

use std::{collections::HashMap, sync::OnceLock};

use serde_json::Value;

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// A scalar or message type in the schema.
#[derive(Debug)]
pub enum Ty {
    /// string
    String,
    /// bytes (base64 in JSON)
    Bytes,
    /// bool
    Bool,
    /// int32
    Int32,
    /// int64
    Int64,
    /// double
    Double,
    /// A message, by schema name (`api/core/v1/Pod`).
    Message(&'static str),
    /// A map from the first type to the second.
    Map(&'static Ty, &'static Ty),
}

/// How a strategic merge patch combines a list field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMerge {
    /// The patch's list replaces the object's.
    Replace,
    /// A set of primitives: union (with `$deleteFromPrimitiveList`).
    Set,
    /// A list of objects merged by this key (the patch merge key).
    Key(&'static str),
}

/// One field of a message.
#[derive(Debug)]
pub struct Field {
    /// Field number.
    pub tag: u32,
    /// JSON name.
    pub json: &'static str,
    /// Type.
    pub ty: Ty,
    /// Repeated (a JSON array).
    pub repeated: bool,
    /// Strategic-merge behaviour of a repeated field.
    pub list: ListMerge,
}

/// One message type.
#[derive(Debug)]
pub struct Message {
    /// Schema name: module path and type name.
    pub name: &'static str,
    /// Fields.
    pub fields: &'static [Field],
}

/// Errors decoding a protobuf body.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("not a Kubernetes protobuf body (missing the k8s\\0 prefix)")]
    NoMagic,
    /// The wire data is malformed.
    #[error("malformed protobuf: {0}")]
    Malformed(&'static str),
    /// The envelope names a kind this server has no schema for.
    #[error("no protobuf schema for {api_version}, Kind={kind}")]
    UnknownKind {
        /// apiVersion from the envelope.
        api_version: String,
        /// kind from the envelope.
        kind: String,
    },
}

fn index() -> &'static HashMap<&'static str, &'static Message> {
    static INDEX: OnceLock<HashMap<&'static str, &'static Message>> = OnceLock::new();
    INDEX.get_or_init(|| schema::MESSAGES.iter().map(|m| (m.name, m)).collect())
}

/// The message type of a kind (`apps/v1`, `Deployment` → `api/apps/v1/Deployment`).
pub fn message_for(api_version: &str, kind: &str) -> Option<&'static Message> {
    message(&format!("{}/{kind}", module_of(api_version)))
        .or_else(|| message(&format!("apimachinery/pkg/apis/meta/v1/{kind}")))
}

/// A message by schema name.
pub fn message(name: &str) -> Option<&'static Message> {
    index().get(name).copied()
}

/// The schema module of an apiVersion: `v1` → `api/core/v1`, `apps/v1` → `api/apps/v1`,
/// `discovery.k8s.io/v1` → `api/discovery/v1`, `meta.k8s.io/v1` → the meta types.
fn module_of(api_version: &str) -> String {
    match api_version.split_once('/') {
        None => format!("api/core/{api_version}"),
        Some(("meta.k8s.io", version)) => format!("apimachinery/pkg/apis/meta/{version}"),
        Some((group, version)) => {
            format!("api/{}/{version}", group.split('.').next().unwrap_or(group))
        }
    }
}

/// Decode a `application/vnd.kubernetes.protobuf` body into the object's JSON form (with
/// `apiVersion` and `kind` from the envelope).
pub fn decode_request(body: &[u8]) -> Result<Value, ProtobufError> {
    let payload = body.strip_prefix(b"k8s\0").ok_or(ProtobufError::NoMagic)?;
    let envelope = decode::Envelope::parse(payload)?;
    let candidates = [
        format!("{}/{}", module_of(&envelope.api_version), envelope.kind),
        format!("apimachinery/pkg/apis/meta/v1/{}", envelope.kind),
    ];
    let schema = candidates
        .iter()
        .find_map(|name| message(name))
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: envelope.api_version.clone(),
            kind: envelope.kind.clone(),
        })?;
    let mut object = decode::message(envelope.raw, schema)?;
    if let Value::Object(map) = &mut object {
        map.insert("apiVersion".to_owned(), Value::String(envelope.api_version));
        map.insert("kind".to_owned(), Value::String(envelope.kind));
    }
    Ok(object)
}

#[cfg(test)]
mod tests;
