//! Validating custom resources: types, formats, bounds, enums, junctors, list types,
//! embedded resources, root metadata, ratcheting.

use super::*;

#[test]
fn types() {
    let s = json!({"type": "object", "properties": {
        "replicas": {"type": "integer"},
        "ratio": {"type": "number"},
        "on": {"type": "boolean"},
        "name": {"type": "string"},
        "list": {"type": "array", "items": {"type": "string"}},
        "obj": {"type": "object"},
    }});
    check(
        s.clone(),
        json!({"replicas": "3", "ratio": 1, "on": "yes", "name": 5, "list": {}, "obj": []}),
        &[
            "spec.list: Invalid value: \"object\": spec.list in body must be of type array: \"object\"",
            "spec.name: Invalid value: \"integer\": spec.name in body must be of type string: \"integer\"",
            "spec.obj: Invalid value: \"array\": spec.obj in body must be of type object: \"array\"",
            "spec.on: Invalid value: \"string\": spec.on in body must be of type boolean: \"string\"",
            "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
        ],
    );
    // An integral float is an integer; a fraction is not; an int is a number.
    check(s.clone(), json!({"replicas": 3.0, "ratio": 2}), &[]);
    check(
        s,
        json!({"replicas": 1.5}),
        &[
            "spec.replicas: Invalid value: \"number\": spec.replicas in body must be of type integer: \"number\"",
            // kube-openapi also range-checks the number as an int64.
            "<nil>: Invalid value: \"\": Checked value must be of type integer (default format) in spec.replicas",
        ],
    );
    let schema = compile(with_spec(
        json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
    ));
    let mut errors = ErrorList::new();
    schema.validate(&object(json!({"n": "x"})), None, &mut errors);
    assert_eq!(errors[0].kind.reason(), "FieldValueTypeInvalid");
}

#[test]
fn required_nullable_and_enum() {
    let s = json!({"type": "object", "required": ["size"], "properties": {
        "size": {"type": "string", "enum": ["small", "large"]},
        "count": {"type": "integer", "enum": [1, 2]},
        "items": {"type": "array", "items": {"type": "string"}},
        "maybe": {"type": "string", "nullable": true},
    }});
    check(s.clone(), json!({}), &["spec.size: Required value"]);
    check(
        s.clone(),
        json!({"size": "medium", "count": 3}),
        &[
            "spec.count: Unsupported value: 3: supported values: \"1\", \"2\"",
            "spec.size: Unsupported value: \"medium\": supported values: \"small\", \"large\"",
        ],
    );
    check(
        s.clone(),
        json!({"size": "small", "count": 2.0, "maybe": null}),
        &[],
    );
    check(
        s,
        json!({"size": "small", "items": ["a", null]}),
        &[
            "spec.items[1]: Invalid value: \"null\": spec.items[1] in body must be of type string: \"null\"",
        ],
    );
    // A missing root field.
    let schema = compile(
        json!({"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object"}}}),
    );
    assert_eq!(
        errors_of(&schema, &json!({"apiVersion": "x.io/v1", "kind": "Thing"})),
        ["spec: Required value"]
    );
}

#[test]
fn numbers() {
    let s = json!({"type": "object", "properties": {
        "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
        "port": {"type": "integer", "minimum": 0, "exclusiveMinimum": true, "maximum": 65536, "exclusiveMaximum": true},
        "step": {"type": "integer", "multipleOf": 5},
        "ratio": {"type": "number", "maximum": 1.5, "multipleOf": 0.5},
        "small": {"type": "integer", "format": "int32"},
    }});
    check(
        s.clone(),
        json!({"replicas": 10, "port": 1, "step": 15, "ratio": 1.0, "small": 7}),
        &[],
    );
    check(
        s,
        json!({"replicas": 11, "port": 0, "step": 7, "ratio": 1.75, "small": 3_000_000_000i64}),
        &[
            "spec.port: Invalid value: 0: spec.port in body should be greater than 0",
            "spec.ratio: Invalid value: 1.75: spec.ratio in body should be a multiple of 0.5",
            "spec.ratio: Invalid value: 1.75: spec.ratio in body should be less than or equal to 1.5",
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
            "<nil>: Invalid value: \"\": Checked value must be of type integer with format int32 in spec.small",
            "spec.step: Invalid value: 7: spec.step in body should be a multiple of 5",
        ],
    );
}

