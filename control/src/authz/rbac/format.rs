//! Text as kube prints it: Go's `%q` quoting, a rule's compact form
//! (`rbacv1helpers.CompactString`) and an aggregate of errors (`utilerrors.NewAggregate`).

use k8s_openapi::api::rbac::v1::PolicyRule;

/// A string quoted as Go's `%q` (`strconv.Quote`) quotes it.
pub fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{b}' => quoted.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                quoted.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) < 0x10000 {
                    quoted.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    quoted.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A list of strings as Go's `%q` prints a `[]string`: `["a" "b"]`.
pub fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| go_quote(item)).collect();
    format!("[{}]", quoted.join(" "))
}

/// A rule as kube prints it in escalation errors (`rbacv1helpers.CompactString`):
/// `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get" "list"]}`; empty fields are
/// left out.
pub fn compact_string(rule: &PolicyRule) -> String {
    let fields: [(&str, &[String]); 5] = [
        ("APIGroups", rule.api_groups.as_deref().unwrap_or_default()),
        ("Resources", rule.resources.as_deref().unwrap_or_default()),
        (
            "NonResourceURLs",
            rule.non_resource_urls.as_deref().unwrap_or_default(),
        ),
        (
            "ResourceNames",
            rule.resource_names.as_deref().unwrap_or_default(),
        ),
        ("Verbs", rule.verbs.as_slice()),
    ];
    let parts: Vec<String> = fields
        .iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(name, values)| format!("{name}:{}", go_quote_list(values)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Errors joined as Go's `utilerrors.NewAggregate(errs).Error()`: one error as it is, several
/// de-duplicated in `[a, b]`; nothing for none.
pub fn aggregate_errors(errors: &[String]) -> String {
    match errors {
        [] => String::new(),
        [only] => only.clone(),
        _ => {
            let mut seen: Vec<&str> = Vec::new();
            for error in errors {
                if !seen.contains(&error.as_str()) {
                    seen.push(error);
                }
            }
            if seen.len() == 1 {
                seen[0].to_owned()
            } else {
                format!("[{}]", seen.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn quotes_as_go_does() {
        assert_eq!(go_quote("alice"), "\"alice\"");
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("line\nnext\u{1}"), "\"line\\nnext\\x01\"");
        assert_eq!(go_quote("café"), "\"café\"");
        assert_eq!(go_quote_list(&strings(&["a", "b"])), "[\"a\" \"b\"]");
        assert_eq!(go_quote_list(&[]), "[]");
    }

    #[test]
    fn compact_rules_leave_empty_fields_out() {
        let rule = PolicyRule {
            api_groups: Some(strings(&[""])),
            resources: Some(strings(&["pods"])),
            verbs: strings(&["get", "list"]),
            ..PolicyRule::default()
        };
        assert_eq!(
            compact_string(&rule),
            "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\" \"list\"]}"
        );
        let url = PolicyRule {
            non_resource_urls: Some(strings(&["/healthz"])),
            verbs: strings(&["get"]),
            ..PolicyRule::default()
        };
        assert_eq!(
            compact_string(&url),
            "{NonResourceURLs:[\"/healthz\"], Verbs:[\"get\"]}"
        );
        let named = PolicyRule {
            api_groups: Some(strings(&[""])),
            resources: Some(strings(&["configmaps"])),
            resource_names: Some(strings(&["a"])),
            verbs: strings(&["update"]),
            ..PolicyRule::default()
        };
        assert_eq!(
            compact_string(&named),
            "{APIGroups:[\"\"], Resources:[\"configmaps\"], ResourceNames:[\"a\"], Verbs:[\"update\"]}"
        );
    }

    #[test]
    fn aggregates_as_go_does() {
        assert_eq!(aggregate_errors(&[]), "");
        assert_eq!(aggregate_errors(&strings(&["a"])), "a");
        assert_eq!(aggregate_errors(&strings(&["a", "a"])), "a");
        assert_eq!(aggregate_errors(&strings(&["a", "b", "a"])), "[a, b]");
    }
}
