//! What a ServiceAccount token is bound to, and the check that it still exists: the
//! ServiceAccount itself and, at most one of, a pod, a secret or a node. A token stops
//! working once any of them is gone or replaced (another UID), as kube's
//! `pkg/serviceaccount/claims.go` validator decides, with its wording.

use jiff::{SignedDuration, Timestamp};

use super::claims::KubernetesClaims;
pub use super::claims::ObjectRef;

/// Objects deleted longer ago than this (kube's JWT leeway) no longer back a token.
const DELETION_LEEWAY: SignedDuration = SignedDuration::from_secs(60);

/// The object a token is bound to besides its ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundObject {
    /// A pod (in the ServiceAccount's namespace) and, informative only, its node (the
    /// UID is empty if the node did not exist when the token was made).
    Pod {
        /// The pod.
        pod: ObjectRef,
        /// The pod's node.
        node: Option<ObjectRef>,
    },
    /// A secret in the ServiceAccount's namespace.
    Secret(ObjectRef),
    /// A node.
    Node(ObjectRef),
}

/// Everything a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Namespace of the ServiceAccount.
    pub namespace: String,
    /// The ServiceAccount.
    pub service_account: ObjectRef,
    /// The object the token is bound to, if any.
    pub bound: Option<BoundObject>,
}

/// A live object as the binding check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveObject {
    /// Its UID.
    pub uid: String,
    /// Its `metadata.deletionTimestamp`.
    pub deletion_timestamp: Option<Timestamp>,
}

/// Where the binding check looks objects up (the watch caches, or objects fetched
/// before the check). `None` means absent, or not readable: the token is refused.
pub trait BoundObjects {
    /// A ServiceAccount.
    fn service_account(&self, namespace: &str, name: &str) -> Option<LiveObject>;
    /// A pod.
    fn pod(&self, namespace: &str, name: &str) -> Option<LiveObject>;
    /// A secret.
    fn secret(&self, namespace: &str, name: &str) -> Option<LiveObject>;
    /// A node.
    fn node(&self, name: &str) -> Option<LiveObject>;
}

/// Why a token's binding no longer holds (kube's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The ServiceAccount does not exist.
    #[error("serviceaccounts \"{name}\" not found")]
    ServiceAccountNotFound {
        /// Its name.
        name: String,
    },
    /// The ServiceAccount was deleted and recreated.
    #[error("service account UID ({live}) does not match claim ({claim})")]
    ServiceAccountUid {
        /// The live object's UID.
        live: String,
        /// The token's.
        claim: String,
    },
    /// The ServiceAccount is being deleted.
    #[error("service account {namespace}/{name} has been deleted")]
    ServiceAccountDeleted {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A bound object is gone or being deleted.
    #[error("service account token has been invalidated")]
    Invalidated,
    /// A bound object was deleted and recreated.
    #[error("{kind} UID ({live}) does not match service account {kind} ref claim ({claim})")]
    BoundUid {
        /// `pod`, `secret` or `node`.
        kind: &'static str,
        /// The live object's UID.
        live: String,
        /// The token's.
        claim: String,
    },
}

impl Binding {
    /// The binding the `kubernetes.io` claim describes; `None` if it names no
    /// ServiceAccount or more than one bound object (Skiff never writes such a token).
    pub(crate) fn from_claims(claims: &KubernetesClaims) -> Option<Self> {
        if claims.namespace.is_empty() || claims.serviceaccount.name.is_empty() {
            return None;
        }
        let bound = match (&claims.pod, &claims.secret, &claims.node) {
            (None, None, None) => None,
            (Some(pod), None, node) => Some(BoundObject::Pod {
                pod: pod.clone(),
                node: node.clone(),
            }),
            (None, Some(secret), None) => Some(BoundObject::Secret(secret.clone())),
            (None, None, Some(node)) => Some(BoundObject::Node(node.clone())),
            _ => return None,
        };
        Some(Self {
            namespace: claims.namespace.clone(),
            service_account: claims.serviceaccount.clone(),
            bound,
        })
    }

