//! The Node authorizer, as kube's: a node (`system:node:<name>` in `system:nodes`) reads
//! only the Secrets, ConfigMaps, PersistentVolumeClaims and PersistentVolumes of pods bound
//! to it (a volume through the claim its claimRef names), and — Skiff's local-path
//! provisioner — watches and clears the cleanup finalizer of the volumes labelled
//! `skiff.dev/local-path-node=<node>`, requests tokens only for ServiceAccounts such pods run as, lists and watches only
//! its own pods, and writes only its own Lease; everything else a node may do is the static
//! rules of the `system:node` role (kube's `NodeRules`). What a node may write about its
//! own objects is narrowed further by the NodeRestriction admission plugin.
//!
//! The relationships come from the pods' watch cache, so a pod bound a moment ago counts
//! as soon as the cache has it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use k8s_openapi::api::{core::v1::Pod, rbac::v1::PolicyRule};

use super::{Attributes, Authorizer, Decision, rbac::rules::rules_allow};
use crate::{
    resources,
    store::{CachedObject, Store, WatchCache},
};

/// What a pod references, by kind.
#[derive(Debug, Default, Clone)]
pub(crate) struct References {
    /// Secrets (volumes, env, envFrom, image pull secrets).
    pub secrets: Vec<String>,
    /// ConfigMaps (volumes, env, envFrom).
    pub config_maps: Vec<String>,
    /// PersistentVolumeClaims (including ephemeral volumes' claims).
    pub claims: Vec<String>,
    /// The ServiceAccount it runs as ("default" when unnamed).
    pub service_account: String,
}

impl References {
    /// The references of `pod`.
    pub(crate) fn of(pod: &Pod) -> Self {
        let mut refs = Self::default();
        let Some(spec) = &pod.spec else {
            return refs;
        };
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        refs.service_account = spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        for secret in spec.image_pull_secrets.iter().flatten() {
            refs.secrets.push(secret.name.clone());
        }
        for volume in spec.volumes.iter().flatten() {
            if let Some(s) = &volume.secret {
                refs.secrets.extend(s.secret_name.clone());
            }
            if let Some(c) = &volume.config_map {
                refs.config_maps.push(c.name.clone());
            }
            if let Some(c) = &volume.persistent_volume_claim {
                refs.claims.push(c.claim_name.clone());
            }
            if volume.ephemeral.is_some() {
                refs.claims.push(format!("{pod_name}-{}", volume.name));
            }
            for source in volume
                .projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten())
            {
                if let Some(s) = &source.secret {
                    refs.secrets.push(s.name.clone());
                }
                if let Some(c) = &source.config_map {
                    refs.config_maps.push(c.name.clone());
                }
            }
            if let Some(rbd) = &volume.rbd {
                refs.secrets
                    .extend(rbd.secret_ref.as_ref().map(|r| r.name.clone()));
            }
        }
        let containers = spec
            .containers
            .iter()
            .map(|c| (c.env.as_ref(), c.env_from.as_ref()))
            .chain(
                spec.init_containers
                    .iter()
                    .flatten()
                    .map(|c| (c.env.as_ref(), c.env_from.as_ref())),
            )
            .chain(
                spec.ephemeral_containers
                    .iter()
                    .flatten()
                    .map(|c| (c.env.as_ref(), c.env_from.as_ref())),
            );
        for (env, env_from) in containers {
            for var in env.into_iter().flatten() {
                let from = var.value_from.as_ref();
                if let Some(s) = from.and_then(|f| f.secret_key_ref.as_ref()) {
                    refs.secrets.push(s.name.clone());
                }
                if let Some(c) = from.and_then(|f| f.config_map_key_ref.as_ref()) {
                    refs.config_maps.push(c.name.clone());
                }
            }
            for source in env_from.into_iter().flatten() {
                if let Some(s) = &source.secret_ref {
                    refs.secrets.push(s.name.clone());
                }
                if let Some(c) = &source.config_map_ref {
                    refs.config_maps.push(c.name.clone());
                }
            }
        }
        refs
    }
}

/// The kinds of objects a node reaches through its pods.
#[derive(Clone, Copy)]
enum Reached {
    Secret,
    ConfigMap,
    Claim,
    ServiceAccount,
}

/// The Node authorizer.
pub struct NodeAuthorizer {
    pods: Arc<WatchCache>,
    volumes: Arc<WatchCache>,
    /// `system:node`'s rules (plus Skiff's node-proxier rules for the agent's datapath).
    rules: Vec<PolicyRule>,
    /// Parsed references per pod key, at the revision they were parsed.
    parsed: Mutex<HashMap<String, (i64, Arc<References>)>>,
}

