//! Role-based access control as kube-apiserver's RBAC authorizer does it, without I/O: rule
//! matching ([`rules`]), an immutable index of the four RBAC kinds that authorizes requests
//! and lists a user's rules ([`policy`], [`review`]), privilege-escalation prevention
//! ([`escalation`]), ClusterRole aggregation ([`aggregation`]), the bootstrap policy
//! kube-apiserver reconciles at start ([`bootstrap`]) and how it reconciles it
//! ([`reconcile`]). Text shown to users is worded as kube words it ([`format`]).

pub mod aggregation;
pub mod bootstrap;
pub mod escalation;
pub mod format;
pub mod policy;
pub mod reconcile;
pub mod review;
pub mod rules;

pub use policy::{RbacPolicy, ResolvedRules};
pub use rules::rule_allows;
