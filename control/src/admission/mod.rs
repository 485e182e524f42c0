//! Admission: the plugins every write passes after authorization, in kube-apiserver's
//! order — mutating plugins (they may change the object), then validation of the object,
//! then validating plugins (they may only refuse or warn). Plugins are values in a list
//! ([`Chain`]), not branches in handlers.

pub mod certificates;
pub mod default_storage_class;
pub mod default_toleration_seconds;
pub mod limit_ranger;
pub mod namespace_lifecycle;
pub mod node_restriction;
pub mod pod_security;
pub mod priority;
pub mod rbac_escalation;
pub mod resource_quota;
pub mod runtime_class;
pub mod service_account;
pub mod storage_protection;
pub mod webhook;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::{model::ApiError, model::user::UserInfo, resources::ResourceInfo};

/// What the request does to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Create (POST, or an apply that creates).
    Create,
    /// Update (PUT, PATCH, apply; subresource writes).
    Update,
    /// Delete.
    Delete,
    /// Connect (exec, attach, port-forward, proxy).
    Connect,
}

impl Operation {
    /// kube's name (`CREATE`…), as admission reviews carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        }
    }
}

/// One request, as admission sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// What the request does.
    pub operation: Operation,
    /// The resource.
    pub resource: &'static ResourceInfo,
    /// The subresource ("" if none).
    pub subresource: &'a str,
    /// Namespace ("" for cluster-scoped resources).
    pub namespace: &'a str,
    /// Object name.
    pub name: &'a str,
    /// Who asks.
    pub user: &'a UserInfo,
    /// A dry run: plugins must not have side effects.
    pub dry_run: bool,
}

impl<'a> Attributes<'a> {
    /// The same attributes naming `name`.
    pub fn named(self, name: &'a str) -> Self {
        Self { name, ..self }
    }

    /// True if the request is about `group`/`plural` itself (no subresource).
    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.resource.group == group
            && self.resource.plural == plural
            && self.subresource.is_empty()
    }

    /// The 403 an admission refusal answers: `pods "web" is forbidden: <why>`.
    pub fn forbidden(&self, why: &str) -> ApiError {
        ApiError::admission_forbidden(self.resource.group, self.resource.plural, self.name, why)
    }
}

/// One admission plugin. Both phases default to "no objection".
#[async_trait]
pub trait Plugin: Send + Sync {
    /// The plugin's name (kube's: `NamespaceLifecycle`, `RuntimeClass`…).
    fn name(&self) -> &'static str;

    /// Mutating phase: may change `object` (`old` is the stored object on updates and
    /// deletes); Err refuses the request.
    async fn admit(
        &self,
        _attributes: &Attributes<'_>,
        _object: &mut Value,
        _old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        Ok(())
    }

    /// Validating phase: may only refuse or warn.
    async fn validate(
        &self,
        _attributes: &Attributes<'_>,
        _object: &Value,
        _old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        Ok(())
    }
}

/// What the built-in plugins are configured with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Pod Security defaults and exemptions.
    pub pod_security: pod_security::Configuration,
    /// tolerationSeconds of the not-ready/unreachable tolerations pods get.
    pub default_toleration_seconds: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pod_security: pod_security::Configuration::default(),
            default_toleration_seconds: 300,
        }
    }
}

/// The built-in plugins in kube-apiserver's order, over `store`; the RBAC escalation check
/// when `authorization` runs RBAC.
pub fn default_chain(
    store: &Arc<crate::store::Store>,
    authorization: Option<&crate::authz::modes::Authorization>,
    settings: &Settings,
) -> Chain {
    let mut plugins: Vec<Arc<dyn Plugin>> = vec![
        Arc::new(namespace_lifecycle::NamespaceLifecycle::new(Arc::clone(
            store,
        ))),
        Arc::new(limit_ranger::LimitRanger::new(Arc::clone(store))),
        Arc::new(service_account::ServiceAccountAdmission::new(Arc::clone(
            store,
        ))),
        Arc::new(node_restriction::NodeRestriction::new(Arc::clone(store))),
        Arc::new(priority::Priority::new(Arc::clone(store))),
        Arc::new(pod_security::plugin::PodSecurity::new(
            store,
            settings.pod_security.clone(),
        )),
        Arc::new(default_toleration_seconds::DefaultTolerationSeconds::new(
            settings.default_toleration_seconds,
        )),
        Arc::new(runtime_class::RuntimeClassAdmission::new(Arc::clone(store))),
        Arc::new(default_storage_class::DefaultStorageClass::new(Arc::clone(
            store,
        ))),
        Arc::new(storage_protection::StorageObjectInUseProtection),
    ];
    // Last of the mutating plugins and of the validating ones, as in kube's list.
    let webhooks = webhook::Source::https(Arc::clone(store));
    plugins.push(Arc::new(webhook::mutating::MutatingWebhooks::new(
        Arc::clone(&webhooks),
    )));
    plugins.push(Arc::new(webhook::validating::ValidatingWebhooks::new(
        webhooks,
    )));
    if let Some(authorization) = authorization {
        plugins.push(Arc::new(certificates::CertificateAdmission::new(
            Arc::clone(&authorization.authorizer),
        )));
    }
    if let Some(authorization) = authorization
        && let Some(rbac) = &authorization.rbac
    {
        plugins.push(Arc::new(rbac_escalation::RbacEscalation::new(
            Arc::clone(rbac),
            Arc::clone(&authorization.authorizer),
        )));
    }
    // kube runs ResourceQuota last, so it charges what every other plugin let through.
    plugins.push(Arc::new(resource_quota::ResourceQuotaAdmission::new(
        Arc::clone(store),
    )));
    Chain::new(plugins)
}

/// The admission plugins, in order.
#[derive(Clone, Default)]
pub struct Chain {
    plugins: Vec<Arc<dyn Plugin>>,
}

impl Chain {
    /// A chain of `plugins`, run in this order in each phase.
    pub fn new(plugins: Vec<Arc<dyn Plugin>>) -> Self {
        Self { plugins }
    }

    /// The plugins, in order.
    pub fn plugins(&self) -> &[Arc<dyn Plugin>] {
        &self.plugins
    }

    /// The plugins' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|p| p.name()).collect()
    }

    /// Run every plugin's mutating phase.
    pub async fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: &mut Value,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        for plugin in &self.plugins {
            plugin.admit(attributes, object, old, warnings).await?;
        }
        Ok(())
    }

    /// Run every plugin's validating phase.
    pub async fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: &Value,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        for plugin in &self.plugins {
            plugin.validate(attributes, object, old, warnings).await?;
        }
        Ok(())
    }
}
