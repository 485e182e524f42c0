//! Admission webhooks, as kube-apiserver's MutatingAdmissionWebhook and
//! ValidatingAdmissionWebhook plugins call them: the webhooks of every
//! MutatingWebhookConfiguration / ValidatingWebhookConfiguration (read from their watch
//! caches, configurations in name order) are matched against each request
//! ([`matching`]), sent an AdmissionReview ([`review`]) over HTTPS ([`client`]), and their
//! answers applied — patches serially in the mutating phase ([`mutating`]), verdicts in
//! parallel in the validating phase ([`validating`]).
//!
//! Not (yet) done: matchConditions (CEL) are not evaluated — a webhook with conditions is
//! called for every request its rules and selectors match; built-in plugins are not
//! re-run after webhooks changed the object.

pub mod client;
pub mod matching;
pub mod mutating;
pub mod review;
pub mod validating;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::Attributes;
use crate::{
    model::ApiError,
    resources,
    store::{Store, WatchCache, object_key},
};

/// How long a write waits for the configuration caches right after start.
const CACHE_WAIT: Duration = Duration::from_secs(5);
/// The group of the webhook configurations (never sent to webhooks).
const GROUP: &str = "admissionregistration.k8s.io";

/// One webhook of a configuration, with kube's defaults settled.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    /// The configuration's name.
    pub configuration: String,
    /// The webhook's name (`pod-policy.example.com`).
    pub name: String,
    /// Where to call it.
    pub client_config: WebhookClientConfig,
    /// Which requests it wants.
    pub rules: Vec<RuleWithOperations>,
    /// failurePolicy Ignore (else Fail).
    pub ignore_failures: bool,
    /// matchPolicy Exact (else Equivalent).
    pub exact: bool,
    /// namespaceSelector (`None` or empty: every namespace).
    pub namespace_selector: Option<LabelSelector>,
    /// objectSelector (`None` or empty: every object).
    pub object_selector: Option<LabelSelector>,
    /// sideEffects.
    pub side_effects: String,
    /// timeoutSeconds.
    pub timeout: Duration,
    /// admissionReviewVersions, in the configuration's order of preference.
    pub review_versions: Vec<String>,
    /// reinvocationPolicy IfNeeded (mutating webhooks only).
    pub reinvoke: bool,
}

impl Hook {
    /// A webhook that is only called, never matched against requests (a CRD's conversion
    /// webhook): `name` at `client_config`, answering within `timeout`.
    pub fn endpoint(name: &str, client_config: WebhookClientConfig, timeout: Duration) -> Self {
        Self {
            configuration: String::new(),
            name: name.to_owned(),
            client_config,
            rules: Vec::new(),
            ignore_failures: false,
            exact: true,
            namespace_selector: None,
            object_selector: None,
            side_effects: "None".to_owned(),
            timeout,
            review_versions: Vec::new(),
            reinvoke: false,
        }
    }

    /// True if calling it during a dry run is safe (sideEffects None or NoneOnDryRun).
    pub fn dry_run_safe(&self) -> bool {
        matches!(self.side_effects.as_str(), "None" | "NoneOnDryRun")
    }

    /// The AdmissionReview version to send: the first the webhook accepts that kube
    /// speaks (both have the same shape).
    pub fn review_version(&self) -> &str {
        self.review_versions
            .iter()
            .find(|v| matches!(v.as_str(), "v1" | "v1beta1"))
            .map_or("v1", String::as_str)
    }

    /// The URL called, as kube shows it in errors (with the `?timeout=` it adds).
    pub fn url(&self) -> String {
        let base = match (&self.client_config.url, &self.client_config.service) {
            (Some(url), _) => url.clone(),
            (None, Some(service)) => format!(
                "https://{}.{}.svc:{}{}",
                service.name,
                service.namespace,
                service.port.unwrap_or(443),
                service.path.as_deref().unwrap_or_default()
            ),
            (None, None) => String::new(),
        };
        format!("{base}?timeout={}s", self.timeout.as_secs())
    }
}

