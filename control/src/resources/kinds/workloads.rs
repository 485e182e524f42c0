//! Workload kinds (apps/v1, batch/v1): their defaults and the validation that ties a
//! selector to its pod template.

use k8s_openapi::{
    api::{
        apps::v1::{
            DaemonSet, DaemonSetUpdateStrategy, Deployment, DeploymentStrategy, ReplicaSet,
            RollingUpdateDaemonSet, RollingUpdateDeployment, RollingUpdateStatefulSetStrategy,
            StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
            StatefulSetUpdateStrategy,
        },
        batch::v1::{CronJob, Job},
        core::v1::{PodTemplateSpec, ReplicationController},
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::{
    non_negative,
    pod::{default_template, validate_template},
};
use crate::{
    model::{
        selector,
        validation::{ErrorList, FieldError},
    },
    resources::strategy::Kind,
};

/// Does `selector` select the template's labels? (`matchLabels` and `matchExpressions`.)
fn selects(sel: &LabelSelector, template: &PodTemplateSpec) -> bool {
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut requirements = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        requirements.push(selector::Requirement::Equals(k.clone(), v.clone()));
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default();
        requirements.push(match e.operator.as_str() {
            "In" => selector::Requirement::In(e.key.clone(), values),
            "NotIn" => selector::Requirement::NotIn(e.key.clone(), values),
            "Exists" => selector::Requirement::Exists(e.key.clone()),
            _ => selector::Requirement::DoesNotExist(e.key.clone()),
        });
    }
    selector::LabelSelector(requirements).matches(&labels)
}

fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty())
}

/// Shared validation: selector present and non-empty, matching the template; template valid;
/// `allowed_restart` policies only; selector immutable.
fn validate_selected_template(
    sel: Option<&LabelSelector>,
    old_sel: Option<&LabelSelector>,
    template: &PodTemplateSpec,
    allowed_restart: &[&str],
    errors: &mut ErrorList,
) {
    match sel {
        None => errors.push(FieldError::required("spec.selector", "")),
        Some(s) if selector_is_empty(s) => errors.push(FieldError::invalid(
            "spec.selector",
            "{}",
            "empty selector is invalid for deployment",
        )),
        Some(s) if !selects(s, template) => errors.push(FieldError::invalid(
            "spec.template.metadata.labels",
            format!(
                "{:?}",
                template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default()
            ),
            "`selector` does not match template `labels`",
        )),
        Some(_) => {}
    }
    if let (Some(old), Some(new)) = (old_sel, sel)
        && old != new
    {
        errors.push(FieldError::invalid(
            "spec.selector",
            format!("{new:?}"),
            "field is immutable",
        ));
    }
    validate_template(template, "spec.template", errors);
    if let Some(policy) = template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        && !allowed_restart.contains(&policy)
    {
        errors.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            allowed_restart,
        ));
    }
}

fn percent(value: &str) -> IntOrString {
    IntOrString::String(value.to_owned())
}

impl Kind for Deployment {
    fn default_fields(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit.get_or_insert(10);
        spec.progress_deadline_seconds.get_or_insert(600);
        let strategy = spec
            .strategy
            .get_or_insert_with(DeploymentStrategy::default);
        let kind = strategy
            .type_
            .get_or_insert_with(|| "RollingUpdate".to_owned())
            .clone();
        if kind == "RollingUpdate" {
            let rolling = strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateDeployment::default);
            rolling.max_surge.get_or_insert_with(|| percent("25%"));
            rolling
                .max_unavailable
                .get_or_insert_with(|| percent("25%"));
        }
        default_template(&mut spec.template);
    }

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        non_negative(spec.replicas, "spec.replicas", errors);
        let old_sel = old.and_then(|o| o.spec.as_ref()).map(|s| &s.selector);
        validate_selected_template(
            Some(&spec.selector),
            old_sel,
            &spec.template,
            &["Always"],
            errors,
        );
        if let Some(kind) = spec.strategy.as_ref().and_then(|s| s.type_.as_deref())
            && !["RollingUpdate", "Recreate"].contains(&kind)
        {
            errors.push(FieldError::not_supported(
                "spec.strategy.type",
                kind,
                &["Recreate", "RollingUpdate"],
            ));
        }
    }
}

