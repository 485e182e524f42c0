//! x-kubernetes-validations: rules, messages, transition rules, compile errors, cost.

use super::*;

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