/// The webhooks of a list of configurations, configurations in name order.
fn hooks_of<C, H>(
    configurations: Vec<C>,
    name: impl Fn(&C) -> String,
    webhooks: impl Fn(C) -> Vec<H>,
    hook: impl Fn(&str, H) -> Hook,
) -> Vec<Hook> {
    let mut named: Vec<(String, C)> = configurations.into_iter().map(|c| (name(&c), c)).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
        .into_iter()
        .flat_map(|(n, c)| {
            webhooks(c)
                .into_iter()
                .map(|h| hook(&n, h))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The mutating webhooks of `configurations`, in kube's order.
pub fn mutating_hooks(configurations: Vec<MutatingWebhookConfiguration>) -> Vec<Hook> {
    hooks_of(
        configurations,
        |c| c.metadata.name.clone().unwrap_or_default(),
        |c| c.webhooks.unwrap_or_default(),
        |configuration, h| Hook {
            configuration: configuration.to_owned(),
            name: h.name,
            client_config: h.client_config,
            rules: h.rules.unwrap_or_default(),
            ignore_failures: h.failure_policy.as_deref() == Some("Ignore"),
            exact: h.match_policy.as_deref() == Some("Exact"),
            namespace_selector: h.namespace_selector,
            object_selector: h.object_selector,
            side_effects: h.side_effects,
            timeout: timeout(h.timeout_seconds),
            review_versions: h.admission_review_versions,
            reinvoke: h.reinvocation_policy.as_deref() == Some("IfNeeded"),
        },
    )
}

/// The validating webhooks of `configurations`, in kube's order.
pub fn validating_hooks(configurations: Vec<ValidatingWebhookConfiguration>) -> Vec<Hook> {
    hooks_of(
        configurations,
        |c| c.metadata.name.clone().unwrap_or_default(),
        |c| c.webhooks.unwrap_or_default(),
        |configuration, h| Hook {
            configuration: configuration.to_owned(),
            name: h.name,
            client_config: h.client_config,
            rules: h.rules.unwrap_or_default(),
            ignore_failures: h.failure_policy.as_deref() == Some("Ignore"),
            exact: h.match_policy.as_deref() == Some("Exact"),
            namespace_selector: h.namespace_selector,
            object_selector: h.object_selector,
            side_effects: h.side_effects,
            timeout: timeout(h.timeout_seconds),
            review_versions: h.admission_review_versions,
            reinvoke: false,
        },
    )
}

/// timeoutSeconds, defaulted (10) and kept within kube's 1..=30.
fn timeout(seconds: Option<i32>) -> Duration {
    let seconds = seconds.unwrap_or(10).clamp(1, 30);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(10))
}

/// Why a webhook could not be called (subject to its failurePolicy).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Resolving, connecting, TLS, HTTP or the answer's encoding failed.
    #[error("failed to call webhook: {0}")]
    Failed(String),
    /// The call took longer than the webhook's timeout.
    #[error("failed to call webhook: Post \"{url}\": context deadline exceeded")]
    Timeout {
        /// The URL called.
        url: String,
    },
    /// The answer is not a valid AdmissionReview response.
    #[error("{0}")]
    BadResponse(String),
}

/// Sends AdmissionReviews to webhooks (HTTPS in production, in-process fakes in tests).
#[async_trait]
pub trait Caller: Send + Sync {
    /// POST `review` to `hook`; the AdmissionReview it answers.
    async fn call(&self, hook: &Hook, review: &Value) -> Result<Value, CallError>;
}

/// Parsed webhooks of one configuration cache, remembered per cache generation.
struct Parsed {
    generation: u64,
    hooks: Arc<Vec<Hook>>,
}

/// What both webhook plugins read: the configurations, the namespaces (for
/// namespaceSelector) and the caller.
pub struct Source {
    store: Arc<Store>,
    mutating: Arc<WatchCache>,
    validating: Arc<WatchCache>,
    namespaces: Arc<WatchCache>,
    mutating_parsed: Mutex<Option<Parsed>>,
    validating_parsed: Mutex<Option<Parsed>>,
    caller: Arc<dyn Caller>,
}

/// Which kind of configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// MutatingWebhookConfigurations.
    Mutating,
    /// ValidatingWebhookConfigurations.
    Validating,
}

impl Source {
    /// Webhooks over `store`'s caches, called through `caller`.
    pub fn new(store: Arc<Store>, caller: Arc<dyn Caller>) -> Arc<Self> {
        let mutating = resources::watch_cache(&store, GROUP, "v1", "mutatingwebhookconfigurations");
        let validating =
            resources::watch_cache(&store, GROUP, "v1", "validatingwebhookconfigurations");
        let namespaces = resources::watch_cache(&store, "", "v1", "namespaces");
        Arc::new(Self {
            store,
            mutating,
            validating,
            namespaces,
            mutating_parsed: Mutex::new(None),
            validating_parsed: Mutex::new(None),
            caller,
        })
    }

