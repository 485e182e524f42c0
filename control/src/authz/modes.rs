//! `--authorization-mode`: which authorizers run, in order, behind the superuser group
//! (kube's default for a secured cluster is `Node,RBAC`; `AlwaysAllow` turns authorization
//! off, for comparison benchmarks).

use std::sync::Arc;

use super::{
    Attributes, Authorizer, Chain, Decision, node::NodeAuthorizer, privileged::PrivilegedGroups,
    rbac::bootstrap::bootstrap_policy, rbac_source::RbacAuthorizer,
};
use crate::store::Store;

/// One authorization mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every request is allowed.
    AlwaysAllow,
    /// Nodes, by their relationships to pods.
    Node,
    /// Role-based access control.
    Rbac,
}

/// Parse a comma-separated mode list (`Node,RBAC`).
pub fn parse(text: &str) -> Result<Vec<Mode>, String> {
    let mut modes = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let mode = match name {
            "AlwaysAllow" => Mode::AlwaysAllow,
            "Node" => Mode::Node,
            "RBAC" => Mode::Rbac,
            other => {
                return Err(format!(
                    "unknown authorization mode {other:?}: expected AlwaysAllow, Node or RBAC"
                ));
            }
        };
        if modes.contains(&mode) {
            return Err(format!("authorization mode {name} is given twice"));
        }
        modes.push(mode);
    }
    if modes.is_empty() {
        return Err("at least one authorization mode is needed (Node,RBAC)".to_owned());
    }
    Ok(modes)
}

/// Allows everything.
struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn name(&self) -> &'static str {
        "AlwaysAllow"
    }

    fn authorize(&self, _: &Attributes) -> Decision {
        Decision::Allow(String::new())
    }
}

/// The authorizers of a server.
pub struct Authorization {
    /// The chain every request passes.
    pub authorizer: Arc<dyn Authorizer>,
    /// The RBAC authorizer, when RBAC is on (rules reviews and escalation checks read it).
    pub rbac: Option<Arc<RbacAuthorizer>>,
}

/// The authorizers for `modes` over `store`.
pub fn build(store: &Arc<Store>, modes: &[Mode]) -> Authorization {
    let mut authorizers: Vec<Arc<dyn Authorizer>> = vec![Arc::new(PrivilegedGroups)];
    let mut rbac = None;
    for mode in modes {
        match mode {
            Mode::AlwaysAllow => authorizers.push(Arc::new(AlwaysAllow)),
            Mode::Node => {
                let node_rules = bootstrap_policy()
                    .cluster_roles
                    .into_iter()
                    .find(|r| r.metadata.name.as_deref() == Some("system:node"))
                    .and_then(|r| r.rules)
                    .unwrap_or_default();
                authorizers.push(Arc::new(NodeAuthorizer::new(store, node_rules)));
            }
            Mode::Rbac => {
                let authorizer = Arc::new(RbacAuthorizer::new(store));
                rbac = Some(Arc::clone(&authorizer));
                authorizers.push(authorizer);
            }
        }
    }
    Authorization {
        authorizer: Arc::new(Chain::new(authorizers)),
        rbac,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_kube_names_them() {
        assert_eq!(parse("Node,RBAC"), Ok(vec![Mode::Node, Mode::Rbac]));
        assert!(parse("Node,Node").is_err());
        assert!(parse("ABAC").is_err());
        assert!(parse("").is_err());
    }
}
