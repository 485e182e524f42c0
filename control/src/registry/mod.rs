//! The registry: every write of every resource — create, update, patch, apply, delete,
//! bind, finalize, scale — over (resource description, object), the equivalent of
//! kube-apiserver's generic registry store. HTTP stays in `api/rest/`, which only decodes
//! requests and encodes answers.
//!
//! `pods/{name}/eviction` lives in [`eviction`]: the pod's disruption budget decides, the
//! pod is deleted through [`Registry::delete`].
//!
//! A write runs: settle metadata → mutating admission → defaulting and validation (the
//! kind's [`Strategy`](crate::resources::Strategy)) → validating admission → claims and a
//! compare-and-swap write. Every read-modify-write goes through one helper,
//! [`Registry::guaranteed_update`], which re-reads and retries when it loses a race.

mod claims;
mod create;
mod delete;
mod error;
pub mod eviction;
pub mod metadata;
mod prepare;
mod subresources;
mod update;

use std::sync::Arc;

use serde_json::Value;

pub use delete::DeleteOptions;
pub use error::RegistryError;
pub use subresources::scale_of;
pub use update::{Intent, field_validation};

use crate::{
    admission::{self, Chain, Operation},
    crd::conversion::Converter,
    model::{ApiError, user::UserInfo},
    resources::ResourceInfo,
    store::{Store, object_key},
};

/// The `fieldValidation` directive (default Warn, as kube-apiserver).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Unknown fields are an error.
    Strict,
    /// Unknown fields are dropped with a warning.
    #[default]
    Warn,
    /// Unknown fields are dropped silently.
    Ignore,
}

/// Who writes what, beyond the object itself.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The resource.
    pub resource: &'static ResourceInfo,
    /// Namespace ("" for cluster-scoped resources).
    pub namespace: &'a str,
    /// The subresource written (`status`, `scale`, `binding`…; "" for the object).
    pub subresource: &'a str,
    /// Who asks.
    pub user: &'a UserInfo,
    /// Validate and admit, write nothing.
    pub dry_run: bool,
    /// What to do with fields the kind does not have.
    pub field_validation: FieldValidation,
}

impl Request<'_> {
    /// The admission attributes of `operation` on `name`.
    fn admission<'b>(&'b self, operation: Operation, name: &'b str) -> admission::Attributes<'b> {
        admission::Attributes {
            operation,
            resource: self.resource,
            subresource: self.subresource,
            namespace: self.namespace,
            name: "",
            user: self.user,
            dry_run: self.dry_run,
        }
        .named(name)
    }
}

/// An object as written, with the warnings to send along.
#[derive(Debug)]
pub struct Written {
    /// The object (resourceVersion set unless a dry run).
    pub object: Value,
    /// Warnings for the client (`Warning:` lines in kubectl).
    pub warnings: Vec<String>,
}

/// Every resource's writes, over one store and one admission chain.
pub struct Registry {
    store: Arc<Store>,
    admission: Chain,
    converter: Converter,
}

impl Registry {
    /// A registry over `store` admitting writes through `admission`, converting custom
    /// objects between their versions (calling conversion webhooks over HTTPS).
    pub fn new(store: Arc<Store>, admission: Chain) -> Self {
        Self {
            converter: Converter::new(Arc::clone(&store)),
            store,
            admission,
        }
    }

    /// The same registry, converting custom objects with `converter`.
    #[must_use]
    pub fn with_converter(mut self, converter: Converter) -> Self {
        self.converter = converter;
        self
    }

    /// Converts custom objects between the versions of their resource.
    pub fn converter(&self) -> &Converter {
        &self.converter
    }

    /// `object`, in the request's version, as it is stored (the storage version).
    pub(crate) async fn for_storage(
        &self,
        request: &Request<'_>,
        object: &Value,
    ) -> Result<Value, RegistryError> {
        self.converter
            .to_storage(request.resource, object.clone())
            .await
            .map_err(|e| ApiError::from(e).into())
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The admission chain.
    pub fn admission(&self) -> &Chain {
        &self.admission
    }

    /// The store key of `name` in the request's resource and namespace.
    pub fn key(request: &Request<'_>, name: &str) -> String {
        object_key(
            request.resource.group,
            request.resource.plural,
            request.namespace,
            name,
        )
    }

    /// The stored object `name` (resourceVersion set), in the request's version.
    pub async fn get(&self, request: &Request<'_>, name: &str) -> Result<Value, RegistryError> {
        let stored = self
            .store
            .get(&Self::key(request, name))
            .await
            .map_err(|e| RegistryError::storage(request.resource, name, e))?;
        self.converter
            .to_served(request.resource, stored)
            .await
            .map_err(|e| ApiError::from(e).into())
    }
}

#[cfg(test)]
mod eviction_tests;
#[cfg(test)]
mod tests;
