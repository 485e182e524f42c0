//! The RBAC authorizer: an immutable index of Roles, ClusterRoles, RoleBindings and
//! ClusterRoleBindings that answers "which rules apply to this user here" as kube's
//! `DefaultRuleResolver` (`pkg/registry/rbac/validation/rule.go`) and decides requests as
//! its `RBACAuthorizer` (`plugin/pkg/auth/authorizer/rbac/rbac.go`): allow when a rule of a
//! binding that names the user allows it, otherwise no opinion (RBAC never denies).
//!
//! Built once from the four lists whenever one of them changes: role references are
//! resolved and bindings indexed by scope (cluster, or one namespace) and by subject (user
//! name, group, ServiceAccount user name), so a decision costs a few hash look-ups and the
//! rules of the bindings that name the user, however many bindings exist.

use std::{collections::HashMap, fmt, ops::ControlFlow, sync::Arc};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::{format::aggregate_errors, format::go_quote, rules::rule_allows};
use crate::{
    authz::{Attributes, Authorizer, Decision},
    model::user::{SERVICE_ACCOUNT_PREFIX, UserInfo},
};

/// The rules of a role, shared by every binding that references it.
type SharedRules = Arc<[PolicyRule]>;

/// An immutable, indexed RBAC policy.
#[derive(Debug, Default)]
pub struct RbacPolicy {
    cluster_roles: HashMap<String, SharedRules>,
    /// Roles by namespace, then name.
    roles: HashMap<String, HashMap<String, SharedRules>>,
    /// ClusterRoleBindings.
    cluster_scope: Scope,
    /// RoleBindings by namespace.
    namespaces: HashMap<String, Scope>,
}

/// The bindings of one scope, indexed by subject.
#[derive(Debug, Default)]
struct Scope {
    /// Sorted by name, so visiting order (and the binding an allow names) is stable.
    bindings: Vec<Binding>,
    /// User subjects and ServiceAccount subjects (by their user name).
    users: HashMap<String, Vec<SubjectRef>>,
    groups: HashMap<String, Vec<SubjectRef>>,
}

/// Subject `subject` of binding `binding` (indexes into [`Scope::bindings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SubjectRef {
    binding: usize,
    subject: usize,
}

/// One binding with its role reference resolved.
#[derive(Debug)]
struct Binding {
    name: String,
    /// "" for a ClusterRoleBinding.
    namespace: String,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
    /// The referenced role's rules, or why they could not be found (worded as kube).
    rules: Result<SharedRules, String>,
}

/// What a visit yields: a rule that applies with the binding it comes from, or an error met
/// while resolving a binding that names the user (its role does not exist).
#[derive(Debug, Clone, Copy)]
pub enum Visited<'a> {
    /// A rule and its source.
    Rule(RuleSource<'a>, &'a PolicyRule),
    /// A resolution error.
    Error(&'a str),
}

/// The binding (and the subject of it) a rule applies through. Displays as kube words it:
/// `ClusterRoleBinding "x" of ClusterRole "y" to User "z"`,
/// `RoleBinding "x/ns" of Role "y" to ServiceAccount "sa/ns"`.
#[derive(Debug, Clone, Copy)]
pub struct RuleSource<'a> {
    binding: &'a Binding,
    subject: &'a Subject,
}

impl RuleSource<'_> {
    /// The binding's name.
    pub fn binding_name(&self) -> &str {
        &self.binding.name
    }

    /// The binding's namespace ("" for a ClusterRoleBinding).
    pub fn namespace(&self) -> &str {
        &self.binding.namespace
    }

    /// The role the binding references.
    pub fn role_ref(&self) -> &RoleRef {
        &self.binding.role_ref
    }

    /// The subject of the binding that names the user.
    pub fn subject(&self) -> &Subject {
        self.subject
    }
}

impl fmt::Display for RuleSource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let binding = self.binding;
        if binding.namespace.is_empty() {
            write!(f, "ClusterRoleBinding {}", go_quote(&binding.name))?;
        } else {
            let qualified = format!("{}/{}", binding.name, binding.namespace);
            write!(f, "RoleBinding {}", go_quote(&qualified))?;
        }
        write!(
            f,
            " of {} {} to {} ",
            binding.role_ref.kind,
            go_quote(&binding.role_ref.name),
            self.subject.kind
        )?;
        if self.subject.kind == "ServiceAccount" {
            let namespace = self
                .subject
                .namespace
                .as_deref()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(&binding.namespace);
            write!(
                f,
                "{}",
                go_quote(&format!("{}/{namespace}", self.subject.name))
            )
        } else {
            write!(f, "{}", go_quote(&self.subject.name))
        }
    }
}

