//! `pattern`: kube compiles it with Go's `regexp` (RE2 syntax, unanchored match). The regex
//! crate has the same syntax family and linear-time guarantee; its `\d`, `\w`, `\s` and `\b`
//! are Unicode-aware where Go's are ASCII, so those are rewritten to their ASCII meaning.

use regex::{Regex, RegexBuilder};

/// The longest pattern accepted (Skiff's bound; kube's is the request size).
const MAX_PATTERN_LEN: usize = 4096;
/// The compiled program's size limit: patterns that compile to more are refused (Go refuses
/// repeat counts over 1000 for the same reason).
const SIZE_LIMIT: usize = 2 << 20;

/// A compiled `pattern`.
#[derive(Debug)]
pub(crate) struct Pattern {
    /// The pattern as written (kube prints it in messages).
    pub source: String,
    re: Regex,
}

impl Pattern {
    /// Compile `source`, or say why it is not a valid regular expression (kube's wording:
    /// "error parsing regexp: ...").
    pub(crate) fn compile(source: &str) -> Result<Pattern, String> {
        if source.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "error parsing regexp: pattern longer than {MAX_PATTERN_LEN} bytes"
            ));
        }
        let re = RegexBuilder::new(&go_to_rust(source))
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(SIZE_LIMIT)
            .nest_limit(64)
            .build()
            .map_err(|e| {
                let why = match &e {
                    regex::Error::Syntax(text) => text
                        .lines()
                        .rev()
                        .find(|l| l.starts_with("error: "))
                        .map(|l| l.trim_start_matches("error: ").to_owned())
                        .unwrap_or_else(|| text.clone()),
                    regex::Error::CompiledTooBig(_) => "expression too large".to_owned(),
                    other => other.to_string(),
                };
                format!("error parsing regexp: {why}: `{source}`")
            })?;
        Ok(Pattern {
            source: source.to_owned(),
            re,
        })
    }

    pub(crate) fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }
}

/// Rewrite Go's ASCII-only Perl classes and word boundaries for the regex crate.
fn go_to_rust(source: &str) -> String {
    let mut out = String::with_capacity(source.len() + 16);
    let mut chars = source.chars();
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let replacement = match (next, in_class) {
                    ('d', false) => Some("[0-9]"),
                    ('D', false) => Some("[^0-9]"),
                    ('w', false) => Some("[0-9A-Za-z_]"),
                    ('W', false) => Some("[^0-9A-Za-z_]"),
                    ('s', false) => Some("[\\t\\n\\f\\r ]"),
                    ('S', false) => Some("[^\\t\\n\\f\\r ]"),
                    ('b', false) => Some("(?-u:\\b)"),
                    ('B', false) => Some("(?-u:\\B)"),
                    ('d', true) => Some("0-9"),
                    ('w', true) => Some("0-9A-Za-z_"),
                    ('s', true) => Some("\\t\\n\\f\\r "),
                    _ => None,
                };
                match replacement {
                    Some(r) => out.push_str(r),
                    None => {
                        out.push('\\');
                        out.push(next);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push(c);
                continue;
            }
            ']' if in_class && !class_start => {
                in_class = false;
                out.push(c);
            }
            '^' if class_start => {
                out.push(c);
                continue;
            }
            _ => out.push(c),
        }
        class_start = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_semantics() {
        let p = Pattern::compile(r"^\d+$").unwrap();
        assert!(p.is_match("123"));
        assert!(!p.is_match("١٢٣"), "Go's \\d is ASCII");
        let p = Pattern::compile(r"[\w.-]+@x").unwrap();
        assert!(p.is_match("a.b-c@x"));
        let p = Pattern::compile(r"[]a]").unwrap();
        assert!(p.is_match("]"));
        assert!(
            Pattern::compile("abc").unwrap().is_match("xxabcxx"),
            "unanchored"
        );
    }

    #[test]
    fn invalid_patterns_are_errors() {
        let e = Pattern::compile("(abc").unwrap_err();
        assert!(e.starts_with("error parsing regexp: "), "{e}");
        assert!(e.ends_with(": `(abc`"), "{e}");
        assert!(Pattern::compile("a(?=b)").is_err(), "no look-ahead in RE2");
        assert!(Pattern::compile("(a{1000}){1000}").is_err());
        assert!(Pattern::compile(&"(".repeat(500)).is_err());
        assert!(Pattern::compile("\\").is_err());
    }
}
