//! The engine end to end: CRD schemas and custom resources in JSON, kube's field paths and
//! messages out.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use serde_json::{Value, json};

use super::{CompileOptions, Schema};
use crate::model::validation::ErrorList;

const AT: &str = "spec.versions[0].schema.openAPIV3Schema";

fn props(schema: Value) -> JSONSchemaProps {
    serde_json::from_value(schema).expect("schema JSON")
}

fn compile(schema: Value) -> Schema {
    match Schema::compile(&props(schema), AT) {
        Ok(s) => s,
        Err(errors) => panic!("compile errors: {:#?}", strings(&errors)),
    }
}

fn compile_errors(schema: Value) -> Vec<String> {
    match Schema::compile(&props(schema), AT) {
        Ok(_) => Vec::new(),
        Err(errors) => strings(&errors),
    }
}

fn strings(errors: &ErrorList) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

/// A resource root with `spec` as given.
fn with_spec(spec: Value) -> Value {
    json!({"type": "object", "properties": {"spec": spec}})
}

fn object(spec: Value) -> Value {
    json!({"apiVersion": "x.io/v1", "kind": "Thing", "metadata": {"name": "a"}, "spec": spec})
}

fn errors_of(schema: &Schema, obj: &Value) -> Vec<String> {
    let mut errors = ErrorList::new();
    schema.validate(obj, None, &mut errors);
    strings(&errors)
}

/// Validate `spec` with `spec_schema`: the errors, in any order (kube's order follows Go's
/// map iteration, which is random).
fn check(spec_schema: Value, spec: Value, want: &[&str]) {
    let schema = compile(with_spec(spec_schema));
    assert_same(errors_of(&schema, &object(spec)), want);
}

fn assert_same(mut got: Vec<String>, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

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
fn not_structural() {
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            with_spec(json!({"type": "object", "properties": {"a": {}}})),
            vec![format!(
                "{AT}.properties[spec].properties[a].type: Required value: must not be empty for specified object fields"
            )],
        ),
        (
            with_spec(json!({"type": "array"})),
            vec![format!(
                "{AT}.properties[spec].items: Required value: must be specified"
            )],
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            vec![format!(
                "{AT}.additionalProperties: Forbidden: must not be used at the root"
            )],
        ),
        (
            json!({"type": "string"}),
            vec![format!(
                "{AT}.type: Invalid value: \"string\": must be object at the root"
            )],
        ),
        (
            with_spec(
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "anyOf": [{"properties": {"b": {"type": "string"}}}]}),
            ),
            vec![format!(
                "{AT}.properties[spec].anyOf[0].properties[b].type: Forbidden: must be empty to be structural"
            )],
        ),
        (
            json!({"type": "object", "anyOf": [{"properties": {"b": {}}}]}),
            vec![format!(
                "{AT}.properties[b]: Required value: because it is defined in {AT}.anyOf[0].properties[b]"
            )],
        ),
        (
            with_spec(json!({"type": "string", "pattern": "(abc"})),
            vec![format!(
                "{AT}.properties[spec].pattern: Invalid value: \"(abc\": must be a valid regular expression, but isn't: error parsing regexp: unclosed group: `(abc`"
            )],
        ),
        (
            with_spec(json!({"type": "array", "uniqueItems": true, "items": {"type": "string"}})),
            vec![format!(
                "{AT}.properties[spec].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
            )],
        ),
        (
            with_spec(
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}),
            ),
            vec![format!(
                "{AT}.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
            )],
        ),
        (
            with_spec(json!({"type": "null"})),
            vec![format!(
                "{AT}.properties[spec].type: Forbidden: type cannot be set to null, use nullable as an alternative"
            )],
        ),
        (
            with_spec(json!({"type": "object", "x-kubernetes-embedded-resource": true})),
            vec![format!(
                "{AT}.properties[spec].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"
            )],
        ),
        (
            with_spec(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": false})),
            vec![format!(
                "{AT}.properties[spec].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"
            )],
        ),
        (
            with_spec(
                json!({"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object", "properties": {"k": {"type": "string"}}}}),
            ),
            vec![format!(
                "{AT}.properties[spec].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
            )],
        ),
        (
            with_spec(
                json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"], "items": {"type": "object", "properties": {"k": {"type": "string"}}}}),
            ),
            vec![format!(
                "{AT}.properties[spec].items.properties[k].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
            )],
        ),
        (
            with_spec(
                json!({"type": "array", "x-kubernetes-list-type": "bag", "items": {"type": "string"}}),
            ),
            vec![format!(
                "{AT}.properties[spec].x-kubernetes-list-type: Unsupported value: \"bag\": supported values: \"atomic\", \"set\", \"map\""
            )],
        ),
        (
            with_spec(
                json!({"type": "object", "properties": {"n": {"type": "integer", "default": "one"}}}),
            ),
            vec![format!(
                "{AT}.properties[spec].properties[n].default: Invalid value: \"string\":  in body must be of type integer: \"string\""
            )],
        ),
        (
            with_spec(
                json!({"type": "object", "default": {"x": 1}, "properties": {"n": {"type": "integer"}}}),
            ),
            vec![format!(
                "{AT}.properties[spec].default: Invalid value: {{\"x\":1}}: must not have unknown fields"
            )],
        ),
    ];
    for (schema, want) in cases {
        assert_eq!(compile_errors(schema.clone()), want, "schema {schema}");
    }
    let nullable_root =
        Schema::compile(&props(json!({"type": "object", "nullable": true})), AT).unwrap_err();
    assert_eq!(
        strings(&nullable_root),
        [format!(
            "{AT}.nullable: Forbidden: nullable cannot be true at the root"
        )]
    );
}

