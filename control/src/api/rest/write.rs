//! create, update and patch: decode, settle metadata, default, validate, then a
//! compare-and-swap write.

use axum::{
    http::{HeaderValue, StatusCode},
    response::Response,
};
use bytes::Bytes;
use serde_json::{Value, json};

use super::{Ctx, check_type, claims, meta as object_meta, read::object_response};
use crate::{
    api::body,
    model::{ApiError, meta, validation::ErrorList},
    resources::Subresource,
    store::StoreError,
};

/// How many times a patch is re-applied when the object changes underneath it.
const PATCH_RETRIES: usize = 5;

/// The `fieldValidation` directive (default Warn, as kube-apiserver).
#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

fn field_validation(ctx: &Ctx<'_>) -> Result<FieldValidation, ApiError> {
    match ctx.query.get("fieldValidation") {
        None | Some("" | "Warn") => Ok(FieldValidation::Warn),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
        ))),
    }
}

/// A prepared object and the warnings to send with the response.
struct Checked {
    object: Value,
    warnings: Vec<String>,
}

/// Run the kind's strategy and the metadata rules; `old` on updates.
fn check(ctx: &Ctx<'_>, object: &Value, old: Option<&Value>) -> Result<Checked, ApiError> {
    let info = ctx.info();
    let directive = field_validation(ctx)?;
    let prepared = info.strategy.prepare(object, old).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            info.kind, info.version, info.kind
        ))
    })?;
    let unknown: Vec<String> = prepared
        .unknown_fields
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if directive == FieldValidation::Strict && !unknown.is_empty() {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            unknown.join(", ")
        )));
    }
    let mut errors: ErrorList = prepared.errors;
    object_meta::validate(info, &prepared.object, &mut errors);
    if !errors.is_empty() {
        errors.sort_by(|a, b| a.field.cmp(&b.field));
        return Err(ApiError::invalid(
            info.group,
            info.kind,
            meta::name(object),
            &errors,
        ));
    }
    let warnings = if directive == FieldValidation::Warn {
        unknown
    } else {
        Vec::new()
    };
    Ok(Checked {
        object: prepared.object,
        warnings,
    })
}

fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - {:?}", warning);
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

/// Refuse objects in a namespace that does not exist or is terminating. The namespaces'
/// watch cache answers; only a miss (a namespace created a moment ago) goes to etcd.
async fn check_namespace(ctx: &Ctx<'_>, name: &str) -> Result<(), ApiError> {
    let info = ctx.info();
    if !info.namespaced {
        return Ok(());
    }
    let ns = ctx.namespace();
    let namespaces = crate::resources::find("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not served"))?;
    let key = crate::store::object_key("", "namespaces", "", ns);
    let cache = ctx
        .state
        .store
        .cache(&namespaces.prefix(), namespaces.projection());
    let phase = match cache.get(&key) {
        Some(cached) => cached.field("status.phase"),
        None => match ctx.state.store.get(&key).await {
            Ok(namespace) => meta::field_value(&namespace, "status.phase"),
            Err(StoreError::NotFound) => return Err(ApiError::namespace_missing(ns)),
            Err(e) => return Err(ctx.storage_error(name, e)),
        },
    };
    if phase == "Terminating" {
        return Err(ApiError::namespace_terminating(
            info.group,
            info.plural,
            name,
            ns,
        ));
    }
    Ok(())
}

/// POST on a collection.
pub async fn create(ctx: &Ctx<'_>, raw: &Bytes) -> Result<Response, ApiError> {
    let mut object = body::decode_object(ctx.headers, raw)?;
    check_type(ctx.info(), &object)?;
    object_meta::settle_identity(ctx, &mut object)?;
    let (object, warnings) = create_object(ctx, object).await?;
    let status = StatusCode::CREATED;
    Ok(with_warnings(
        object_response(ctx, status, &object),
        &warnings,
    ))
}

/// Create `object` (identity settled): the shared path of POST and internal creates.
pub(super) async fn create_object(
    ctx: &Ctx<'_>,
    mut object: Value,
) -> Result<(Value, Vec<String>), ApiError> {
    let info = ctx.info();
    object_meta::stamp_create(&mut object);
    if object_meta::resets_status_on_create(info)
        && let Some(map) = object.as_object_mut()
    {
        map.remove("status");
    }
    if info.group.is_empty() && info.plural == "pods" {
        super::runtime_class::admit(ctx, &mut object).await?;
    }
    let Checked {
        mut object,
        warnings,
    } = check(ctx, &object, None)?;
    let name = meta::name(&object).to_owned();
    check_namespace(ctx, &name).await?;
    object_meta::set_generation(&mut object, None);
    let revision =
        claims::allocate_and_write(ctx, &mut object, None, claims::Write::Create).await?;
    if ctx.query.dry_run() {
        return Ok((object, warnings));
    }
    meta::set_meta(&mut object, "resourceVersion", json!(revision.to_string()));
    Ok((object, warnings))
}

