//! Pruning unknown fields and applying defaults.

use super::*;

#[test]
fn pruning() {
    let schema = compile(json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"typed": {"type": "object", "properties": {"a": {"type": "string"}}}}},
            "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}},
            "count": {"type": "integer"},
            "keep": {"type": "string", "nullable": true},
        }},
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    }}));
    let mut obj = json!({
        "apiVersion": "x.io/v1", "kind": "Thing", "metadata": {"name": "a", "extra": true},
        "spec": {
            "items": [{"name": "x", "bar": 1}],
            "free": {"anything": {"goes": 1}, "typed": {"a": "x", "b": "y"}},
            "map": {"k": {"v": "1", "w": "2"}},
            "count": null,
            "keep": null,
            "foo": 1,
        },
        "extra": 1,
    });
    let dropped = schema.prune(&mut obj);
    assert_eq!(
        dropped,
        [
            "extra",
            "metadata.extra",
            "spec.foo",
            "spec.free.typed.b",
            "spec.items[0].bar",
            "spec.map.k.w"
        ]
    );
    assert_eq!(
        obj,
        json!({
            "apiVersion": "x.io/v1", "kind": "Thing", "metadata": {"name": "a"},
            "spec": {
                "items": [{"name": "x"}],
                "free": {"anything": {"goes": 1}, "typed": {"a": "x"}},
                "map": {"k": {"v": "1"}},
                "keep": null,
            },
        })
    );
}

#[test]
fn defaulting() {
    let schema = compile(json!({"type": "object", "properties": {
        "spec": {"type": "object", "default": {}, "properties": {
            "replicas": {"type": "integer", "default": 1},
            "mode": {"type": "string", "nullable": true, "default": "auto"},
            "ports": {"type": "array", "items": {"type": "object", "properties": {"protocol": {"type": "string", "default": "TCP"}}}},
            "envs": {"type": "object", "additionalProperties": {"type": "object", "properties": {"value": {"type": "string", "default": "x"}}}},
            "nested": {"type": "object", "properties": {"deep": {"type": "string", "default": "d"}}},
        }},
    }}));
    let mut obj = json!({"apiVersion": "x.io/v1", "kind": "Thing", "metadata": {"name": "a"}});
    schema.apply_defaults(&mut obj);
    assert_eq!(obj["spec"], json!({"replicas": 1, "mode": "auto"}));
    let mut obj = object(
        json!({"replicas": null, "mode": null, "ports": [{}, {"protocol": "UDP"}], "envs": {"A": {}}}),
    );
    schema.apply_defaults(&mut obj);
    assert_eq!(
        obj["spec"],
        json!({"replicas": 1, "mode": null, "ports": [{"protocol": "TCP"}, {"protocol": "UDP"}], "envs": {"A": {"value": "x"}}})
    );
    assert_eq!(obj["metadata"], json!({"name": "a"}));
}
