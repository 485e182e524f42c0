//! Authorization: who may do what. Every request's [`Attributes`] pass a chain of
//! [`Authorizer`]s (kube's `--authorization-mode Node,RBAC`): the first that allows or denies
//! decides; if none has an opinion the request is forbidden.

pub mod attributes;
pub mod rbac;

pub use attributes::{Attributes, Decision};

/// One authorization mode.
pub trait Authorizer: Send + Sync {
    /// Name of the mode (`Node`, `RBAC`), for logs and metrics.
    fn name(&self) -> &'static str;
    /// The decision on one request.
    fn authorize(&self, attributes: &Attributes) -> Decision;
}
