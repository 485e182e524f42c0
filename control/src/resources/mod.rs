//! The registry of served resources: one description per resource drives the generic REST
//! handler, discovery and the watch caches. Kind-specific behaviour (defaults, validation)
//! lives in a [`Strategy`], implemented once generically over k8s-openapi types ([`Typed`]).

mod catalog;
pub mod custom;
mod kinds;
mod strategy;

pub use catalog::REGISTRY;
pub use custom::{CustomResource, served};
pub use kinds::service_alloc::{self, ServiceRanges, set_service_ranges};
pub use kinds::{apiextensions, certificates, scheduling};
pub use strategy::{Claim, Prepared, PrinterColumn, ScalePaths, Strategy, Typed};

use crate::store::{Projection, resource_prefix};

/// Subresources a resource can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subresource {
    /// `/status`: get, update, patch of `.status` only.
    Status,
    /// `/scale`: autoscaling/v1 Scale view of `.spec.replicas`.
    Scale,
    /// `pods/binding`: assign a pod to a node.
    Binding,
    /// `pods/eviction`: evict a pod.
    Eviction,
    /// `pods/log`.
    Log,
    /// `pods/exec`.
    Exec,
    /// `namespaces/finalize`: update `spec.finalizers` of a terminating namespace.
    Finalize,
    /// `serviceaccounts/token`: a TokenRequest.
    Token,
    /// `certificatesigningrequests/approval`: the Approved/Denied conditions only.
    Approval,
}

impl Subresource {
    /// URL segment.
    pub fn name(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Scale => "scale",
            Self::Binding => "binding",
            Self::Eviction => "eviction",
            Self::Log => "log",
            Self::Exec => "exec",
            Self::Finalize => "finalize",
            Self::Token => "token",
            Self::Approval => "approval",
        }
    }

    /// Verbs served on it.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Self::Status | Self::Scale | Self::Approval => &["get", "patch", "update"],
            Self::Binding | Self::Eviction | Self::Token => &["create"],
            Self::Log => &["get"],
            Self::Exec => &["create", "get"],
            Self::Finalize => &["update"],
        }
    }

    /// Kind of the object the subresource speaks (group, version, kind); `None` = the
    /// parent's own kind.
    pub fn response_kind(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Self::Status | Self::Finalize | Self::Approval => None,
            Self::Scale => Some(("autoscaling", "v1", "Scale")),
            Self::Binding => Some(("", "v1", "Binding")),
            Self::Eviction => Some(("policy", "v1", "Eviction")),
            Self::Log | Self::Exec => Some(("", "v1", "Pod")),
            Self::Token => Some(("authentication.k8s.io", "v1", "TokenRequest")),
        }
    }
}

/// The rule object names follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// RFC 1123 subdomains (most kinds).
    Subdomain,
    /// RFC 1123 labels (namespaces, services).
    Label,
    /// Path segments: anything but `.`, `..`, `/` and `%` (RBAC kinds: `system:node`).
    PathSegment,
}

/// Description of one served resource.
pub struct ResourceInfo {
    /// API group ("" for core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural resource name (URL segment).
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Verbs served ([`VERBS`] for stored kinds; `create` alone for reviews, which are
    /// answered and never stored).
    pub verbs: &'static [&'static str],
    /// Short names (`po`, `svc`…).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Subresources.
    pub subresources: &'static [Subresource],
    /// Fields usable in field selectors besides metadata.name and metadata.namespace.
    pub field_selectors: &'static [&'static str],
    /// Which names objects may have.
    pub names: Names,
    /// Defaults and validation.
    pub strategy: &'static dyn Strategy,
}

impl std::fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.api_version(), self.plural)
    }
}

/// Verbs every resource serves.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceInfo {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// etcd key prefix.
    pub fn prefix(&self) -> String {
        resource_prefix(self.group, self.plural)
    }

    /// Fields the watch cache extracts for field selectors.
    pub fn projection(&self) -> Projection {
        Projection {
            fields: self.field_selectors,
        }
    }

    /// Every field selector this resource accepts.
    pub fn selectable_fields(&self) -> Vec<&'static str> {
        let mut fields = vec!["metadata.name", "metadata.namespace"];
        fields.extend(self.field_selectors);
        fields
    }

    /// True if objects of the resource are stored (not create-only reviews).
    pub fn stored(&self) -> bool {
        self.verbs.contains(&"list")
    }

    /// True if it has `sub`.
    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }
}

/// Look up a served resource (built-in or custom) by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    served()
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
        .copied()
}

/// The watch cache of a served resource (started on first use), or of the bare prefix
/// `group`/`plural` would have if the catalog did not describe it.
pub fn watch_cache(
    store: &std::sync::Arc<crate::store::Store>,
    group: &str,
    version: &str,
    plural: &str,
) -> std::sync::Arc<crate::store::WatchCache> {
    match find(group, version, plural) {
        Some(info) => store.cache(&info.prefix(), info.projection()),
        None => store.cache(&resource_prefix(group, plural), Projection { fields: &[] }),
    }
}

/// Group-versions served, in discovery order: `("", "v1")`, `("apps", "v1")`…
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in served().iter() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}
