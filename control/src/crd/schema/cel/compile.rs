//! Compiling x-kubernetes-validations: kube's checks of each rule, parsing with bounded
//! depth, and the measures the cost estimate uses.

use cel::{
    Program,
    common::ast::{EntryExpr, Expr, IdedExpr},
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, ValidationRule,
};
use serde_json::Value;

use super::{
    ENV, MAX_AST_DEPTH, MAX_BRACKET_DEPTH, MAX_EXPRESSION_LEN, MAX_PARSE_DEPTH, SUPPORTED_REASONS,
    on_cel_stack,
};
use crate::crd::schema::{
    node::{Additional, MAX_SCHEMA_DEPTH, Node},
    path,
    values::bad_str,
};
use crate::model::validation::{ErrorKind, ErrorList, FieldError};

/// One compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    /// The rule as written (trimmed).
    pub(super) rule: String,
    /// `message` (trimmed), "" when unset.
    pub(super) message: String,
    pub(super) message_expression: Option<Compiled>,
    pub(super) reason: Option<String>,
    /// `fieldPath` as a field path relative to the node (`spec.x`, `[key]`).
    pub(super) field_path: String,
    pub(super) optional_old_self: bool,
    pub(super) uses_old_self: bool,
    /// None when the rule did not compile (the error was reported at compile time).
    pub(super) program: Option<Compiled>,
}

#[derive(Debug)]
pub(super) struct Compiled {
    pub(super) program: Program,
    /// Nodes in the expression.
    pub(super) size: u64,
    /// How deeply comprehensions (all, exists, map, filter...) nest.
    pub(super) nesting: u32,
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
    pub(super) fn cost(&self, weight: u64) -> u64 {
        let mut cost = self.size.max(1);
        for _ in 0..self.nesting.max(1) {
            cost = cost.saturating_mul(weight.max(1));
        }
        cost
    }
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
