//! The superuser group: members of `system:masters` may do everything, before any other
//! authorizer is asked (kube-apiserver's privileged-groups authorizer), so the cluster's
//! administrators are never locked out by a broken RBAC policy.

use super::{Attributes, Authorizer, Decision};
use crate::model::user::MASTERS;

/// Allows every request of a `system:masters` member; no opinion otherwise.
pub struct PrivilegedGroups;

impl Authorizer for PrivilegedGroups {
    fn name(&self) -> &'static str {
        "PrivilegedGroups"
    }

    fn authorize(&self, attributes: &Attributes) -> Decision {
        if attributes.user.in_group(MASTERS) {
            Decision::Allow(String::new())
        } else {
            Decision::NoOpinion(String::new())
        }
    }
}
