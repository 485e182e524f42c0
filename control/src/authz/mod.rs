//! Authorization: who may do what. Every request's [`Attributes`] pass a chain of
//! [`Authorizer`]s (kube's `--authorization-mode Node,RBAC`, behind the superuser group
//! `system:masters`): the first that allows or denies decides; if none has an opinion the
//! request is forbidden.

pub mod attributes;
pub mod modes;
pub mod node;
pub mod privileged;
pub mod rbac;
pub mod rbac_source;
pub mod skiff_policy;

use std::sync::Arc;

pub use attributes::{Attributes, Decision};

/// One authorization mode.
pub trait Authorizer: Send + Sync {
    /// Name of the mode (`Node`, `RBAC`), for logs and metrics.
    fn name(&self) -> &'static str;
    /// The decision on one request.
    fn authorize(&self, attributes: &Attributes) -> Decision;
}

/// Authorizers asked in order; the first allow or deny decides.
#[derive(Clone, Default)]
pub struct Chain {
    authorizers: Vec<Arc<dyn Authorizer>>,
}

impl Chain {
    /// A chain asking `authorizers` in order.
    pub fn new(authorizers: Vec<Arc<dyn Authorizer>>) -> Self {
        Self { authorizers }
    }

    /// The modes, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.authorizers.iter().map(|a| a.name()).collect()
    }
}

impl Authorizer for Chain {
    fn name(&self) -> &'static str {
        "Chain"
    }

    fn authorize(&self, attributes: &Attributes) -> Decision {
        let mut reasons = Vec::new();
        for authorizer in &self.authorizers {
            match authorizer.authorize(attributes) {
                Decision::NoOpinion(reason) => {
                    if !reason.is_empty() {
                        reasons.push(reason);
                    }
                }
                decided => return decided,
            }
        }
        Decision::NoOpinion(reasons.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::user::UserInfo;

    struct Fixed(Decision);

    impl Authorizer for Fixed {
        fn name(&self) -> &'static str {
            "Fixed"
        }
        fn authorize(&self, _: &Attributes) -> Decision {
            self.0.clone()
        }
    }

    #[test]
    fn the_first_opinion_decides() {
        let attributes = Attributes {
            user: UserInfo::authenticated("u", vec![]),
            ..Attributes::default()
        };
        let chain = Chain::new(vec![
            Arc::new(Fixed(Decision::NoOpinion("not a node".into()))),
            Arc::new(Fixed(Decision::Deny("no".into()))),
            Arc::new(Fixed(Decision::Allow("yes".into()))),
        ]);
        assert_eq!(chain.authorize(&attributes), Decision::Deny("no".into()));
        let silent = Chain::new(vec![Arc::new(Fixed(Decision::NoOpinion("a".into())))]);
        assert_eq!(
            silent.authorize(&attributes),
            Decision::NoOpinion("a".into())
        );
    }
}