impl NodeAuthorizer {
    /// The authorizer over the pods of `store`, allowing `rules` to every node.
    pub fn new(store: &Arc<Store>, rules: Vec<PolicyRule>) -> Self {
        let cache = |plural: &str| {
            resources::find("", "v1", plural)
                .map(|info| store.cache(&info.prefix(), info.projection()))
                .unwrap_or_else(|| {
                    store.cache(
                        &crate::store::resource_prefix("", plural),
                        crate::store::Projection { fields: &[] },
                    )
                })
        };
        Self {
            pods: cache("pods"),
            volumes: cache("persistentvolumes"),
            rules,
            parsed: Mutex::new(HashMap::new()),
        }
    }

    fn references(&self, pod: &CachedObject) -> Arc<References> {
        let key = format!("{}/{}", pod.namespace, pod.name);
        let mut parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((revision, refs)) = parsed.get(&key)
            && *revision == pod.revision
        {
            return Arc::clone(refs);
        }
        let refs = Arc::new(
            serde_json::from_slice::<Pod>(&pod.raw)
                .map(|p| References::of(&p))
                .unwrap_or_default(),
        );
        // Bounded: entries of deleted pods are dropped wholesale when it grows large.
        if parsed.len() > 50_000 {
            parsed.clear();
        }
        parsed.insert(key, (pod.revision, Arc::clone(&refs)));
        refs
    }

    /// True if a pod in `namespace` bound to `node` references `name` as `kind`.
    fn related(&self, node: &str, namespace: &str, kind: Reached, name: &str) -> bool {
        let Ok(snapshot) = self.pods.snapshot(&format!("{namespace}/")) else {
            return false;
        };
        snapshot
            .objects
            .iter()
            .filter(|pod| pod.field("spec.nodeName") == node)
            .any(|pod| {
                let refs = self.references(pod);
                match kind {
                    Reached::Secret => refs.secrets.iter().any(|s| s == name),
                    Reached::ConfigMap => refs.config_maps.iter().any(|c| c == name),
                    Reached::Claim => refs.claims.iter().any(|c| c == name),
                    Reached::ServiceAccount => refs.service_account == name,
                }
            })
    }

    /// get (or a list/watch of one name) of an object reached through a pod.
    fn read_through_pod(&self, node: &str, kind: Reached, attributes: &Attributes) -> Decision {
        if !matches!(attributes.verb.as_str(), "get" | "list" | "watch") {
            return Decision::NoOpinion("can only read resources of this type".to_owned());
        }
        if attributes.name.is_empty() {
            return Decision::NoOpinion("can only read namespaced object of this type".to_owned());
        }
        if attributes.subresource.is_empty()
            && self.related(node, &attributes.namespace, kind, &attributes.name)
        {
            return Decision::Allow(String::new());
        }
        Decision::NoOpinion(format!(
            "no relationship found between node '{node}' and this object"
        ))
    }
}

impl NodeAuthorizer {
    /// A node's access to a PersistentVolume: get one its pods reach through a claim (or
    /// one of its local-path volumes); list and watch its local-path volumes by label;
    /// update and patch those (the agent clears their cleanup finalizer).
    fn volume(&self, node: &str, attributes: &Attributes) -> Decision {
        let label = crate::model::storage::LOCAL_PATH_NODE;
        let cached = (!attributes.name.is_empty())
            .then(|| {
                self.volumes.get(&crate::store::object_key(
                    "",
                    "persistentvolumes",
                    "",
                    &attributes.name,
                ))
            })
            .flatten();
        let on_node = cached
            .as_ref()
            .is_some_and(|v| v.labels.get(label).map(String::as_str) == Some(node));
        let no_relationship = || {
            Decision::NoOpinion(format!(
                "no relationship found between node '{node}' and this object"
            ))
        };
        if !attributes.subresource.is_empty() {
            return no_relationship();
        }
        match attributes.verb.as_str() {
            "list" | "watch" if attributes.name.is_empty() => {
                let scoped = attributes
                    .label_selector
                    .iter()
                    .any(|(key, value)| key == label && value == node);
                if scoped {
                    Decision::Allow(String::new())
                } else {
                    Decision::NoOpinion(format!(
                        "can only list/watch persistentvolumes with label selector {label}={node}"
                    ))
                }
            }
            "get" | "list" | "watch" => {
                let claim = cached.as_ref().and_then(|v| {
                    let volume: serde_json::Value = serde_json::from_slice(&v.raw).ok()?;
                    let reference = volume.pointer("/spec/claimRef")?;
                    Some((
                        reference["namespace"].as_str()?.to_owned(),
                        reference["name"].as_str()?.to_owned(),
                    ))
                });
                let related = claim.is_some_and(|(namespace, name)| {
                    self.related(node, &namespace, Reached::Claim, &name)
                });
                if on_node || related {
                    Decision::Allow(String::new())
                } else {
                    no_relationship()
                }
            }
            "update" | "patch" if on_node => Decision::Allow(String::new()),
            _ => no_relationship(),
        }
    }
}