impl Kind for ReplicaSet {
    fn default_fields(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        if let Some(template) = spec.template.as_mut() {
            default_template(template);
        }
    }

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        non_negative(spec.replicas, "spec.replicas", errors);
        let old_sel = old.and_then(|o| o.spec.as_ref()).map(|s| &s.selector);
        match &spec.template {
            Some(t) => {
                validate_selected_template(Some(&spec.selector), old_sel, t, &["Always"], errors)
            }
            None => errors.push(FieldError::required("spec.template", "")),
        }
    }
}

impl Kind for ReplicationController {
    fn default_fields(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        if let Some(template) = spec.template.as_mut() {
            default_template(template);
            // An RC without a selector selects its template's labels.
            if spec.selector.is_none() {
                spec.selector = template.metadata.as_ref().and_then(|m| m.labels.clone());
            }
        }
    }
}

impl Kind for StatefulSet {
    fn default_fields(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit.get_or_insert(10);
        spec.pod_management_policy
            .get_or_insert_with(|| "OrderedReady".to_owned());
        let strategy = spec
            .update_strategy
            .get_or_insert_with(StatefulSetUpdateStrategy::default);
        if strategy
            .type_
            .get_or_insert_with(|| "RollingUpdate".to_owned())
            == "RollingUpdate"
        {
            strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateStatefulSetStrategy::default)
                .partition
                .get_or_insert(0);
        }
        let retention = spec
            .persistent_volume_claim_retention_policy
            .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
        retention
            .when_deleted
            .get_or_insert_with(|| "Retain".to_owned());
        retention
            .when_scaled
            .get_or_insert_with(|| "Retain".to_owned());
        default_template(&mut spec.template);
    }

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        non_negative(spec.replicas, "spec.replicas", errors);
        let old_sel = old.and_then(|o| o.spec.as_ref()).map(|s| &s.selector);
        // As kube does: the template is validated with a volume per claim template, which
        // is what its pods will have.
        let mut template = spec.template.clone();
        if let Some(pod_spec) = template.spec.as_mut() {
            let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
            for claim in spec.volume_claim_templates.iter().flatten() {
                let name = claim.metadata.name.clone().unwrap_or_default();
                if !volumes.iter().any(|v| v.name == name) {
                    volumes.push(k8s_openapi::api::core::v1::Volume {
                        name: name.clone(),
                        persistent_volume_claim: Some(
                            k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                                claim_name: name,
                                read_only: None,
                            },
                        ),
                        ..Default::default()
                    });
                }
            }
        }
        validate_selected_template(
            Some(&spec.selector),
            old_sel,
            &template,
            &["Always"],
            errors,
        );
        if let Some(policy) = spec.pod_management_policy.as_deref()
            && !["OrderedReady", "Parallel"].contains(&policy)
        {
            errors.push(FieldError::not_supported(
                "spec.podManagementPolicy",
                policy,
                &["OrderedReady", "Parallel"],
            ));
        }
    }
}

impl Kind for DaemonSet {
    fn default_fields(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.revision_history_limit.get_or_insert(10);
        let strategy = spec
            .update_strategy
            .get_or_insert_with(DaemonSetUpdateStrategy::default);
        if strategy
            .type_
            .get_or_insert_with(|| "RollingUpdate".to_owned())
            == "RollingUpdate"
        {
            let rolling = strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateDaemonSet::default);
            rolling.max_unavailable.get_or_insert(IntOrString::Int(1));
            rolling.max_surge.get_or_insert(IntOrString::Int(0));
        }
        default_template(&mut spec.template);
    }

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        let old_sel = old.and_then(|o| o.spec.as_ref()).map(|s| &s.selector);
        validate_selected_template(
            Some(&spec.selector),
            old_sel,
            &spec.template,
            &["Always"],
            errors,
        );
    }
}

