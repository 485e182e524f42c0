//! RBAC's privilege-escalation prevention, as kube's RBAC REST storage enforces it: a
//! Role or ClusterRole may only grant what its writer already holds where it applies
//! (unless they may `escalate` it), a binding may only bind a role whose permissions its
//! writer holds (unless they may `bind` it), and only someone holding everything may set
//! an aggregationRule.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde_json::Value;

use super::{Attributes, Operation, Plugin};
use crate::{
    authz::{
        Authorizer,
        rbac::escalation::{
            AGGREGATION_RULE_FORBIDDEN, bind_attributes, confirm_no_escalation,
            escalate_attributes, escalation_allowed, full_authority,
        },
        rbac_source::RbacAuthorizer,
    },
    model::ApiError,
};

/// The escalation check on writes of the four RBAC kinds.
pub struct RbacEscalation {
    rbac: Arc<RbacAuthorizer>,
    authorizer: Arc<dyn Authorizer>,
}

impl RbacEscalation {
    /// The check, reading the writer's rules from `rbac` and asking `authorizer` whether
    /// they may `escalate` or `bind`.
    pub fn new(rbac: Arc<RbacAuthorizer>, authorizer: Arc<dyn Authorizer>) -> Self {
        Self { rbac, authorizer }
    }

    /// Ok if the writer holds `requested` in `namespace`.
    fn holds(
        &self,
        attributes: &Attributes<'_>,
        namespace: &str,
        requested: &[PolicyRule],
    ) -> Result<(), ApiError> {
        let policy = self.rbac.policy();
        let owner = policy.rules_for(attributes.user, namespace);
        confirm_no_escalation(attributes.user, &owner, requested)
            .map_err(|e| attributes.forbidden(&e.to_string()))
    }

    fn role(
        &self,
        attributes: &Attributes<'_>,
        rules: &[PolicyRule],
        aggregated: bool,
    ) -> Result<(), ApiError> {
        let resource = attributes.resource.plural;
        let escalate = escalate_attributes(
            attributes.user,
            resource,
            attributes.namespace,
            attributes.name,
        );
        if self.authorizer.authorize(&escalate).allowed() {
            return Ok(());
        }
        if aggregated {
            self.holds(attributes, "", &full_authority())
                .map_err(|_| attributes.forbidden(AGGREGATION_RULE_FORBIDDEN))?;
        }
        self.holds(attributes, attributes.namespace, rules)
    }

    fn binding(
        &self,
        attributes: &Attributes<'_>,
        role_ref: &k8s_openapi::api::rbac::v1::RoleRef,
    ) -> Result<(), ApiError> {
        if let Some(bind) = bind_attributes(attributes.user, role_ref, attributes.namespace)
            && self.authorizer.authorize(&bind).allowed()
        {
            return Ok(());
        }
        let policy = self.rbac.policy();
        let rules = policy
            .role_reference_rules(role_ref, attributes.namespace)
            .map_err(|e| attributes.forbidden(&e))?
            .to_vec();
        self.holds(attributes, attributes.namespace, &rules)
    }
}

fn decode<K: serde::de::DeserializeOwned>(object: &Value) -> Result<K, ApiError> {
    serde_json::from_value(object.clone()).map_err(|e| ApiError::bad_request(e.to_string()))
}

#[async_trait]
impl Plugin for RbacEscalation {
    fn name(&self) -> &'static str {
        "RBACEscalation"
    }

    async fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: &Value,
        _old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if !matches!(attributes.operation, Operation::Create | Operation::Update)
            || attributes.resource.group != "rbac.authorization.k8s.io"
            || escalation_allowed(attributes.user)
        {
            return Ok(());
        }
        match attributes.resource.plural {
            "roles" => {
                let role: Role = decode(object)?;
                self.role(attributes, role.rules.as_deref().unwrap_or_default(), false)
            }
            "clusterroles" => {
                let role: ClusterRole = decode(object)?;
                self.role(
                    attributes,
                    role.rules.as_deref().unwrap_or_default(),
                    role.aggregation_rule.is_some(),
                )
            }
            "rolebindings" => {
                let binding: RoleBinding = decode(object)?;
                self.binding(attributes, &binding.role_ref)
            }
            "clusterrolebindings" => {
                let binding: ClusterRoleBinding = decode(object)?;
                self.binding(attributes, &binding.role_ref)
            }
            _ => Ok(()),
        }
    }
}
