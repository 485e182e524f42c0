//! `x-kubernetes-validations`: CEL rules compiled once with the schema and evaluated with
//! `self` (and `oldSelf` for transition rules) bound to the value at their node, with
//! apiextensions-apiserver's checks and messages.
//!
//! The CEL engine is the `cel` crate (cel-rust). It parses (with a recursion limit) but does
//! not type-check, so a rule naming a field the schema lacks fails when evaluated rather than
//! when the CRD is created; it has no cost accounting, so the cost of each evaluation is
//! estimated up front from the rule's size, its comprehension nesting and the size of the
//! values it sees, and charged against kube's per-call limit and per-object budget. The
//! string functions are Skiff's (kube's `ext.Strings` subset, with bounded results): the
//! crate's own `replace` could grow strings without bound.

use std::sync::{Arc, LazyLock};

use cel::{
    Context, Env, ExecutionError, Program, Value as CelValue,
    common::{
        ast::{EntryExpr, Expr, IdedExpr},
        types::{CelInt, CelList, CelString},
        value::Val,
    },
    objects::{Key, Map as CelMap, OptionalValue},
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, ValidationRule,
};
use serde_json::Value;

use super::{
    formats::Format,
    node::{Additional, MAX_SCHEMA_DEPTH, Node},
    path,
    values::{self, bad_str},
};
use crate::model::validation::{ErrorKind, ErrorList, FieldError};

/// kube's per-evaluation cost limit (celconfig.PerCallLimit).
const PER_CALL_LIMIT: u64 = 1_000_000;
/// kube's cost budget for all the rules of one object (celconfig.RuntimeCELCostBudget).
const RUNTIME_BUDGET: u64 = 10_000_000;
/// The longest rule or messageExpression accepted (Skiff's bound).
const MAX_EXPRESSION_LEN: usize = 4096;
/// The deepest nesting of brackets accepted in an expression (Skiff's bound: the crate's
/// parser recurses deeply per level).
const MAX_BRACKET_DEPTH: usize = 32;
/// The parser's recursion limit (cel-go's default is 250).
const MAX_PARSE_DEPTH: u16 = 64;
/// The deepest expression tree accepted (evaluation recurses over it).
const MAX_AST_DEPTH: usize = 100;
/// The stack CEL is parsed and evaluated on: the crate's parser and interpreter recurse,
/// with large frames in debug builds; tokio's worker threads have 2 MiB.
const CEL_STACK: usize = 64 << 20;
/// kube's limit on an evaluated messageExpression (celconfig).
const MAX_MESSAGE_LEN: usize = 5 * 1024;
/// The longest string a CEL string function may produce.
const MAX_STRING_RESULT: usize = 1 << 20;
/// Values heavier than this (items, members and string size) are not given to CEL.
const MAX_WEIGHT: usize = 1_000_000;

const SUPPORTED_REASONS: [&str; 4] = [
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
];

/// The environment every rule is compiled and evaluated in: CEL's standard library,
/// optional values, and kube's string functions.
static ENV: LazyLock<Option<Arc<Env>>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    env.add_extension(strings).ok()?;
    env.add_extension(lists).ok()?;
    Some(Arc::new(env))
});

/// One compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    /// The rule as written (trimmed).
    rule: String,
    /// `message` (trimmed), "" when unset.
    message: String,
    message_expression: Option<Compiled>,
    reason: Option<String>,
    /// `fieldPath` as a field path relative to the node (`spec.x`, `[key]`).
    field_path: String,
    optional_old_self: bool,
    uses_old_self: bool,
    /// None when the rule did not compile (the error was reported at compile time).
    program: Option<Compiled>,
}

#[derive(Debug)]
struct Compiled {
    program: Program,
    /// Nodes in the expression.
    size: u64,
    /// How deeply comprehensions (all, exists, map, filter...) nest.
    nesting: u32,
}

