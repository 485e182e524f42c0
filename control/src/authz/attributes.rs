//! What an authorizer decides on, as kube's `authorizer.Attributes`, and how a denial is
//! worded.

use crate::model::user::UserInfo;

/// One request, as authorization sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Who asks.
    pub user: UserInfo,
    /// kube's verb: get, list, watch, create, update, patch, delete, deletecollection, or
    /// a special verb (impersonate, bind, escalate, approve, use…); for non-resource
    /// requests the lower-case HTTP method (get, post, put, delete…).
    pub verb: String,
    /// True for requests to API resources, false for non-resource paths (`/healthz`,
    /// `/version`, `/api`…).
    pub resource_request: bool,
    /// The request path (non-resource requests).
    pub path: String,
    /// Namespace ("" for cluster-scoped resources and all-namespace lists).
    pub namespace: String,
    /// API group ("" for core).
    pub api_group: String,
    /// API version.
    pub api_version: String,
    /// Resource (plural, lower case).
    pub resource: String,
    /// Subresource ("" if none).
    pub subresource: String,
    /// Object name ("" for collections and creates).
    pub name: String,
    /// The request's field selector as `field=value` requirements (lists and watches;
    /// kube's authorizers may scope a list by them, as the Node authorizer does for pods).
    pub field_selector: Vec<(String, String)>,
    /// The request's label selector as `label=value` requirements (lists and watches; the
    /// Node authorizer scopes a node's watch of its local-path volumes by it).
    pub label_selector: Vec<(String, String)>,
}

/// An authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, with the reason (which binding allowed it).
    Allow(String),
    /// Denied outright: later authorizers are not asked.
    Deny(String),
    /// No opinion: the next authorizer decides.
    NoOpinion(String),
}

impl Decision {
    /// True for [`Decision::Allow`].
    pub fn allowed(&self) -> bool {
        matches!(self, Self::Allow(_))
    }

    /// The reason given.
    pub fn reason(&self) -> &str {
        match self {
            Self::Allow(r) | Self::Deny(r) | Self::NoOpinion(r) => r,
        }
    }
}

impl Attributes {
    /// `resource` or `resource/subresource`.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// The message of the 403 a denied request gets, worded as kube-apiserver's
    /// (`User "x" cannot list resource "secrets" in API group "" in the namespace "y"`).
    pub fn forbidden_message(&self, reason: &str) -> String {
        let user = &self.user.name;
        let mut message = if self.resource_request {
            let mut text = format!(
                "User \"{user}\" cannot {} resource \"{}\" in API group \"{}\"",
                self.verb,
                self.resource_path(),
                self.api_group
            );
            if !self.namespace.is_empty() {
                text.push_str(&format!(" in the namespace \"{}\"", self.namespace));
            } else {
                text.push_str(" at the cluster scope");
            }
            text
        } else {
            format!(
                "User \"{user}\" cannot {} path \"{}\"",
                self.verb, self.path
            )
        };
        if !reason.is_empty() {
            message.push_str(": ");
            message.push_str(reason);
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_are_worded_as_kube_words_them() {
        let attributes = Attributes {
            user: UserInfo::authenticated("x", vec![]),
            verb: "list".into(),
            resource_request: true,
            namespace: "y".into(),
            resource: "secrets".into(),
            api_version: "v1".into(),
            ..Attributes::default()
        };
        assert_eq!(
            attributes.forbidden_message(""),
            "User \"x\" cannot list resource \"secrets\" in API group \"\" in the namespace \"y\""
        );
        let cluster = Attributes {
            namespace: String::new(),
            resource: "nodes".into(),
            verb: "delete".into(),
            ..attributes
        };
        assert_eq!(
            cluster.forbidden_message(""),
            "User \"x\" cannot delete resource \"nodes\" in API group \"\" at the cluster scope"
        );
    }
}
