//! Writes of objects that hold claims (Services: cluster IPs, node ports): allocate what
//! the object lacks, then write it together with its claim changes; a value chosen here
//! that a racing writer took first is chosen again, an explicit one that is taken is a 422.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Registry, RegistryError, Request};
use crate::{
    model::{ApiError, meta},
    resources::ResourceInfo,
    store::{ClaimChange, StoreError},
};

/// How often a write re-chooses values lost to racing writers.
const ALLOCATION_ATTEMPTS: usize = 8;

/// Claim names `object` holds.
pub(super) fn held_by(resource: &ResourceInfo, object: &Value) -> Vec<String> {
    resource
        .strategy
        .claims(object)
        .into_iter()
        .map(|c| c.name)
        .collect()
}

/// The store write that carries the claims.
#[derive(Clone, Copy)]
pub(super) enum Write {
    /// Create the object.
    Create,
    /// Replace the stored object whose resourceVersion is `expected`.
    Update {
        /// The precondition.
        expected: i64,
    },
}

impl Registry {
    /// Allocate `object`'s claims and write it (`old`: the stored object on updates) with
    /// the claim changes. On success `object` is what was written and the write's revision
    /// is returned (0 on dry runs, which allocate but write nothing).
    pub(super) async fn allocate_and_write(
        &self,
        request: &Request<'_>,
        object: &mut Value,
        old: Option<&Value>,
        write: Write,
    ) -> Result<i64, RegistryError> {
        let resource = request.resource;
        let name = meta::name(object).to_owned();
        let key = Self::key(request, &name);
        let old_claims = old.map(|o| held_by(resource, o)).unwrap_or_default();
        // Claims known to be held: empty at first (a random choice rarely collides), read
        // from the store once a choice has lost.
        let mut held: BTreeSet<String> = BTreeSet::new();
        for _ in 0..ALLOCATION_ATTEMPTS {
            let mut candidate = object.clone();
            let chosen = resource
                .strategy
                .allocate(&mut candidate, &|claim| held.contains(claim))
                .map_err(|errors| {
                    ApiError::invalid(resource.group, resource.kind, &name, &errors)
                })?;
            let claims = resource.strategy.claims(&candidate);
            let names: Vec<String> = claims.iter().map(|c| c.name.clone()).collect();
            let change = ClaimChange::between(&old_claims, &names);
            if request.dry_run {
                *object = candidate;
                return Ok(0);
            }
            // Written in the storage version; answered in the request's.
            let stored = self.for_storage(request, &candidate).await?;
            let written = match write {
                Write::Create => self.store.create_claiming(&key, &stored, &change).await,
                Write::Update { expected } => {
                    self.store
                        .update_claiming(&key, &stored, expected, &change)
                        .await
                }
            };
            match written {
                Ok(revision) => {
                    *object = candidate;
                    return Ok(revision);
                }
                Err(StoreError::Claimed { claim, .. }) if chosen.contains(&claim) => {
                    held = self
                        .store
                        .claims("")
                        .await
                        .map_err(|e| RegistryError::storage(resource, &name, e))?
                        .into_iter()
                        .collect();
                }
                Err(StoreError::Claimed { claim, holder }) => {
                    let error = claims
                        .into_iter()
                        .find(|c| c.name == claim)
                        .map(|c| c.error)
                        .ok_or_else(|| {
                            ApiError::internal(format!("{claim} is held by {holder}"))
                        })?;
                    return Err(
                        ApiError::invalid(resource.group, resource.kind, &name, &[error]).into(),
                    );
                }
                Err(e) => return Err(RegistryError::storage(resource, &name, e)),
            }
        }
        Err(ApiError::internal(format!(
            "could not allocate for {name}: every choice was taken by concurrent writes"
        ))
        .into())
    }
}