impl Compiled {
    fn new(source: &str) -> Result<Compiled, String> {
        if source.len() > MAX_EXPRESSION_LEN {
            return Err(format!(
                "ERROR: <input>:1:1: expression longer than {MAX_EXPRESSION_LEN} bytes"
            ));
        }
        if bracket_depth(source) > MAX_BRACKET_DEPTH {
            return Err("ERROR: <input>:1:1: max recursion depth exceeded".to_owned());
        }
        let env = ENV.as_ref().ok_or("CEL environment unavailable")?;
        on_cel_stack(|| {
            let program = env
                .parser()
                .max_recursion_depth(MAX_PARSE_DEPTH)
                .parse(source)
                .map_err(|e| e.to_string())
                .and_then(|_| env.compile(source).map_err(|e| e.to_string()))?;
            let (size, nesting, depth) = measure(program.expression(), 0);
            if depth > MAX_AST_DEPTH {
                return Err("ERROR: <input>:1:1: max recursion depth exceeded".to_owned());
            }
            Ok(Compiled {
                program,
                size,
                nesting,
            })
        })
        .unwrap_or_else(|| {
            Err("ERROR: <input>:1:1: internal error compiling the expression".to_owned())
        })
    }

    /// The estimated cost of evaluating with values of total weight `weight`.
    fn cost(&self, weight: u64) -> u64 {
        let mut cost = self.size.max(1);
        for _ in 0..self.nesting.max(1) {
            cost = cost.saturating_mul(weight.max(1));
        }
        cost
    }
}

/// Run `f` on a thread with a stack large enough for the CEL crate's recursion; None if
/// the thread could not be started or `f` panicked.
pub(crate) fn on_cel_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("cel".to_owned())
            .stack_size(CEL_STACK)
            .spawn_scoped(scope, f)
            .ok()?
            .join()
            .ok()
    })
}

/// The deepest nesting of (), [] and {} outside string literals.
fn bracket_depth(source: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => {
                depth += 1;
                max = max.max(depth);
            }
            (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Count the nodes of `e`, the deepest comprehension nesting and the tree's depth.
fn measure(e: &IdedExpr, depth: usize) -> (u64, u32, usize) {
    if depth > MAX_AST_DEPTH {
        return (1, 0, depth);
    }
    let mut size = 1u64;
    let mut nesting = 0u32;
    let mut deepest = depth;
    let mut add = |e: &IdedExpr, extra: u32| {
        let (s, n, d) = measure(e, depth + 1);
        size = size.saturating_add(s);
        nesting = nesting.max(n.saturating_add(extra));
        deepest = deepest.max(d);
    };
    match &e.expr {
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                add(target, 0);
            }
            for a in &call.args {
                add(a, 0);
            }
        }
        Expr::Comprehension(c) => {
            add(&c.iter_range, 0);
            add(&c.accu_init, 0);
            add(&c.loop_cond, 1);
            add(&c.loop_step, 1);
            add(&c.result, 0);
            nesting = nesting.max(1);
        }
        Expr::List(list) => list.elements.iter().for_each(|e| add(e, 0)),
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(m) = &entry.expr {
                    add(&m.key, 0);
                    add(&m.value, 0);
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    add(&f.value, 0);
                }
            }
        }
        Expr::Select(select) => add(&select.operand, 0),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
    (size, nesting, deepest)
}

/// kube's JSON of a ValidationRule (the bad value of rule errors).
fn rule_json(rule: &ValidationRule) -> String {
    let mut map = serde_json::Map::new();
    map.insert("rule".into(), Value::String(rule.rule.clone()));
    let mut opt = |k: &str, v: &Option<String>| {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            map.insert(k.into(), Value::String(v.clone()));
        }
    };
    opt("message", &rule.message);
    opt("messageExpression", &rule.message_expression);
    opt("reason", &rule.reason);
    opt("fieldPath", &rule.field_path);
    if let Some(o) = rule.optional_old_self {
        map.insert("optionalOldSelf".into(), Value::Bool(o));
    }
    // Go marshals struct fields in declaration order, not sorted.
    let fields: Vec<String> = [
        "rule",
        "message",
        "messageExpression",
        "reason",
        "fieldPath",
        "optionalOldSelf",
    ]
    .iter()
    .filter_map(|k| {
        map.get(*k)
            .map(|v| format!("{}:{v}", Value::String((*k).into())))
    })
    .collect();
    format!("{{{}}}", fields.join(","))
}

