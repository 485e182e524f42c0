//! Role-based access control as kube-apiserver's RBAC authorizer does it, without I/O: rule
//! matching ([`rules`]), an immutable index of the four RBAC kinds that authorizes requests
//! and lists a user's rules ([`policy`]), privilege-escalation prevention ([`escalation`]),
//! ClusterRole aggregation ([`aggregation`]), and the bootstrap policy kube-apiserver
//! reconciles at start ([`bootstrap`]).

pub mod aggregation;
pub mod bootstrap;
pub mod escalation;
pub mod format;
pub mod policy;
pub mod review;
pub mod rules;

pub use policy::{RbacPolicy, ResolvedRules};
pub use rules::rule_allows;
