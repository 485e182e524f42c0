//! The PodSecurity admission plugin: the pure decisions of this module applied to every
//! pod, workload and namespace write, with the namespace's labels read from the
//! namespaces' watch cache. Enforce refuses pods (403), warn comes back as `Warning:`
//! lines in kubectl, audit is logged.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use tracing::info;

use super::{
    Configuration, NamespaceCheck, PodSpecKind, PodWrite, Refusal, admit_write,
    check_namespace_write, existing_pod_warnings,
};
use crate::{
    admission::{Attributes, Operation, Plugin},
    model::{ApiError, meta},
    resources,
    store::{Store, WatchCache, object_key},
};

/// How long that check may take (kube's).
const CHECK_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// The PodSecurity admission plugin.
pub struct PodSecurity {
    config: Configuration,
    namespaces: Arc<WatchCache>,
    pods: Arc<WatchCache>,
    store: Arc<Store>,
}

impl PodSecurity {
    /// The plugin with `config`, over `store`'s caches.
    pub fn new(store: &Arc<Store>, config: Configuration) -> Self {
        let cache = |plural: &str| {
            let info = resources::find("", "v1", plural);
            match info {
                Some(info) => store.cache(&info.prefix(), info.projection()),
                None => store.cache(
                    &crate::store::resource_prefix("", plural),
                    crate::store::Projection { fields: &[] },
                ),
            }
        };
        Self {
            config,
            namespaces: cache("namespaces"),
            pods: cache("pods"),
            store: Arc::clone(store),
        }
    }

    /// The labels of `namespace` (the cache; a miss — a namespace created a moment ago —
    /// is read from the store).
    async fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        let key = object_key("", "namespaces", "", namespace);
        if let Some(cached) = self.namespaces.get(&key) {
            return Some(cached.labels.clone());
        }
        let object = self.store.get(&key).await.ok()?;
        Some(meta::string_map(&object, "labels"))
    }

    fn namespace_write(
        &self,
        attributes: &Attributes<'_>,
        object: &Value,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let labels = meta::string_map(object, "labels");
        let old_labels = old.map(|o| meta::string_map(o, "labels"));
        let name = meta::name(object);
        match check_namespace_write(
            &self.config,
            name,
            attributes.subresource,
            &labels,
            old_labels.as_ref(),
        ) {
            NamespaceCheck::Allowed(found) => warnings.extend(found),
            NamespaceCheck::Invalid(errors) => {
                return Err(ApiError::invalid("", "Namespace", name, &errors));
            }
            NamespaceCheck::CheckExistingPods(level) => {
                let pods: Vec<Pod> = self
                    .pods
                    .snapshot(&format!("{name}/"))
                    .map(|s| {
                        s.objects
                            .iter()
                            .filter_map(|o| serde_json::from_slice(&o.raw).ok())
                            .collect()
                    })
                    .unwrap_or_default();
                let started = Instant::now();
                warnings.extend(existing_pod_warnings(
                    &self.config,
                    name,
                    level,
                    &pods,
                    super::namespace::DEFAULT_MAX_PODS_TO_CHECK,
                    || started.elapsed() > CHECK_BUDGET,
                ));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Plugin for PodSecurity {
    fn name(&self) -> &'static str {
        "PodSecurity"
    }

    async fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: &Value,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if !matches!(attributes.operation, Operation::Create | Operation::Update) {
            return Ok(());
        }
        let resource = attributes.resource;
        if resource.group.is_empty() && resource.plural == "namespaces" {
            return self.namespace_write(attributes, object, old, warnings);
        }
        let Some(kind) = PodSpecKind::from_group_resource(resource.group, resource.plural) else {
            return Ok(());
        };
        let labels = match self.namespace_labels(attributes.namespace).await {
            Some(labels) => labels,
            None if kind.is_pod() => {
                return Err(ApiError::internal(format!(
                    "failed to lookup namespace \"{}\"",
                    attributes.namespace
                )));
            }
            None => return Ok(()),
        };
        let decision = admit_write(
            &self.config,
            &labels,
            &PodWrite {
                kind,
                namespace: attributes.namespace,
                username: &attributes.user.name,
                subresource: attributes.subresource,
                object,
                old_object: old,
            },
        );
        warnings.extend(decision.warnings);
        if let Some(violations) = decision
            .audit_annotations
            .get(super::decision::AUDIT_VIOLATIONS_ANNOTATION)
        {
            info!(namespace = %attributes.namespace, name = %attributes.name,
                  user = %attributes.user.name, %violations, "PodSecurity audit");
        }
        match decision.refusal {
            None => Ok(()),
            Some(Refusal::Forbidden(message)) => Err(ApiError::admission_forbidden(
                resource.group,
                resource.plural,
                meta::name(object),
                &message,
            )),
            Some(Refusal::BadRequest(message)) => Err(ApiError::bad_request(message)),
        }
    }
}