/// Compile the x-kubernetes-validations of `p` (the schema at `at`, compiled as `node`),
/// reporting kube's errors.
pub(crate) fn compile_rules(
    p: &JSONSchemaProps,
    node: &Node,
    at: &str,
    errors: &mut ErrorList,
) -> Vec<Rule> {
    let Some(rules) = &p.x_kubernetes_validations else {
        return Vec::new();
    };
    let base = path::child(at, "x-kubernetes-validations");
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let here = |field: &str| path::child(&path::index(&base, i), field);
        let trimmed_rule = rule.rule.trim();
        let message = rule.message.as_deref().unwrap_or_default();
        let trimmed_message = message.trim();
        let message_expression = rule.message_expression.as_deref().unwrap_or_default();
        let mut ok = true;
        if trimmed_rule.is_empty() {
            errors.push(FieldError::required(here("rule"), "rule is not specified"));
            ok = false;
        } else if !message.is_empty() && trimmed_message.is_empty() {
            errors.push(FieldError::invalid(
                here("message"),
                bad_str(message),
                "message must be non-empty if specified",
            ));
        } else if trimmed_message.contains(['\n', '\r']) {
            errors.push(FieldError::invalid(
                here("message"),
                bad_str(message),
                "message must not contain line breaks",
            ));
        } else if trimmed_rule.contains(['\n', '\r']) && trimmed_message.is_empty() {
            errors.push(FieldError::required(
                here("message"),
                "message must be specified if rule contains line breaks",
            ));
        }
        if !message_expression.is_empty() && message_expression.trim().is_empty() {
            errors.push(FieldError::required(
                here("messageExpression"),
                "messageExpression must be non-empty if specified",
            ));
        }
        if let Some(reason) = &rule.reason
            && !SUPPORTED_REASONS.contains(&reason.as_str())
        {
            errors.push(FieldError {
                field: here("reason"),
                kind: ErrorKind::NotSupported(
                    bad_str(reason),
                    SUPPORTED_REASONS.iter().map(|s| (*s).to_owned()).collect(),
                ),
                detail: String::new(),
            });
        }
        let field_path_raw = rule.field_path.as_deref().unwrap_or_default();
        let mut field_path = String::new();
        if !field_path_raw.is_empty() {
            if field_path_raw.trim().is_empty() {
                errors.push(FieldError::invalid(
                    here("fieldPath"),
                    bad_str(field_path_raw),
                    "fieldPath must be non-empty if specified",
                ));
            } else if field_path_raw.contains(['\n', '\r']) {
                errors.push(FieldError::invalid(
                    here("fieldPath"),
                    bad_str(field_path_raw),
                    "fieldPath must not contain line breaks",
                ));
            } else {
                match valid_field_path(field_path_raw, node) {
                    Some(p) => field_path = p,
                    None => errors.push(FieldError::invalid(
                        here("fieldPath"),
                        bad_str(field_path_raw),
                        "fieldPath must be a valid path",
                    )),
                }
            }
        }
        let program = if ok {
            match Compiled::new(trimmed_rule) {
                Ok(c) => Some(c),
                Err(why) => {
                    errors.push(FieldError::invalid(
                        here("rule"),
                        rule_json(rule),
                        format!("compilation failed: {why}"),
                    ));
                    None
                }
            }
        } else {
            None
        };
        let message_expression = if message_expression.trim().is_empty() {
            None
        } else {
            match Compiled::new(message_expression.trim()) {
                Ok(c) => Some(c),
                Err(why) => {
                    errors.push(FieldError::invalid(
                        here("messageExpression"),
                        rule_json(rule),
                        format!("messageExpression compilation failed: {why}"),
                    ));
                    None
                }
            }
        };
        let uses_old_self = program
            .as_ref()
            .is_some_and(|c| c.program.references().has_variable("oldSelf"));
        if !uses_old_self
            && program.is_some()
            && let Some(o) = rule.optional_old_self
        {
            errors.push(FieldError::invalid(
                here("optionalOldSelf"),
                o.to_string(),
                "may not be set if oldSelf is not used in rule",
            ));
        }
        out.push(Rule {
            rule: trimmed_rule.to_owned(),
            message: trimmed_message.to_owned(),
            message_expression,
            reason: rule.reason.clone(),
            field_path,
            optional_old_self: rule.optional_old_self.unwrap_or(false),
            uses_old_self,
            program,
        });
    }
    out
}