/// The rules that apply to a user in a namespace, and the errors met finding them (kube's
/// `RulesFor`: the rules found are valid even when some could not be resolved).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvedRules {
    /// The rules, ClusterRoleBindings' first.
    pub rules: Vec<PolicyRule>,
    /// Resolution errors (`clusterrole.rbac.authorization.k8s.io "x" not found`).
    pub errors: Vec<String>,
}

impl ResolvedRules {
    /// The errors as one, as kube aggregates them; `None` if there were none.
    pub fn error(&self) -> Option<String> {
        (!self.errors.is_empty()).then(|| aggregate_errors(&self.errors))
    }
}

impl RbacPolicy {
    /// Index the four RBAC kinds. Objects without a name are ignored; a binding whose role
    /// does not exist is kept and reports that error to the users it names, as kube does.
    pub fn new(
        roles: Vec<Role>,
        cluster_roles: Vec<ClusterRole>,
        role_bindings: Vec<RoleBinding>,
        cluster_role_bindings: Vec<ClusterRoleBinding>,
    ) -> Self {
        let mut policy = Self::default();
        for cluster_role in cluster_roles {
            if let Some(name) = cluster_role.metadata.name {
                let rules: SharedRules = cluster_role.rules.unwrap_or_default().into();
                policy.cluster_roles.insert(name, rules);
            }
        }
        for role in roles {
            let (Some(name), Some(namespace)) = (role.metadata.name, role.metadata.namespace)
            else {
                continue;
            };
            let rules: SharedRules = role.rules.unwrap_or_default().into();
            policy
                .roles
                .entry(namespace)
                .or_default()
                .insert(name, rules);
        }

        let mut cluster_bindings = Vec::with_capacity(cluster_role_bindings.len());
        for binding in cluster_role_bindings {
            let Some(name) = binding.metadata.name else {
                continue;
            };
            let rules = policy.lookup(&binding.role_ref, "").cloned();
            cluster_bindings.push(Binding {
                name,
                namespace: String::new(),
                role_ref: binding.role_ref,
                subjects: binding.subjects.unwrap_or_default(),
                rules,
            });
        }
        let mut by_namespace: HashMap<String, Vec<Binding>> = HashMap::new();
        for binding in role_bindings {
            let (Some(name), Some(namespace)) = (binding.metadata.name, binding.metadata.namespace)
            else {
                continue;
            };
            if namespace.is_empty() {
                continue;
            }
            let rules = policy.lookup(&binding.role_ref, &namespace).cloned();
            by_namespace
                .entry(namespace.clone())
                .or_default()
                .push(Binding {
                    name,
                    namespace,
                    role_ref: binding.role_ref,
                    subjects: binding.subjects.unwrap_or_default(),
                    rules,
                });
        }
        policy.cluster_scope = Scope::new(cluster_bindings);
        policy.namespaces = by_namespace
            .into_iter()
            .map(|(namespace, bindings)| (namespace, Scope::new(bindings)))
            .collect();
        policy
    }

    /// The rules a role reference grants to bindings in `namespace` ("" for a
    /// ClusterRoleBinding), as kube's `GetRoleReferenceRules` (the rules a RoleBinding or
    /// ClusterRoleBinding would grant, for the escalation check of a binding).
    pub fn role_reference_rules(
        &self,
        role_ref: &RoleRef,
        namespace: &str,
    ) -> Result<&[PolicyRule], String> {
        self.lookup(role_ref, namespace).map(|rules| &rules[..])
    }

    fn lookup(&self, role_ref: &RoleRef, namespace: &str) -> Result<&SharedRules, String> {
        match role_ref.kind.as_str() {
            "Role" => self
                .roles
                .get(namespace)
                .and_then(|roles| roles.get(&role_ref.name))
                .ok_or_else(|| not_found("role", &role_ref.name)),
            "ClusterRole" => self
                .cluster_roles
                .get(&role_ref.name)
                .ok_or_else(|| not_found("clusterrole", &role_ref.name)),
            other => Err(format!(
                "unsupported role reference kind: {}",
                go_quote(other)
            )),
        }
    }

    /// Visit every rule that applies to `user` in `namespace` (ClusterRoleBindings' rules,
    /// then those of the namespace's RoleBindings; "" visits only the former), and every
    /// resolution error of a binding that names the user, until the visitor breaks.
    pub fn visit_rules_for<'a>(
        &'a self,
        user: &UserInfo,
        namespace: &str,
        mut visitor: impl FnMut(Visited<'a>) -> ControlFlow<()>,
    ) {
        if self.cluster_scope.visit(user, &mut visitor).is_break() || namespace.is_empty() {
            return;
        }
        if let Some(scope) = self.namespaces.get(namespace) {
            let _ = scope.visit(user, &mut visitor);
        }
    }