/// Which part of the object a write may change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Everything but `.status` (for resources with a status subresource).
    Main,
    /// Only `.status`.
    Status,
}

fn scope(ctx: &Ctx<'_>) -> Scope {
    if ctx.target.subresource.as_deref() == Some("status") {
        Scope::Status
    } else {
        Scope::Main
    }
}

/// Merge the write's intent with the stored object according to the scope.
fn merge_scope(ctx: &Ctx<'_>, scope: Scope, mut new: Value, old: &Value) -> Value {
    match scope {
        Scope::Status => {
            let mut merged = old.clone();
            match new.get_mut("status").map(Value::take) {
                Some(status) => merged["status"] = status,
                None => {
                    if let Some(map) = merged.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            // The status write still carries the client's resourceVersion precondition.
            meta::set_meta(
                &mut merged,
                "resourceVersion",
                json!(meta::resource_version(&new)),
            );
            merged
        }
        Scope::Main => {
            if ctx.info().has(Subresource::Status) {
                match old.get("status") {
                    Some(status) => new["status"] = status.clone(),
                    None => {
                        if let Some(map) = new.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            }
            new
        }
    }
}

/// Write `new` over `old` (whose resourceVersion is `current`); `new` may carry a
/// resourceVersion precondition. Returns the stored object.
pub(super) async fn replace(
    ctx: &Ctx<'_>,
    name: &str,
    new: Value,
    old: &Value,
) -> Result<(Value, Vec<String>), ApiError> {
    let scope = scope(ctx);
    let info = ctx.info();
    let current: i64 = meta::resource_version(old).parse().unwrap_or(0);
    let precondition = meta::resource_version(&new).to_owned();
    let expected = if precondition.is_empty() {
        current
    } else {
        precondition.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("invalid resourceVersion {precondition:?}"))
        })?
    };
    let uid = meta::meta_str(&new, "uid");
    if !uid.is_empty() && uid != meta::meta_str(old, "uid") {
        return Err(ApiError::conflict(
            info.group,
            info.plural,
            name,
            "Precondition failed: UID in precondition does not match the UID of the object",
        ));
    }
    let mut new = merge_scope(ctx, scope, new, old);
    object_meta::carry_over(&mut new, old);
    let Checked {
        mut object,
        warnings,
    } = check(ctx, &new, Some(old))?;
    object_meta::set_generation(&mut object, Some(old));
    // An object being deleted whose last finalizer is removed is deleted now.
    let deleting = !meta::meta_str(&object, "deletionTimestamp").is_empty();
    let grace = object
        .get("metadata")
        .and_then(|m| m.get("deletionGracePeriodSeconds"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    // Only an object under deletion can have its deletion held (kept off the update path).
    if deleting
        && meta::finalizers(&object).is_empty()
        && grace == 0
        && !info.strategy.hold_deletion(&mut object.clone())
    {
        if !ctx.query.dry_run() {
            ctx.state
                .store
                .delete_releasing(&ctx.key(name), expected, &claims::held_by(ctx, old))
                .await
                .map_err(|e| ctx.storage_error(name, e))?;
        }
        return Ok((object, warnings));
    }
    let revision = claims::allocate_and_write(
        ctx,
        &mut object,
        Some(old),
        claims::Write::Update { expected },
    )
    .await?;
    if ctx.query.dry_run() {
        return Ok((object, warnings));
    }
    meta::set_meta(&mut object, "resourceVersion", json!(revision.to_string()));
    Ok((object, warnings))
}

/// PUT of an object or its status.
pub async fn update(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let object = body::decode_object(ctx.headers, raw)?;
    check_type(ctx.info(), &object)?;
    let body_name = meta::name(&object);
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let old = ctx.load(name).await?;
    let (object, warnings) = replace(ctx, name, object, &old).await?;
    Ok(with_warnings(
        object_response(ctx, StatusCode::OK, &object),
        &warnings,
    ))
}

/// PATCH of an object or its status, retried when the object changes concurrently (unless
/// the patch itself names a resourceVersion).
pub async fn patch(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    if raw.len() > body::MAX_BODY {
        return Err(ApiError::too_large(body::MAX_BODY));
    }
    let content_type = body::content_type(ctx.headers);
    if content_type == crate::patch::APPLY {
        return server_side_apply(ctx, name, raw).await;
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = ctx.load(name).await?;
        let patched = crate::patch::apply(
            &content_type,
            &current,
            raw,
            &ctx.info().api_version(),
            ctx.info().kind,
        )?;
        let pinned = meta::resource_version(&patched) != meta::resource_version(&current);
        match replace(ctx, name, patched, &current).await {
            Err(e) if e.reason == "Conflict" && !pinned && attempt < PATCH_RETRIES => continue,
            Err(e) => return Err(e),
            Ok((object, warnings)) => {
                return Ok(with_warnings(
                    object_response(ctx, StatusCode::OK, &object),
                    &warnings,
                ));
            }
        }
    }
}

/// PATCH with `application/apply-patch+yaml`: server-side apply as `fieldManager`, creating
/// the object if it does not exist.
async fn server_side_apply(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let info = ctx.info();
    let manager = ctx
        .query
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::bad_request("fieldManager must be set for apply requests"))?
        .to_owned();
    let force = ctx.query.flag("force");
    let text = std::str::from_utf8(raw)
        .map_err(|_| ApiError::bad_request("the apply body is not UTF-8"))?;
    let mut config: Value = serde_saphyr::from_str(text).map_err(|e| {
        ApiError::bad_request(format!("error decoding the apply configuration: {e}"))
    })?;
    super::check_type(info, &config)?;
    let body_name = meta::name(&config).to_owned();
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    meta::set_meta(&mut config, "name", json!(name));
    object_meta::settle_identity(ctx, &mut config)?;
    let now = object_meta::now();
    for _ in 0..PATCH_RETRIES {
        match ctx.state.store.get(&ctx.key(name)).await {
            Err(StoreError::NotFound) => {
                let object = crate::patch::apply::apply(None, &config, &manager, force, &now)?;
                match create_object(ctx, object).await {
                    Ok((object, warnings)) => {
                        return Ok(with_warnings(
                            object_response(ctx, StatusCode::CREATED, &object),
                            &warnings,
                        ));
                    }
                    Err(e) if e.reason == "AlreadyExists" => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(ctx.storage_error(name, e)),
            Ok(live) => {
                let object =
                    crate::patch::apply::apply(Some(&live), &config, &manager, force, &now)?;
                match replace(ctx, name, object, &live).await {
                    Err(e) if e.reason == "Conflict" && e.details.causes.is_empty() => continue,
                    Err(e) => return Err(e),
                    Ok((object, warnings)) => {
                        return Ok(with_warnings(
                            object_response(ctx, StatusCode::OK, &object),
                            &warnings,
                        ));
                    }
                }
            }
        }
    }
    Err(ApiError::modified(info.group, info.plural, name))
}

/// PUT namespaces/{name}/finalize: set `spec.finalizers`; a terminating namespace whose
/// finalizers are all gone is deleted.
pub async fn finalize(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let body = body::decode_object(ctx.headers, raw)?;
    super::check_type(ctx.info(), &body)?;
    let finalizers = body
        .pointer("/spec/finalizers")
        .cloned()
        .unwrap_or_else(|| json!([]));
    if !finalizers.is_array() {
        return Err(ApiError::bad_request("spec.finalizers must be a list"));
    }
    for _ in 0..PATCH_RETRIES {
        let old = ctx.load(name).await?;
        let revision: i64 = meta::resource_version(&old).parse().unwrap_or(0);
        let mut new = old.clone();
        new["spec"]["finalizers"] = finalizers.clone();
        let done = finalizers.as_array().is_some_and(Vec::is_empty)
            && !meta::meta_str(&old, "deletionTimestamp").is_empty()
            && meta::finalizers(&old).is_empty();
        let result = if done {
            ctx.state.store.delete(&ctx.key(name), revision).await
        } else {
            ctx.state.store.update(&ctx.key(name), &new, revision).await
        };
        match result {
            Ok(rv) => {
                meta::set_meta(&mut new, "resourceVersion", json!(rv.to_string()));
                return Ok(object_response(ctx, StatusCode::OK, &new));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(ctx.storage_error(name, e)),
        }
    }
    Err(ApiError::modified(
        ctx.info().group,
        ctx.info().plural,
        name,
    ))
}
