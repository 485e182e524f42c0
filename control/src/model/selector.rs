//! Label selectors (`app=web,tier!=db,env in (a,b),!legacy`) and field selectors
//! (`spec.nodeName=n1,status.phase!=Running`), parsed once and matched per object.

use std::collections::BTreeMap;

use super::validation::{label_value, qualified_name};

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` / `key==value`.
    Equals(String, String),
    /// `key!=value` (also matches objects without the key).
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)` (also matches objects without the key).
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Equals(k, v) => labels.get(k) == Some(v),
            Self::NotEquals(k, v) => labels.get(k) != Some(v),
            Self::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Self::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Self::Exists(k) => labels.contains_key(k),
            Self::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

impl LabelSelector {
    /// Parse the `labelSelector` query syntax.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for term in split_terms(text)? {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(term)?);
        }
        Ok(Self(requirements))
    }

    /// True if `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| r.matches(labels))
    }

    /// True if the selector has no requirement.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The requirements of a `metav1.LabelSelector` (kube's `LabelSelectorAsSelector` for a
    /// selector that is present: an empty one selects everything). Unknown operators, `In` /
    /// `NotIn` without values and `Exists` / `DoesNotExist` with values are errors.
    pub fn from_api(
        selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    ) -> Result<Self, String> {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Ok(Requirement::Equals(check_key(k)?, check_value(v)?)))
            .collect::<Result<_, String>>()?;
        for expression in selector.match_expressions.iter().flatten() {
            let key = check_key(&expression.key)?;
            let values = expression.values.clone().unwrap_or_default();
            let requirement = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err("for 'in', 'notin' operators, values set can't be empty".to_owned());
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err("values set must be empty for exists and does not exist".to_owned());
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            requirements.push(requirement);
        }
        Ok(Self(requirements))
    }
}

/// Split on commas that are not inside parentheses.
fn split_terms(text: &str) -> Result<Vec<&str>, String> {
    let mut terms = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unexpected ')' in label selector {text:?}"));
                }
            }
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in label selector {text:?}"));
    }
    terms.push(&text[start..]);
    Ok(terms)
}

fn check_key(key: &str) -> Result<String, String> {
    match qualified_name(key) {
        None => Ok(key.to_owned()),
        Some(why) => Err(format!("invalid label key {key:?}: {why}")),
    }
}

fn check_value(value: &str) -> Result<String, String> {
    match label_value(value) {
        None => Ok(value.to_owned()),
        Some(why) => Err(format!("invalid label value: {value:?}: {why}")),
    }
}

fn parse_set(key: &str, rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a (set) after {key:?}, found {rest:?}"))?;
    inner.split(',').map(|v| check_value(v.trim())).collect()
}

fn parse_requirement(term: &str) -> Result<Requirement, String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(check_key(key.trim())?));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(
            check_key(key.trim())?,
            check_value(value.trim())?,
        ));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(
            check_key(key.trim())?,
            check_value(value.trim())?,
        ));
    }
    let mut words = term.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default().trim();
    let rest = words.next().unwrap_or_default().trim();
    if rest.is_empty() {
        return Ok(Requirement::Exists(check_key(key)?));
    }
    if let Some(set) = rest.strip_prefix("notin") {
        return Ok(Requirement::NotIn(check_key(key)?, parse_set(key, set)?));
    }
    if let Some(set) = rest.strip_prefix("in") {
        return Ok(Requirement::In(check_key(key)?, parse_set(key, set)?));
    }
    Err(format!(
        "unable to parse requirement {term:?}: expected =, ==, !=, in, notin or a bare key"
    ))
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// Field path (`spec.nodeName`).
    pub field: String,
    /// Value compared with.
    pub value: String,
    /// True for `!=`.
    pub negated: bool,
}

/// A parsed field selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

