//! Field paths as kube's `field.Path` prints them: `spec.replicas`, `spec.items[1]`,
//! `spec.labels[foo]`; the empty path is the root.

/// `base.name` (or `name` at the root).
pub(crate) fn child(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}.{name}")
    }
}

/// `base[i]`.
pub(crate) fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// `base[key]`.
pub(crate) fn key(base: &str, key: &str) -> String {
    format!("{base}[{key}]")
}

/// A path for an error: kube prints the nil (root) path as `<nil>`.
pub(crate) fn or_nil(path: &str) -> String {
    if path.is_empty() {
        "<nil>".to_owned()
    } else {
        path.to_owned()
    }
}