    /// Every rule that applies to `user` in `namespace`, with the resolution errors (kube's
    /// `RulesFor`, the owner's rules of an escalation check).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> ResolvedRules {
        let mut resolved = ResolvedRules::default();
        self.visit_rules_for(user, namespace, |visited| {
            match visited {
                Visited::Rule(_, rule) => resolved.rules.push(rule.clone()),
                Visited::Error(error) => resolved.errors.push(error.to_owned()),
            }
            ControlFlow::Continue(())
        });
        resolved
    }
}

impl Authorizer for RbacPolicy {
    fn name(&self) -> &'static str {
        "RBAC"
    }

    fn authorize(&self, attributes: &Attributes) -> Decision {
        let mut allowed_by = None;
        let mut errors: Vec<String> = Vec::new();
        self.visit_rules_for(&attributes.user, &attributes.namespace, |visited| {
            match visited {
                Visited::Rule(source, rule) if rule_allows(attributes, rule) => {
                    allowed_by = Some(source);
                    return ControlFlow::Break(());
                }
                Visited::Rule(..) => {}
                Visited::Error(error) => errors.push(error.to_owned()),
            }
            ControlFlow::Continue(())
        });
        match allowed_by {
            Some(source) => Decision::Allow(format!("RBAC: allowed by {source}")),
            None if errors.is_empty() => Decision::NoOpinion(String::new()),
            None => Decision::NoOpinion(format!("RBAC: {}", aggregate_errors(&errors))),
        }
    }
}

impl Scope {
    fn new(mut bindings: Vec<Binding>) -> Self {
        bindings.sort_by(|a, b| a.name.cmp(&b.name));
        let mut scope = Self::default();
        for (binding_index, binding) in bindings.iter().enumerate() {
            for (subject_index, subject) in binding.subjects.iter().enumerate() {
                let reference = SubjectRef {
                    binding: binding_index,
                    subject: subject_index,
                };
                match subject.kind.as_str() {
                    "User" => scope
                        .users
                        .entry(subject.name.clone())
                        .or_default()
                        .push(reference),
                    "Group" => scope
                        .groups
                        .entry(subject.name.clone())
                        .or_default()
                        .push(reference),
                    "ServiceAccount" => {
                        // A ServiceAccount without namespace is the binding's namespace's;
                        // in a ClusterRoleBinding it names nobody.
                        let namespace = subject
                            .namespace
                            .as_deref()
                            .filter(|ns| !ns.is_empty())
                            .unwrap_or(&binding.namespace);
                        if namespace.is_empty() {
                            continue;
                        }
                        let user = format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{}", subject.name);
                        scope.users.entry(user).or_default().push(reference);
                    }
                    // Unknown kinds name nobody.
                    _ => {}
                }
            }
        }
        scope.bindings = bindings;
        scope
    }

    /// The bindings that name `user`, in binding order, each with the first of its subjects
    /// that does (kube's `appliesTo`).
    fn applying(&self, user: &UserInfo) -> Vec<SubjectRef> {
        let mut references: Vec<SubjectRef> = Vec::new();
        if let Some(found) = self.users.get(&user.name) {
            references.extend_from_slice(found);
        }
        for group in &user.groups {
            if let Some(found) = self.groups.get(group) {
                references.extend_from_slice(found);
            }
        }
        references.sort_unstable();
        references.dedup_by_key(|reference| reference.binding);
        references
    }

    fn visit<'a>(
        &'a self,
        user: &UserInfo,
        visitor: &mut impl FnMut(Visited<'a>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        for reference in self.applying(user) {
            let Some(binding) = self.bindings.get(reference.binding) else {
                continue;
            };
            let Some(subject) = binding.subjects.get(reference.subject) else {
                continue;
            };
            match &binding.rules {
                Ok(rules) => {
                    let source = RuleSource { binding, subject };
                    for rule in rules.iter() {
                        visitor(Visited::Rule(source, rule))?;
                    }
                }
                Err(error) => visitor(Visited::Error(error))?,
            }
        }
        ControlFlow::Continue(())
    }
}

/// A lister's NotFound, as kube words it (`clusterrole.rbac.authorization.k8s.io "x" not
/// found`).
fn not_found(resource: &str, name: &str) -> String {
    format!(
        "{resource}.rbac.authorization.k8s.io {} not found",
        go_quote(name)
    )
}

#[cfg(test)]
pub(crate) mod tests;