    /// Webhooks over `store`, called over HTTPS to the URL or to an endpoint of the
    /// Service (from the EndpointSlice cache).
    pub fn https(store: Arc<Store>) -> Arc<Self> {
        let caller = Arc::new(client::HttpsCaller::new(&store));
        Self::new(store, caller)
    }

    /// Wait for `cache` to sync (briefly, right after start).
    async fn synced(&self, cache: &WatchCache) -> Result<(), ApiError> {
        if cache.synced() {
            return Ok(());
        }
        let revision = self
            .store
            .current_revision()
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        cache
            .wait_for(revision, CACHE_WAIT)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))
    }

    /// The webhooks of `phase`, in kube's order.
    pub async fn hooks(&self, phase: Phase) -> Result<Arc<Vec<Hook>>, ApiError> {
        let (cache, parsed) = match phase {
            Phase::Mutating => (&self.mutating, &self.mutating_parsed),
            Phase::Validating => (&self.validating, &self.validating_parsed),
        };
        self.synced(cache).await?;
        let generation = cache.generation();
        if let Some(p) = parsed.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && p.generation == generation
        {
            return Ok(Arc::clone(&p.hooks));
        }
        let snapshot = cache
            .snapshot("")
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        let hooks = match phase {
            Phase::Mutating => mutating_hooks(
                snapshot
                    .objects
                    .iter()
                    .filter_map(|o| serde_json::from_slice(&o.raw).ok())
                    .collect(),
            ),
            Phase::Validating => validating_hooks(
                snapshot
                    .objects
                    .iter()
                    .filter_map(|o| serde_json::from_slice(&o.raw).ok())
                    .collect(),
            ),
        };
        let hooks = Arc::new(hooks);
        *parsed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Parsed {
            generation,
            hooks: Arc::clone(&hooks),
        });
        Ok(hooks)
    }

    /// The labels of namespace `name` (`None` if it does not exist).
    async fn namespace_labels(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, ApiError> {
        self.synced(&self.namespaces).await?;
        Ok(self
            .namespaces
            .get(&object_key("", "namespaces", "", name))
            .map(|o| o.labels.clone()))
    }

    /// Whether `hook` wants this request; `Some(resource)` names the version the request
    /// is sent as (an equivalent one under matchPolicy Equivalent).
    pub async fn matches(
        &self,
        hook: &Hook,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<Option<&'static resources::ResourceInfo>, ApiError> {
        let Some(resource) = matching::matching_resource(hook, attributes) else {
            return Ok(None);
        };
        if !matching::object_selector_matches(hook.object_selector.as_ref(), object, old) {
            return Ok(None);
        }
        if let Some(selector) = &hook.namespace_selector
            && !matching::is_empty(selector)
        {
            let labels = match matching::namespace_of(attributes, object, old) {
                matching::NamespaceLabels::NotNeeded => return Ok(Some(resource)),
                matching::NamespaceLabels::Given(labels) => labels,
                matching::NamespaceLabels::Lookup(name) => self
                    .namespace_labels(name)
                    .await?
                    .ok_or_else(|| ApiError::not_found("", "namespaces", name))?,
            };
            if !matching::selector_matches(selector, &labels) {
                return Ok(None);
            }
        }
        Ok(Some(resource))
    }

    /// The caller.
    pub fn caller(&self) -> &Arc<dyn Caller> {
        &self.caller
    }
}

/// True for requests webhooks never see: the webhook configurations themselves (kube
/// exempts them so a broken webhook cannot lock its own configuration).
pub fn exempt(attributes: &Attributes<'_>) -> bool {
    attributes.resource.group == GROUP
        && matches!(
            attributes.resource.plural,
            "mutatingwebhookconfigurations"
                | "validatingwebhookconfigurations"
                | "validatingadmissionpolicies"
                | "validatingadmissionpolicybindings"
                | "mutatingadmissionpolicies"
                | "mutatingadmissionpolicybindings"
        )
}

/// Call `hook` with `review`, within its timeout; the failure as kube words it.
pub(crate) async fn call(
    caller: &dyn Caller,
    hook: &Hook,
    review: &Value,
) -> Result<Value, CallError> {
    match tokio::time::timeout(hook.timeout, caller.call(hook, review)).await {
        Ok(answer) => answer,
        Err(_) => Err(CallError::Timeout { url: hook.url() }),
    }
}