#[test]
fn status_subresource_root() {
    let options = CompileOptions {
        status_subresource: true,
    };
    let ok = props(
        json!({"type": "object", "description": "d", "required": ["spec"], "properties": {"spec": {"type": "object"}}}),
    );
    assert!(Schema::compile_with(&ok, AT, options).is_ok());
    let bad = props(
        json!({"type": "object", "minProperties": 1, "properties": {"spec": {"type": "object"}}}),
    );
    let errors = Schema::compile_with(&bad, AT, options).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, AT);
    assert!(
        errors[0]
            .detail
            .starts_with("only [Description Type Format"),
        "{}",
        errors[0]
    );
    assert!(Schema::compile(&bad, AT).is_ok());
}

#[test]
fn cel_rules() {
    let schema = compile(json!({
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('a')", "message": "name must start with a"}],
        "properties": {"spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.minReplicas <= self.replicas"},
                {"rule": "self.replicas <= 100", "message": "too many", "fieldPath": ".replicas"},
                {"rule": "!has(self.mode) || self.mode != 'off'", "messageExpression": "'mode ' + self.mode + ' is not allowed'", "reason": "FieldValueForbidden"},
            ],
            "properties": {
                "replicas": {"type": "integer"},
                "minReplicas": {"type": "integer"},
                "mode": {"type": "string"},
                "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self.lowerAscii() == self"}]},
                "tags": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "size(self) < 5"}]}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}, "x-kubernetes-validations": [{"rule": "self.all(k, k != 'bad')"}]},
            },
        }},
    }));
    let ok = object(
        json!({"replicas": 3, "minReplicas": 1, "name": "x", "tags": ["a"], "labels": {"good": "x"}}),
    );
    assert_eq!(errors_of(&schema, &ok), Vec::<String>::new());
    let bad = json!({"apiVersion": "x.io/v1", "kind": "Thing", "metadata": {"name": "zed"}, "spec": {
        "replicas": 300, "minReplicas": 301, "mode": "off", "name": "X", "tags": ["toolong"], "labels": {"bad": "x"},
    }});
    assert_same(
        errors_of(&schema, &bad),
        &[
            "<nil>: Invalid value: \"object\": name must start with a",
            "spec: Invalid value: \"object\": failed rule: self.minReplicas <= self.replicas",
            "spec.replicas: Invalid value: \"object\": too many",
            "spec: Forbidden: mode off is not allowed",
            "spec.labels: Invalid value: \"object\": failed rule: self.all(k, k != 'bad')",
            "spec.name: Invalid value: \"string\": failed rule: self.lowerAscii() == self",
            "spec.tags[0]: Invalid value: \"string\": failed rule: size(self) < 5",
        ],
    );
    // A rule naming an absent field fails when evaluated.
    let obj = object(json!({"replicas": 3}));
    let got = errors_of(&schema, &obj);
    assert!(
        got.iter().any(|e| e.starts_with(
            "spec: Invalid value: \"object\": no such key: minReplicas evaluating rule"
        )),
        "{got:#?}"
    );
}