#[test]
fn strings_and_formats() {
    let s = json!({"type": "object", "properties": {
        "name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
        "id": {"type": "string", "format": "uuid"},
        "when": {"type": "string", "format": "date-time"},
        "size": {"type": "string", "format": "quantity"},
    }});
    check(
        s.clone(),
        json!({"name": "abc", "id": "123e4567-e89b-12d3-a456-426614174000", "when": "2024-01-02T03:04:05Z", "size": "nonsense"}),
        &[],
    );
    check(
        s.clone(),
        json!({"name": "abcdef"}),
        &["spec.name: Too long: may not be more than 5 bytes"],
    );
    check(
        s.clone(),
        json!({"name": "a"}),
        &["spec.name: Invalid value: \"a\": spec.name in body should be at least 2 chars long"],
    );
    check(
        s,
        json!({"name": "ABC", "id": "nope", "when": "yesterday"}),
        &[
            "spec.id: Invalid value: \"nope\": spec.id in body must be of type uuid: \"nope\"",
            "spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'",
            "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
        ],
    );
}

#[test]
fn arrays_and_maps() {
    let s = json!({"type": "object", "properties": {
        "items": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "labels": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}},
        "few": {"type": "object", "minProperties": 2, "additionalProperties": {"type": "integer"}},
    }});
    check(
        s.clone(),
        json!({"items": [{"name": 1}, {}, {}], "labels": {"a": "x", "foo": 5}, "few": {"a": 1}}),
        &[
            "spec.few: Invalid value: 1: spec.few in body should have at least 2 properties",
            "spec.items[0].name: Invalid value: \"integer\": spec.items[0].name in body must be of type string: \"integer\"",
            "spec.items: Too many: 3: must have at most 2 items",
            "spec.labels: Too many: 2: must have at most 1 item",
            "spec.labels.foo: Invalid value: \"integer\": spec.labels.foo in body must be of type string: \"integer\"",
        ],
    );
    check(
        s,
        json!({"items": []}),
        &["spec.items: Invalid value: 0: spec.items in body should have at least 1 items"],
    );
    let schema = compile(with_spec(
        json!({"type": "object", "properties": {"n": {"type": "integer", "maxLength": 1}}}),
    ));
    let mut errors = ErrorList::new();
    schema.validate(&object(json!({"l": [1, 2, 3]})), None, &mut errors);
    assert!(errors.is_empty());
}

#[test]
fn int_or_string() {
    let s = json!({"type": "object", "properties": {
        "port": {"x-kubernetes-int-or-string": true},
        "strict": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": "^[0-9]+%?$"},
    }});
    check(s.clone(), json!({"port": 80, "strict": "50%"}), &[]);
    check(s.clone(), json!({"port": "http", "strict": 3}), &[]);
    check(
        s,
        json!({"port": true, "strict": "x"}),
        &[
            "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
            "spec.strict: Invalid value: \"x\": spec.strict in body should match '^[0-9]+%?$'",
        ],
    );
}

#[test]
fn junctors_report_at_nil() {
    let s = json!({"type": "object", "properties": {
        "a": {"type": "string", "anyOf": [{"pattern": "^x"}, {"pattern": "^y"}]},
        "b": {"type": "string", "oneOf": [{"maxLength": 3}, {"minLength": 2}]},
        "c": {"type": "string", "not": {"enum": ["bad"]}},
        "d": {"type": "string", "allOf": [{"maxLength": 1}]},
    }});
    check(
        s.clone(),
        json!({"a": "xa", "b": "abcd", "c": "ok", "d": "z"}),
        &[],
    );
    let schema = compile(with_spec(s));
    let got = errors_of(
        &schema,
        &object(json!({"a": "z", "b": "ab", "c": "bad", "d": "zz"})),
    );
    for want in [
        "<nil>: Invalid value: \"\": \"spec.a\" must validate at least one schema (anyOf)",
        "spec.a: Invalid value: \"z\": spec.a in body should match '^x'",
        "<nil>: Invalid value: \"\": \"spec.b\" must validate one and only one schema (oneOf). Found 2 valid alternatives",
        "<nil>: Invalid value: \"\": \"spec.c\" must not validate the schema (not)",
        "spec.d: Too long: may not be more than 1 byte",
        "<nil>: Invalid value: \"\": \"spec.d\" must validate all the schemas (allOf). None validated",
    ] {
        assert!(
            got.iter().any(|g| g == want),
            "missing {want:?} in {got:#?}"
        );
    }
}

