//! JSON values as kube-apiserver sees them after decoding, and values printed the way Go
//! prints them in kube's messages (`%v`, `%q`, JSON).

use serde_json::{Map, Value};

/// A decoded JSON value: kube decodes integers that fit an int64 as int64, every other
/// number as float64.
pub(crate) enum Kind<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(&'a str),
    Array(&'a [Value]),
    Object(&'a Map<String, Value>),
}

pub(crate) fn kind(v: &Value) -> Kind<'_> {
    match v {
        Value::Null => Kind::Null,
        Value::Bool(b) => Kind::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::Int(i),
            None => Kind::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Kind::String(s),
        Value::Array(a) => Kind::Array(a),
        Value::Object(o) => Kind::Object(o),
    }
}

/// The OpenAPI type of a (non-null) value, as kube-openapi's type validator names it.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match kind(v) {
        Kind::Null => "null",
        Kind::Bool(_) => "boolean",
        Kind::Int(_) => "integer",
        Kind::Float(_) => "number",
        Kind::String(_) => "string",
        Kind::Array(_) => "array",
        Kind::Object(_) => "object",
    }
}

/// Go's `%v` of a float64 (`1e+06`, `0.5`, `3`).
pub(crate) fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // Shortest round-trip digits in scientific form: "1.234567e6", "-5e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    } else {
        format!("{f}")
    }
}

/// Go's `%q` of a string.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A field error's bad value as kube prints it: strings quoted, numbers and booleans bare,
/// everything else as JSON. (`FieldError`'s display keeps such pre-rendered values as they
/// are.)
pub(crate) fn bad_value(v: &Value) -> String {
    match kind(v) {
        Kind::String(s) => go_quote(s),
        Kind::Float(f) => go_float(f),
        _ => go_json(v),
    }
}

/// Go's `json.Marshal` of a decoded value: object keys sorted, `<`, `>` and `&` escaped.
pub(crate) fn go_json(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out, 0);
    out
}

fn write_json(v: &Value, out: &mut String, depth: usize) {
    const MAX_DEPTH: usize = 64;
    let string = |s: &str, out: &mut String| {
        let quoted = Value::String(s.to_owned()).to_string();
        out.push_str(
            &quoted
                .replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026"),
        );
    };
    match v {
        Value::Array(items) if depth < MAX_DEPTH => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out, depth + 1);
            }
            out.push(']');
        }
        Value::Object(map) if depth < MAX_DEPTH => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(k, out);
                out.push(':');
                if let Some(item) = map.get(k) {
                    write_json(item, out, depth + 1);
                }
            }
            out.push('}');
        }
        Value::Array(_) | Value::Object(_) => out.push_str("null"),
        Value::String(s) => string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

/// A bad value that is a Go string (type names, messages' values).
pub(crate) fn bad_str(s: &str) -> String {
    go_quote(s)
}

/// go-openapi's `swag.IsFloat64AJSONInteger`: an integral float within ±2^53.
pub(crate) fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_992.0; // 1 << 53
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    if f.fract() == 0.0 {
        return true;
    }
    let g = f.trunc();
    let diff = (f - g).abs();
    if g == 0.0 {
        return diff < 1e-9 * f64::MIN_POSITIVE;
    }
    diff / (f.abs() + g.abs()) < 1e-9
}

/// Kube's (Go's) deep equality of decoded JSON: an int64 never equals a float64. Values
/// nested deeper than the engine follows count as different.
pub(crate) fn deep_equal(a: &Value, b: &Value) -> bool {
    deep_equal_at(a, b, 0)
}

fn deep_equal_at(a: &Value, b: &Value, depth: usize) -> bool {
    const MAX_DEPTH: usize = 256;
    if depth > MAX_DEPTH {
        return false;
    }
    match (kind(a), kind(b)) {
        (Kind::Int(x), Kind::Int(y)) => x == y,
        (Kind::Float(x), Kind::Float(y)) => x == y,
        (Kind::Array(x), Kind::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| deep_equal_at(a, b, depth + 1))
        }
        (Kind::Object(x), Kind::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_equal_at(v, w, depth + 1)))
        }
        (Kind::Null, Kind::Null) => true,
        (Kind::Bool(x), Kind::Bool(y)) => x == y,
        (Kind::String(x), Kind::String(y)) => x == y,
        _ => false,
    }
}

/// How many values `v` holds (itself, array items, object members, recursively), up to
/// `cap`: bounds the work that CEL rules may do on it.
pub(crate) fn weight(v: &Value, cap: usize) -> usize {
    let mut stack = vec![v];
    let mut n = 0usize;
    while let Some(v) = stack.pop() {
        n += 1;
        if n >= cap {
            return cap;
        }
        match v {
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(o) => stack.extend(o.values()),
            Value::String(s) => n = n.saturating_add(s.len() / 64),
            _ => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_print_like_go() {
        assert_eq!(go_float(1_000_000.0), "1e+06");
        assert_eq!(go_float(1_234_567.0), "1.234567e+06");
        assert_eq!(go_float(123_456.0), "123456");
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(0.000_01), "1e-05");
        assert_eq!(go_float(-2.5), "-2.5");
        assert_eq!(go_float(3.0), "3");
    }

    #[test]
    fn values_render_like_kube() {
        assert_eq!(bad_value(&json!("a\"b")), "\"a\\\"b\"");
        assert_eq!(bad_value(&json!(5)), "5");
        assert_eq!(bad_value(&json!(1.5)), "1.5");
        assert_eq!(bad_value(&json!(true)), "true");
        assert_eq!(bad_value(&json!({"b": 1, "a": [2]})), "{\"a\":[2],\"b\":1}");
        assert_eq!(go_quote("\u{1}x"), "\"\\x01x\"");
        assert_eq!(
            go_json(&json!({"z": "<a&b>", "a": null})),
            r#"{"a":null,"z":"\u003ca\u0026b\u003e"}"#
        );
    }

    #[test]
    fn integers_and_equality() {
        assert!(is_json_integer(3.0));
        assert!(!is_json_integer(3.5));
        assert!(!is_json_integer(1e300));
        assert!(deep_equal(&json!({"a": [1, "x"]}), &json!({"a": [1, "x"]})));
        assert!(!deep_equal(&json!(1), &json!(1.0)));
        assert_eq!(weight(&json!([1, [2, 3], {"a": 4}]), 100), 7);
        assert_eq!(weight(&json!([1, 2, 3]), 2), 2);
    }
}
