//! No input makes the engine panic or overflow its stack (a small fuzzer included).

use super::*;

/// No input makes the engine panic (a tiny fuzzer: random schemas and values).
#[test]
fn no_panics_on_odd_input() {
    // Deep schemas are refused, deep values are handled.
    let mut deep = json!({"type": "string"});
    for _ in 0..300 {
        deep = json!({"type": "object", "properties": {"a": deep}});
    }
    // Deserializing (not the engine) needs a large stack for such depths.
    let deep = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || props(deep))
        .unwrap()
        .join()
        .unwrap();
    let errors = Schema::compile(&deep, AT).unwrap_err();
    assert!(
        errors[0].detail.contains("must not be nested more than"),
        "{errors:#?}"
    );
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || drop(deep))
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn no_panics_on_deep_values() {
    let schema = compile(with_spec(
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    ));
    let mut value = json!(1);
    for _ in 0..100 {
        value = json!([{"a": value}]);
    }
    let mut obj = object(json!({"deep": value}));
    schema.prune(&mut obj);
    schema.apply_defaults(&mut obj);
    let _ = errors_of(&schema, &obj);
}

#[test]
fn no_panics_on_huge_numbers() {
    // Huge numbers and odd bounds.
    let schema = compile(with_spec(json!({"type": "object", "properties": {
        "i": {"type": "integer", "format": "int32", "minimum": -1e300, "maximum": 1e300, "multipleOf": 1e-300},
        "n": {"type": "number", "format": "float", "multipleOf": 0, "maximum": 1e308},
        "z": {"type": "integer", "multipleOf": -3},
    }})));
    for v in [
        json!(i64::MAX),
        json!(u64::MAX),
        json!(-1e308),
        json!(1e308),
        json!(i64::MIN),
    ] {
        let _ = errors_of(&schema, &object(json!({"i": v, "n": v, "z": v})));
    }
}

#[test]
fn no_panics_on_pathological_rules() {
    // Pathological rules.
    let deep_rule = format!("{}true{}", "(".repeat(5000), ")".repeat(5000));
    assert!(
        Schema::compile(
            &props(with_spec(
                json!({"type": "object", "x-kubernetes-validations": [{"rule": deep_rule}]})
            )),
            AT
        )
        .is_err()
    );
    assert!(
        Schema::compile(
            &props(with_spec(
                json!({"type": "string", "pattern": "a{1000}{1000}"})
            )),
            AT
        )
        .is_err()
    );

    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..300 {
        let schema = random_schema(&mut rng, 0);
        let Ok(props) = serde_json::from_value::<JSONSchemaProps>(
            json!({"type": "object", "properties": {"spec": schema}}),
        ) else {
            continue;
        };
        let Ok(schema) = Schema::compile(&props, AT) else {
            continue;
        };
        for _ in 0..5 {
            let mut obj = object(random_value(&mut rng, 0));
            let old = object(random_value(&mut rng, 0));
            schema.prune(&mut obj);
            schema.apply_defaults(&mut obj);
            let mut errors = ErrorList::new();
            schema.validate(&obj, Some(&old), &mut errors);
            for e in &errors {
                let _ = e.to_string();
            }
        }
    }
}

fn random_value(rng: &mut fastrand::Rng, depth: usize) -> Value {
    match rng.u8(0..if depth > 4 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.bool()),
        2 => json!(rng.i64(..)),
        3 => json!(rng.f64() * 1e6 - 5e5),
        4 => json!(["", "a", "TCP", "80", "x y", "2024-01-01", "é"][rng.usize(0..7)]),
        5 => json!(rng.i32(-3..300)),
        6 => Value::Array(
            (0..rng.usize(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "a",
                "b",
                "name",
                "port",
                "apiVersion",
                "kind",
                "metadata",
                "x",
            ];
            let mut map = serde_json::Map::new();
            for _ in 0..rng.usize(0..4) {
                map.insert(
                    keys[rng.usize(0..keys.len())].to_owned(),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(map)
        }
    }
}

fn random_schema(rng: &mut fastrand::Rng, depth: usize) -> Value {
    let types = [
        "object", "array", "string", "integer", "number", "boolean", "",
    ];
    let ty = types[rng.usize(0..if depth > 3 { 6 } else { 7 })];
    let ty = if depth > 3 && matches!(ty, "object" | "array") {
        "string"
    } else {
        ty
    };
    let mut s = serde_json::Map::new();
    if !ty.is_empty() {
        s.insert("type".into(), json!(ty));
    } else if rng.bool() {
        s.insert("x-kubernetes-int-or-string".into(), json!(true));
    } else {
        s.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
    }
    maybe(rng.u8(0..4) == 0, &mut s, "nullable", json!(true));
    maybe(rng.u8(0..4) == 0, &mut s, "minimum", json!(rng.i32(-5..5)));
    maybe(
        rng.u8(0..4) == 0,
        &mut s,
        "maximum",
        json!(rng.f64() * 100.0),
    );
    maybe(rng.u8(0..4) == 0, &mut s, "multipleOf", json!(rng.u8(0..4)));
    maybe(rng.u8(0..4) == 0, &mut s, "maxLength", json!(rng.u8(0..5)));
    maybe(
        rng.u8(0..4) == 0,
        &mut s,
        "pattern",
        json!(["^a", "[", "(x|y)+$", "\\d"][rng.usize(0..4)]),
    );
    maybe(
        rng.u8(0..4) == 0,
        &mut s,
        "format",
        json!(["uuid", "int32", "date", "byte", "float"][rng.usize(0..5)]),
    );
    maybe(rng.u8(0..4) == 0, &mut s, "enum", json!(["a", 1, null]));
    let rules = [
        "self == self",
        "size(self) > 1",
        "self.a > 1",
        "has(self.a)",
        "self == oldSelf",
    ];
    let rule = rules[rng.usize(0..rules.len())];
    maybe(
        rng.u8(0..4) == 0,
        &mut s,
        "x-kubernetes-validations",
        json!([{ "rule": rule }]),
    );
    match ty {
        "object" => {
            if rng.bool() {
                let mut p = serde_json::Map::new();
                for k in ["a", "name", "port"].iter().take(rng.usize(0..3)) {
                    p.insert((*k).into(), random_schema(rng, depth + 1));
                }
                s.insert("properties".into(), Value::Object(p));
                maybe(rng.u8(0..4) == 0, &mut s, "required", json!(["a"]));
                maybe(rng.u8(0..4) == 0, &mut s, "default", json!({}));
            } else {
                s.insert("additionalProperties".into(), random_schema(rng, depth + 1));
                maybe(
                    rng.u8(0..4) == 0,
                    &mut s,
                    "maxProperties",
                    json!(rng.u8(0..3)),
                );
            }
            maybe(
                rng.u8(0..4) == 0,
                &mut s,
                "x-kubernetes-embedded-resource",
                json!(true),
            );
        }
        "array" => {
            s.insert("items".into(), random_schema(rng, depth + 1));
            maybe(rng.u8(0..4) == 0, &mut s, "maxItems", json!(rng.u8(0..3)));
            maybe(
                rng.u8(0..4) == 0,
                &mut s,
                "x-kubernetes-list-type",
                json!(["set", "atomic", "map"][rng.usize(0..3)]),
            );
        }
        _ => {}
    }
    Value::Object(s)
}

fn maybe(hit: bool, s: &mut serde_json::Map<String, Value>, k: &str, v: Value) {
    if hit {
        s.insert(k.into(), v);
    }
}

#[test]
fn schemas_are_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Schema>();
}
