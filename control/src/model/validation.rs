//! Field validation with kube-apiserver's messages: names, labels, annotations and the
//! building blocks kind-specific validation uses.

use std::{collections::BTreeMap, fmt};

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The field is required but absent.
    Required,
    /// The value is not valid.
    Invalid(String),
    /// The value duplicates another.
    Duplicate(String),
    /// The value is not one of the supported ones.
    NotSupported(String, Vec<String>),
    /// The value is too long.
    TooLong(usize),
    /// The field may not be set (or changed).
    Forbidden,
    /// The value has the wrong type (kube's TypeInvalid: printed as "Invalid value").
    TypeInvalid(String),
    /// A list or map has too many items: the actual count (when known) and the maximum.
    TooMany(Option<usize>, usize),
}

impl ErrorKind {
    /// The `metav1.CauseType`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid(_) => "FieldValueInvalid",
            Self::Duplicate(_) => "FieldValueDuplicate",
            Self::NotSupported(..) => "FieldValueNotSupported",
            Self::TooLong(_) => "FieldValueTooLong",
            Self::Forbidden => "FieldValueForbidden",
            Self::TypeInvalid(_) => "FieldValueTypeInvalid",
            Self::TooMany(..) => "FieldValueTooMany",
        }
    }
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field (`metadata.name`, `spec.ports[1].port`).
    pub field: String,
    /// What is wrong.
    pub kind: ErrorKind,
    /// Extra explanation.
    pub detail: String,
}

impl FieldError {
    /// A required field is missing.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: ErrorKind::Required,
            detail: detail.into(),
        }
    }
    /// A value is invalid.
    pub fn invalid(
        field: impl Into<String>,
        value: impl fmt::Display,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            kind: ErrorKind::Invalid(value.to_string()),
            detail: detail.into(),
        }
    }
    /// A value is duplicated.
    pub fn duplicate(field: impl Into<String>, value: impl fmt::Display) -> Self {
        Self {
            field: field.into(),
            kind: ErrorKind::Duplicate(value.to_string()),
            detail: String::new(),
        }
    }
    /// A value is not supported.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl fmt::Display,
        supported: &[&str],
    ) -> Self {
        Self {
            field: field.into(),
            kind: ErrorKind::NotSupported(
                value.to_string(),
                supported.iter().map(|s| (*s).to_owned()).collect(),
            ),
            detail: String::new(),
        }
    }
    /// A field may not be set or changed.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: ErrorKind::Forbidden,
            detail: detail.into(),
        }
    }
    /// A value is too long.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self {
            field: field.into(),
            kind: ErrorKind::TooLong(max),
            detail: String::new(),
        }
    }

    /// The message without the field (for `details.causes[].message`).
    pub fn cause_message(&self) -> String {
        let head = match &self.kind {
            ErrorKind::Required => "Required value".to_owned(),
            ErrorKind::Invalid(v) | ErrorKind::TypeInvalid(v) => {
                format!("Invalid value: {}", quote(v))
            }
            ErrorKind::Duplicate(v) => format!("Duplicate value: {}", quote(v)),
            ErrorKind::NotSupported(v, supported) => {
                let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                format!(
                    "Unsupported value: {}: supported values: {}",
                    quote(v),
                    list.join(", ")
                )
            }
            ErrorKind::TooLong(max) => {
                let unit = if *max == 1 { "byte" } else { "bytes" };
                format!("Too long: may not be more than {max} {unit}")
            }
            ErrorKind::TooMany(actual, max) => {
                let unit = if *max == 1 { "item" } else { "items" };
                match actual {
                    Some(actual) => format!("Too many: {actual}: must have at most {max} {unit}"),
                    None => format!("Too many: must have at most {max} {unit}"),
                }
            }
            ErrorKind::Forbidden => "Forbidden".to_owned(),
        };
        if self.detail.is_empty() {
            head
        } else {
            format!("{head}: {}", self.detail)
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.cause_message())
    }
}

/// Quote a value the way Go's %q does for plain strings; numbers stay bare.
fn quote(v: &str) -> String {
    // Numbers, booleans, null, JSON (`{"a":1}`, `["x"]`), already quoted strings and
    // Go-rendered values (`[]string{"10.96.0.5"}`) print as they are: values rendered the
    // way kube prints them (see `crd::schema`'s errors) stay exactly so.
    let prerendered = v.parse::<f64>().is_ok()
        || matches!(v, "true" | "false" | "null")
        || v.starts_with("[]")
        || (v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('{') && v.ends_with('}'))
                || (v.starts_with('[') && v.ends_with(']'))));
    if prerendered {
        v.to_owned()
    } else {
        format!("{v:?}")
    }
}

