//! The protobuf wire format, walked with the schema, into JSON values — including the
//! Kubernetes types whose JSON form is not their message form (Quantity, IntOrString,
//! Time, MicroTime, Duration, RawExtension, FieldsV1).

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{Field, Message, ProtobufError, Ty};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
const FIXED32: u8 = 5;
/// Unix seconds of Go's zero `time.Time`.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// A cursor over wire bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

/// One field's raw value.
enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    /// A 32-bit value (no Kubernetes field uses one; read and skipped).
    Fixed32,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let (&byte, rest) = self
                .bytes
                .split_first()
                .ok_or(ProtobufError::Malformed("truncated varint"))?;
            self.bytes = rest;
            if shift == 63 && byte > 1 {
                return Err(ProtobufError::Malformed("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::Malformed("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        if n > self.bytes.len() {
            return Err(ProtobufError::Malformed(
                "length past the end of the message",
            ));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// The next (field number, value), or None at the end.
    fn next(&mut self) -> Result<Option<(u32, Raw<'a>)>, ProtobufError> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3)
            .map_err(|_| ProtobufError::Malformed("field number out of range"))?;
        let raw = match (key & 7) as u8 {
            VARINT => Raw::Varint(self.varint()?),
            FIXED64 => Raw::Fixed64(u64::from_le_bytes(
                self.take(8)?
                    .try_into()
                    .map_err(|_| ProtobufError::Malformed("fixed64"))?,
            )),
            LENGTH_DELIMITED => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| ProtobufError::Malformed("length out of range"))?;
                Raw::Bytes(self.take(len)?)
            }
            FIXED32 => {
                self.take(4)?;
                Raw::Fixed32
            }
            _ => return Err(ProtobufError::Malformed("unsupported wire type")),
        };
        Ok(Some((tag, raw)))
    }
}

/// The `runtime.Unknown` envelope.
pub struct Envelope<'a> {
    /// TypeMeta.apiVersion.
    pub api_version: String,
    /// TypeMeta.kind.
    pub kind: String,
    /// The object's message bytes.
    pub raw: &'a [u8],
}

fn text(bytes: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::Malformed("string is not UTF-8"))
}

impl<'a> Envelope<'a> {
    /// Parse `runtime.Unknown { typeMeta = 1 { apiVersion = 1, kind = 2 }, raw = 2 }`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ProtobufError> {
        let mut envelope = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
        };
        let mut reader = Reader { bytes };
        while let Some((tag, raw)) = reader.next()? {
            match (tag, raw) {
                (1, Raw::Bytes(type_meta)) => {
                    let mut meta = Reader { bytes: type_meta };
                    while let Some((field, value)) = meta.next()? {
                        match (field, value) {
                            (1, Raw::Bytes(v)) => envelope.api_version = text(v)?,
                            (2, Raw::Bytes(v)) => envelope.kind = text(v)?,
                            _ => {}
                        }
                    }
                }
                (2, Raw::Bytes(raw)) => envelope.raw = raw,
                _ => {}
            }
        }
        Ok(envelope)
    }
}

/// Decode a message into a JSON object (or the JSON form of the special types).
pub fn message(bytes: &[u8], schema: &'static Message) -> Result<Value, ProtobufError> {
    if let Some(special) = special(bytes, schema.name)? {
        return Ok(special);
    }
    let mut object = Map::new();
    let mut reader = Reader { bytes };
    while let Some((tag, raw)) = reader.next()? {
        let Some(field) = schema.fields.iter().find(|f| f.tag == tag) else {
            continue;
        };
        match (&field.ty, field.repeated) {
            (Ty::Map(key, value), _) => {
                let Raw::Bytes(entry) = raw else {
                    return Err(ProtobufError::Malformed(
                        "map entry is not length-delimited",
                    ));
                };
                let (k, v) = map_entry(entry, key, value)?;
                let map = object
                    .entry(field.json)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(k, v);
                }
            }
            (_, true) => {
                let values = repeated(raw, field)?;
                let array = object
                    .entry(field.json)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(array) = array {
                    array.extend(values);
                }
            }
            (ty, false) => {
                // Go marshals zero-valued non-pointer fields that its JSON encoding omits
                // (`omitempty`): an empty string or a zero time means "unset".
                let value = value(raw, ty)?;
                if !(value.is_null() || value.as_str() == Some("")) {
                    object.insert(field.json.to_owned(), value);
                }
            }
        }
    }
    Ok(Value::Object(object))
}

/// Repeated fields: one value, or a packed run of scalars.
fn repeated(raw: Raw<'_>, field: &Field) -> Result<Vec<Value>, ProtobufError> {
    let packed_scalar = matches!(field.ty, Ty::Bool | Ty::Int32 | Ty::Int64 | Ty::Double);
    match raw {
        Raw::Bytes(run) if packed_scalar => {
            let mut reader = Reader { bytes: run };
            let mut out = Vec::new();
            while !reader.bytes.is_empty() {
                let raw = if matches!(field.ty, Ty::Double) {
                    Raw::Fixed64(u64::from_le_bytes(
                        reader
                            .take(8)?
                            .try_into()
                            .map_err(|_| ProtobufError::Malformed("packed double"))?,
                    ))
                } else {
                    Raw::Varint(reader.varint()?)
                };
                out.push(value(raw, &field.ty)?);
            }
            Ok(out)
        }
        raw => Ok(vec![value(raw, &field.ty)?]),
    }
}

