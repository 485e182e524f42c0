//! MutatingAdmissionWebhook: the mutating webhooks, called one after another in the
//! mutating phase (after the built-in plugins), each answer's JSON patch applied to the
//! object before the next call; a webhook with reinvocationPolicy IfNeeded is called once
//! more if a later webhook changed the object.

use std::{collections::BTreeSet, sync::Arc};

use async_trait::async_trait;
use serde_json::Value;

use super::{Hook, Phase, Source, ask, dry_run_refused, exempt, failed, review};
use crate::{
    admission::{Attributes, Operation, Plugin},
    model::ApiError,
    patch,
    resources::ResourceInfo,
};

/// The MutatingAdmissionWebhook plugin.
pub struct MutatingWebhooks {
    source: Arc<Source>,
}

impl MutatingWebhooks {
    /// The plugin over `source`.
    pub fn new(source: Arc<Source>) -> Self {
        Self { source }
    }

    /// Call `hook` (matched as `sent_as`) and apply its patch to `object`; true if the
    /// object changed.
    async fn call_one(
        &self,
        hook: &Hook,
        sent_as: &'static ResourceInfo,
        attributes: &Attributes<'_>,
        object: &mut Value,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<bool, ApiError> {
        if attributes.dry_run && !hook.dry_run_safe() {
            return Err(dry_run_refused(hook));
        }
        let caller = self.source.caller();
        let (verdict, sent) = match ask(
            caller.as_ref(),
            hook,
            sent_as,
            attributes,
            object,
            old,
            true,
        )
        .await
        {
            Ok(verdict) => verdict,
            Err(error) => return failed(hook, &error).map_or(Ok(false), Err),
        };
        warnings.extend(review::usable_warnings(&verdict.warnings));
        if !verdict.allowed {
            return Err(review::denial(&hook.name, &verdict));
        }
        let Some(patch) = verdict.patch else {
            return Ok(false);
        };
        // Deletes and connects carry no object to change.
        if matches!(attributes.operation, Operation::Delete | Operation::Connect) {
            return Ok(false);
        }
        let patched = patch::apply(
            patch::JSON,
            &sent,
            &patch,
            &sent_as.api_version(),
            sent_as.kind,
        )
        .map_err(|e| {
            ApiError::internal(format!(
                "Internal error occurred: applying the patch of webhook \"{}\": {}",
                hook.name, e.message
            ))
        })?;
        let patched = if !std::ptr::eq(sent_as, attributes.resource) {
            review::as_version(&patched, attributes.resource)
        } else {
            patched
        };
        if patched == *object {
            return Ok(false);
        }
        *object = patched;
        Ok(true)
    }
}

#[async_trait]
impl Plugin for MutatingWebhooks {
    fn name(&self) -> &'static str {
        "MutatingAdmissionWebhook"
    }

