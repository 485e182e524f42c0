//! Compiling schemas: what kube refuses, with its paths and messages.

use super::*;

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
