//! Versions of a custom resource, converted as kube-apiserver converts them: objects are
//! stored in the CRD's storage version and served in the version the client asked for.
//! A request's object is converted to the storage version before it is written; a stored
//! object (in the storage version, or an older one it was written in) is converted to the
//! request's version when read — by get, list, watch and tables alike.
//!
//! Under the `None` strategy only `apiVersion` is rewritten. Under `Webhook` the objects
//! not yet in the desired version go to the CRD's conversion webhook in one
//! ConversionReview ([`review`]), sent through the admission webhooks' caller (TLS against
//! the caBundle, to the URL or an endpoint of the Service); a failure is kube's 500
//! `conversion webhook for <gvk> failed: …`.

pub mod review;

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use k8s_openapi::{
    api::admissionregistration::v1::WebhookClientConfig,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use serde_json::Value;

use crate::{
    admission::webhook::{self, CallError, Caller, Hook},
    model::ApiError,
    resources::ResourceInfo,
    store::{CachedObject, Store},
};

/// How long kube's webhook client waits for a conversion webhook.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a CRD's conversion webhook is and which reviews it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionWebhook {
    /// `spec.conversion.webhook.clientConfig` (the admission webhooks' shape, which is
    /// the same).
    pub client_config: WebhookClientConfig,
    /// `conversionReviewVersions`, in order of preference.
    pub review_versions: Vec<String>,
}

/// How the versions of one custom resource convert into each other.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// The CRD's name (`widgets.example.com`).
    pub crd: String,
    /// API group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// The version objects are written in.
    pub storage: String,
    /// The webhook under the `Webhook` strategy; `None` rewrites apiVersion only.
    pub webhook: Option<ConversionWebhook>,
}

impl Conversion {
    /// The conversion `crd` describes (none without a storage version).
    pub fn of(crd: &CustomResourceDefinition, kind: &str) -> Option<Self> {
        let storage = crd.spec.versions.iter().find(|v| v.storage)?.name.clone();
        let webhook = crd
            .spec
            .conversion
            .as_ref()
            .filter(|c| c.strategy == "Webhook")
            .and_then(|c| c.webhook.as_ref())
            .map(|w| ConversionWebhook {
                // The two clientConfig types have one JSON shape.
                client_config: w
                    .client_config
                    .as_ref()
                    .and_then(|c| serde_json::to_value(c).ok())
                    .and_then(|c| serde_json::from_value(c).ok())
                    .unwrap_or_default(),
                review_versions: w.conversion_review_versions.clone(),
            });
        Some(Self {
            crd: crd.metadata.name.clone().unwrap_or_default(),
            group: crd.spec.group.clone(),
            kind: kind.to_owned(),
            storage,
            webhook,
        })
    }

    /// `group/version`.
    pub fn api_version(&self, version: &str) -> String {
        format!("{}/{version}", self.group)
    }
}

/// Why objects could not be converted (kube's messages).
#[derive(Debug, thiserror::Error)]
pub enum ConversionError {
    /// The webhook could not be called, or answered a failure.
    #[error("conversion webhook for {gvk} failed: {message}")]
    Failed {
        /// `group/version, Kind=Kind` of the objects sent.
        gvk: String,
        /// What went wrong.
        message: String,
    },
    /// The webhook answered a different number of objects.
    #[error("conversion webhook for {gvk} returned {got} objects, expected {expected}")]
    Count {
        /// `group/version, Kind=Kind` of the objects sent.
        gvk: String,
        /// Objects answered.
        got: usize,
        /// Objects sent.
        expected: usize,
    },
    /// A converted object is not the object sent, in the desired version.
    #[error(
        "conversion webhook for {gvk} returned invalid converted object at index {index}: {message}"
    )]
    Invalid {
        /// `group/version, Kind=Kind` of the objects sent.
        gvk: String,
        /// Which object.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A converted object's labels or annotations are invalid.
    #[error(
        "conversion webhook for {gvk} returned invalid metadata in object at index {index}: {message}"
    )]
    Metadata {
        /// `group/version, Kind=Kind` of the objects sent.
        gvk: String,
        /// Which object.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The webhook reads no ConversionReview version kube speaks.
    #[error("no supported conversion review versions")]
    NoReviewVersion,
}

impl From<ConversionError> for ApiError {
    fn from(error: ConversionError) -> Self {
        ApiError::internal(format!("Internal error occurred: {error}"))
    }
}