fn map_entry(entry: &[u8], key: &Ty, value_ty: &Ty) -> Result<(String, Value), ProtobufError> {
    let mut reader = Reader { bytes: entry };
    let mut k = String::new();
    let mut v = None;
    while let Some((tag, raw)) = reader.next()? {
        match tag {
            1 => {
                k = match value(raw, key)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                }
            }
            2 => v = Some(value(raw, value_ty)?),
            _ => {}
        }
    }
    let default = match value_ty {
        Ty::Message(name) => message(
            &[],
            super::message(name).ok_or(ProtobufError::Malformed("unknown map value type"))?,
        )?,
        _ => Value::String(String::new()),
    };
    Ok((k, v.unwrap_or(default)))
}

fn value(raw: Raw<'_>, ty: &Ty) -> Result<Value, ProtobufError> {
    Ok(match (ty, raw) {
        (Ty::String, Raw::Bytes(b)) => Value::String(text(b)?),
        (Ty::Bytes, Raw::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Ty::Bool, Raw::Varint(v)) => Value::Bool(v != 0),
        // int32 and int64 are two's complement in a 64-bit varint.
        (Ty::Int32, Raw::Varint(v)) => Value::from(v as i64 as i32),
        (Ty::Int64, Raw::Varint(v)) => Value::from(v as i64),
        (Ty::Double, Raw::Fixed64(v)) => {
            serde_json::Number::from_f64(f64::from_bits(v)).map_or(Value::Null, Value::Number)
        }
        (Ty::Message(name), Raw::Bytes(b)) => {
            let schema = super::message(name).ok_or(ProtobufError::Malformed(
                "reference to an unknown message type",
            ))?;
            message(b, schema)?
        }
        _ => {
            return Err(ProtobufError::Malformed(
                "wire type does not match the field type",
            ));
        }
    })
}

/// Fields of a small message, by number.
fn fields(bytes: &[u8]) -> Result<Vec<(u32, Raw<'_>)>, ProtobufError> {
    let mut reader = Reader { bytes };
    let mut out = Vec::new();
    while let Some(field) = reader.next()? {
        out.push(field);
    }
    Ok(out)
}

/// The JSON form of the types that do not serialize as objects.
fn special(bytes: &[u8], name: &str) -> Result<Option<Value>, ProtobufError> {
    let value = match name {
        "apimachinery/pkg/api/resource/Quantity" => {
            let mut s = String::new();
            for (tag, raw) in fields(bytes)? {
                if let (1, Raw::Bytes(b)) = (tag, raw) {
                    s = text(b)?;
                }
            }
            Value::String(s)
        }
        // `type ExtraValue []string`: a message of repeated `items` on the wire, a plain
        // list in JSON.
        "api/authentication/v1/ExtraValue" | "api/authorization/v1/ExtraValue" => {
            let mut items = Vec::new();
            for (tag, raw) in fields(bytes)? {
                if let (1, Raw::Bytes(b)) = (tag, raw) {
                    items.push(Value::String(text(b)?));
                }
            }
            Value::Array(items)
        }
        "apimachinery/pkg/util/intstr/IntOrString" => {
            let (mut kind, mut int, mut string) = (0, 0i64, String::new());
            for (tag, raw) in fields(bytes)? {
                match (tag, raw) {
                    (1, Raw::Varint(v)) => kind = v,
                    (2, Raw::Varint(v)) => int = i64::from(v as i64 as i32),
                    (3, Raw::Bytes(b)) => string = text(b)?,
                    _ => {}
                }
            }
            if kind == 1 {
                Value::String(string)
            } else {
                Value::from(int)
            }
        }
        "apimachinery/pkg/apis/meta/v1/Time" | "apimachinery/pkg/apis/meta/v1/MicroTime" => {
            let (mut seconds, mut nanos) = (0i64, 0i32);
            for (tag, raw) in fields(bytes)? {
                match (tag, raw) {
                    (1, Raw::Varint(v)) => seconds = v as i64,
                    (2, Raw::Varint(v)) => nanos = v as i64 as i32,
                    _ => {}
                }
            }
            // Go's zero time.Time (0001-01-01T00:00:00Z) is JSON null.
            if seconds == GO_ZERO_TIME_SECONDS && nanos == 0 {
                return Ok(Some(Value::Null));
            }
            let at = jiff::Timestamp::new(seconds, nanos)
                .map_err(|_| ProtobufError::Malformed("time out of range"))?;
            let format = if name.ends_with("MicroTime") {
                "%Y-%m-%dT%H:%M:%S.%6fZ"
            } else {
                "%Y-%m-%dT%H:%M:%SZ"
            };
            Value::String(at.strftime(format).to_string())
        }
        "apimachinery/pkg/apis/meta/v1/Duration" => {
            let mut nanos = 0i64;
            for (tag, raw) in fields(bytes)? {
                if let (1, Raw::Varint(v)) = (tag, raw) {
                    nanos = v as i64;
                }
            }
            Value::String(go_duration(nanos))
        }
        "apimachinery/pkg/runtime/RawExtension" | "apimachinery/pkg/apis/meta/v1/FieldsV1" => {
            let mut raw_json = Value::Null;
            for (tag, raw) in fields(bytes)? {
                if let (1, Raw::Bytes(b)) = (tag, raw) {
                    raw_json = serde_json::from_slice(b)
                        .map_err(|_| ProtobufError::Malformed("embedded raw object is not JSON"))?;
                }
            }
            raw_json
        }
        _ => return Ok(None),
    };
    Ok(Some(value))
}

/// Go's `time.Duration.String()` for whole seconds and sub-second remainders.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let total = nanos.unsigned_abs();
    let (hours, rest) = (total / 3_600_000_000_000, total % 3_600_000_000_000);
    let (minutes, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let seconds = rest as f64 / 1e9;
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}
