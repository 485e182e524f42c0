//! Read-modify-write: [`Registry::guaranteed_update`] and the writes built on it — update
//! (PUT), patch, server-side apply and namespace finalization.

use serde_json::{Value, json};

use super::{
    FieldValidation, Registry, RegistryError, Request, Written,
    claims::{Write, held_by},
    metadata,
    prepare::{Checked, check},
};
use crate::{
    admission::Operation,
    model::{ApiError, meta},
    resources::Subresource,
};

/// How often a read-modify-write re-reads after losing a race before giving up with 409.
const ATTEMPTS: usize = 16;

/// What a read-modify-write does with the object it read.
#[derive(Debug)]
pub enum Intent {
    /// Replace it with this object, through admission and validation (a client's update).
    Update(Value),
    /// Write this object as it is: bookkeeping the server does itself (a binding, marking
    /// a deletion, finalizers), without admission or validation.
    Write(Value),
    /// Delete it now, releasing its claims.
    Delete,
    /// Leave it as it is.
    Keep,
}

/// Which part of the object a write may change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Everything but `.status` (for resources with a status subresource).
    Main,
    /// Only `.status`.
    Status,
    /// Only `.status.conditions` (CertificateSigningRequest approval).
    Approval,
}

impl Registry {
    /// Read `name`, let `decide` say what to do with it, and do it with a compare-and-swap
    /// write; when another writer got there first, read again and decide again. An update
    /// that names a resourceVersion other than the stored one fails with 409 (the client's
    /// precondition), as kube's GuaranteedUpdate does.
    pub async fn guaranteed_update(
        &self,
        request: &Request<'_>,
        name: &str,
        mut decide: impl FnMut(&Value) -> Result<Intent, RegistryError> + Send,
    ) -> Result<Written, RegistryError> {
        let resource = request.resource;
        for _ in 0..ATTEMPTS {
            let current = self.get(request, name).await?;
            let revision: i64 = meta::resource_version(&current).parse().unwrap_or(0);
            let outcome = match decide(&current)? {
                Intent::Keep => {
                    return Ok(Written {
                        object: current,
                        warnings: Vec::new(),
                    });
                }
                Intent::Update(new) => self.replace(request, name, new, &current).await,
                Intent::Write(mut new) => {
                    if request.dry_run {
                        return Ok(Written {
                            object: new,
                            warnings: Vec::new(),
                        });
                    }
                    let stored = self.for_storage(request, &new).await?;
                    match self
                        .store
                        .update(&Self::key(request, name), &stored, revision)
                        .await
                    {
                        Ok(written) => {
                            meta::set_meta(&mut new, "resourceVersion", json!(written.to_string()));
                            Ok(Written {
                                object: new,
                                warnings: Vec::new(),
                            })
                        }
                        Err(e) => Err(RegistryError::storage(resource, name, e)),
                    }
                }
                Intent::Delete => self
                    .remove(request, name, &current)
                    .await
                    .map(|()| Written {
                        object: current.clone(),
                        warnings: Vec::new(),
                    }),
            };
            match outcome {
                Err(e) if e.is_lost_race() => continue,
                other => return other,
            }
        }
        Err(RegistryError::Modified {
            resource,
            name: name.to_owned(),
        })
    }

    /// Delete the stored `current` now, releasing its claims (nothing on dry runs).
    pub(super) async fn remove(
        &self,
        request: &Request<'_>,
        name: &str,
        current: &Value,
    ) -> Result<(), RegistryError> {
        if request.dry_run {
            return Ok(());
        }
        let revision: i64 = meta::resource_version(current).parse().unwrap_or(0);
        self.store
            .delete_releasing(
                &Self::key(request, name),
                revision,
                &held_by(request.resource, current),
            )
            .await
            .map(drop)
            .map_err(|e| RegistryError::storage(request.resource, name, e))
    }

    /// Write `new` over the stored `old`: preconditions, the subresource's scope, admission,
    /// validation, generation, claims; a deleted object whose last finalizer goes is
    /// deleted.
    async fn replace(
        &self,
        request: &Request<'_>,
        name: &str,
        new: Value,
        old: &Value,
    ) -> Result<Written, RegistryError> {
        let resource = request.resource;
        let precondition = meta::resource_version(&new);
        if !precondition.is_empty() && precondition != meta::resource_version(old) {
            if precondition.parse::<i64>().is_err() {
                return Err(ApiError::bad_request(format!(
                    "invalid resourceVersion {precondition:?}"
                ))
                .into());
            }
            return Err(RegistryError::Stale {
                resource,
                name: name.to_owned(),
            });
        }
        let uid = meta::meta_str(&new, "uid");
        if !uid.is_empty() && uid != meta::meta_str(old, "uid") {
            return Err(RegistryError::Precondition {
                resource,
                name: name.to_owned(),
                message:
                    "Precondition failed: UID in precondition does not match the UID of the object"
                        .to_owned(),
            });
        }
        let scope = match request.subresource {
            "status" => Scope::Status,
            "approval" => Scope::Approval,
            _ => Scope::Main,
        };
        let mut new = merge_scope(request, scope, new, old);
        metadata::carry_over(&mut new, old);
        let attributes = request.admission(Operation::Update, name);
        let mut warnings = Vec::new();
        self.admission
            .admit(&attributes, &mut new, Some(old), &mut warnings)
            .await?;
        let Checked {
            mut object,
            warnings: unknown,
        } = check(resource, request.field_validation, &new, Some(old))?;
        warnings.extend(unknown);
        self.admission
            .validate(&attributes, &object, Some(old), &mut warnings)
            .await?;
        metadata::set_generation(&mut object, Some(old));
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
            && !resource.strategy.hold_deletion(&mut object.clone())
        {
            self.remove(request, name, old).await?;
            return Ok(Written { object, warnings });
        }
        let expected: i64 = meta::resource_version(old).parse().unwrap_or(0);
        let revision = self
            .allocate_and_write(request, &mut object, Some(old), Write::Update { expected })
            .await?;
        if !request.dry_run {
            meta::set_meta(&mut object, "resourceVersion", json!(revision.to_string()));
        }
        Ok(Written { object, warnings })
    }

