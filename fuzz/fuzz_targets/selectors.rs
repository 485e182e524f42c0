//! `labelSelector` and `fieldSelector` query values as the API server parses them, then
//! matched; and metav1.LabelSelector objects rendered back to the query syntax.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use skiff_control::model::selector::{FieldSelector, LabelSelector, render};

const FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let labels = BTreeMap::from([
        ("app".to_owned(), "web".to_owned()),
        ("tier".to_owned(), String::new()),
    ]);
    if let Ok(selector) = LabelSelector::parse(text) {
        let _ = selector.matches(&labels);
        let _ = selector.is_empty();
    }
    if let Ok(selector) = FieldSelector::parse(text, FIELDS) {
        let _ = selector.matches(|field| field.to_owned());
        let _ = selector.required_value("metadata.name");
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let rendered = render(&value);
        let _ = LabelSelector::parse(&rendered);
    }
});