/// Accumulates field errors under a path.
pub type ErrorList = Vec<FieldError>;

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;
const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Why `value` is not an RFC 1123 label, if it is not.
pub fn dns1123_label(value: &str) -> Option<String> {
    if value.len() > DNS1123_LABEL_MAX {
        return Some(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    let ok = !value.is_empty()
        && value.chars().all(|c| is_alnum_lower(c) || c == '-')
        && value.starts_with(is_alnum_lower)
        && value.ends_with(is_alnum_lower);
    (!ok).then(|| {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start \
         and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is \
         '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            .to_owned()
    })
}

/// Why `value` is not an RFC 1123 subdomain, if it is not.
pub fn dns1123_subdomain(value: &str) -> Option<String> {
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        return Some(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    let ok = !value.is_empty()
        && value.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| is_alnum_lower(c) || c == '-')
                && part.starts_with(is_alnum_lower)
                && part.ends_with(is_alnum_lower)
        });
    (!ok).then(|| {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must \
         start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is \
         '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            .to_owned()
    })
}

fn name_part_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Why `key` is not a qualified name (`[prefix/]name`, as label and annotation keys are).
pub fn qualified_name(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty() || dns1123_subdomain(prefix).is_some())
    {
        return Some("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".to_owned());
    }
    if name.len() > 63 {
        return Some("name part must be no more than 63 characters".to_owned());
    }
    (!name_part_ok(name)).then(|| {
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
         alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
         '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
            .to_owned()
    })
}

/// Why `value` is not a valid label value, if it is not.
pub fn label_value(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.len() > LABEL_VALUE_MAX {
        return Some(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    (!name_part_ok(value)).then(|| {
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must \
         start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used \
         for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
            .to_owned()
    })
}

/// Why `name` is not a valid path segment name (kube's ValidatePathSegmentName), if not.
pub fn path_segment_name(name: &str) -> Option<String> {
    if name == "." || name == ".." {
        return Some(format!("may not be '{name}'"));
    }
    for forbidden in ["/", "%"] {
        if name.contains(forbidden) {
            return Some(format!("may not contain '{forbidden}'"));
        }
    }
    None
}

/// Validate a label map at `path` (`metadata.labels`).
pub fn labels(map: &BTreeMap<String, String>, path: &str, errors: &mut ErrorList) {
    for (key, value) in map {
        if let Some(why) = qualified_name(key) {
            errors.push(FieldError::invalid(path, key, why));
        }
        if let Some(why) = label_value(value) {
            errors.push(FieldError::invalid(format!("{path}[{key}]"), value, why));
        }
    }
}

/// Validate an annotation map at `path`: keys are qualified names, total size ≤ 256 KiB.
pub fn annotations(map: &BTreeMap<String, String>, path: &str, errors: &mut ErrorList) {
    let mut total = 0;
    for (key, value) in map {
        if let Some(why) = qualified_name(&key.to_lowercase()) {
            errors.push(FieldError::invalid(path, key, why));
        }
        total += key.len() + value.len();
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errors.push(FieldError {
            field: path.to_owned(),
            kind: ErrorKind::TooLong(TOTAL_ANNOTATION_SIZE),
            detail: String::new(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(dns1123_subdomain("web-1.example").is_none());
        assert!(dns1123_subdomain("Web").is_some());
        assert!(dns1123_subdomain("-web").is_some());
        assert!(dns1123_subdomain("web..x").is_some());
        assert!(dns1123_subdomain(&"a".repeat(254)).is_some());
        assert!(dns1123_label("web-1").is_none());
        assert!(dns1123_label("web.1").is_some());
        assert!(dns1123_label(&"a".repeat(64)).is_some());
    }

    #[test]
    fn label_keys_and_values() {
        assert!(qualified_name("app").is_none());
        assert!(qualified_name("app.kubernetes.io/name").is_none());
        assert!(qualified_name("App_Name.x").is_none());
        assert!(qualified_name("/app").is_some());
        assert!(qualified_name("Example.com/app").is_some());
        assert!(qualified_name("app-").is_some());
        assert!(label_value("").is_none());
        assert!(label_value("v1.2_x").is_none());
        assert!(label_value(&"v".repeat(64)).is_some());
        assert!(label_value("a b").is_some());
    }

    #[test]
    fn messages_match_kube() {
        let e = FieldError::invalid("metadata.name", "Web", "bad");
        assert_eq!(e.to_string(), "metadata.name: Invalid value: \"Web\": bad");
        let e = FieldError::not_supported(
            "spec.restartPolicy",
            "Sometimes",
            &["Always", "Never", "OnFailure"],
        );
        assert_eq!(
            e.to_string(),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\""
        );
        let e = FieldError::invalid(
            "spec.ports[0].port",
            70000,
            "must be between 1 and 65535, inclusive",
        );
        assert_eq!(
            e.to_string(),
            "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
        );
    }
}
