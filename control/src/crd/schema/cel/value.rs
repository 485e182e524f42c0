//! Values as CEL rules see them: objects with declared properties as maps of escaped field
//! names, maps and preserved objects by their keys, `byte` strings as bytes.

use std::{collections::HashMap, sync::Arc};

use cel::{
    Value as CelValue,
    objects::{Key, Map as CelMap},
};
use serde_json::Value;

use crate::crd::schema::{
    formats::Format,
    node::{Additional, MAX_SCHEMA_DEPTH, Node},
    values,
};

/// kube's cel.Escape: how a property name is spelled in CEL, if it can be.
fn escape(name: &str) -> Option<String> {
    const RESERVED: [&str; 21] = [
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '_' if chars.peek() == Some(&'_') => {
                chars.next();
                out.push_str("__underscores__");
            }
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// `v` as CEL sees it at schema `s` (objects with properties: escaped field names;
/// `root` adds apiVersion, kind and metadata.name/generateName as kube does for resources).
pub(super) fn to_cel(v: &Value, s: Option<&Node>, root: bool, depth: usize) -> CelValue {
    if depth > MAX_SCHEMA_DEPTH + 32 {
        return CelValue::Null;
    }
    match values::kind(v) {
        values::Kind::Null => CelValue::Null,
        values::Kind::Bool(b) => CelValue::Bool(b),
        values::Kind::Int(i) => {
            if s.is_some_and(|s| s.ty == "number") {
                CelValue::Float(i as f64)
            } else {
                CelValue::Int(i)
            }
        }
        values::Kind::Float(f) => CelValue::Float(f),
        values::Kind::String(text) => match s.and_then(|s| s.format) {
            Some(Format::Byte) => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .unwrap_or_else(|_| text.as_bytes().to_vec());
                CelValue::Bytes(Arc::new(bytes))
            }
            _ => CelValue::String(Arc::new(text.to_owned())),
        },
        values::Kind::Array(items) => {
            let item = s.and_then(|s| s.items.as_deref());
            CelValue::List(Arc::new(
                items
                    .iter()
                    .map(|v| to_cel(v, item, item.is_some_and(|i| i.embedded), depth + 1))
                    .collect(),
            ))
        }
        values::Kind::Object(map) => {
            let mut out = HashMap::new();
            match s {
                Some(s) if !s.properties.is_empty() || root => {
                    for (k, v) in map {
                        let prop = s.properties.get(k);
                        if prop.is_none() {
                            if root && matches!(k.as_str(), "apiVersion" | "kind") {
                                out.insert(Key::from(k.clone()), to_cel(v, None, false, depth + 1));
                            } else if root && k == "metadata" {
                                let mut meta = HashMap::new();
                                for f in ["name", "generateName"] {
                                    if let Some(x) = v.get(f) {
                                        meta.insert(
                                            Key::from(f.to_owned()),
                                            to_cel(x, None, false, depth + 1),
                                        );
                                    }
                                }
                                out.insert(Key::from(k.clone()), CelValue::Map(CelMap::from(meta)));
                            }
                            continue;
                        }
                        if let Some(name) = escape(k) {
                            out.insert(
                                Key::from(name),
                                to_cel(v, prop, prop.is_some_and(|p| p.embedded), depth + 1),
                            );
                        }
                    }
                }
                _ => {
                    let value_schema = s.and_then(|s| match &s.additional {
                        Some(Additional::Schema(a)) => Some(&**a),
                        _ => None,
                    });
                    for (k, v) in map {
                        out.insert(
                            Key::from(k.clone()),
                            to_cel(
                                v,
                                value_schema,
                                value_schema.is_some_and(|a| a.embedded),
                                depth + 1,
                            ),
                        );
                    }
                }
            }
            CelValue::Map(CelMap::from(out))
        }
    }
}