impl Kind for Job {
    fn default_fields(&mut self) {
        let uid = self.metadata.uid.clone();
        let name = self.metadata.name.clone();
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.parallelism.get_or_insert(1);
        spec.completions.get_or_insert(1);
        spec.backoff_limit.get_or_insert(6);
        spec.completion_mode
            .get_or_insert_with(|| "NonIndexed".to_owned());
        spec.suspend.get_or_insert(false);
        // kube-controller-manager's selector: the job's uid, stamped on the template too.
        if !spec.manual_selector.unwrap_or(false)
            && spec.selector.is_none()
            && let Some(uid) = uid
        {
            let labels = spec
                .template
                .metadata
                .get_or_insert_with(Default::default)
                .labels
                .get_or_insert_with(Default::default);
            labels.insert("batch.kubernetes.io/controller-uid".to_owned(), uid.clone());
            labels.insert("controller-uid".to_owned(), uid.clone());
            if let Some(name) = name {
                labels.insert("batch.kubernetes.io/job-name".to_owned(), name.clone());
                labels.insert("job-name".to_owned(), name);
            }
            spec.selector = Some(LabelSelector {
                match_labels: Some([("batch.kubernetes.io/controller-uid".to_owned(), uid)].into()),
                match_expressions: None,
            });
        }
        default_template(&mut spec.template);
    }

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        non_negative(spec.parallelism, "spec.parallelism", errors);
        non_negative(spec.completions, "spec.completions", errors);
        non_negative(spec.backoff_limit, "spec.backoffLimit", errors);
        let old_sel = old
            .and_then(|o| o.spec.as_ref())
            .and_then(|s| s.selector.as_ref());
        validate_selected_template(
            spec.selector.as_ref(),
            old_sel,
            &spec.template,
            &["OnFailure", "Never"],
            errors,
        );
    }
}

impl Kind for CronJob {
    fn default_fields(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.concurrency_policy
            .get_or_insert_with(|| "Allow".to_owned());
        spec.suspend.get_or_insert(false);
        spec.successful_jobs_history_limit.get_or_insert(3);
        spec.failed_jobs_history_limit.get_or_insert(1);
        if let Some(job) = spec.job_template.spec.as_mut() {
            default_template(&mut job.template);
        }
    }

    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        if let Err(why) = check_schedule(&spec.schedule) {
            errors.push(FieldError::invalid("spec.schedule", &spec.schedule, why));
        }
        if let Some(policy) = spec.concurrency_policy.as_deref()
            && !["Allow", "Forbid", "Replace"].contains(&policy)
        {
            errors.push(FieldError::not_supported(
                "spec.concurrencyPolicy",
                policy,
                &["Allow", "Forbid", "Replace"],
            ));
        }
        if let Some(job) = &spec.job_template.spec {
            validate_template(&job.template, "spec.jobTemplate.spec.template", errors);
        }
    }
}

/// Syntax check of a cron schedule: a `@keyword` or five fields of numbers, ranges, steps,
/// lists, names or `*`/`?`. (The schedule itself is evaluated by the CronJob controller.)
pub(crate) fn check_schedule(schedule: &str) -> Result<(), String> {
    let schedule = schedule.trim();
    let body = match schedule
        .strip_prefix("TZ=")
        .or_else(|| schedule.strip_prefix("CRON_TZ="))
    {
        Some(rest) => rest
            .split_once(' ')
            .map(|(_, s)| s.trim())
            .ok_or("a time zone must be followed by a schedule")?,
        None => schedule,
    };
    if body.starts_with('@') {
        const KEYWORDS: &[&str] = &[
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
        ];
        return if KEYWORDS.contains(&body) || body.starts_with("@every ") {
            Ok(())
        } else {
            Err(format!("unrecognized descriptor: {body}"))
        };
    }
    let fields: Vec<&str> = body.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {body}",
            fields.len()
        ));
    }
    let ok = |f: &str| {
        f.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '?' | '-' | ',' | '/'))
    };
    match fields.iter().find(|f| !ok(f)) {
        Some(bad) => Err(format!("failed to parse field {bad:?}")),
        None => Ok(()),
    }
}
