//! delete and deletecollection, with kube's graceful deletion for pods and finalizers.

use axum::{http::StatusCode, response::Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::{
    Ctx, meta as object_meta,
    read::{Filter, namespace_prefix, object_response},
};
use crate::{
    api::{body, response},
    model::{ApiError, meta},
};

/// Deletion options from the body (DeleteOptions) and the query.
struct Options {
    grace: Option<i64>,
    uid: Option<String>,
    resource_version: Option<String>,
    /// The finalizer the propagation policy asks for (`orphan`, `foregroundDeletion`).
    propagation_finalizer: Option<&'static str>,
}

fn options(ctx: &Ctx<'_>, raw: &Bytes) -> Result<Options, ApiError> {
    let body = body::decode_optional(ctx.headers, raw)?.unwrap_or(Value::Null);
    let grace = match body.get("gracePeriodSeconds").and_then(Value::as_i64) {
        Some(g) => Some(g),
        None => ctx
            .query
            .get("gracePeriodSeconds")
            .and_then(|g| g.parse::<i64>().ok()),
    };
    let policy = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or(ctx.query.get("propagationPolicy"));
    let orphan_dependents = body.get("orphanDependents").and_then(Value::as_bool) == Some(true)
        || ctx.query.get("orphanDependents") == Some("true");
    let propagation_finalizer = match policy {
        Some("Orphan") => Some("orphan"),
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Background") => None,
        None if orphan_dependents => Some("orphan"),
        None => None,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported propagationPolicy {other:?}"
            )));
        }
    };
    let pre = body.get("preconditions");
    let text = |field: &str| {
        pre.and_then(|p| p.get(field))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(Options {
        grace: grace.map(|g| g.max(0)),
        uid: text("uid"),
        resource_version: text("resourceVersion"),
        propagation_finalizer,
    })
}

/// The grace period kube-apiserver applies: pods that run on a node get their
/// terminationGracePeriodSeconds (or the request's); anything else is deleted at once.
fn grace_period(ctx: &Ctx<'_>, object: &Value, requested: Option<i64>) -> i64 {
    if ctx.info().kind != "Pod" || !ctx.info().group.is_empty() {
        return 0;
    }
    let unscheduled = meta::field_value(object, "spec.nodeName").is_empty();
    let phase = meta::field_value(object, "status.phase");
    if unscheduled || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    requested.unwrap_or_else(|| {
        object
            .get("spec")
            .and_then(|s| s.get("terminationGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(30)
    })
}

/// Delete one object; returns the object as it was or as it now is (when deletion is
/// deferred by a grace period or finalizers). `Ok(None)` if it was already gone.
async fn delete_object(ctx: &Ctx<'_>, name: &str, opts: &Options) -> Result<Value, ApiError> {
    let info = ctx.info();
    for _ in 0..5 {
        let current = ctx.load(name).await?;
        if let Some(uid) = &opts.uid
            && uid != meta::meta_str(&current, "uid")
        {
            return Err(ApiError::conflict(
                info.group,
                info.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::meta_str(&current, "uid")
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && rv != meta::resource_version(&current)
        {
            return Err(ApiError::conflict(
                info.group,
                info.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta::resource_version(&current)
                ),
            ));
        }
        let revision: i64 = meta::resource_version(&current).parse().unwrap_or(0);
        let grace = grace_period(ctx, &current, opts.grace);
        let mut finalizers = meta::finalizers(&current);
        let mut marked = current.clone();
        // Orphan/Foreground propagation: the garbage collector finishes the deletion.
        if let Some(f) = opts.propagation_finalizer
            && meta::meta_str(&current, "deletionTimestamp").is_empty()
            && !finalizers.iter().any(|x| x == f)
            && info.kind != "Namespace"
        {
            finalizers.push(f.to_owned());
            meta::set_meta(&mut marked, "finalizers", json!(finalizers));
        }
        let already = current
            .get("metadata")
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64);
        // Kind-specific holds (a namespace waits for the namespace controller).
        let held = info.strategy.hold_deletion(&mut marked);
        let deferred = grace > 0 || !finalizers.is_empty() || held;
        if !deferred || (already.is_some() && grace == 0 && finalizers.is_empty() && !held) {
            if ctx.query.dry_run() {
                return Ok(current);
            }
            let claims = super::claims::held_by(ctx, &current);
            match ctx
                .state
                .store
                .delete_releasing(&ctx.key(name), revision, &claims)
                .await
            {
                Ok(_) => return Ok(current),
                Err(crate::store::StoreError::Conflict) => continue,
                Err(e) => return Err(ctx.storage_error(name, e)),
            }
        }
        // Deferred: mark the object as being deleted (a shorter grace period may replace a
        // longer one; nothing else changes an ongoing deletion).
        if already.is_some_and(|a| a <= grace) {
            return Ok(current);
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
        object_meta::set_generation(&mut marked, Some(&current));
        if ctx.query.dry_run() {
            return Ok(marked);
        }
        match ctx
            .state
            .store
            .update(&ctx.key(name), &marked, revision)
            .await
        {
            Ok(new_revision) => {
                meta::set_meta(
                    &mut marked,
                    "resourceVersion",
                    json!(new_revision.to_string()),
                );
                return Ok(marked);
            }
            Err(crate::store::StoreError::Conflict) => continue,
            Err(e) => return Err(ctx.storage_error(name, e)),
        }
    }
    Err(ApiError::modified(info.group, info.plural, name))
}

/// DELETE of one object.
pub async fn delete(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    if ctx.info().plural == "namespaces"
        && ["default", "kube-system", "kube-public"].contains(&name)
    {
        return Err(ApiError::forbidden(format!(
            "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
        )));
    }
    let opts = options(ctx, raw)?;
    let object = delete_object(ctx, name, &opts).await?;
    Ok(object_response(ctx, StatusCode::OK, &object))
}

/// DELETE of a collection (with the list's selectors).
pub async fn delete_collection(ctx: &Ctx<'_>, raw: &Bytes) -> Result<Response, ApiError> {
    let opts = options(ctx, raw)?;
    let filter = Filter::from_query(ctx)?;
    let cache = ctx.fresh_cache(std::time::Duration::from_secs(3)).await?;
    let snapshot = cache
        .snapshot(&namespace_prefix(ctx))
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    for object in snapshot.objects.iter().filter(|o| filter.matches_cached(o)) {
        match delete_object(ctx, &object.name, &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(response::json(StatusCode::OK, &response::success(200)))
}
