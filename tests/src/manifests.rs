//! Manifests the end-to-end tests build from parts.

/// A Pod named `name` bound to `node` (no scheduler involved); `body` is the rest of its
/// spec, indented by two spaces.
pub fn pod_on(name: &str, node: &str, body: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n{body}"
    )
}
