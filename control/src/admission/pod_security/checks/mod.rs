//! The Pod Security Standards' checks, one function per check version, as
//! k8s.io/pod-security-admission/policy (v0.33, the checks of Kubernetes 1.33). Each returns
//! kube's forbidden reason and detail word for word.

mod host;
mod privilege;
mod profiles;
mod registry;
mod sysctls;
mod users;
mod volumes;

use k8s_openapi::api::core::v1::{ContainerPort, PodSpec, SecurityContext};

pub use registry::{CheckFn, CheckId, MAX_CHECK_VERSION, applicable_checks};

/// One check's verdict on a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckResult {
    /// True when the check allows the pod.
    pub allowed: bool,
    /// Short, always shown when forbidden: `hostPath volumes`, `privileged`.
    pub forbidden_reason: String,
    /// The specific values, shown in parentheses after the reason: `volume "x"`.
    pub forbidden_detail: String,
}

impl CheckResult {
    /// The pod passes.
    pub fn allow() -> Self {
        Self {
            allowed: true,
            ..Self::default()
        }
    }

    /// The pod fails, for `reason` (`detail` names what).
    pub fn forbid(reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            allowed: false,
            forbidden_reason: reason.into(),
            forbidden_detail: detail.into(),
        }
    }
}

/// What the checks read of a container (a `Container` or an `EphemeralContainer`).
pub(super) struct ContainerView<'a> {
    name: &'a str,
    security_context: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
}

/// Every container of the pod in kube's order: init containers, containers, ephemeral
/// containers (policy/visitor.go).
fn containers(spec: &PodSpec) -> impl Iterator<Item = ContainerView<'_>> {
    let init = spec.init_containers.iter().flatten();
    let regular = spec.containers.iter();
    let plain = init.chain(regular).map(|c| ContainerView {
        name: &c.name,
        security_context: c.security_context.as_ref(),
        ports: c.ports.as_deref().unwrap_or_default(),
    });
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| ContainerView {
            name: &c.name,
            security_context: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        });
    plain.chain(ephemeral)
}

/// `"a", "b"` (kube's joinQuote: quotes without escaping).
fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let inner: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("\"{}\"", inner.join("\", \""))
}

/// `singular` for one, `plural` otherwise.
fn pluralize(singular: &'static str, plural: &'static str, count: usize) -> &'static str {
    if count == 1 { singular } else { plural }
}

/// `what "a", "b"` with `what` pluralized: `container "c"`, `containers "a", "b"`.
fn named(singular: &'static str, plural: &'static str, names: &[&str]) -> String {
    format!(
        "{} {}",
        pluralize(singular, plural, names.len()),
        join_quote(names)
    )
}

/// A string quoted as Go's `%q` (strconv.Quote) quotes it.
fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if u32::from(c) < 0x80 => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c if u32::from(c) <= 0xffff => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint`, for the characters that matter in practice: control and format
/// characters and separators other than the ASCII space are not printable.
fn is_go_printable(c: char) -> bool {
    !(c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{a0}'
                | '\u{600}'..='\u{605}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{feff}'
        ))
}

#[cfg(test)]
mod test_support {
    //! Building pods from JSON, as clients send them.

    use k8s_openapi::{api::core::v1::PodSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};
    use serde_json::Value;

    /// A pod spec from JSON.
    pub fn spec(json: Value) -> PodSpec {
        serde_json::from_value(json).expect("test pod spec is valid")
    }

    /// Pod metadata with these annotations.
    pub fn annotated(pairs: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            annotations: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    /// A check's (reason, detail) when it forbids, panicking when it allows.
    pub fn forbidden(result: super::CheckResult) -> (String, String) {
        assert!(!result.allowed, "expected the check to forbid");
        (result.forbidden_reason, result.forbidden_detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_are_visited_init_regular_ephemeral() {
        let spec = test_support::spec(json!({
            "containers": [{"name": "c1"}, {"name": "c2"}],
            "initContainers": [{"name": "i1"}],
            "ephemeralContainers": [{"name": "e1"}],
        }));
        let names: Vec<&str> = containers(&spec).map(|c| c.name).collect();
        assert_eq!(names, ["i1", "c1", "c2", "e1"]);
    }

    #[test]
    fn quoting_helpers_match_go() {
        assert_eq!(join_quote::<&str>(&[]), "");
        assert_eq!(join_quote(&["a", "b"]), "\"a\", \"b\"");
        assert_eq!(named("volume", "volumes", &["x"]), "volume \"x\"");
        assert_eq!(
            named("volume", "volumes", &["x", "y"]),
            "volumes \"x\", \"y\""
        );
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
        assert_eq!(go_quote("\u{ad}"), "\"\\u00ad\"");
    }
}
