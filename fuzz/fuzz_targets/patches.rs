//! Patches applied to a stored object: JSON merge patch, JSON patch, strategic merge patch
//! (driven by the kind's schema) and server-side apply, then the result prepared as an
//! update, as a PATCH request does. Input: a byte picking the patch type, a byte picking
//! the kind, then the current object and the patch separated by a NUL byte (which JSON
//! text cannot contain).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use skiff_control::{patch, resources::REGISTRY};

const TYPES: &[&str] = &[patch::MERGE, patch::JSON, patch::STRATEGIC, patch::APPLY];

fuzz_target!(|data: &[u8]| {
    let [kind_pick, info_pick, rest @ ..] = data else {
        return;
    };
    let content_type = TYPES[usize::from(*kind_pick) % TYPES.len()];
    let Some(info) = REGISTRY.get(usize::from(*info_pick) % REGISTRY.len()) else {
        return;
    };
    let Some(split) = rest.iter().position(|b| *b == 0) else {
        return;
    };
    let (current, body) = (&rest[..split], &rest[split + 1..]);
    let Ok(mut current) = serde_json::from_slice::<Value>(current) else {
        return;
    };
    let api_version = info.api_version();
    if let Value::Object(map) = &mut current {
        map.insert("apiVersion".into(), Value::String(api_version.clone()));
        map.insert("kind".into(), Value::String(info.kind.to_owned()));
    }
    let patched = if content_type == patch::APPLY {
        let Ok(mut config) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        if let Value::Object(map) = &mut config {
            map.insert("apiVersion".into(), Value::String(api_version.clone()));
            map.insert("kind".into(), Value::String(info.kind.to_owned()));
        }
        let live = current.is_object().then_some(&current);
        patch::apply::apply(live, &config, "fuzz", false, "2026-01-01T00:00:00Z")
    } else {
        patch::apply(content_type, &current, body, &api_version, info.kind)
    };
    if let Ok(patched) = patched {
        let _ = info.strategy.prepare(&patched, Some(&current));
    }
});