    /// PUT of an object (or its status): `object` replaces the stored one.
    pub async fn update(
        &self,
        request: &Request<'_>,
        name: &str,
        object: Value,
    ) -> Result<Written, RegistryError> {
        self.guaranteed_update(request, name, |_| Ok(Intent::Update(object.clone())))
            .await
    }

    /// PATCH: `patch` turns the stored object into the new one (re-run on a fresh read
    /// when another writer got there first, unless the patch names a resourceVersion).
    pub async fn patch(
        &self,
        request: &Request<'_>,
        name: &str,
        patch: impl Fn(&Value) -> Result<Value, ApiError> + Send + Sync,
    ) -> Result<Written, RegistryError> {
        self.guaranteed_update(request, name, |current| Ok(Intent::Update(patch(current)?)))
            .await
    }

    /// Server-side apply of `config` as `manager`, creating the object if it does not
    /// exist. Ok((written, created)).
    pub async fn apply(
        &self,
        request: &Request<'_>,
        name: &str,
        config: &Value,
        manager: &str,
        force: bool,
    ) -> Result<(Written, bool), RegistryError> {
        let now = metadata::now();
        for _ in 0..ATTEMPTS {
            match self.get(request, name).await {
                // Only the object itself is created by an apply; a subresource of a
                // missing object is a 404 (kube's status stores never create).
                Err(e @ RegistryError::NotFound { .. }) if !request.subresource.is_empty() => {
                    return Err(e);
                }
                Err(RegistryError::NotFound { .. }) => {
                    let object = crate::patch::apply::apply(None, config, manager, force, &now)?;
                    match self.create(request, object).await {
                        Err(RegistryError::AlreadyExists { .. }) => continue,
                        other => return other.map(|written| (written, true)),
                    }
                }
                Err(e) => return Err(e),
                Ok(_) => {
                    let applied = self
                        .guaranteed_update(request, name, |live| {
                            Ok(Intent::Update(crate::patch::apply::apply(
                                Some(live),
                                config,
                                manager,
                                force,
                                &now,
                            )?))
                        })
                        .await;
                    match applied {
                        Err(RegistryError::NotFound { .. }) => continue,
                        other => return other.map(|written| (written, false)),
                    }
                }
            }
        }
        Err(RegistryError::Modified {
            resource: request.resource,
            name: name.to_owned(),
        })
    }

    /// `namespaces/{name}/finalize`: set `spec.finalizers`; a terminating namespace whose
    /// finalizers are all gone is deleted.
    pub async fn finalize(
        &self,
        request: &Request<'_>,
        name: &str,
        finalizers: &Value,
    ) -> Result<Written, RegistryError> {
        if !finalizers.is_array() {
            return Err(ApiError::bad_request("spec.finalizers must be a list").into());
        }
        self.guaranteed_update(request, name, |old| {
            let mut new = old.clone();
            new["spec"]["finalizers"] = finalizers.clone();
            let done = finalizers.as_array().is_some_and(Vec::is_empty)
                && !meta::meta_str(old, "deletionTimestamp").is_empty()
                && meta::finalizers(old).is_empty();
            Ok(if done {
                Intent::Delete
            } else {
                Intent::Write(new)
            })
        })
        .await
    }
}

/// Merge the write's intent with the stored object according to the scope.
fn merge_scope(request: &Request<'_>, scope: Scope, mut new: Value, old: &Value) -> Value {
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
            merged
        }
        Scope::Approval => {
            let mut merged = old.clone();
            let conditions = new
                .pointer_mut("/status/conditions")
                .map(Value::take)
                .unwrap_or(Value::Null);
            if !merged.get("status").is_some_and(Value::is_object) {
                merged["status"] = serde_json::json!({});
            }
            merged["status"]["conditions"] = conditions;
            merged
        }
        Scope::Main => {
            if request.resource.has(Subresource::Status) {
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

/// `FieldValidation` from the query's `fieldValidation` value.
pub fn field_validation(value: Option<&str>) -> Result<FieldValidation, ApiError> {
    match value {
        None | Some("" | "Warn") => Ok(FieldValidation::Warn),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
        ))),
    }
}