#[test]
fn cel_transition_rules() {
    let schema = compile(with_spec(json!({
        "type": "object",
        "properties": {
            "immutable": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]},
            "grow": {"type": "integer", "x-kubernetes-validations": [{"rule": "!oldSelf.hasValue() || self >= oldSelf.value()", "optionalOldSelf": true, "message": "may only grow"}]},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {
                "type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"},
                    "port": {"type": "integer", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "port is immutable"}]},
                }}},
        },
    })));
    let old = object(json!({"immutable": "a", "grow": 5, "ports": [{"name": "http", "port": 80}]}));
    let new = object(
        json!({"immutable": "b", "grow": 4, "ports": [{"name": "web", "port": 1}, {"name": "http", "port": 81}]}),
    );
    let mut errors = ErrorList::new();
    schema.validate(&new, Some(&old), &mut errors);
    assert_same(
        strings(&errors),
        &[
            "spec.grow: Invalid value: \"integer\": may only grow",
            "spec.immutable: Invalid value: \"string\": is immutable",
            "spec.ports[1].port: Invalid value: \"integer\": port is immutable",
        ],
    );
    // On create, transition rules do not run (optionalOldSelf ones do, with no value).
    assert_eq!(errors_of(&schema, &new), Vec::<String>::new());
    // oldSelf inside a list that cannot be correlated is refused.
    let errs = compile_errors(with_spec(
        json!({"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}),
    ));
    assert_eq!(
        errs,
        [format!(
            "{AT}.properties[spec].items.x-kubernetes-validations[0].rule: Invalid value: \"self == oldSelf\": oldSelf cannot be used on the uncorrelatable portion of the schema within {AT}.properties[spec]"
        )]
    );
}

#[test]
fn cel_compile_errors() {
    let errs = compile_errors(with_spec(
        json!({"type": "object", "x-kubernetes-validations": [
        {"rule": "self.a >"},
        {"rule": ""},
        {"rule": "true", "reason": "Nope"},
        {"rule": "true", "fieldPath": ".missing"},
        {"rule": "true", "optionalOldSelf": true},
    ], "properties": {"a": {"type": "integer"}}}),
    ));
    let at = format!("{AT}.properties[spec].x-kubernetes-validations");
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(
        errs.contains(&format!(
            "{at}[1].rule: Required value: rule is not specified"
        )),
        "{errs:#?}"
    );
    assert!(errs.contains(&format!("{at}[2].reason: Unsupported value: \"Nope\": supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\"")), "{errs:#?}");
    assert!(
        errs.contains(&format!(
            "{at}[3].fieldPath: Invalid value: \".missing\": fieldPath must be a valid path"
        )),
        "{errs:#?}"
    );
    assert!(errs.iter().any(|e| e.starts_with(&format!("{at}[0].rule: Invalid value: {{\"rule\":\"self.a >\"}}: compilation failed: ERROR: <input>:1:"))), "{errs:#?}");
    assert!(errs.contains(&format!("{at}[4].optionalOldSelf: Invalid value: true: may not be set if oldSelf is not used in rule")), "{errs:#?}");
}

#[test]
fn cel_skipped_when_object_is_invalid() {
    let schema = compile(with_spec(
        json!({"type": "object", "x-kubernetes-validations": [{"rule": "false"}], "properties": {"n": {"type": "integer"}}}),
    ));
    assert_eq!(
        errors_of(&schema, &object(json!({"n": "x"}))),
        [
            "spec.n: Invalid value: \"string\": spec.n in body must be of type integer: \"string\"",
            "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ]
    );
}

#[test]
fn cel_cost_is_bounded() {
    let schema = compile(with_spec(json!({"type": "object", "properties": {"l": {
        "type": "array", "items": {"type": "integer"},
        "x-kubernetes-validations": [{"rule": "self.all(a, self.all(b, self.all(c, a + b + c >= 0)))"}],
    }}})));
    let small = object(json!({"l": [1, 2, 3]}));
    assert_eq!(errors_of(&schema, &small), Vec::<String>::new());
    let big = object(json!({"l": (0..2000).collect::<Vec<i32>>()}));
    let got = errors_of(&schema, &big);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].contains("call cost exceeds limit for rule"),
        "{got:#?}"
    );
}

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

#[test]
fn cel_library() {
    let rules = [
        "self.l.isSorted() && !self.u.isSorted()",
        "self.l.sum() == 6 && self.l.min() == 1 && self.l.max() == 3",
        "self.l.indexOf(2) == 1 && self.l.lastIndexOf(9) == -1",
        "self.s.lowerAscii() == 'abc' && self.s.upperAscii() == 'ABC' && self.s.indexOf('B') == 1",
        "self.s.replace('B', 'x') == 'axc' && self.s.substring(1) == 'Bc' && self.s.split('B') == ['a', 'c']",
        "self.s.matches('^a') && self.s.startsWith('a') && self.s.contains('B') && size(self.s) == 3",
        "self.l.all(x, x > 0) && self.l.exists(x, x == 2) && self.l.exists_one(x, x == 3)",
        "self.l.map(x, x * 2) == [2, 4, 6] && self.l.filter(x, x > 1) == [2, 3]",
        "has(self.s) && !has(self.missing) && 'k' in self.m && self.m.k == 'v'",
        "self.s.charAt(0) == 'a' && ' x '.trim() == 'x' && int('7') == 7 && string(1) == '1'",
    ];
    let validations: Vec<Value> = rules.iter().map(|r| json!({"rule": r})).collect();
    let schema = compile(with_spec(json!({
        "type": "object",
        "x-kubernetes-validations": validations,
        "properties": {
            "l": {"type": "array", "items": {"type": "integer"}},
            "u": {"type": "array", "items": {"type": "integer"}},
            "s": {"type": "string"},
            "missing": {"type": "string"},
            "m": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    })));
    let obj = object(json!({"l": [1, 2, 3], "u": [2, 1], "s": "aBc", "m": {"k": "v"}}));
    assert_same(errors_of(&schema, &obj), &[]);
    // Strings cannot grow without bound.
    let schema = compile(with_spec(
        json!({"type": "object", "properties": {"s": {"type": "string",
        "x-kubernetes-validations": [{"rule": "self.replace('', self).replace('', self).replace('', self).size() > 0"}]}}}),
    ));
    let got = errors_of(&schema, &object(json!({"s": "x".repeat(200)})));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].contains("result exceeds the size limit"), "{got:#?}");
}
