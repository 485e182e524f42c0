//! ResourceQuota admission, as kube-apiserver's plugin (last in the chain): a write that
//! adds usage in a namespace — a create of anything, an update of a Service or a claim that
//! grows it — is charged to every quota of the namespace whose scopes cover the object and
//! whose `status.hard` names what it uses. The charge is a compare-and-swap of the quota's
//! `status.used` (the registry's `guaranteed_update`) made before the object is written,
//! so two racing creates cannot both fit in the last slot; a refused charge answers 403
//! (`exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2`). Dry runs are
//! judged but not charged. The quota controller recomputes `status.used` from the objects,
//! which releases what deleted objects (and charges of writes that failed later) held.

use std::{collections::BTreeSet, sync::Arc};

use async_trait::async_trait;
use serde_json::Value;

use super::{Attributes, Chain, Operation, Plugin, limit_ranger::cached};
use crate::{
    model::{
        ApiError,
        quota::{
            ResourceList, charge, charges, covers, mask, parse_list, pod_constraints,
            subtract_non_negative, to_json, usage, without_zeros,
        },
    },
    registry::{FieldValidation, Intent, Registry, RegistryError, Request},
    resources::{self, ResourceInfo},
    store::{Store, WatchCache},
};

/// The ResourceQuota admission plugin.
pub struct ResourceQuotaAdmission {
    store: Arc<Store>,
    quotas: Arc<WatchCache>,
    /// Writes quota status (no admission of its own: this is the server's bookkeeping).
    registry: Registry,
}

/// What one quota says about a write.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// The quota does not concern the object.
    Unconcerned,
    /// The object fits: charge `requested`, making the usage `used`.
    Fits {
        /// What the write adds to the quota.
        requested: ResourceList,
        /// The quota's usage with it.
        used: ResourceList,
    },
}

/// Judge a write of `object` (`group`/`plural`) adding `delta` against the stored `quota`:
/// kube's CheckRequest for one quota. Err: the refusal's message.
pub fn judge(
    quota: &Value,
    group: &str,
    plural: &str,
    object: &Value,
    delta: &ResourceList,
    create: bool,
) -> Result<Verdict, String> {
    let name = quota
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !covers(quota, group, plural, object) {
        return Ok(Verdict::Unconcerned);
    }
    let hard = parse_list(quota.pointer("/status/hard"));
    let restricted: BTreeSet<String> = hard
        .keys()
        .filter(|r| charges(group, plural, r))
        .cloned()
        .collect();
    if restricted.is_empty() {
        return Ok(Verdict::Unconcerned);
    }
    if create && (group, plural) == ("", "pods") {
        pod_constraints(&restricted, object).map_err(|e| format!("failed quota: {name}: {e}"))?;
    }
    let used = parse_list(quota.pointer("/status/used"));
    if restricted.iter().any(|r| !used.contains_key(r)) {
        return Err(format!(
            "status unknown for quota: {name}, resources: {}",
            restricted.iter().cloned().collect::<Vec<_>>().join(",")
        ));
    }
    let requested = mask(delta, &restricted);
    if requested.is_empty() {
        return Ok(Verdict::Unconcerned);
    }
    let used = charge(name, &hard, &used, &requested)?;
    Ok(Verdict::Fits { requested, used })
}

impl ResourceQuotaAdmission {
    /// The plugin, listing quotas through their watch cache and charging them in `store`.
    pub fn new(store: Arc<Store>) -> Self {
        let quotas = resources::watch_cache(&store, "", "v1", "resourcequotas");
        Self {
            registry: Registry::new(Arc::clone(&store), Chain::default()),
            store,
            quotas,
        }
    }

