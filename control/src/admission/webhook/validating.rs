//! ValidatingAdmissionWebhook: the validating webhooks, called in parallel in the
//! validating phase; any denial (or failed call under failurePolicy Fail) refuses the
//! request, the first in configuration order winning.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;
use serde_json::Value;

use super::{Hook, Phase, Source, ask, dry_run_refused, exempt, failed, review};
use crate::{
    admission::{Attributes, Plugin},
    model::ApiError,
    resources::ResourceInfo,
};

/// The ValidatingAdmissionWebhook plugin.
pub struct ValidatingWebhooks {
    source: Arc<Source>,
}

impl ValidatingWebhooks {
    /// The plugin over `source`.
    pub fn new(source: Arc<Source>) -> Self {
        Self { source }
    }

    /// Call `hook` (matched as `sent_as`): Ok(warnings) or the refusal.
    async fn call_one(
        &self,
        hook: &Hook,
        sent_as: &'static ResourceInfo,
        attributes: &Attributes<'_>,
        object: &Value,
        old: Option<&Value>,
    ) -> Result<Vec<String>, ApiError> {
        let caller = self.source.caller();
        let verdict = match ask(
            caller.as_ref(),
            hook,
            sent_as,
            attributes,
            object,
            old,
            false,
        )
        .await
        {
            Ok((verdict, _)) => verdict,
            Err(error) => return failed(hook, &error).map_or(Ok(Vec::new()), Err),
        };
        if !verdict.allowed {
            return Err(review::denial(&hook.name, &verdict));
        }
        Ok(review::usable_warnings(&verdict.warnings).collect())
    }
}

#[async_trait]
impl Plugin for ValidatingWebhooks {
    fn name(&self) -> &'static str {
        "ValidatingAdmissionWebhook"
    }

    async fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: &Value,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if exempt(attributes) {
            return Ok(());
        }
        let hooks = self.source.hooks(Phase::Validating).await?;
        let mut matched = Vec::new();
        for hook in hooks.iter() {
            if let Some(sent_as) = self
                .source
                .matches(hook, attributes, Some(object), old)
                .await?
            {
                if attributes.dry_run && !hook.dry_run_safe() {
                    return Err(dry_run_refused(hook));
                }
                matched.push((hook, sent_as));
            }
        }
        if matched.is_empty() {
            return Ok(());
        }
        let outcomes = join_all(
            matched
                .iter()
                .map(|(hook, sent_as)| self.call_one(hook, sent_as, attributes, object, old)),
        )
        .await;
        let mut refusal = None;
        for outcome in outcomes {
            match outcome {
                Ok(more) => warnings.extend(more),
                Err(error) => {
                    refusal.get_or_insert(error);
                }
            }
        }
        refusal.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admission::{
        Operation,
        webhook::fake::{self, Answer, Fake},
    };
    use crate::model::user::UserInfo;

    const VALIDATING: &str = "validatingwebhookconfigurations";

    #[tokio::test]
    async fn every_hook_is_asked_and_the_first_refusal_wins_with_all_warnings() {
        let fake = Fake::new(|hook, review| {
            let labels = &review["request"]["object"]["metadata"]["labels"];
            match hook.name.as_str() {
                "warn.example.com" => Answer::Review(json!({
                    "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": review["request"]["uid"], "allowed": true,
                                 "warnings": ["think twice"]}})),
                "deny.example.com" if labels["deny"] == "true" => fake::answer(
                    review,
                    false,
                    None,
                    Some(json!({"message": "deny=true is not welcome"})),
                ),
                "patch.example.com" => fake::answer(review, true, Some(json!([])), None),
                _ => fake::answer(review, true, None, None),
            }
        });
        let config = fake::configuration(
            "c",
            vec![
                fake::hook("warn.example.com", json!({})),
                fake::hook("deny.example.com", json!({})),
            ],
        );
        let source = fake::source(
            &[(VALIDATING, config)],
            &[("default", json!({}))],
            Arc::clone(&fake),
        )
        .await;
        let plugin = ValidatingWebhooks::new(source);
        let user = UserInfo::default();
        let attributes = fake::configmap(&user, Operation::Create, "default");
        let mut warnings = Vec::new();
        let fine = json!({"metadata": {"name": "cm", "labels": {}}});
        plugin
            .validate(&attributes, &fine, None, &mut warnings)
            .await
            .expect("admitted");
        assert_eq!(warnings, ["think twice"]);
        let bad = json!({"metadata": {"name": "cm", "labels": {"deny": "true"}}});
        let error = plugin
            .validate(&attributes, &bad, None, &mut Vec::new())
            .await
            .expect_err("denied");
        assert_eq!(error.code, 400);
        assert_eq!(
            error.message,
            "admission webhook \"deny.example.com\" denied the request: deny=true is not welcome"
        );

        // A validating webhook answering a patch failed its call.
        let config = fake::configuration("p", vec![fake::hook("patch.example.com", json!({}))]);
        let source = fake::source(
            &[(VALIDATING, config)],
            &[("default", json!({}))],
            Arc::clone(&fake),
        )
        .await;
        let error = ValidatingWebhooks::new(source)
            .validate(&attributes, &fine, None, &mut Vec::new())
            .await
            .expect_err("patch refused");
        assert_eq!(error.code, 500);
        assert!(
            error
                .message
                .contains("validating webhooks may not return patches"),
            "{}",
            error.message
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hooks_are_called_in_parallel_within_their_timeouts() {
        let fake = Fake::new(|_, _| Answer::Hang);
        let config = fake::configuration(
            "c",
            vec![
                fake::hook(
                    "one.example.com",
                    json!({"timeoutSeconds": 5, "failurePolicy": "Ignore"}),
                ),
                fake::hook(
                    "two.example.com",
                    json!({"timeoutSeconds": 5, "failurePolicy": "Ignore"}),
                ),
            ],
        );
        let source = fake::source(
            &[(VALIDATING, config)],
            &[("default", json!({}))],
            Arc::clone(&fake),
        )
        .await;
        let plugin = ValidatingWebhooks::new(source);
        let user = UserInfo::default();
        let attributes = fake::configmap(&user, Operation::Update, "default");
        let started = tokio::time::Instant::now();
        let object = json!({"metadata": {"name": "cm"}});
        plugin
            .validate(&attributes, &object, Some(&object), &mut Vec::new())
            .await
            .expect("Ignore admits");
        let took = started.elapsed();
        assert!(
            took >= std::time::Duration::from_secs(5) && took < std::time::Duration::from_secs(6),
            "{took:?}"
        );
        assert_eq!(fake.called().len(), 2);
    }
}