impl FieldSelector {
    /// Parse the `fieldSelector` syntax, accepting only `supported` fields.
    pub fn parse(text: &str, supported: &[&str]) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, value, negated) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, v, false)
            } else {
                return Err(format!(
                    "invalid field selector term {term:?}: expected field=value or field!=value"
                ));
            };
            let field = field.trim();
            if !supported.contains(&field) {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push(FieldRequirement {
                field: field.to_owned(),
                value: value.trim().to_owned(),
                negated,
            });
        }
        Ok(Self(terms))
    }

    /// True if the object's field values (looked up by `value_of`) satisfy every term.
    pub fn matches(&self, value_of: impl Fn(&str) -> String) -> bool {
        self.0
            .iter()
            .all(|t| (value_of(&t.field) == t.value) != t.negated)
    }

    /// The value an equality term requires for `field`, if any (used to narrow watches).
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|t| t.field == field && !t.negated)
            .map(|t| t.value.as_str())
    }

    /// True if the selector has no term.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Render a selector object as the string form kubectl and Scale status use
/// (`app=web,tier in (a,b),!legacy`). Accepts a `LabelSelector` or a plain label map
/// (ReplicationControllers, Services).
pub fn render(selector: &serde_json::Value) -> String {
    use serde_json::Value;
    let labels = selector.get("matchLabels").unwrap_or(selector);
    let mut terms: Vec<String> = labels
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| *k != "matchExpressions")
                .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    for e in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        terms.push(
            match e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
            {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_owned(),
                _ => format!("!{key}"),
            },
        );
    }
    terms.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_operator() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("env", "prod")]);
        for (selector, expected) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("env in (prod, staging)", true),
            ("env in (dev)", false),
            ("env notin (dev)", true),
            ("missing notin (dev)", true),
            ("tier", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app=web,env in (prod),!legacy", true),
            ("app=web,env in (dev)", false),
        ] {
            let parsed =
                LabelSelector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
            assert_eq!(parsed.matches(&l), expected, "{selector}");
        }
    }

    #[test]
    fn api_selectors_become_requirements() {
        let selector = |v: serde_json::Value| {
            let selector = serde_json::from_value(v).expect("a LabelSelector");
            LabelSelector::from_api(&selector)
        };
        let l = labels(&[("app", "web"), ("env", "prod")]);
        let web = selector(serde_json::json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]},
                                 {"key": "legacy", "operator": "DoesNotExist"}]}))
        .expect("valid");
        assert!(web.matches(&l));
        let everything = selector(serde_json::json!({})).expect("valid");
        assert!(everything.is_empty() && everything.matches(&l));
        for bad in [
            serde_json::json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
            serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Near"}]}),
            serde_json::json!({"matchLabels": {"a": "not a value"}}),
        ] {
            assert!(selector(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "app=we b",
            "env in prod",
            "env in (a",
            "a)b",
            "-x=y",
            "k=v=w=x!",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn selectors_render_like_kubectl() {
        let selector = serde_json::json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "legacy", "operator": "DoesNotExist"}]});
        assert_eq!(render(&selector), "app=web,tier in (a,b),!legacy");
        assert_eq!(render(&serde_json::json!({"app": "web"})), "app=web");
    }

    #[test]
    fn field_selectors() {
        let s = FieldSelector::parse(
            "spec.nodeName=n1,status.phase!=Failed",
            &["spec.nodeName", "status.phase"],
        )
        .expect("parse");
        let value = |f: &str| match f {
            "spec.nodeName" => "n1".to_owned(),
            "status.phase" => "Running".to_owned(),
            _ => String::new(),
        };
        assert!(s.matches(value));
        assert_eq!(s.required_value("spec.nodeName"), Some("n1"));
        assert!(
            FieldSelector::parse("spec.bogus=x", &["spec.nodeName"])
                .unwrap_err()
                .contains("not supported")
        );
        let empty_node = FieldSelector::parse("spec.nodeName=", &["spec.nodeName"]).expect("parse");
        assert!(empty_node.matches(|_| String::new()));
    }
}
