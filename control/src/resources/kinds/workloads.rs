//! Workload kinds (apps/v1, batch/v1): their defaults and the validation that ties a
//! selector to its pod template.

use k8s_openapi::{
    api::{
        apps::v1::{
            ControllerRevision, DaemonSet, DaemonSetUpdateStrategy, Deployment, DeploymentStrategy,
            ReplicaSet, RollingUpdateDaemonSet, RollingUpdateDeployment,
            RollingUpdateStatefulSetStrategy, StatefulSet,
            StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetUpdateStrategy,
        },
        batch::v1::{CronJob, Job},
        core::v1::{PodTemplate, PodTemplateSpec, ReplicationController},
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::{
    immutable, non_negative,
    pod::{default_template, validate_template},
};
use crate::{
    controllers::cron::Schedule,
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
        if let Some(strategy) = &spec.update_strategy {
            validate_daemonset_strategy(strategy, errors);
        }
    }
}

/// The number in a count or percentage, or a message saying what is wrong with it
/// (kube's `ValidatePositiveIntOrPercent` and `IsNotMoreThan100Percent`).
fn int_or_percent(value: &IntOrString) -> Result<i64, (String, &'static str)> {
    match value {
        IntOrString::Int(n) if *n < 0 => Err((n.to_string(), "must be greater than or equal to 0")),
        IntOrString::Int(n) => Ok(i64::from(*n)),
        IntOrString::String(text) => {
            let number = text
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<i64>().ok());
            match number {
                None => Err((
                    text.clone(),
                    "a valid percent string must be a numeric string followed by an ending '%' \
                     (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )),
                Some(p) if p > 100 => Err((text.clone(), "must not be greater than 100%")),
                Some(p) => Ok(p),
            }
        }
    }
}

/// kube's `ValidateDaemonSetUpdateStrategy`: a known type; under RollingUpdate, counts or
/// percentages up to 100% for maxUnavailable and maxSurge, not both zero.
fn validate_daemonset_strategy(strategy: &DaemonSetUpdateStrategy, errors: &mut ErrorList) {
    match strategy.type_.as_deref() {
        Some("OnDelete") | None => {}
        Some("RollingUpdate") => {
            let Some(rolling) = &strategy.rolling_update else {
                return errors.push(FieldError::required(
                    "spec.updateStrategy.rollingUpdate",
                    "",
                ));
            };
            let mut check =
                |value: Option<&IntOrString>, field: &str| match value.map(int_or_percent) {
                    None => 0,
                    Some(Ok(n)) => n,
                    Some(Err((text, why))) => {
                        errors.push(FieldError::invalid(
                            format!("spec.updateStrategy.rollingUpdate.{field}"),
                            text,
                            why,
                        ));
                        // Reported already; not also "both zero".
                        1
                    }
                };
            let unavailable = check(rolling.max_unavailable.as_ref(), "maxUnavailable");
            let surge = check(rolling.max_surge.as_ref(), "maxSurge");
            if unavailable == 0 && surge == 0 {
                let shown = match &rolling.max_unavailable {
                    Some(IntOrString::String(s)) => s.clone(),
                    _ => "0".to_owned(),
                };
                errors.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate.maxUnavailable",
                    shown,
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        Some(other) => errors.push(FieldError::not_supported(
            "spec.updateStrategy",
            other,
            &["OnDelete", "RollingUpdate"],
        )),
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

    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        let old_schedule = old
            .and_then(|o| o.spec.as_ref())
            .map(|s| s.schedule.as_str());
        validate_schedule(
            &spec.schedule,
            old_schedule,
            spec.time_zone.as_deref(),
            errors,
        );
        if let Some(zone) = spec.time_zone.as_deref()
            && let Some(why) = time_zone_error(zone)
        {
            errors.push(FieldError::invalid("spec.timeZone", zone, why));
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

/// kube-apiserver's checks of `spec.schedule`: present, parseable ([`check_schedule`]), and
/// a `TZ=`/`CRON_TZ=` prefix only on updates of a schedule that already had one (never
/// together with `timeZone`); new CronJobs name their zone in `timeZone`.
fn validate_schedule(
    schedule: &str,
    old_schedule: Option<&str>,
    time_zone: Option<&str>,
    errors: &mut ErrorList,
) {
    const FIELD: &str = "spec.schedule";
    if schedule.is_empty() {
        return errors.push(FieldError::required(FIELD, ""));
    }
    if let Err(why) = check_schedule(schedule) {
        errors.push(FieldError::invalid(FIELD, schedule, why));
    }
    let allow_tz = old_schedule.is_some_and(|o| o.contains("TZ"));
    if !allow_tz && schedule.contains("TZ") {
        errors.push(FieldError::invalid(
            FIELD,
            schedule,
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ));
    } else if allow_tz && schedule.contains("TZ") && time_zone.is_some() {
        errors.push(FieldError::invalid(
            FIELD,
            schedule,
            "cannot use both timeZone field and TZ or CRON_TZ in schedule",
        ));
    }
}

/// Does `schedule` parse as the CronJob controller evaluates it? The controller's own parser
/// decides (fields in range, known descriptors), and a `TZ=` zone must be in the time zone
/// database the controller resolves zones in. `@every <duration>`, which kube-apiserver
/// accepts too, passes; the controller reports with an event that it cannot run it.
pub(crate) fn check_schedule(schedule: &str) -> Result<(), String> {
    let parsed = match Schedule::parse(schedule) {
        Ok(parsed) => parsed,
        Err(_) if is_every(schedule) => return Ok(()),
        Err(why) => return Err(why),
    };
    match parsed.time_zone.as_deref() {
        Some(zone) if jiff::tz::TimeZone::get(zone).is_err() => Err(format!(
            "provided bad location {zone}: unknown time zone {zone}"
        )),
        _ => Ok(()),
    }
}

/// Is `schedule` an `@every <duration>` descriptor (after an optional `TZ=` prefix)?
fn is_every(schedule: &str) -> bool {
    let mut words = schedule.split_whitespace();
    let first = words.next();
    let zone_first = first.is_some_and(|w| w.starts_with("TZ=") || w.starts_with("CRON_TZ="));
    let descriptor = if zone_first { words.next() } else { first };
    descriptor == Some("@every") && words.next().is_some()
}

/// Why kube-apiserver rejects `zone` as `spec.timeZone`, if it does: IANA naming rules,
/// an explicit zone (not `Local`), and present in the time zone database the CronJob
/// controller resolves zones in (jiff's, the system's zoneinfo).
fn time_zone_error(zone: &str) -> Option<String> {
    if zone.is_empty() {
        return Some("timeZone must be nil or non-empty string".to_owned());
    }
    let valid_part = |part: &str| {
        part != "."
            && part != ".."
            && !part.starts_with('-')
            && (1..=14).contains(&part.len())
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
    };
    if !zone.split('/').all(valid_part) {
        return Some(format!("unknown time zone {zone}"));
    }
    if zone.eq_ignore_ascii_case("Local") {
        return Some(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .to_owned(),
        );
    }
    jiff::tz::TimeZone::get(zone)
        .err()
        .map(|_| format!("unknown time zone {zone}"))
}

impl Kind for PodTemplate {
    fn default_fields(&mut self) {
        if let Some(template) = self.template.as_mut() {
            default_template(template);
        }
    }

    fn validate(&self, _old: Option<&Self>, errors: &mut ErrorList) {
        if let Some(template) = &self.template {
            validate_template(template, "template", errors);
        }
    }
}

/// The snapshots of a DaemonSet's or StatefulSet's template behind `rollout history`:
/// the data is immutable, the revision a non-negative number.
impl Kind for ControllerRevision {
    fn validate(&self, old: Option<&Self>, errors: &mut ErrorList) {
        if self.revision < 0 {
            errors.push(FieldError::invalid(
                "revision",
                self.revision,
                "must be greater than or equal to 0",
            ));
        }
        if let Some(old) = old {
            immutable(&self.data, &old.data, "data", errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::resources::strategy::{Strategy, Typed};

    use super::*;

    fn cronjob(schedule: &str, time_zone: Option<&str>) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"schedule": schedule, "timeZone": time_zone, "jobTemplate": {"spec": {"template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}})
    }

    /// The errors on `spec.schedule` and `spec.timeZone` of a create (or an update of `old`).
    fn schedule_errors(body: &Value, old: Option<&Value>) -> Vec<String> {
        let old = old.map(|o| {
            Typed::<CronJob>::new()
                .prepare(o, None)
                .expect("old")
                .object
        });
        Typed::<CronJob>::new()
            .prepare(body, old.as_ref())
            .expect("prepare")
            .errors
            .iter()
            .filter(|e| e.field == "spec.schedule" || e.field == "spec.timeZone")
            .map(ToString::to_string)
            .collect()
    }

    /// The errors on `spec.updateStrategy` of a DaemonSet with this strategy.
    fn daemonset_strategy_errors(strategy: Value) -> Vec<String> {
        let body = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "updateStrategy": strategy,
                "template": {"metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        Typed::<DaemonSet>::new()
            .prepare(&body, None)
            .expect("prepare")
            .errors
            .iter()
            .filter(|e| e.field.starts_with("spec.updateStrategy"))
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_daemonset_may_surge_but_not_with_nothing_to_give() {
        let rolling = |r: Value| json!({"type": "RollingUpdate", "rollingUpdate": r});
        assert!(
            daemonset_strategy_errors(rolling(json!({"maxSurge": 1, "maxUnavailable": 0})))
                .is_empty()
        );
        assert!(
            daemonset_strategy_errors(rolling(json!({"maxSurge": "10%", "maxUnavailable": "0%"})))
                .is_empty()
        );
        assert!(daemonset_strategy_errors(json!({"type": "OnDelete"})).is_empty());
        let both_zero =
            daemonset_strategy_errors(rolling(json!({"maxSurge": 0, "maxUnavailable": 0})));
        assert_eq!(both_zero.len(), 1, "{both_zero:?}");
        assert!(
            both_zero[0].contains("may not be 0 when `maxSurge` is 0"),
            "{both_zero:?}"
        );
        let bad =
            daemonset_strategy_errors(rolling(json!({"maxSurge": "150%", "maxUnavailable": -1})));
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(
            bad.iter()
                .any(|e| e.contains("must not be greater than 100%")),
            "{bad:?}"
        );
        let unknown = daemonset_strategy_errors(json!({"type": "Sometimes"}));
        assert_eq!(unknown.len(), 1, "{unknown:?}");
    }

    #[test]
    fn valid_schedules_pass() {
        for schedule in [
            "*/5 * * * *",
            "0 0 * * *",
            "59 23 31 12 6",
            "0 0 1 1 0",
            "1/4294967295 * * * *",
            "30 9 * jan-mar mon-fri",
            "0 */2 1,15 * ?",
            "@hourly",
            "@daily",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
            "@every 5m",
        ] {
            let errors = schedule_errors(&cronjob(schedule, None), None);
            assert!(errors.is_empty(), "{schedule}: {errors:?}");
        }
    }

    #[test]
    fn out_of_range_fields_and_unknown_descriptors_are_rejected() {
        for schedule in [
            "61 * * * *",
            "60 * * * *",
            "0 24 * * *",
            "0 0 0 * *",
            "0 0 32 * *",
            "0 0 * 0 *",
            "0 0 * 13 *",
            "0 0 * * 7",
            "0 0 * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "* * * *",
            "* * * * * *",
            "x * * * *",
            "@sometimes",
            "@every",
        ] {
            let errors = schedule_errors(&cronjob(schedule, None), None);
            assert_eq!(errors.len(), 1, "{schedule}: {errors:?}");
            assert!(
                errors[0].starts_with("spec.schedule: Invalid value: "),
                "{schedule}: {errors:?}"
            );
        }
        let errors = schedule_errors(&cronjob("", None), None);
        assert_eq!(errors, ["spec.schedule: Required value"]);
    }

    #[test]
    fn time_zones_must_be_known() {
        for zone in ["UTC", "Europe/Paris", "America/New_York", "Etc/GMT+5"] {
            let errors = schedule_errors(&cronjob("0 3 * * *", Some(zone)), None);
            assert!(errors.is_empty(), "{zone}: {errors:?}");
        }
        for zone in [
            "Europe/Pariss",
            "Mars/Olympus_Mons",
            "Local",
            "",
            "../etc/passwd",
            "/Europe/Paris",
            "Europe//Paris",
        ] {
            let errors = schedule_errors(&cronjob("0 3 * * *", Some(zone)), None);
            assert_eq!(errors.len(), 1, "{zone:?}: {errors:?}");
            assert!(
                errors[0].starts_with("spec.timeZone: Invalid value: "),
                "{zone:?}: {errors:?}"
            );
        }
        let errors = schedule_errors(&cronjob("0 3 * * *", Some("Europe/Pariss")), None);
        assert_eq!(
            errors,
            ["spec.timeZone: Invalid value: \"Europe/Pariss\": unknown time zone Europe/Pariss"]
        );
    }

    #[test]
    fn tz_in_the_schedule_only_on_updates_that_had_it() {
        let with_tz = cronjob("CRON_TZ=Europe/Paris 0 3 * * *", None);
        let errors = schedule_errors(&with_tz, None);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].ends_with("use timeZone field instead"),
            "{errors:?}"
        );
        // An object stored before keeps its prefix, but not together with timeZone.
        assert!(schedule_errors(&with_tz, Some(&with_tz)).is_empty());
        let both = cronjob("CRON_TZ=Europe/Paris 0 3 * * *", Some("UTC"));
        let errors = schedule_errors(&both, Some(&with_tz));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].ends_with("cannot use both timeZone field and TZ or CRON_TZ in schedule")
        );
        // The prefix's zone must be known too.
        let bad = cronjob("TZ=Europe/Pariss 0 3 * * *", None);
        let errors = schedule_errors(&bad, Some(&with_tz));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("provided bad location Europe/Pariss"),
            "{errors:?}"
        );
    }
}
