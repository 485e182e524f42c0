//! Value validation as kube-openapi's `validate.SchemaValidator` does it, with its messages
//! ("spec.replicas in body must be of type integer: \"string\"") turned into field errors
//! the way apiextensions-apiserver does (`kubeOpenAPIResultToFieldErrors`).
//!
//! Paths here are kube-openapi's: `spec.items[0]`, map entries as `spec.labels.foo`; errors
//! that belong to no field (anyOf/oneOf/allOf/not, number ranges) are reported at the
//! validation's base path, which is `<nil>` for a whole object.

use serde_json::Value;

use super::{
    formats::Format,
    node::{Additional, Node},
    path,
    values::{self, Kind, bad_str, bad_value, go_float, go_quote, is_json_integer},
};
use crate::model::validation::{ErrorKind, ErrorList, FieldError};

/// Validate `value` against `node`; `base` is the field path errors are reported under
/// (`None` for a custom resource, `...default` for a default in a schema). With `old` (an
/// update), errors of values that did not change are dropped: kube 1.33's validation
/// ratcheting, correlating old values through properties and map-list keys.
pub(crate) fn validate_value(
    node: &Node,
    value: &Value,
    base: Option<&str>,
    old: Option<&Value>,
) -> ErrorList {
    Validator { base }.validate(node, value, "", old).errors
}

#[derive(Default)]
struct Res {
    errors: ErrorList,
    /// kube-openapi's MatchCount: how much of the schema applied (picks the best anyOf /
    /// oneOf failure to report).
    matches: usize,
}

impl Res {
    fn push(&mut self, e: FieldError) {
        if !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }
    fn merge(&mut self, other: Res) {
        for e in other.errors {
            self.push(e);
        }
        self.matches += other.matches;
    }
    fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// A number as decoded (int64 or float64).
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
    fn render(self) -> String {
        match self {
            Num::Int(i) => i.to_string(),
            Num::Float(f) => go_float(f),
        }
    }
}

struct Validator<'a> {
    base: Option<&'a str>,
}