#[test]
fn list_types() {
    let s = json!({"type": "object", "properties": {
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name", "protocol"],
            "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "protocol": {"type": "string", "default": "TCP"}, "port": {"type": "integer"}}}},
        "plain": {"type": "array", "items": {"type": "string"}},
    }});
    check(
        s.clone(),
        json!({"tags": ["a", "b"], "ports": [{"name": "http", "protocol": "TCP"}, {"name": "http", "protocol": "UDP"}], "plain": ["a", "a"]}),
        &[],
    );
    check(
        s,
        json!({"tags": ["a", "b", "a", "a"], "ports": [{"name": "http", "protocol": "TCP", "port": 1}, {"name": "http", "protocol": "TCP", "port": 2}]}),
        &[
            "spec.ports[1]: Duplicate value: {\"name\":\"http\",\"protocol\":\"TCP\"}",
            "spec.tags[2]: Duplicate value: \"a\"",
        ],
    );
}

#[test]
fn embedded_resources() {
    let s = json!({"type": "object", "properties": {
        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
    }});
    check(
        s.clone(),
        json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}}}),
        &[],
    );
    check(
        s.clone(),
        json!({"template": {"metadata": {"name": "a/b", "labels": {"bad key!": "x"}}}}),
        &[
            "spec.template.apiVersion: Required value",
            "spec.template.kind: Required value",
            "spec.template.metadata.name: Invalid value: \"a/b\": may not contain '/'",
            "spec.template.metadata.labels: Invalid value: \"bad key!\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ],
    );
    check(
        s.clone(),
        json!({"template": {"apiVersion": "a/b/c", "kind": "Not_A_Kind"}}),
        &[
            "spec.template.apiVersion: Invalid value: \"a/b/c\": unexpected GroupVersion string: a/b/c",
            "spec.template.kind: Invalid value: \"Not_A_Kind\": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        ],
    );
    // Pruning keeps apiVersion/kind/metadata of embedded resources, drops unknown metadata.
    let schema = compile(with_spec(json!({"type": "object", "properties": {
        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
    }})));
    let mut obj = object(
        json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1}, "spec": {}, "status": {}}}),
    );
    let dropped = schema.prune(&mut obj);
    assert_eq!(
        dropped,
        ["spec.template.metadata.bogus", "spec.template.status"]
    );
    assert_eq!(
        obj["spec"]["template"],
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}})
    );
}

#[test]
fn root_metadata() {
    let schema = compile(json!({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5}}},
    }}));
    let obj = json!({"apiVersion": "x.io/v1", "kind": "Thing", "metadata": {"name": "toolong"}});
    assert_eq!(
        errors_of(&schema, &obj),
        ["metadata.name: Too long: may not be more than 5 bytes"]
    );
    assert_eq!(
        compile_errors(json!({"type": "object", "properties": {
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
        }})),
        [format!(
            "{AT}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
        )]
    );
    assert_eq!(
        compile_errors(json!({"type": "object", "properties": {
            "metadata": {"type": "object", "default": {"name": "x"}},
        }})),
        [format!(
            "{AT}.properties[metadata].default: Forbidden: must not be set in top-level metadata"
        )]
    );
}

#[test]
fn updates_ratchet_unchanged_values() {
    let schema = compile(with_spec(json!({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 3},
        "other": {"type": "string", "maxLength": 3},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {
            "type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "port": {"type": "integer", "maximum": 100}}}},
        "count": {"type": "integer", "x-kubernetes-validations": [{"rule": "self < 10"}]},
    }})));
    // Stored before the schema got stricter.
    let old =
        object(json!({"name": "toolong", "ports": [{"name": "a", "port": 1000}], "count": 50}));
    let mut errors = ErrorList::new();
    let new = object(
        json!({"name": "toolong", "other": "x", "ports": [{"name": "b", "port": 1}, {"name": "a", "port": 1000}], "count": 50}),
    );
    schema.validate(&new, Some(&old), &mut errors);
    assert_same(strings(&errors), &[]);
    // Changed values are validated.
    let new =
        object(json!({"name": "toolong2", "ports": [{"name": "a", "port": 1001}], "count": 51}));
    let mut errors = ErrorList::new();
    schema.validate(&new, Some(&old), &mut errors);
    assert_same(
        strings(&errors),
        &[
            "spec.name: Too long: may not be more than 3 bytes",
            "spec.ports[0].port: Invalid value: 1001: spec.ports[0].port in body should be less than or equal to 100",
            "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ],
    );
    let new =
        object(json!({"name": "toolong", "ports": [{"name": "a", "port": 1000}], "count": 51}));
    let mut errors = ErrorList::new();
    schema.validate(&new, Some(&old), &mut errors);
    assert_same(
        strings(&errors),
        &["spec.count: Invalid value: \"integer\": failed rule: self < 10"],
    );
}