fn api_version_of(object: &Value) -> &str {
    object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Converts custom objects between the versions of their resource.
pub struct Converter {
    store: Arc<Store>,
    caller: OnceLock<Arc<dyn Caller>>,
}

impl Converter {
    /// A converter calling webhooks over HTTPS (the caller is made on first use).
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            caller: OnceLock::new(),
        }
    }

    /// A converter calling webhooks through `caller` (tests use a fake).
    pub fn with_caller(store: Arc<Store>, caller: Arc<dyn Caller>) -> Self {
        let converter = Self::new(store);
        let _ = converter.caller.set(caller);
        converter
    }

    fn caller(&self) -> &Arc<dyn Caller> {
        self.caller
            .get_or_init(|| Arc::new(webhook::client::HttpsCaller::new(&self.store)))
    }

    /// `objects` as `version` of the resource `conversion` describes; objects already in
    /// that version are left as they are.
    pub async fn convert(
        &self,
        conversion: &Conversion,
        mut objects: Vec<Value>,
        version: &str,
    ) -> Result<Vec<Value>, ConversionError> {
        let desired = conversion.api_version(version);
        let pending: Vec<usize> = (0..objects.len())
            .filter(|&i| api_version_of(&objects[i]) != desired)
            .collect();
        let Some(&first) = pending.first() else {
            return Ok(objects);
        };
        let Some(hook) = &conversion.webhook else {
            for i in pending {
                if let Some(map) = objects[i].as_object_mut() {
                    map.insert("apiVersion".to_owned(), Value::String(desired.clone()));
                }
            }
            return Ok(objects);
        };
        let gvk = format!(
            "{}, Kind={}",
            api_version_of(&objects[first]),
            conversion.kind
        );
        let review_version = review::review_version(&hook.review_versions)
            .ok_or(ConversionError::NoReviewVersion)?;
        let uid = uuid::Uuid::new_v4().to_string();
        let sent: Vec<Value> = pending.iter().map(|&i| objects[i].clone()).collect();
        let request = review::request(&uid, review_version, &desired, &sent);
        let endpoint = Hook::endpoint(
            &format!("conversion_webhook_for_{}", conversion.crd),
            hook.client_config.clone(),
            WEBHOOK_TIMEOUT,
        );
        let failed = |message: String| ConversionError::Failed {
            gvk: gvk.clone(),
            message,
        };
        let answer = webhook::call(self.caller().as_ref(), &endpoint, &request)
            .await
            .map_err(|e| {
                failed(match e {
                    CallError::Failed(m) | CallError::BadResponse(m) => m,
                    CallError::Timeout { url } => {
                        format!("Post \"{url}\": context deadline exceeded")
                    }
                })
            })?;
        let converted = review::converted(&answer, &uid, review_version).map_err(failed)?;
        if converted.len() != pending.len() {
            return Err(ConversionError::Count {
                gvk,
                got: converted.len(),
                expected: pending.len(),
            });
        }
        for (index, (i, object)) in pending.into_iter().zip(converted).enumerate() {
            objects[i] =
                review::accept(&objects[i], object, &desired).map_err(|refusal| match refusal {
                    review::Refusal::Object(message) => ConversionError::Invalid {
                        gvk: gvk.clone(),
                        index,
                        message,
                    },
                    review::Refusal::Metadata(message) => ConversionError::Metadata {
                        gvk: gvk.clone(),
                        index,
                        message,
                    },
                })?;
        }
        Ok(objects)
    }

    /// `object` (as stored) in the version `resource` serves.
    pub async fn to_served(
        &self,
        resource: &ResourceInfo,
        object: Value,
    ) -> Result<Value, ConversionError> {
        let Some(conversion) = resource.strategy.conversion() else {
            return Ok(object);
        };
        let mut converted = self
            .convert(&conversion, vec![object], resource.version)
            .await?;
        Ok(converted.pop().unwrap_or_default())
    }

    /// `object` (in `resource`'s version) in the storage version.
    pub async fn to_storage(
        &self,
        resource: &ResourceInfo,
        object: Value,
    ) -> Result<Value, ConversionError> {
        let Some(conversion) = resource.strategy.conversion() else {
            return Ok(object);
        };
        let mut converted = self
            .convert(&conversion, vec![object], &conversion.storage)
            .await?;
        Ok(converted.pop().unwrap_or_default())
    }

    /// Stored objects' JSON (a list's items) in the version `resource` serves; the bytes
    /// pass through untouched when every object already is.
    pub async fn raw_to_served(
        &self,
        resource: &ResourceInfo,
        items: Vec<Bytes>,
    ) -> Result<Vec<Bytes>, ConversionError> {
        let Some(conversion) = resource.strategy.conversion() else {
            return Ok(items);
        };
        let desired = conversion.api_version(resource.version);
        // Only objects in another version are decoded again and re-encoded.
        let mut pending = Vec::new();
        let mut objects = Vec::new();
        for (i, raw) in items.iter().enumerate() {
            if let Ok(object) = serde_json::from_slice::<Value>(raw)
                && api_version_of(&object) != desired
            {
                pending.push(i);
                objects.push(object);
            }
        }
        if pending.is_empty() {
            return Ok(items);
        }
        let converted = self.convert(&conversion, objects, resource.version).await?;
        let mut items = items;
        for (i, object) in pending.into_iter().zip(converted) {
            if let Ok(raw) = serde_json::to_vec(&object) {
                items[i] = Bytes::from(raw);
            }
        }
        Ok(items)
    }

    /// A cached object (a watch event's) in the version `resource` serves.
    pub async fn cached_to_served(
        &self,
        resource: &ResourceInfo,
        object: &Arc<CachedObject>,
    ) -> Result<Arc<CachedObject>, ConversionError> {
        let Some(conversion) = resource.strategy.conversion() else {
            return Ok(Arc::clone(object));
        };
        let value = object.value();
        if api_version_of(&value) == conversion.api_version(resource.version) {
            return Ok(Arc::clone(object));
        }
        let converted = self.to_served(resource, value).await?;
        Ok(CachedObject::new(
            &converted,
            object.revision,
            resource.projection(),
        ))
    }
}

#[cfg(test)]
mod tests;