/// Send `object` (and `old`), as the version `sent_as` the hook was matched with, to
/// `hook` in an AdmissionReview; its answer, checked (`mutating`: a patch may come back),
/// and the object as sent (what a patch applies to).
pub(crate) async fn ask(
    caller: &dyn Caller,
    hook: &Hook,
    sent_as: &'static crate::resources::ResourceInfo,
    attributes: &Attributes<'_>,
    object: &Value,
    old: Option<&Value>,
    mutating: bool,
) -> Result<(review::Verdict, Value), CallError> {
    let uid = uuid::Uuid::new_v4().to_string();
    let version = hook.review_version();
    let converted = !std::ptr::eq(sent_as, attributes.resource);
    let convert = |o: &Value| {
        if converted {
            review::as_version(o, sent_as)
        } else {
            o.clone()
        }
    };
    let sent = convert(object);
    let sent_old = old.map(convert);
    let request = review::request(
        &uid,
        version,
        attributes,
        sent_as,
        Some(&sent),
        sent_old.as_ref(),
    );
    let answer = call(caller, hook, &request).await?;
    Ok((review::response(&answer, &uid, version, mutating)?, sent))
}

/// What a failed call means under the webhook's failurePolicy: `None` (Ignore: logged,
/// the request goes on) or the 500 kube answers (Fail).
pub(crate) fn failed(hook: &Hook, error: &CallError) -> Option<ApiError> {
    let message = format!("failed calling webhook \"{}\": {error}", hook.name);
    if hook.ignore_failures {
        tracing::warn!(webhook = %hook.name, "{message}; failurePolicy Ignore: admitted");
        None
    } else {
        Some(ApiError::internal(format!(
            "Internal error occurred: {message}"
        )))
    }
}

/// The refusal of a dry run by a webhook with side effects.
pub(crate) fn dry_run_refused(hook: &Hook) -> ApiError {
    ApiError::bad_request(format!(
        "admission webhook \"{}\" does not support dry run",
        hook.name
    ))
}

#[cfg(test)]
pub(crate) mod fake;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{
        fake::{self, Answer, Fake},
        mutating::MutatingWebhooks,
        validating::ValidatingWebhooks,
        *,
    };
    use crate::{
        admission::Chain,
        model::user::UserInfo,
        registry::{FieldValidation, Registry, Request},
    };

    #[tokio::test]
    async fn writes_through_the_registry_are_mutated_warned_and_refused() {
        let store = Store::in_memory();
        for (plural, configuration) in [
            (
                "mutatingwebhookconfigurations",
                fake::configuration("m", vec![fake::hook("mutate.example.com", json!({}))]),
            ),
            (
                "validatingwebhookconfigurations",
                fake::configuration("v", vec![fake::hook("deny.example.com", json!({}))]),
            ),
        ] {
            store
                .create(&object_key(GROUP, plural, "", plural), &configuration)
                .await
                .expect("configuration");
        }
        let fake = Fake::new(|hook, review| {
            let object = &review["request"]["object"];
            match hook.name.as_str() {
                "mutate.example.com" => fake::answer(
                    review,
                    true,
                    Some(json!([{"op": "add", "path": "/metadata/labels",
                                 "value": {"mutated": "yes"}}])),
                    None,
                ),
                _ if object["data"]["deny"] == "true" => fake::answer(
                    review,
                    false,
                    None,
                    Some(json!({"code": 403, "message": "not this one"})),
                ),
                _ => Answer::Review(json!({
                    "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": review["request"]["uid"], "allowed": true,
                                 "warnings": ["seen by the webhook"]}})),
            }
        });
        let source = Source::new(Arc::clone(&store), fake);
        let chain = Chain::new(vec![
            Arc::new(MutatingWebhooks::new(Arc::clone(&source))),
            Arc::new(ValidatingWebhooks::new(source)),
        ]);
        let registry = Registry::new(store, chain);
        let user = UserInfo::authenticated("admin", vec!["system:masters".to_owned()]);
        let request = Request {
            resource: resources::find("", "v1", "configmaps").expect("served"),
            namespace: "default",
            subresource: "",
            user: &user,
            dry_run: false,
            field_validation: FieldValidation::Strict,
        };
        let written = registry
            .create(
                &request,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
            )
            .await
            .expect("created");
        assert_eq!(written.object["metadata"]["labels"]["mutated"], "yes");
        assert_eq!(written.warnings, ["seen by the webhook"]);
        let refused = registry
            .create(
                &request,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"},
                       "data": {"deny": "true"}}),
            )
            .await
            .expect_err("refused")
            .to_api_error();
        assert_eq!(refused.code, 403);
        assert_eq!(
            refused.message,
            "admission webhook \"deny.example.com\" denied the request: not this one"
        );
    }
}
