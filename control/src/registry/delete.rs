//! delete, with kube's graceful deletion for pods, finalizers and propagation policies.

use serde_json::{Value, json};

use super::{Intent, Registry, RegistryError, Request, Written, metadata};
use crate::{admission::Operation, model::meta, resources::ResourceInfo};

/// Deletion options (kube's DeleteOptions), as the request gave them.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds` (negative values count as 0).
    pub grace: Option<i64>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// The finalizer the propagation policy asks for (`orphan`, `foregroundDeletion`).
    pub propagation_finalizer: Option<&'static str>,
}

/// The grace period kube-apiserver applies: pods that run on a node get their
/// terminationGracePeriodSeconds (or the request's); anything else is deleted at once.
fn grace_period(resource: &ResourceInfo, object: &Value, requested: Option<i64>) -> i64 {
    if resource.kind != "Pod" || !resource.group.is_empty() {
        return 0;
    }
    let unscheduled = meta::field_value(object, "spec.nodeName").is_empty();
    let phase = meta::field_value(object, "status.phase");
    if unscheduled || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    requested
        .unwrap_or_else(|| {
            object
                .get("spec")
                .and_then(|s| s.get("terminationGracePeriodSeconds"))
                .and_then(Value::as_i64)
                .unwrap_or(30)
        })
        .max(0)
}

/// What deleting `current` with `options` does: delete now, mark it as being deleted, or
/// nothing more (a deletion already under way with no shorter grace period).
fn decide(
    request: &Request<'_>,
    name: &str,
    current: &Value,
    options: &DeleteOptions,
) -> Result<Intent, RegistryError> {
    let resource = request.resource;
    let precondition = |message: String| RegistryError::Precondition {
        resource,
        name: name.to_owned(),
        message,
    };
    if let Some(uid) = &options.uid
        && uid != meta::meta_str(current, "uid")
    {
        return Err(precondition(format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            meta::meta_str(current, "uid")
        )));
    }
    if let Some(rv) = &options.resource_version
        && rv != meta::resource_version(current)
    {
        return Err(precondition(format!(
            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
            meta::resource_version(current)
        )));
    }
    let grace = grace_period(resource, current, options.grace);
    let mut finalizers = meta::finalizers(current);
    let mut marked = current.clone();
    // Orphan/Foreground propagation: the garbage collector finishes the deletion.
    if let Some(f) = options.propagation_finalizer
        && meta::meta_str(current, "deletionTimestamp").is_empty()
        && !finalizers.iter().any(|x| x == f)
        && resource.kind != "Namespace"
    {
        finalizers.push(f.to_owned());
        meta::set_meta(&mut marked, "finalizers", json!(finalizers));
    }
    let already = current
        .get("metadata")
        .and_then(|m| m.get("deletionGracePeriodSeconds"))
        .and_then(Value::as_i64);
    // Kind-specific holds (a namespace waits for the namespace controller).
    let held = resource.strategy.hold_deletion(&mut marked);
    let deferred = grace > 0 || !finalizers.is_empty() || held;
    if !deferred || (already.is_some() && grace == 0 && finalizers.is_empty() && !held) {
        return Ok(Intent::Delete);
    }
    // Deferred: mark the object as being deleted (a shorter grace period may replace a
    // longer one; nothing else changes an ongoing deletion).
    if already.is_some_and(|a| a <= grace) {
        return Ok(Intent::Keep);
    }
    let deadline = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(grace))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    meta::set_meta(
        &mut marked,
        "deletionTimestamp",
        json!(deadline.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
    );
    meta::set_meta(&mut marked, "deletionGracePeriodSeconds", json!(grace));
    metadata::set_generation(&mut marked, Some(current));
    Ok(Intent::Write(marked))
}

impl Registry {
    /// Delete `name`; the object as it was (deleted now) or as it now is (its deletion
    /// deferred by a grace period or finalizers).
    pub async fn delete(
        &self,
        request: &Request<'_>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Written, RegistryError> {
        let current = self.get(request, name).await?;
        let attributes = request.admission(Operation::Delete, name);
        let mut warnings = Vec::new();
        let mut object = current.clone();
        self.admission
            .admit(&attributes, &mut object, Some(&current), &mut warnings)
            .await?;
        self.admission
            .validate(&attributes, &current, Some(&current), &mut warnings)
            .await?;
        // What admission approved is what gets deleted: a different object of the same
        // name (deleted and created again meanwhile) fails the UID precondition.
        let mut options = options.clone();
        if options.uid.is_none() {
            options.uid = Some(meta::meta_str(&current, "uid").to_owned());
        }
        let mut written = self
            .guaranteed_update(request, name, |current| {
                decide(request, name, current, &options)
            })
            .await?;
        written.warnings.extend(warnings);
        Ok(written)
    }
}