impl Rule {
    pub(crate) fn uses_old_self(&self) -> bool {
        self.uses_old_self
    }
}

/// kube's ValidFieldPath: `.a.b`, `['a.b']` steps through properties and
/// additionalProperties; the normalized field path (`a.b`, `a[k]`).
fn valid_field_path(raw: &str, node: &Node) -> Option<String> {
    let mut schema = node;
    let mut out = String::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let name = if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return None;
            }
            let (name, tail) = after.split_at(end);
            rest = tail;
            name.to_owned()
        } else if let Some(after) = rest.strip_prefix("['") {
            let mut name = String::new();
            let mut chars = after.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, '\'')) => name.push('\''),
                        Some((_, '\\')) => name.push('\\'),
                        Some((_, 'n')) => name.push('\n'),
                        Some((_, 't')) => name.push('\t'),
                        _ => return None,
                    },
                    '\'' => {
                        end = Some(i);
                        break;
                    }
                    c => name.push(c),
                }
            }
            let end = end?;
            rest = after[end + 1..].strip_prefix(']')?;
            name
        } else {
            return None;
        };
        if !schema.properties.is_empty() {
            schema = schema.properties.get(&name)?;
            out = path::child(&out, &name);
        } else if let Some(Additional::Schema(a)) = &schema.additional {
            schema = a;
            out = path::key(&out, &name);
        } else {
            return None;
        }
    }
    Some(out)
}

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
fn to_cel(v: &Value, s: Option<&Node>, root: bool, depth: usize) -> CelValue {
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
            let mut out = std::collections::HashMap::new();
            match s {
                Some(s) if !s.properties.is_empty() || root => {
                    for (k, v) in map {
                        let prop = s.properties.get(k);
                        if prop.is_none() {
                            if root && matches!(k.as_str(), "apiVersion" | "kind") {
                                out.insert(Key::from(k.clone()), to_cel(v, None, false, depth + 1));
                            } else if root && k == "metadata" {
                                let mut meta = std::collections::HashMap::new();
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

/// One object's rules being evaluated: what is left of the cost budget, and the errors.
pub(crate) struct Budget {
    remaining: u64,
    exhausted: bool,
    pub(crate) errors: ErrorList,
}

impl Budget {
    pub(crate) fn new() -> Budget {
        Budget {
            remaining: RUNTIME_BUDGET,
            exhausted: false,
            errors: ErrorList::new(),
        }
    }
}

/// Evaluate the rules of `s` and below on `v` (at field path `at`, kube's `<nil>` at the
/// root); `old` is the correlated old value, for transition rules.
pub(crate) fn validate(
    at: &str,
    s: &Node,
    v: &Value,
    old: Option<&Value>,
    root: bool,
    budget: &mut Budget,
    depth: usize,
) {
    if budget.exhausted || depth > MAX_SCHEMA_DEPTH || v.is_null() {
        return;
    }
    let old = old.filter(|o| !o.is_null());
    if !s.rules.is_empty() {
        evaluate(at, s, v, old, root, budget);
        if budget.exhausted {
            return;
        }
    }
    match v {
        Value::Object(map) => {
            let old_map = old.and_then(Value::as_object);
            for (k, x) in map {
                let old_x = old_map.and_then(|o| o.get(k));
                if let Some(prop) = s.properties.get(k) {
                    validate(
                        &path::child(at, k),
                        prop,
                        x,
                        old_x,
                        prop.embedded,
                        budget,
                        depth + 1,
                    );
                } else if let Some(Additional::Schema(a)) = &s.additional {
                    validate(
                        &path::key(at, k),
                        a,
                        x,
                        old_x,
                        a.embedded,
                        budget,
                        depth + 1,
                    );
                }
                if budget.exhausted {
                    return;
                }
            }
        }
        Value::Array(items) => {
            let Some(item) = s.items.as_deref() else {
                return;
            };
            let old_items = old.and_then(Value::as_array);
            for (i, x) in items.iter().enumerate() {
                // Only map lists correlate old items (by their keys).
                let old_x = old_items.and_then(|o| super::list_type::correlate(s, x, o));
                validate(
                    &path::index(at, i),
                    item,
                    x,
                    old_x,
                    item.embedded,
                    budget,
                    depth + 1,
                );
                if budget.exhausted {
                    return;
                }
            }
        }
        _ => {}
    }
}

fn evaluate(at: &str, s: &Node, v: &Value, old: Option<&Value>, root: bool, budget: &mut Budget) {
    let field = path::or_nil(at);
    let ty = bad_str(&s.ty);
    let Some(env) = ENV.as_ref() else {
        return;
    };
    let weight = values::weight(v, MAX_WEIGHT)
        .saturating_add(old.map_or(0, |o| values::weight(o, MAX_WEIGHT))) as u64;
    if weight >= MAX_WEIGHT as u64 {
        budget.errors.push(FieldError::invalid(
            &field,
            ty,
            "validation failed due to running out of cost budget, no further validation rules will be run",
        ));
        budget.exhausted = true;
        return;
    }
    let unchanged = old.is_some_and(|o| values::deep_equal(o, v));
    let self_value = to_cel(v, Some(s), root, 0);
    let old_value = old.map(|o| to_cel(o, Some(s), root, 0));
    for rule in &s.rules {
        let Some(compiled) = &rule.program else {
            continue;
        };
        if rule.uses_old_self && old.is_none() && !rule.optional_old_self {
            continue;
        }
        // Ratcheting (kube 1.33): a rule without oldSelf does not fail a value that did not
        // change (kube turns such errors into warnings).
        if !rule.uses_old_self && unchanged {
            continue;
        }
        let cost = compiled.cost(weight);
        if cost > PER_CALL_LIMIT {
            budget.errors.push(FieldError::invalid(
                &field,
                ty.clone(),
                format!(
                    "'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: {}",
                    rule.error_string()
                ),
            ));
            budget.exhausted = true;
            return;
        }
        if cost > budget.remaining {
            budget.errors.push(FieldError::invalid(
                &field,
                ty.clone(),
                "validation failed due to running out of cost budget, no further validation rules will be run",
            ));
            budget.exhausted = true;
            return;
        }
        budget.remaining -= cost;
        let mut context = Context::with_env(Arc::clone(env));
        let mut bind = |name: &str, value: CelValue| -> bool {
            match Box::<dyn Val>::try_from(value) {
                Ok(val) => {
                    context.add_variable_as_val(name, val);
                    true
                }
                Err(_) => false,
            }
        };
        if !bind("self", self_value.clone()) {
            continue;
        }
        if rule.uses_old_self {
            let bound = if rule.optional_old_self {
                let optional = match &old_value {
                    Some(o) => OptionalValue::of(o.clone()),
                    None => OptionalValue::none(),
                };
                bind("oldSelf", CelValue::Opaque(Arc::new(optional)))
            } else {
                old_value.clone().is_some_and(|o| bind("oldSelf", o))
            };
            if !bound {
                continue;
            }
        }
        let result = compiled.program.execute(&context);
        let detail = match result {
            Ok(CelValue::Bool(true)) => continue,
            Ok(CelValue::Bool(false)) => None,
            Ok(_) => Some(format!(
                "cel expression must evaluate to a bool evaluating rule: {}",
                rule.error_string()
            )),
            Err(e) => Some(eval_error(&e, rule)),
        };
        if let Some(detail) = detail {
            budget
                .errors
                .push(FieldError::invalid(&field, ty.clone(), detail));
            continue;
        }
        let at_field = if rule.field_path.is_empty() {
            field.clone()
        } else if rule.field_path.starts_with('[') {
            format!("{at}{}", rule.field_path)
        } else {
            path::child(at, &rule.field_path)
        };
        let message = rule
            .message_expression
            .as_ref()
            .and_then(|m| {
                let cost = m.cost(weight);
                if cost > budget.remaining || cost > PER_CALL_LIMIT {
                    return None;
                }
                budget.remaining -= cost;
                match m.program.execute(&context) {
                    Ok(CelValue::String(s)) => {
                        let s = s.trim();
                        (!s.is_empty() && s.len() <= MAX_MESSAGE_LEN && !s.contains('\n'))
                            .then(|| s.to_owned())
                    }
                    _ => None,
                }
            })
            .unwrap_or_else(|| rule.message_or_default());
        budget.errors.push(match rule.reason.as_deref() {
            Some("FieldValueForbidden") => FieldError::forbidden(at_field, message),
            Some("FieldValueRequired") => FieldError::required(at_field, message),
            Some("FieldValueDuplicate") => FieldError::duplicate(at_field, ty.clone()),
            _ => FieldError::invalid(at_field, ty.clone(), message),
        });
    }
}

fn eval_error(e: &ExecutionError, rule: &Rule) -> String {
    match e {
        ExecutionError::NoSuchOverload(_) => format!(
            "'no such overload': call arguments did not match a supported operator, function or macro signature for rule: {}",
            rule.error_string()
        ),
        ExecutionError::NoSuchKey(k) => {
            format!("no such key: {k} evaluating rule: {}", rule.error_string())
        }
        other => format!("{other} evaluating rule: {}", rule.error_string()),
    }
}

impl Rule {
    /// kube's ruleErrorString: the message if set, else the rule.
    fn error_string(&self) -> &str {
        if self.message.is_empty() {
            &self.rule
        } else {
            &self.message
        }
    }

    fn message_or_default(&self) -> String {
        if self.message.is_empty() {
            format!("failed rule: {}", self.rule)
        } else {
            self.message.clone()
        }
    }
}

/// Validate the value `v` (a default at `at`) with the rules of `s` only.
pub(crate) fn validate_default(at: &str, s: &Node, v: &Value, errors: &mut ErrorList) {
    if s.rules.is_empty() {
        return;
    }
    let found = on_cel_stack(|| {
        let mut budget = Budget::new();
        validate(at, s, v, Some(v), s.embedded, &mut budget, 0);
        budget.errors
    });
    errors.extend(found.unwrap_or_default());
}

/// kube's `ext.Strings` functions on `string`, with bounded results.
fn strings(env: &mut Env) -> Result<(), cel::DeclarationError> {
    cel::add_member_overload!(env, fn char_at: (CelString, CelInt) -> Result<CelString>)?;
    cel::add_member_overload!(env, fn index_of: (CelString, CelString) -> CelInt)?;
    cel::add_member_overload!(env, fn last_index_of: (CelString, CelString) -> CelInt)?;
    cel::add_member_overload!(env, fn lower_ascii: (CelString) -> CelString)?;
    cel::add_member_overload!(env, fn upper_ascii: (CelString) -> CelString)?;
    cel::add_member_overload!(env, fn trim: (CelString) -> CelString)?;
    cel::add_member_overload!(env, fn replace: (CelString, CelString, CelString) -> Result<CelString>)?;
    cel::add_member_overload!(env, fn split: (CelString, CelString) -> CelList)?;
    cel::add_member_overload!(env, fn substring: (CelString, CelInt) -> Result<CelString>)?;
    cel::add_member_overload!(env, fn substring_range: (CelString, CelInt, CelInt) -> Result<CelString>,
        name = "substring")?;
    Ok(())
}

/// kube's list library (`isSorted`, `indexOf`, `lastIndexOf`, `sum`, `min`, `max`).
fn lists(env: &mut Env) -> Result<(), cel::DeclarationError> {
    use cel::common::types::{DYN_TYPE, LIST_TYPE};
    env.add_member_overload("isSorted", "list.isSorted()", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload(
        "indexOf",
        "list.indexOf(dyn)",
        LIST_TYPE,
        vec![DYN_TYPE],
        list_index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list.lastIndexOf(dyn)",
        LIST_TYPE,
        vec![DYN_TYPE],
        list_last_index_of,
    )?;
    env.add_member_overload("sum", "list.sum()", LIST_TYPE, vec![], list_sum)?;
    env.add_member_overload("min", "list.min()", LIST_TYPE, vec![], list_min)?;
    env.add_member_overload("max", "list.max()", LIST_TYPE, vec![], list_max)?;
    Ok(())
}

type Args<'b, 'v> = Vec<cel::common::value::CowVal<'b, 'v>>;
type Ret<'b, 'v> = Result<cel::common::value::CowVal<'b, 'v>, ExecutionError>;

/// The elements of the list receiver of `function`.
fn elements<'a, 'v>(
    args: &'a Args<'_, 'v>,
    function: &str,
) -> Result<Vec<&'a (dyn Val + 'v)>, ExecutionError> {
    let list = args
        .first()
        .and_then(|l| l.as_ref().as_iterable())
        .ok_or_else(|| ExecutionError::function_error(function, "expected a list"))?;
    let mut out = Vec::new();
    let mut items = list.iter();
    while let Some(item) = items.next() {
        out.push(item);
    }
    Ok(out)
}

fn order(a: &dyn Val, b: &dyn Val, function: &str) -> Result<std::cmp::Ordering, ExecutionError> {
    a.as_comparer()
        .ok_or_else(|| ExecutionError::function_error(function, "elements are not comparable"))?
        .compare(b)
}

fn is_sorted<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let items = elements(&args, "isSorted")?;
    for pair in items.windows(2) {
        if order(pair[0], pair[1], "isSorted")? == std::cmp::Ordering::Greater {
            return Ok(cel::common::value::CowVal::owned(
                cel::common::types::CelBool::from(false),
            ));
        }
    }
    Ok(cel::common::value::CowVal::owned(
        cel::common::types::CelBool::from(true),
    ))
}

fn position<'b, 'v>(args: Args<'b, 'v>, last: bool) -> Ret<'b, 'v> {
    let function = if last { "lastIndexOf" } else { "indexOf" };
    let items = elements(&args, function)?;
    let needle = args
        .get(1)
        .ok_or_else(|| ExecutionError::function_error(function, "expected an argument"))?;
    let found = if last {
        items.iter().rposition(|i| i.equals(needle.as_ref()))
    } else {
        items.iter().position(|i| i.equals(needle.as_ref()))
    };
    let index = found.map_or(-1, |i| i64::try_from(i).unwrap_or(-1));
    Ok(cel::common::value::CowVal::owned(CelInt::from(index)))
}

fn list_index_of<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    position(args, false)
}

fn list_last_index_of<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    position(args, true)
}

fn list_sum<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let items = elements(&args, "sum")?;
    let Some((first, rest)) = items.split_first() else {
        return Ok(cel::common::value::CowVal::owned(CelInt::from(0)));
    };
    let mut total: Box<dyn Val + 'v> = first.clone_as_boxed();
    for item in rest {
        let next = total
            .as_adder()
            .ok_or_else(|| ExecutionError::function_error("sum", "elements cannot be added"))?
            .add(*item)?
            .as_ref()
            .clone_as_boxed();
        total = next;
    }
    Ok(cel::common::value::CowVal::from(total))
}

fn extreme<'b, 'v>(args: Args<'b, 'v>, function: &str, want: std::cmp::Ordering) -> Ret<'b, 'v> {
    let items = elements(&args, function)?;
    let mut best = *items.first().ok_or_else(|| {
        ExecutionError::function_error(function, format!("{function} called on an empty list"))
    })?;
    for item in &items[1..] {
        if order(*item, best, function)? == want {
            best = *item;
        }
    }
    Ok(cel::common::value::CowVal::from(best.clone_as_boxed()))
}

fn list_min<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    extreme(args, "min", std::cmp::Ordering::Less)
}

fn list_max<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    extreme(args, "max", std::cmp::Ordering::Greater)
}

