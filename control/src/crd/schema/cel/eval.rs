//! Evaluating x-kubernetes-validations on an object: `self`/`oldSelf` at each rule's node,
//! the estimated cost charged against kube's limits, kube's errors.

use std::sync::Arc;

use cel::{Context, ExecutionError, Value as CelValue, common::value::Val, objects::OptionalValue};
use serde_json::Value;

use super::{
    ENV, MAX_MESSAGE_LEN, MAX_WEIGHT, PER_CALL_LIMIT, RUNTIME_BUDGET, Rule, on_cel_stack, value,
};
use crate::crd::schema::{
    node::{Additional, MAX_SCHEMA_DEPTH, Node},
    path,
    values::{self, bad_str},
};
use crate::model::validation::{ErrorList, FieldError};

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
                let old_x =
                    old_items.and_then(|o| crate::crd::schema::list_type::correlate(s, x, o));
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
    let self_value = value::to_cel(v, Some(s), root, 0);
    let old_value = old.map(|o| value::to_cel(o, Some(s), root, 0));
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
        // kube appends the normalized fieldPath as one child name: `spec.[key]` for a map key.
        let at_field = if rule.field_path.is_empty() {
            field.clone()
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