impl Authorizer for NodeAuthorizer {
    fn name(&self) -> &'static str {
        "Node"
    }

    fn authorize(&self, attributes: &Attributes) -> Decision {
        let Some(node) = attributes.user.node_name() else {
            return Decision::NoOpinion(String::new());
        };
        if attributes.resource_request {
            let a = attributes;
            match (
                a.api_group.as_str(),
                a.resource.as_str(),
                a.subresource.as_str(),
            ) {
                ("", "secrets", _) => return self.read_through_pod(node, Reached::Secret, a),
                ("", "configmaps", _) => {
                    return self.read_through_pod(node, Reached::ConfigMap, a);
                }
                ("", "persistentvolumes", _) => return self.volume(node, a),
                ("", "persistentvolumeclaims", "") => {
                    return self.read_through_pod(node, Reached::Claim, a);
                }
                ("", "persistentvolumeclaims", "status")
                    if matches!(a.verb.as_str(), "update" | "patch") =>
                {
                    return if self.related(node, &a.namespace, Reached::Claim, &a.name) {
                        Decision::Allow(String::new())
                    } else {
                        Decision::NoOpinion(format!(
                            "no relationship found between node '{node}' and this object"
                        ))
                    };
                }
                ("", "serviceaccounts", "token") => {
                    if a.verb != "create" {
                        return Decision::NoOpinion(
                            "can only create tokens for individual service accounts".to_owned(),
                        );
                    }
                    return if self.related(node, &a.namespace, Reached::ServiceAccount, &a.name) {
                        Decision::Allow(String::new())
                    } else {
                        Decision::NoOpinion(format!(
                            "no relationship found between node '{node}' and this object"
                        ))
                    };
                }
                ("coordination.k8s.io", "leases", "") => {
                    if !matches!(
                        a.verb.as_str(),
                        "get" | "create" | "update" | "patch" | "delete"
                    ) {
                        return Decision::NoOpinion(
                            "can only get, create, update, patch, or delete a node lease"
                                .to_owned(),
                        );
                    }
                    if a.namespace != "kube-node-lease" {
                        return Decision::NoOpinion(
                            "can only access leases in the kube-node-lease namespace".to_owned(),
                        );
                    }
                    if a.name != node && !(a.verb == "create" && a.name.is_empty()) {
                        return Decision::NoOpinion(
                            "can only access node lease with the same name as the requesting node"
                                .to_owned(),
                        );
                    }
                    return Decision::Allow(String::new());
                }
                ("", "pods", "") if matches!(a.verb.as_str(), "list" | "watch") => {
                    let scoped = a
                        .field_selector
                        .iter()
                        .any(|(field, value)| field == "spec.nodeName" && value == node);
                    if !scoped {
                        return Decision::NoOpinion(format!(
                            "can only list/watch pods with spec.nodeName field selector equal to '{node}'"
                        ));
                    }
                }
                _ => {}
            }
        }
        if rules_allow(attributes, &self.rules) {
            Decision::Allow(String::new())
        } else {
            Decision::NoOpinion(String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references_cover_volumes_env_and_pull_secrets() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {
                "serviceAccountName": "app",
                "imagePullSecrets": [{"name": "pull"}],
                "volumes": [
                    {"name": "a", "secret": {"secretName": "vol-secret"}},
                    {"name": "b", "configMap": {"name": "vol-cm"}},
                    {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "d", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}}
                ],
                "containers": [{"name": "c",
                    "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}],
                    "envFrom": [{"configMapRef": {"name": "env-cm"}}]}]
            }
        }))
        .expect("pod");
        let refs = References::of(&pod);
        assert_eq!(refs.secrets, ["pull", "vol-secret", "env-secret"]);
        assert_eq!(refs.config_maps, ["vol-cm", "kube-root-ca.crt", "env-cm"]);
        assert_eq!(refs.claims, ["data"]);
        assert_eq!(refs.service_account, "app");
    }
}