fn out_of_range(function: &str, idx: i64) -> ExecutionError {
    ExecutionError::function_error(function, format!("index out of range: {idx}"))
}

fn char_at(this: &CelString<'_>, idx: &CelInt) -> Result<CelString<'static>, ExecutionError> {
    let idx = *idx.inner();
    let len = this.chars().count() as i64;
    if idx < 0 || idx > len {
        return Err(out_of_range("charAt", idx));
    }
    Ok(usize::try_from(idx)
        .ok()
        .and_then(|i| this.chars().nth(i))
        .map(|c| c.to_string())
        .unwrap_or_default()
        .into())
}

fn index_of(this: &CelString<'_>, needle: &CelString<'_>) -> CelInt {
    let hay: &str = this;
    let needle: &str = needle;
    hay.find(needle)
        .map_or(-1, |byte| hay[..byte].chars().count() as i64)
        .into()
}

fn last_index_of(this: &CelString<'_>, needle: &CelString<'_>) -> CelInt {
    let hay: &str = this;
    let needle: &str = needle;
    hay.rfind(needle)
        .map_or(-1, |byte| hay[..byte].chars().count() as i64)
        .into()
}

fn lower_ascii(this: &CelString<'_>) -> CelString<'static> {
    this.to_ascii_lowercase().into()
}

fn upper_ascii(this: &CelString<'_>) -> CelString<'static> {
    this.to_ascii_uppercase().into()
}

fn trim(this: &CelString<'_>) -> CelString<'static> {
    this.trim().to_owned().into()
}

fn replace(
    this: &CelString<'_>,
    from: &CelString<'_>,
    to: &CelString<'_>,
) -> Result<CelString<'static>, ExecutionError> {
    let hay: &str = this;
    let from: &str = from;
    let to: &str = to;
    let count = if from.is_empty() {
        hay.chars().count() + 1
    } else {
        hay.matches(from).count()
    };
    let size = hay.len().saturating_add(count.saturating_mul(to.len()));
    if size > MAX_STRING_RESULT {
        return Err(ExecutionError::function_error(
            "replace",
            "result exceeds the size limit",
        ));
    }
    Ok(hay.replace(from, to).into())
}

fn split(this: &CelString<'_>, sep: &CelString<'_>) -> CelList<'static> {
    let hay: &str = this;
    let sep: &str = sep;
    let parts: Vec<&str> = if sep.is_empty() {
        hay.char_indices()
            .map(|(i, c)| &hay[i..i + c.len_utf8()])
            .collect()
    } else {
        hay.split(sep).collect()
    };
    parts
        .into_iter()
        .map(|s| Box::new(CelString::from(s.to_owned())) as Box<dyn Val>)
        .collect::<Vec<_>>()
        .into()
}

fn substring(this: &CelString<'_>, start: &CelInt) -> Result<CelString<'static>, ExecutionError> {
    let len = this.chars().count() as i64;
    substring_range(this, start, &CelInt::from(len))
}

fn substring_range(
    this: &CelString<'_>,
    start: &CelInt,
    end: &CelInt,
) -> Result<CelString<'static>, ExecutionError> {
    let (start, end) = (*start.inner(), *end.inner());
    let len = this.chars().count() as i64;
    if start > end {
        return Err(ExecutionError::function_error(
            "substring",
            format!("invalid substring range. start: {start}, end: {end}"),
        ));
    }
    if start < 0 || start > len {
        return Err(out_of_range("substring", start));
    }
    if end > len {
        return Err(out_of_range("substring", end));
    }
    let (start, count) = (
        usize::try_from(start).unwrap_or(0),
        usize::try_from(end - start).unwrap_or(0),
    );
    Ok(this
        .chars()
        .skip(start)
        .take(count)
        .collect::<String>()
        .into())
}

/// Rules that use oldSelf where old values cannot be correlated (inside lists that are
/// not map lists, and maps with x-kubernetes-map-type atomic) are refused.
pub(crate) fn check_old_self(
    node: &Node,
    at: &str,
    uncorrelatable: Option<&str>,
    errors: &mut ErrorList,
    depth: usize,
) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    if let Some(within) = uncorrelatable {
        for (i, rule) in node.rules.iter().enumerate() {
            if rule.uses_old_self() {
                errors.push(FieldError::invalid(
                    path::child(&path::index(&path::child(at, "x-kubernetes-validations"), i), "rule"),
                    bad_str(&rule.rule),
                    format!("oldSelf cannot be used on the uncorrelatable portion of the schema within {within}"),
                ));
            }
        }
    }
    let map_correlatable = node.map_type.as_deref() != Some("atomic");
    for (k, prop) in &node.properties {
        let here = if map_correlatable || uncorrelatable.is_some() {
            uncorrelatable
        } else {
            Some(at)
        };
        check_old_self(
            prop,
            &path::key(&path::child(at, "properties"), k),
            here,
            errors,
            depth + 1,
        );
    }
    if let Some(Additional::Schema(a)) = &node.additional {
        check_old_self(
            a,
            &path::child(at, "additionalProperties"),
            uncorrelatable,
            errors,
            depth + 1,
        );
    }
    if let Some(item) = node.items.as_deref() {
        let here = if uncorrelatable.is_none() && node.list_type.as_deref() != Some("map") {
            Some(at)
        } else {
            uncorrelatable
        };
        check_old_self(item, &path::child(at, "items"), here, errors, depth + 1);
    }
}
