//! Who makes a request, as kube's `user.Info`: the outcome of authentication and the
//! subject of every authorization decision.

use std::collections::BTreeMap;

/// Group every authenticated request carries.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Group of unauthenticated requests.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// Group of the cluster's superusers: authorized for everything, as kube's
/// `system:masters` (bound to cluster-admin by the bootstrap policy).
pub const MASTERS: &str = "system:masters";
/// Group of every node.
pub const NODES: &str = "system:nodes";
/// User-name prefix of nodes (`system:node:<name>`).
pub const NODE_PREFIX: &str = "system:node:";
/// User-name prefix of ServiceAccounts (`system:serviceaccount:<ns>:<name>`).
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
/// Group of every ServiceAccount.
pub const SERVICE_ACCOUNTS: &str = "system:serviceaccounts";

/// An authenticated (or anonymous) user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// User name (`alice`, `system:node:skiff-node-1`, `system:serviceaccount:ns:sa`).
    pub name: String,
    /// Unique id, when the authenticator knows one (ServiceAccount tokens).
    pub uid: String,
    /// Groups, including `system:authenticated` for authenticated users.
    pub groups: Vec<String>,
    /// Extra attributes (`authentication.kubernetes.io/pod-name`…).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with `groups` plus `system:authenticated`.
    pub fn authenticated(name: impl Into<String>, groups: Vec<String>) -> Self {
        let mut groups = groups;
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_owned());
        }
        Self {
            name: name.into(),
            groups,
            ..Self::default()
        }
    }

    /// The anonymous user (`system:anonymous`, group `system:unauthenticated`).
    pub fn anonymous() -> Self {
        Self {
            name: "system:anonymous".to_owned(),
            groups: vec![UNAUTHENTICATED.to_owned()],
            ..Self::default()
        }
    }

    /// True if the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The node name of a node identity (`system:node:<name>` in group `system:nodes`).
    pub fn node_name(&self) -> Option<&str> {
        if !self.in_group(NODES) {
            return None;
        }
        self.name
            .strip_prefix(NODE_PREFIX)
            .filter(|name| !name.is_empty())
    }

    /// Namespace and name of a ServiceAccount identity.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        let rest = self.name.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
        let (namespace, name) = rest.split_once(':')?;
        (!namespace.is_empty() && !name.is_empty() && !name.contains(':'))
            .then_some((namespace, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_recognised() {
        let node = UserInfo::authenticated("system:node:n1", vec![NODES.to_owned()]);
        assert_eq!(node.node_name(), Some("n1"));
        assert!(node.in_group(AUTHENTICATED));
        let impostor = UserInfo::authenticated("system:node:n1", vec![]);
        assert_eq!(impostor.node_name(), None);
        let sa = UserInfo::authenticated("system:serviceaccount:ns:app", vec![]);
        assert_eq!(sa.service_account(), Some(("ns", "app")));
        assert_eq!(
            UserInfo::authenticated("system:serviceaccount:ns:a:b", vec![]).service_account(),
            None
        );
    }
}
