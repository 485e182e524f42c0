//! meta.k8s.io/v1 Table responses (what `kubectl get` prints), with the columns a real
//! cluster shows for each kind ([`printers`]); `-o wide` columns have priority 1.

mod custom;
mod printers;

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use super::request::Query;
use crate::resources::ResourceInfo;

/// True if the client asked for a Table (`Accept: application/json;as=Table;…`).
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(|accept| accept.split(',').next())
        .is_some_and(|first| first.contains("as=Table"))
}

/// Column definitions for `info`.
pub fn columns(info: &ResourceInfo) -> Value {
    if let Some(custom) = info.strategy.printer_columns() {
        return custom::columns(&custom);
    }
    let printer = printers::printer(info.group, info.kind);
    Value::Array(
        printer
            .columns
            .iter()
            .map(|(name, kind, priority)| {
                let format = if *name == "Name" { "name" } else { "" };
                json!({"name": name, "type": kind, "format": format, "description": "", "priority": priority})
            })
            .collect(),
    )
}

/// One row for `object`, embedding it as `includeObject` asks (default: metadata only).
pub fn row(info: &ResourceInfo, object: &Value, query: &Query) -> Value {
    let cells = match info.strategy.printer_columns() {
        Some(custom) => custom::cells(&custom, object),
        None => (printers::printer(info.group, info.kind).cells)(object),
    };
    let embedded = match query.get("includeObject") {
        Some("None") => Value::Null,
        Some("Object") => object.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
        }),
    };
    json!({"cells": cells, "object": embedded})
}

/// A whole Table.
pub fn table(info: &ResourceInfo, objects: &[Value], query: &Query, list_meta: Value) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns(info),
        "rows": objects.iter().map(|o| row(info, o, query)).collect::<Vec<_>>(),
    })
}

/// kube's short human duration since `timestamp` ("<unknown>" if unparsable).
pub fn age(timestamp: &str) -> String {
    let Ok(then) = timestamp.parse::<jiff::Timestamp>() else {
        return "<unknown>".to_owned();
    };
    let seconds = (jiff::Timestamp::now().as_second() - then.as_second()).max(0);
    human_duration(seconds)
}

/// kube's `HumanDuration`.
pub fn human_duration(seconds: i64) -> String {
    let minutes = seconds / 60;
    let hours = seconds / 3600;
    let days = hours / 24;
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => match s % 60 {
            0 => format!("{minutes}m"),
            r => format!("{minutes}m{r}s"),
        },
        _ if hours < 3 => format!("{minutes}m"),
        _ if hours < 8 => match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        },
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 24 * 8 => match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        },
        _ if hours < 24 * 365 * 2 => format!("{days}d"),
        _ if hours < 24 * 365 * 8 => match days % 365 {
            0 => format!("{}y", days / 365),
            d => format!("{}y{d}d", days / 365),
        },
        _ => format!("{}y", days / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(130), "2m10s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(human_duration(10 * 3600), "10h");
        assert_eq!(human_duration(3 * 86400), "3d");
    }
}