    /// The status write of quotas in the request's namespace.
    fn status_request<'a>(
        attributes: &'a Attributes<'a>,
        resource: &'static ResourceInfo,
    ) -> Request<'a> {
        Request {
            resource,
            namespace: attributes.namespace,
            subresource: "status",
            user: attributes.user,
            dry_run: attributes.dry_run,
            field_validation: FieldValidation::Ignore,
        }
    }

    /// Judge the write against quota `name` as stored now and charge it there with a
    /// compare-and-swap (judged again if another write got there first). Ok(what was
    /// charged, if anything).
    async fn charge_one(
        &self,
        attributes: &Attributes<'_>,
        resource: &'static ResourceInfo,
        name: &str,
        object: &Value,
        delta: &ResourceList,
    ) -> Result<Option<ResourceList>, ApiError> {
        let request = Self::status_request(attributes, resource);
        let (group, plural) = (attributes.resource.group, attributes.resource.plural);
        let create = attributes.operation == Operation::Create;
        let mut charged = None;
        let outcome = self
            .registry
            .guaranteed_update(&request, name, |current| {
                charged = None;
                match judge(current, group, plural, object, delta, create) {
                    Err(why) => Err(RegistryError::from(attributes.forbidden(&why))),
                    Ok(Verdict::Unconcerned) => Ok(Intent::Keep),
                    Ok(Verdict::Fits { requested, used }) => {
                        charged = Some(requested);
                        if attributes.dry_run {
                            return Ok(Intent::Keep);
                        }
                        let mut updated = current.clone();
                        updated["status"]["used"] = to_json(&used);
                        Ok(Intent::Write(updated))
                    }
                }
            })
            .await;
        match outcome {
            Ok(_) => Ok(charged),
            // Deleted meanwhile: nothing to charge.
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Give back what earlier quotas were charged for a write another quota refused.
    async fn refund(
        &self,
        attributes: &Attributes<'_>,
        resource: &'static ResourceInfo,
        charged: &[(String, ResourceList)],
    ) {
        if attributes.dry_run {
            return;
        }
        let request = Self::status_request(attributes, resource);
        for (name, requested) in charged {
            let result = self
                .registry
                .guaranteed_update(&request, name, |current| {
                    let used = parse_list(current.pointer("/status/used"));
                    let mut updated = current.clone();
                    updated["status"]["used"] = to_json(&subtract_non_negative(&used, requested));
                    Ok(Intent::Write(updated))
                })
                .await;
            if let Err(error) = result {
                tracing::warn!(quota = %name, %error, "giving back a quota charge failed; the quota controller will recompute it");
            }
        }
    }
}

/// True if the cached `quota` may limit objects of `group`/`plural` (its spec or status
/// names a resource they are charged): the others are not read again from the store.
fn may_limit(quota: &Value, group: &str, plural: &str) -> bool {
    ["/spec/hard", "/status/hard"].iter().any(|at| {
        quota
            .pointer(at)
            .and_then(Value::as_object)
            .is_some_and(|hard| hard.keys().any(|r| charges(group, plural, r)))
    })
}

/// True for the writes quota admission charges.
fn charged_write(attributes: &Attributes<'_>) -> bool {
    if !attributes.subresource.is_empty() || attributes.namespace.is_empty() {
        return false;
    }
    match attributes.operation {
        Operation::Create => true,
        Operation::Update => {
            attributes.is("", "services") || attributes.is("", "persistentvolumeclaims")
        }
        Operation::Delete | Operation::Connect => false,
    }
}

#[async_trait]
impl Plugin for ResourceQuotaAdmission {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    async fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: &Value,
        old: Option<&Value>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if !charged_write(attributes) {
            return Ok(());
        }
        let mut quotas = cached(&self.store, &self.quotas, attributes.namespace).await?;
        if quotas.is_empty() {
            return Ok(());
        }
        let (group, plural) = (attributes.resource.group, attributes.resource.plural);
        let mut delta = usage(group, plural, object);
        if attributes.operation == Operation::Update
            && let Some(old) = old
        {
            delta = subtract_non_negative(&delta, &usage(group, plural, old));
        }
        let delta = without_zeros(delta);
        if delta.is_empty() {
            return Ok(());
        }
        let resource = resources::find("", "v1", "resourcequotas")
            .ok_or_else(|| ApiError::internal("resourcequotas are not served"))?;
        let name_of = |q: &Value| {
            q.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        quotas.sort_by_key(name_of);
        let mut charged = Vec::new();
        for quota in quotas.iter().filter(|q| may_limit(q, group, plural)) {
            let name = name_of(quota);
            match self
                .charge_one(attributes, resource, &name, object, &delta)
                .await
            {
                Ok(Some(requested)) => charged.push((name, requested)),
                Ok(None) => {}
                Err(error) => {
                    self.refund(attributes, resource, &charged).await;
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{model::user::UserInfo, store::object_key};

    fn quota(hard: Value, used: Value) -> Value {
        json!({"metadata": {"name": "q", "namespace": "team"},
               "spec": {"hard": hard.clone()}, "status": {"hard": hard, "used": used}})
    }

    fn pod(cpu: Option<&str>) -> Value {
        let resources = cpu.map_or(json!({}), |c| json!({"requests": {"cpu": c}}));
        json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "resources": resources}]}})
    }

    fn judge_pod(quota: &Value, pod: &Value) -> Result<Verdict, String> {
        judge(quota, "", "pods", pod, &usage("", "pods", pod), true)
    }

    #[test]
    fn pods_are_judged_as_kube_does() {
        let q = quota(
            json!({"pods": "2", "requests.cpu": "500m"}),
            json!({"pods": "1", "requests.cpu": "100m"}),
        );
        assert!(matches!(
            judge_pod(&q, &pod(Some("100m"))),
            Ok(Verdict::Fits { .. })
        ));
        assert_eq!(
            judge_pod(&q, &pod(Some("1"))),
            Err("exceeded quota: q, requested: requests.cpu=1, used: requests.cpu=100m, limited: requests.cpu=500m".to_owned())
        );
        assert_eq!(
            judge_pod(&q, &pod(None)),
            Err("failed quota: q: must specify requests.cpu for: web".to_owned())
        );
        let full = quota(json!({"pods": "2"}), json!({"pods": "2"}));
        assert_eq!(
            judge_pod(&full, &pod(None)),
            Err("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2".to_owned())
        );
        let unknown = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2"}}});
        assert_eq!(
            judge_pod(&unknown, &pod(None)),
            Ok(Verdict::Unconcerned),
            "no status.hard yet: the quota limits nothing"
        );
        let no_used = json!({"metadata": {"name": "q"}, "status": {"hard": {"pods": "2"}}});
        assert_eq!(
            judge_pod(&no_used, &pod(None)),
            Err("status unknown for quota: q, resources: pods".to_owned())
        );
        let services = quota(json!({"services": "1"}), json!({"services": "0"}));
        assert_eq!(judge_pod(&services, &pod(None)), Ok(Verdict::Unconcerned));
        assert!(!may_limit(&services, "", "pods"));
        assert!(may_limit(&services, "", "services"));
        assert!(may_limit(&q, "", "pods"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_creates_cannot_share_the_last_slot() {
        let store = Store::in_memory();
        let key = object_key("", "resourcequotas", "team", "q");
        store
            .create(&key, &quota(json!({"pods": "3"}), json!({"pods": "0"})))
            .await
            .expect("create");
        let plugin = Arc::new(ResourceQuotaAdmission::new(Arc::clone(&store)));
        let mut racers = tokio::task::JoinSet::new();
        for i in 0..8 {
            let plugin = Arc::clone(&plugin);
            racers.spawn(async move {
                let user = UserInfo::default();
                let name = format!("web-{i}");
                let attributes = Attributes {
                    operation: Operation::Create,
                    resource: resources::find("", "v1", "pods").expect("pods"),
                    subresource: "",
                    namespace: "team",
                    name: &name,
                    user: &user,
                    dry_run: false,
                };
                plugin
                    .validate(&attributes, &pod(None), None, &mut Vec::new())
                    .await
                    .is_ok()
            });
        }
        let admitted = racers.join_all().await.into_iter().filter(|ok| *ok).count();
        assert_eq!(admitted, 3);
        let stored = store.get(&key).await.expect("get");
        assert_eq!(stored.pointer("/status/used/pods"), Some(&json!("3")));
    }

    #[tokio::test]
    async fn charges_are_written_and_dry_runs_are_not() {
        let store = Store::in_memory();
        let key = object_key("", "resourcequotas", "team", "q");
        store
            .create(&key, &quota(json!({"pods": "1"}), json!({"pods": "0"})))
            .await
            .expect("create");
        let plugin = ResourceQuotaAdmission::new(Arc::clone(&store));
        let user = UserInfo::default();
        let mut attributes = Attributes {
            operation: Operation::Create,
            resource: resources::find("", "v1", "pods").expect("pods"),
            subresource: "",
            namespace: "team",
            name: "web",
            user: &user,
            dry_run: true,
        };
        let p = pod(None);
        plugin
            .validate(&attributes, &p, None, &mut Vec::new())
            .await
            .expect("fits");
        let stored = store.get(&key).await.expect("get");
        assert_eq!(stored.pointer("/status/used/pods"), Some(&json!("0")));
        attributes.dry_run = false;
        plugin
            .validate(&attributes, &p, None, &mut Vec::new())
            .await
            .expect("fits");
        let stored = store.get(&key).await.expect("get");
        assert_eq!(stored.pointer("/status/used/pods"), Some(&json!("1")));
        let error = plugin
            .validate(&attributes.named("web2"), &p, None, &mut Vec::new())
            .await
            .expect_err("over quota");
        assert_eq!(error.code, 403);
        assert!(
            error.to_string().contains(
                "pods \"web2\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1"
            ),
            "{error}"
        );
    }
}