    /// The `kubernetes.io` claim for this binding.
    pub(crate) fn to_claims(&self, warn_after: Option<i64>) -> KubernetesClaims {
        let (pod, secret, node) = match &self.bound {
            None => (None, None, None),
            Some(BoundObject::Pod { pod, node }) => (Some(pod.clone()), None, node.clone()),
            Some(BoundObject::Secret(secret)) => (None, Some(secret.clone()), None),
            Some(BoundObject::Node(node)) => (None, None, Some(node.clone())),
        };
        KubernetesClaims {
            namespace: self.namespace.clone(),
            node,
            pod,
            secret,
            serviceaccount: self.service_account.clone(),
            warnafter: warn_after,
        }
    }

    /// The bound pod, if any.
    pub fn pod(&self) -> Option<&ObjectRef> {
        match &self.bound {
            Some(BoundObject::Pod { pod, .. }) => Some(pod),
            _ => None,
        }
    }

    /// The node the token carries: the bound node, or the bound pod's node.
    pub fn node(&self) -> Option<&ObjectRef> {
        match &self.bound {
            Some(BoundObject::Pod { node, .. }) => node.as_ref(),
            Some(BoundObject::Node(node)) => Some(node),
            _ => None,
        }
    }

    /// Checks that the ServiceAccount and the bound object still exist with the UIDs the
    /// token names and are not being deleted (for longer than the 60 s leeway). A pod's
    /// node is informative and not checked, as in kube.
    pub fn check(&self, objects: &impl BoundObjects, now: Timestamp) -> Result<(), BindingError> {
        let invalid_if_deleted_before = now.checked_sub(DELETION_LEEWAY).unwrap_or(now);
        let deleted = |live: &LiveObject| {
            live.deletion_timestamp
                .is_some_and(|at| at < invalid_if_deleted_before)
        };
        let sa = &self.service_account;
        let live = objects
            .service_account(&self.namespace, &sa.name)
            .ok_or_else(|| BindingError::ServiceAccountNotFound {
                name: sa.name.clone(),
            })?;
        if live.uid != sa.uid {
            return Err(BindingError::ServiceAccountUid {
                live: live.uid,
                claim: sa.uid.clone(),
            });
        }
        if deleted(&live) {
            return Err(BindingError::ServiceAccountDeleted {
                namespace: self.namespace.clone(),
                name: sa.name.clone(),
            });
        }
        let (kind, claim, live) = match &self.bound {
            None => return Ok(()),
            Some(BoundObject::Pod { pod, .. }) => {
                ("pod", pod, objects.pod(&self.namespace, &pod.name))
            }
            Some(BoundObject::Secret(secret)) => (
                "secret",
                secret,
                objects.secret(&self.namespace, &secret.name),
            ),
            Some(BoundObject::Node(node)) => ("node", node, objects.node(&node.name)),
        };
        let live = live.ok_or(BindingError::Invalidated)?;
        if live.uid != claim.uid {
            return Err(BindingError::BoundUid {
                kind,
                live: live.uid,
                claim: claim.uid.clone(),
            });
        }
        if deleted(&live) {
            return Err(BindingError::Invalidated);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Objects by (kind, namespace, name).
    #[derive(Default)]
    struct Objects(HashMap<(&'static str, String, String), LiveObject>);

    impl Objects {
        fn with(mut self, kind: &'static str, ns: &str, name: &str, uid: &str) -> Self {
            self.0.insert(
                (kind, ns.into(), name.into()),
                LiveObject {
                    uid: uid.into(),
                    deletion_timestamp: None,
                },
            );
            self
        }
        fn deleting(mut self, kind: &'static str, ns: &str, name: &str, at: Timestamp) -> Self {
            if let Some(o) = self.0.get_mut(&(kind, ns.into(), name.into())) {
                o.deletion_timestamp = Some(at);
            }
            self
        }
        fn get(&self, kind: &'static str, ns: &str, name: &str) -> Option<LiveObject> {
            self.0.get(&(kind, ns.into(), name.into())).cloned()
        }
    }

    impl BoundObjects for Objects {
        fn service_account(&self, ns: &str, name: &str) -> Option<LiveObject> {
            self.get("sa", ns, name)
        }
        fn pod(&self, ns: &str, name: &str) -> Option<LiveObject> {
            self.get("pod", ns, name)
        }
        fn secret(&self, ns: &str, name: &str) -> Option<LiveObject> {
            self.get("secret", ns, name)
        }
        fn node(&self, name: &str) -> Option<LiveObject> {
            self.get("node", "", name)
        }
    }

    fn binding(bound: Option<BoundObject>) -> Binding {
        Binding {
            namespace: "ns".into(),
            service_account: ObjectRef::new("app", "sa-1"),
            bound,
        }
    }

    fn pod_bound() -> Binding {
        binding(Some(BoundObject::Pod {
            pod: ObjectRef::new("web", "pod-1"),
            node: Some(ObjectRef::new("n1", "node-1")),
        }))
    }

    const NOW: Timestamp = Timestamp::constant(1_700_000_000, 0);

    #[test]
    fn live_objects_pass() {
        let objects = Objects::default()
            .with("sa", "ns", "app", "sa-1")
            .with("pod", "ns", "web", "pod-1");
        assert_eq!(binding(None).check(&objects, NOW), Ok(()));
        // The pod's node is not checked (it need not exist).
        assert_eq!(pod_bound().check(&objects, NOW), Ok(()));
        let node = binding(Some(BoundObject::Node(ObjectRef::new("n1", "node-1"))));
        let objects = objects.with("node", "", "n1", "node-1");
        assert_eq!(node.check(&objects, NOW), Ok(()));
        let secret = binding(Some(BoundObject::Secret(ObjectRef::new("s", "sec-1"))));
        let objects = objects.with("secret", "ns", "s", "sec-1");
        assert_eq!(secret.check(&objects, NOW), Ok(()));
    }

    #[test]
    fn gone_or_replaced_objects_fail_with_kubes_words() {
        let none = Objects::default();
        assert_eq!(
            pod_bound().check(&none, NOW).map_err(|e| e.to_string()),
            Err("serviceaccounts \"app\" not found".into())
        );
        let replaced = Objects::default().with("sa", "ns", "app", "sa-2");
        assert_eq!(
            pod_bound().check(&replaced, NOW).map_err(|e| e.to_string()),
            Err("service account UID (sa-2) does not match claim (sa-1)".into())
        );
        let sa_only = Objects::default().with("sa", "ns", "app", "sa-1");
        assert_eq!(
            pod_bound().check(&sa_only, NOW),
            Err(BindingError::Invalidated)
        );
        let pod_replaced = Objects::default()
            .with("sa", "ns", "app", "sa-1")
            .with("pod", "ns", "web", "pod-2");
        assert_eq!(
            pod_bound()
                .check(&pod_replaced, NOW)
                .map_err(|e| e.to_string()),
            Err("pod UID (pod-2) does not match service account pod ref claim (pod-1)".into())
        );
        let node = binding(Some(BoundObject::Node(ObjectRef::new("n1", "node-1"))));
        assert_eq!(node.check(&sa_only, NOW), Err(BindingError::Invalidated));
    }

    #[test]
    fn deletion_counts_after_the_leeway() {
        let recently = NOW - SignedDuration::from_secs(30);
        let long_ago = NOW - SignedDuration::from_secs(61);
        let objects = |at| {
            Objects::default()
                .with("sa", "ns", "app", "sa-1")
                .with("pod", "ns", "web", "pod-1")
                .deleting("pod", "ns", "web", at)
        };
        assert_eq!(pod_bound().check(&objects(recently), NOW), Ok(()));
        assert_eq!(
            pod_bound().check(&objects(long_ago), NOW),
            Err(BindingError::Invalidated)
        );
        let sa_deleted = Objects::default()
            .with("sa", "ns", "app", "sa-1")
            .deleting("sa", "ns", "app", long_ago);
        assert_eq!(
            binding(None)
                .check(&sa_deleted, NOW)
                .map_err(|e| e.to_string()),
            Err("service account ns/app has been deleted".into())
        );
    }

    #[test]
    fn claims_round_trip_and_ambiguity_is_refused() {
        for b in [
            binding(None),
            pod_bound(),
            binding(Some(BoundObject::Pod {
                pod: ObjectRef::new("web", "pod-1"),
                node: None,
            })),
            binding(Some(BoundObject::Secret(ObjectRef::new("s", "u")))),
            binding(Some(BoundObject::Node(ObjectRef::new("n", "u")))),
        ] {
            assert_eq!(Binding::from_claims(&b.to_claims(None)), Some(b));
        }
        let mut both = pod_bound().to_claims(None);
        both.secret = Some(ObjectRef::new("s", "u"));
        assert_eq!(Binding::from_claims(&both), None);
        let mut anonymous = binding(None).to_claims(None);
        anonymous.serviceaccount.name.clear();
        assert_eq!(Binding::from_claims(&anonymous), None);
    }
}