impl Validator<'_> {
    /// The field an error about `name` (kube-openapi's path) is reported at.
    fn err_path(&self, name: &str) -> String {
        let name = name.strip_prefix('.').unwrap_or(name);
        match (self.base, name.is_empty()) {
            (Some(base), true) => base.to_owned(),
            (Some(base), false) => path::child(base, name),
            (None, true) => "<nil>".to_owned(),
            (None, false) => name.to_owned(),
        }
    }

    /// An error that is not a kube-openapi `Validation` (composite and range errors).
    fn plain(&self, message: String) -> FieldError {
        FieldError::invalid(path::or_nil(self.base.unwrap_or("")), bad_str(""), message)
    }

    fn type_invalid(&self, name: &str, ty: &str, actual: &str) -> FieldError {
        FieldError {
            field: self.err_path(name),
            kind: ErrorKind::TypeInvalid(bad_str(actual)),
            detail: format!("{name} in body must be of type {ty}: {}", go_quote(actual)),
        }
    }

    fn invalid(&self, name: &str, value: String, detail: String) -> FieldError {
        FieldError::invalid(self.err_path(name), value, detail)
    }

    fn validate(&self, n: &Node, v: &Value, name: &str, old: Option<&Value>) -> Res {
        let mut res = self.validate_node(n, v, name, old);
        if !res.is_valid() && old.is_some_and(|o| values::deep_equal(o, v)) {
            res.errors.clear();
        }
        res
    }

    fn validate_node(&self, n: &Node, v: &Value, name: &str, old: Option<&Value>) -> Res {
        let mut res = Res::default();
        if v.is_null() {
            self.check_type(n, v, name, &mut res);
            self.check_enum(n, v, name, &mut res);
            return res;
        }
        if !n.types().is_empty() || !n.format_name.is_empty() {
            self.check_type(n, v, name, &mut res);
            res.matches += 1;
        }
        self.check_junctors(n, v, name, old, &mut res);
        res.matches += 1;
        match values::kind(v) {
            Kind::String(s) => {
                self.check_string(n, s, name, &mut res);
                res.matches += 1;
                if let Some(format) = n.format.filter(|f| f.is_string_format()) {
                    if !format.is_valid(s) {
                        res.push(FieldError {
                            field: self.err_path(name),
                            kind: ErrorKind::TypeInvalid(bad_str(s)),
                            detail: format!(
                                "{name} in body must be of type {}: {}",
                                n.format_name,
                                go_quote(s)
                            ),
                        });
                    }
                    res.matches += 1;
                }
            }
            Kind::Int(i) => {
                self.check_number(n, Num::Int(i), name, &mut res);
                res.matches += 1;
            }
            Kind::Float(f) => {
                self.check_number(n, Num::Float(f), name, &mut res);
                res.matches += 1;
            }
            Kind::Array(items) => {
                self.check_array(n, items, name, old, &mut res);
                res.matches += 1;
            }
            _ => {}
        }
        self.check_enum(n, v, name, &mut res);
        res.matches += 1;
        if let Kind::Object(map) = values::kind(v) {
            self.check_object(n, map, name, old, &mut res);
            res.matches += 1;
        }
        res.matches += 1;
        res
    }

    fn check_type(&self, n: &Node, v: &Value, name: &str, res: &mut Res) {
        let types = n.types();
        if v.is_null() {
            if !types.is_empty() && !types.contains(&"null") && !n.nullable {
                res.push(self.type_invalid(name, &types.join(","), "null"));
            }
            return;
        }
        let actual = values::type_name(v);
        // The format kube-openapi infers for the decoded value.
        let actual_format = match actual {
            "integer" => "int64",
            "number" => "float64",
            _ => "",
        };
        let is_float_int = matches!(values::kind(v), Kind::Float(f) if is_json_integer(f))
            && types.contains(&"integer");
        let is_int_float = actual == "integer" && types.contains(&"number");
        let stringish = matches!(actual, "string" | "array");
        let format = n.format_name.as_str();
        let type_matches =
            types.contains(&actual) || is_float_int || is_int_float || actual_format == format;
        if !(stringish || format.is_empty() || type_matches) {
            res.push(self.type_invalid(name, format, actual_format));
            return;
        }
        let numeric = types.contains(&"number") || types.contains(&"integer");
        if stringish && !numeric && !format.is_empty() {
            return;
        }
        if !(types.contains(&actual) || is_float_int || is_int_float) {
            res.push(self.type_invalid(name, &types.join(","), actual));
        }
    }

    fn check_junctors(&self, n: &Node, v: &Value, name: &str, old: Option<&Value>, res: &mut Res) {
        let q = go_quote(name);
        if !n.any_of.is_empty() {
            let mut best: Option<Res> = None;
            let mut success: Option<Res> = None;
            for s in &n.any_of {
                let r = self.validate_node(s, v, name, old);
                if r.is_valid() {
                    success = Some(r);
                    best = None;
                    break;
                }
                if best.as_ref().is_none_or(|b| r.matches > b.matches) {
                    best = Some(r);
                }
            }
            if success.is_none() {
                res.push(self.plain(format!("{q} must validate at least one schema (anyOf)")));
            }
            if let Some(r) = best.or(success) {
                res.merge(r);
            }
        }
        if !n.one_of.is_empty() {
            let mut best: Option<Res> = None;
            let mut first_success: Option<Res> = None;
            let mut validated = 0;
            for s in &n.one_of {
                let r = self.validate_node(s, v, name, old);
                if r.is_valid() {
                    validated += 1;
                    best = None;
                    if first_success.is_none() {
                        first_success = Some(r);
                    }
                    continue;
                }
                if validated == 0 && best.as_ref().is_none_or(|b| r.matches > b.matches) {
                    best = Some(r);
                }
            }
            if validated != 1 {
                let more = if validated == 0 {
                    "Found none valid".to_owned()
                } else {
                    format!("Found {validated} valid alternatives")
                };
                res.push(self.plain(format!(
                    "{q} must validate one and only one schema (oneOf). {more}"
                )));
                if let Some(r) = best {
                    res.merge(r);
                }
            } else if let Some(r) = first_success {
                res.merge(r);
            }
        }
        if !n.all_of.is_empty() {
            let mut validated = 0;
            for s in &n.all_of {
                let r = self.validate_node(s, v, name, old);
                if r.is_valid() {
                    validated += 1;
                }
                res.merge(r);
            }
            if validated != n.all_of.len() {
                let more = if validated == 0 {
                    ". None validated"
                } else {
                    ""
                };
                res.push(self.plain(format!("{q} must validate all the schemas (allOf){more}")));
            }
        }
        if let Some(not) = &n.not
            && self.validate_node(not, v, name, old).is_valid()
        {
            res.push(self.plain(format!("{q} must not validate the schema (not)")));
        }
    }

    fn check_string(&self, n: &Node, s: &str, name: &str, res: &mut Res) {
        let count = s.chars().count() as i64;
        if let Some(max) = n.max_length
            && count > max
        {
            res.push(FieldError {
                field: self.err_path(name),
                kind: ErrorKind::TooLong(usize::try_from(max).unwrap_or(0)),
                detail: String::new(),
            });
            return;
        }
        if let Some(min) = n.min_length
            && count < min
        {
            res.push(self.invalid(
                name,
                bad_str(s),
                format!("{name} in body should be at least {min} chars long"),
            ));
            return;
        }
        if let Some(pattern) = &n.pattern
            && !pattern.is_match(s)
        {
            res.push(self.invalid(
                name,
                bad_str(s),
                format!("{name} in body should match '{}'", pattern.source),
            ));
        }
    }

    fn check_number(&self, n: &Node, value: Num, name: &str, res: &mut Res) {
        // The type and format kube-openapi checks numbers' ranges with.
        let (type_name, format) = match (n.types().as_slice(), n.format) {
            (["integer"], Some(f @ (Format::Int32 | Format::Int64))) => ("integer", Some(f)),
            (["integer"], _) => ("integer", None),
            (["number"], Some(f @ (Format::Float | Format::Double))) => ("number", Some(f)),
            (["number"], _) => ("number", None),
            _ => ("", None),
        };
        let in_range = |x: Num| in_range(x, type_name, format);
        if !in_range(value) {
            let message = match format {
                Some(_) => format!(
                    "Checked value must be of type {type_name} with format {} in {name}",
                    n.format_name
                ),
                None => format!(
                    "Checked value must be of type {} (default format) in {name}",
                    if type_name.is_empty() {
                        "number"
                    } else {
                        type_name
                    }
                ),
            };
            res.push(self.plain(message));
        }
        let data = value.render();
        if let Some(factor) = n.multiple_of {
            let native = in_range(Num::Float(factor));
            match value {
                Num::Int(i) if native => {
                    let factor = factor as i64;
                    if factor <= 0 {
                        res.push(self.invalid(
                            name,
                            factor.to_string(),
                            format!(
                                "factor MultipleOf declared for {name} must be positive: {factor}"
                            ),
                        ));
                    } else if i.checked_rem(factor).is_some_and(|r| r != 0) {
                        res.push(self.invalid(
                            name,
                            data.clone(),
                            format!("{name} in body should be a multiple of {factor}"),
                        ));
                    }
                }
                _ => {
                    let x = value.as_f64();
                    if factor <= 0.0 {
                        res.push(self.invalid(
                            name,
                            go_float(factor),
                            format!(
                                "factor MultipleOf declared for {name} must be positive: {}",
                                go_float(factor)
                            ),
                        ));
                    } else {
                        let mult = if factor < 1.0 {
                            1.0 / factor * x
                        } else {
                            x / factor
                        };
                        if !is_json_integer(mult) {
                            res.push(self.invalid(
                                name,
                                go_float(x),
                                format!(
                                    "{name} in body should be a multiple of {}",
                                    go_float(factor)
                                ),
                            ));
                        }
                    }
                }
            }
        }
        let bound = |limit: f64| -> (bool, String) {
            match value {
                Num::Int(_) if in_range(Num::Float(limit)) => (true, (limit as i64).to_string()),
                _ => (false, go_float(limit)),
            }
        };
        if let Some(min) = n.minimum {
            let (native, shown) = bound(min);
            let below = match (native, value) {
                (true, Num::Int(i)) => {
                    let m = min as i64;
                    if n.exclusive_minimum { i <= m } else { i < m }
                }
                _ => {
                    let x = value.as_f64();
                    if n.exclusive_minimum {
                        x <= min
                    } else {
                        x < min
                    }
                }
            };
            if below {
                let op = if n.exclusive_minimum {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                res.push(self.invalid(
                    name,
                    data.clone(),
                    format!("{name} in body should be {op} {shown}"),
                ));
            }
        }
        if let Some(max) = n.maximum {
            let (native, shown) = bound(max);
            let above = match (native, value) {
                (true, Num::Int(i)) => {
                    let m = max as i64;
                    if n.exclusive_maximum { i >= m } else { i > m }
                }
                _ => {
                    let x = value.as_f64();
                    if n.exclusive_maximum {
                        x >= max
                    } else {
                        x > max
                    }
                }
            };
            if above {
                let op = if n.exclusive_maximum {
                    "less than"
                } else {
                    "less than or equal to"
                };
                res.push(self.invalid(
                    name,
                    data,
                    format!("{name} in body should be {op} {shown}"),
                ));
            }
        }
    }

    fn check_array(
        &self,
        n: &Node,
        items: &[Value],
        name: &str,
        old: Option<&Value>,
        res: &mut Res,
    ) {
        if let Some(schema) = &n.items {
            let old_items = old.and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                let old_item = old_items.and_then(|o| super::list_type::correlate(n, item, o));
                res.merge(self.validate(schema, item, &format!("{name}[{i}]"), old_item));
            }
        }
        let size = items.len();
        if let Some(min) = n.min_items
            && (size as i64) < min
        {
            res.push(self.invalid(
                name,
                size.to_string(),
                format!("{name} in body should have at least {min} items"),
            ));
        }
        if let Some(max) = n.max_items
            && (size as i64) > max
        {
            res.push(FieldError {
                field: self.err_path(name),
                kind: ErrorKind::TooMany(Some(size), usize::try_from(max).unwrap_or(0)),
                detail: String::new(),
            });
        }
        // uniqueItems: refused in CRD schemas ("the runtime complexity becomes quadratic"),
        // so never checked here.
    }

    fn check_enum(&self, n: &Node, v: &Value, name: &str, res: &mut Res) {
        if n.enum_values.is_empty() {
            return;
        }
        let found = !v.is_null()
            && n.enum_values
                .iter()
                .any(|e| match (values::kind(v), values::kind(e)) {
                    (_, Kind::Null) => false,
                    (Kind::Int(a), Kind::Float(b)) => a as f64 == b,
                    (Kind::Float(a), Kind::Int(b)) => a as i64 == b,
                    _ => values::deep_equal(v, e),
                });
        if !found {
            let supported: Vec<String> = n
                .enum_values
                .iter()
                .map(|e| match e {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            res.push(FieldError {
                field: self.err_path(name),
                kind: ErrorKind::NotSupported(bad_value(v), supported),
                detail: String::new(),
            });
        }
    }

    fn check_object(
        &self,
        n: &Node,
        map: &serde_json::Map<String, Value>,
        name: &str,
        old: Option<&Value>,
        res: &mut Res,
    ) {
        let old_map = old.and_then(Value::as_object);
        // kube does not ratchet the resource's kind and apiVersion.
        let old_of = |k: &str| {
            if name.is_empty() && (k == "kind" || k == "apiVersion") {
                None
            } else {
                old_map.and_then(|o| o.get(k))
            }
        };
        let size = map.len();
        if let Some(min) = n.min_properties
            && (size as i64) < min
        {
            res.push(self.invalid(
                name,
                size.to_string(),
                format!("{name} in body should have at least {min} properties"),
            ));
        }
        if let Some(max) = n.max_properties
            && (size as i64) > max
        {
            res.push(FieldError {
                field: self.err_path(name),
                kind: ErrorKind::TooMany(Some(size), usize::try_from(max).unwrap_or(0)),
                detail: String::new(),
            });
        }
        match &n.additional {
            Some(Additional::Bool(false)) => {
                for k in map.keys().filter(|k| !n.properties.contains_key(*k)) {
                    res.push(self.invalid(
                        name,
                        bad_str(k),
                        format!("{name}.{k} in body is a forbidden property"),
                    ));
                }
            }
            Some(Additional::Schema(schema)) => {
                for (k, v) in map.iter().filter(|(k, _)| !n.properties.contains_key(*k)) {
                    res.merge(self.validate(schema, v, &format!("{name}.{k}"), old_of(k)));
                }
            }
            _ => {}
        }
        for (k, schema) in &n.properties {
            if let Some(v) = map.get(k) {
                res.merge(self.validate(schema, v, &path::child(name, k), old_of(k)));
            }
        }
        for k in &n.required {
            if !map.contains_key(k) {
                res.push(FieldError::required(
                    self.err_path(&format!("{name}.{k}")),
                    "",
                ));
            }
        }
    }
}

/// go-openapi's IsValueValidAgainstRange: whether `x` fits the type and format.
fn in_range(x: Num, type_name: &str, format: Option<Format>) -> bool {
    match (type_name, format) {
        ("integer", Some(Format::Int32)) => match x {
            Num::Int(i) => i32::try_from(i).is_ok(),
            Num::Float(f) => f.fract() == 0.0 && f >= i32::MIN as f64 && f <= i32::MAX as f64,
        },
        ("integer", _) => match x {
            Num::Int(_) => true,
            // strconv.ParseInt of the float printed with 'f': integral and within int64.
            Num::Float(f) => {
                f.fract() == 0.0
                    && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
            }
        },
        (_, Some(Format::Float)) => x.as_f64().abs() <= f32::MAX as f64,
        _ => true,
    }
}
