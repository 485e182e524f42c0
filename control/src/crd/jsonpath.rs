//! The JSONPath subset CRD printer columns use (kube validates them as "simple" paths):
//! `.spec.replicas`, `.status.conditions[0].type`, `.metadata.labels['app.kubernetes.io/name']`,
//! `.items[*].name` and filters such as `.status.conditions[?(@.type=="Ready")].status`.

use serde_json::Value;

/// Why a path cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSONPath {path:?}: {why}")]
pub struct PathError {
    path: String,
    why: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    /// `[?(@.a.b=="value")]` (also `!=`, and numbers or booleans on the right).
    Filter(Vec<String>, bool, Value),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

/// Longest path accepted (a printer column is a short expression).
const MAX_LEN: usize = 1024;

impl JsonPath {
    /// Parse `path`, with or without kubectl's `{…}` braces.
    pub fn parse(path: &str) -> Result<Self, PathError> {
        let error = |why| PathError {
            path: path.to_owned(),
            why,
        };
        if path.len() > MAX_LEN {
            return Err(error("too long"));
        }
        let text = path
            .strip_prefix('{')
            .and_then(|p| p.strip_suffix('}'))
            .unwrap_or(path);
        let text = text.strip_prefix('$').unwrap_or(text);
        let mut steps = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                if end == 0 {
                    return Err(error("empty field name"));
                }
                steps.push(Step::Field(after[..end].to_owned()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = bracket_end(after).ok_or_else(|| error("unclosed '['"))?;
                let inner = after[..end].trim();
                steps.push(bracket(inner).ok_or_else(|| error("unsupported subscript"))?);
                rest = &after[end + 1..];
            } else {
                return Err(error("expected '.' or '['"));
            }
        }
        Ok(Self(steps))
    }

    /// Every value the path selects in `object`, in document order.
    pub fn find<'a>(&self, object: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![object];
        for step in &self.0 {
            let mut next = Vec::new();
            for value in current {
                match step {
                    Step::Field(name) => next.extend(value.get(name)),
                    Step::Index(i) => next.extend(value.get(*i)),
                    Step::All => match value {
                        Value::Array(items) => next.extend(items),
                        Value::Object(fields) => next.extend(fields.values()),
                        _ => {}
                    },
                    Step::Filter(field, equal, expected) => {
                        for item in value.as_array().into_iter().flatten() {
                            let found = field.iter().try_fold(item, |v, f| v.get(f));
                            if found.is_some_and(|f| (f == expected) == *equal) {
                                next.push(item);
                            }
                        }
                    }
                }
            }
            current = next;
        }
        current
    }
}

/// Where the bracket opened just before `text` closes (quotes respected).
fn bracket_end(text: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ']') => return Some(i),
            _ => {}
        }
    }
    None
}

fn unquote(text: &str) -> Option<&str> {
    text.strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .or_else(|| text.strip_prefix('"').and_then(|t| t.strip_suffix('"')))
}

fn bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Ok(index) = inner.parse::<usize>() {
        return Some(Step::Index(index));
    }
    if let Some(name) = unquote(inner) {
        return Some(Step::Field(name.to_owned()));
    }
    let condition = inner.strip_prefix("?(")?.strip_suffix(')')?.trim();
    let (left, equal, right) = if let Some((l, r)) = condition.split_once("==") {
        (l, true, r)
    } else {
        let (l, r) = condition.split_once("!=")?;
        (l, false, r)
    };
    let field: Vec<String> = left
        .trim()
        .strip_prefix("@.")?
        .split('.')
        .map(str::to_owned)
        .collect();
    let right = right.trim();
    let expected = match unquote(right) {
        Some(text) => Value::String(text.to_owned()),
        None => serde_json::from_str(right).ok()?,
    };
    Some(Step::Filter(field, equal, expected))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn find(path: &str, object: &Value) -> Vec<Value> {
        JsonPath::parse(path)
            .expect("a path")
            .find(object)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn printer_column_paths() {
        let object = json!({
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"replicas": 3, "items": [{"name": "a"}, {"name": "b"}]},
            "status": {"conditions": [{"type": "Synced", "status": "False"},
                                      {"type": "Ready", "status": "True"}]},
        });
        assert_eq!(find(".spec.replicas", &object), [json!(3)]);
        assert_eq!(find("{.spec.items[1].name}", &object), [json!("b")]);
        assert_eq!(
            find(".spec.items[*].name", &object),
            [json!("a"), json!("b")]
        );
        assert_eq!(
            find(".metadata.labels['app.kubernetes.io/name']", &object),
            [json!("web")]
        );
        assert_eq!(
            find(".status.conditions[?(@.type==\"Ready\")].status", &object),
            [json!("True")]
        );
        assert!(find(".spec.missing.deeper", &object).is_empty());
    }

    #[test]
    fn nonsense_is_an_error() {
        for bad in ["spec", ".spec[", ".a..b", ".a[?(@.x>1)]", ".a[-1]"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }
}