    async fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: &mut Value,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if exempt(attributes) {
            return Ok(());
        }
        let hooks = self.source.hooks(Phase::Mutating).await?;
        if hooks.is_empty() {
            return Ok(());
        }
        // Webhooks called so far that asked to be called again if the object changes
        // after them, and those of them the object did change after.
        let mut reinvocable = Vec::new();
        let mut reinvoke = BTreeSet::new();
        for (i, hook) in hooks.iter().enumerate() {
            let Some(sent_as) = self
                .source
                .matches(hook, attributes, Some(object), old)
                .await?
            else {
                continue;
            };
            if self
                .call_one(hook, sent_as, attributes, object, old, warnings)
                .await?
            {
                reinvoke.extend(reinvocable.iter().copied());
            }
            if hook.reinvoke {
                reinvocable.push(i);
            }
        }
        for i in reinvoke {
            let hook = &hooks[i];
            let Some(sent_as) = self
                .source
                .matches(hook, attributes, Some(object), old)
                .await?
            else {
                continue;
            };
            self.call_one(hook, sent_as, attributes, object, old, warnings)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admission::webhook::fake::{self, Answer, Fake};
    use crate::model::user::UserInfo;

    const MUTATING: &str = "mutatingwebhookconfigurations";

    fn cm(labels: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "cm", "namespace": "default", "labels": labels}})
    }

    #[tokio::test]
    async fn patches_apply_in_order_and_if_needed_hooks_run_again() {
        let fake = Fake::new(|hook, review| {
            let labels = &review["request"]["object"]["metadata"]["labels"];
            match hook.name.as_str() {
                "a.example.com" => {
                    // Adds a label from the one b sets, once b has run.
                    let seen = labels.get("b").is_some();
                    let patch = json!([{"op": "add", "path": "/metadata/labels/a",
                                        "value": if seen { "after-b" } else { "first" }}]);
                    fake::answer(review, true, Some(patch), None)
                }
                _ => fake::answer(
                    review,
                    true,
                    Some(json!([{"op": "add", "path": "/metadata/labels/b", "value": "yes"}])),
                    None,
                ),
            }
        });
        let config = fake::configuration(
            "one",
            vec![
                fake::hook("a.example.com", json!({"reinvocationPolicy": "IfNeeded"})),
                fake::hook("b.example.com", json!({})),
            ],
        );
        let source = fake::source(
            &[(MUTATING, config)],
            &[("default", json!({}))],
            Arc::clone(&fake),
        )
        .await;
        let plugin = MutatingWebhooks::new(source);
        let user = UserInfo::default();
        let attributes = fake::configmap(&user, Operation::Create, "default");
        let mut object = cm(json!({}));
        plugin
            .admit(&attributes, &mut object, None, &mut Vec::new())
            .await
            .expect("admitted");
        assert_eq!(
            fake.called(),
            ["a.example.com", "b.example.com", "a.example.com"]
        );
        assert_eq!(
            object["metadata"]["labels"],
            json!({"a": "after-b", "b": "yes"})
        );
        let (_, review) = &fake.calls.lock().expect("calls")[0];
        assert_eq!(review["request"]["operation"], "CREATE");
        assert_eq!(review["request"]["namespace"], "default");
    }

    #[tokio::test(start_paused = true)]
    async fn denials_failures_and_timeouts_follow_the_failure_policy() {
        let fake = Fake::new(|hook, review| match hook.name.as_str() {
            "deny.example.com" => fake::answer(
                review,
                false,
                None,
                Some(json!({"code": 403, "message": "labelled deny"})),
            ),
            "broken.example.com" => Answer::Fail("connection refused".to_owned()),
            _ => Answer::Hang,
        });
        let user = UserInfo::default();
        let attributes = fake::configmap(&user, Operation::Create, "default");
        let run = |hooks: Vec<Value>| {
            let fake = Arc::clone(&fake);
            async move {
                let config = fake::configuration("c", hooks);
                let source =
                    fake::source(&[(MUTATING, config)], &[("default", json!({}))], fake).await;
                MutatingWebhooks::new(source)
                    .admit(&attributes, &mut cm(json!({})), None, &mut Vec::new())
                    .await
            }
        };
        let denied = run(vec![fake::hook("deny.example.com", json!({}))])
            .await
            .expect_err("denied");
        assert_eq!(denied.code, 403);
        assert_eq!(
            denied.message,
            "admission webhook \"deny.example.com\" denied the request: labelled deny"
        );
        let failed = run(vec![fake::hook("broken.example.com", json!({}))])
            .await
            .expect_err("Fail");
        assert_eq!(failed.code, 500);
        assert!(
            failed
                .message
                .contains("failed calling webhook \"broken.example.com\": failed to call webhook: connection refused"),
            "{}",
            failed.message
        );
        run(vec![fake::hook(
            "broken.example.com",
            json!({"failurePolicy": "Ignore"}),
        )])
        .await
        .expect("Ignore admits");
        let started = tokio::time::Instant::now();
        let timed_out = run(vec![fake::hook(
            "slow.example.com",
            json!({"timeoutSeconds": 1}),
        )])
        .await
        .expect_err("timed out");
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
        assert!(
            timed_out.message.contains("context deadline exceeded"),
            "{}",
            timed_out.message
        );
        run(vec![fake::hook(
            "slow.example.com",
            json!({"failurePolicy": "Ignore"}),
        )])
        .await
        .expect("Ignore admits a timeout");
    }

    #[tokio::test]
    async fn dry_runs_skip_nothing_but_refuse_hooks_with_side_effects() {
        let fake = Fake::new(|_, review| fake::answer(review, true, None, None));
        let config = fake::configuration(
            "c",
            vec![fake::hook(
                "effects.example.com",
                json!({"sideEffects": "Some"}),
            )],
        );
        let source = fake::source(
            &[(MUTATING, config)],
            &[("default", json!({}))],
            Arc::clone(&fake),
        )
        .await;
        let plugin = MutatingWebhooks::new(source);
        let user = UserInfo::default();
        let attributes = Attributes {
            dry_run: true,
            ..fake::configmap(&user, Operation::Create, "default")
        };
        let error = plugin
            .admit(&attributes, &mut cm(json!({})), None, &mut Vec::new())
            .await
            .expect_err("refused");
        assert_eq!(error.code, 400);
        assert_eq!(
            error.message,
            "admission webhook \"effects.example.com\" does not support dry run"
        );
        assert!(fake.called().is_empty());
    }

    #[tokio::test]
    async fn selectors_and_exemptions_decide_who_is_called() {
        let fake = Fake::new(|_, review| fake::answer(review, true, None, None));
        let config = fake::configuration(
            "c",
            vec![
                fake::hook(
                    "ns.example.com",
                    json!({"namespaceSelector": {"matchLabels": {"hooked": "yes"}}}),
                ),
                fake::hook(
                    "obj.example.com",
                    json!({"objectSelector": {"matchLabels": {"app": "web"}}}),
                ),
                fake::hook(
                    "all.example.com",
                    json!({"rules": [{"operations": ["*"], "apiGroups": ["*"],
                    "apiVersions": ["*"], "resources": ["*/*"]}]}),
                ),
            ],
        );
        let source = fake::source(
            &[(MUTATING, config)],
            &[("hooked", json!({"hooked": "yes"})), ("plain", json!({}))],
            Arc::clone(&fake),
        )
        .await;
        let plugin = MutatingWebhooks::new(Arc::clone(&source));
        let user = UserInfo::default();
        let admit = |namespace: &'static str, labels: Value| {
            let plugin = &plugin;
            let user = &user;
            async move {
                let attributes = fake::configmap(user, Operation::Create, namespace);
                plugin
                    .admit(&attributes, &mut cm(labels), None, &mut Vec::new())
                    .await
            }
        };
        admit("hooked", json!({})).await.expect("admitted");
        assert_eq!(fake.called(), ["ns.example.com", "all.example.com"]);
        fake.calls.lock().expect("calls").clear();
        admit("plain", json!({"app": "web"}))
            .await
            .expect("admitted");
        assert_eq!(fake.called(), ["obj.example.com", "all.example.com"]);
        fake.calls.lock().expect("calls").clear();
        // Webhook configurations never go to webhooks.
        let exempt = Attributes {
            resource: crate::resources::find(
                "admissionregistration.k8s.io",
                "v1",
                "validatingwebhookconfigurations",
            )
            .expect("served"),
            namespace: "",
            ..fake::configmap(&user, Operation::Create, "")
        };
        plugin
            .admit(&exempt, &mut json!({}), None, &mut Vec::new())
            .await
            .expect("admitted");
        assert!(fake.called().is_empty());
        // A namespace that does not exist is a 404 for a selector that needs its labels.
        let error = admit("missing", json!({})).await.expect_err("no namespace");
        assert_eq!(error.code, 404);
    }
}
