//! What a registry operation can fail with, and the one place those failures become the
//! `metav1.Status` a client sees.

use thiserror::Error;

use crate::{model::ApiError, resources::ResourceInfo, store::StoreError};

/// A failed registry operation on one object.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// The object does not exist.
    #[error("{resource:?} {name:?} not found")]
    NotFound {
        /// The resource.
        resource: &'static ResourceInfo,
        /// The object's name.
        name: String,
    },
    /// A create found the object already present.
    #[error("{resource:?} {name:?} already exists")]
    AlreadyExists {
        /// The resource.
        resource: &'static ResourceInfo,
        /// The object's name.
        name: String,
    },
    /// The object changed since the client read it (a stale resourceVersion, or races
    /// lost on every attempt).
    #[error("{resource:?} {name:?} has been modified")]
    Modified {
        /// The resource.
        resource: &'static ResourceInfo,
        /// The object's name.
        name: String,
    },
    /// The client's resourceVersion precondition is not the stored one (409, and no retry:
    /// reading again cannot help).
    #[error("{resource:?} {name:?} has been modified since the client read it")]
    Stale {
        /// The resource.
        resource: &'static ResourceInfo,
        /// The object's name.
        name: String,
    },
    /// A precondition of the request does not hold (UID, resourceVersion, binding).
    #[error("{resource:?} {name:?}: {message}")]
    Precondition {
        /// The resource.
        resource: &'static ResourceInfo,
        /// The object's name.
        name: String,
        /// Why, in kube's words.
        message: String,
    },
    /// The store failed.
    #[error("{resource:?} {name:?}: {source}")]
    Storage {
        /// The resource.
        resource: &'static ResourceInfo,
        /// The object's name.
        name: String,
        /// What failed.
        source: StoreError,
    },
    /// Refused with a status of its own: a malformed body, a validation failure, an
    /// admission plugin's verdict.
    #[error("{0}")]
    Rejected(Box<ApiError>),
}

impl RegistryError {
    /// The error for a failed store operation on `name`.
    pub fn storage(resource: &'static ResourceInfo, name: &str, source: StoreError) -> Self {
        let name = name.to_owned();
        match source {
            StoreError::NotFound => Self::NotFound { resource, name },
            StoreError::AlreadyExists => Self::AlreadyExists { resource, name },
            StoreError::Conflict => Self::Modified { resource, name },
            source => Self::Storage {
                resource,
                name,
                source,
            },
        }
    }

    /// True if retrying with a fresh read may succeed (a lost compare-and-swap race).
    pub fn is_lost_race(&self) -> bool {
        matches!(self, Self::Modified { .. })
    }

    /// The status a client sees (kube-apiserver's wording).
    pub fn to_api_error(&self) -> ApiError {
        match self {
            Self::NotFound { resource, name } => {
                ApiError::not_found(resource.group, resource.plural, name)
            }
            Self::AlreadyExists { resource, name } => {
                ApiError::already_exists(resource.group, resource.plural, name)
            }
            Self::Modified { resource, name } | Self::Stale { resource, name } => {
                ApiError::modified(resource.group, resource.plural, name)
            }
            Self::Precondition {
                resource,
                name,
                message,
            } => ApiError::conflict(resource.group, resource.plural, name, message),
            Self::Storage {
                resource,
                name,
                source,
            } => match source {
                StoreError::Claimed { claim, holder } => ApiError::conflict(
                    resource.group,
                    resource.plural,
                    name,
                    &format!("{claim} is already held by {holder}"),
                ),
                StoreError::Compacted { .. } => ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start \
                     a new list without the continue parameter.",
                ),
                StoreError::Corrupt { key, reason } => {
                    ApiError::internal(format!("stored object {key} is corrupt: {reason}"))
                }
                StoreError::Unavailable(e) => {
                    ApiError::unavailable(format!("etcd is unavailable: {e}"))
                }
                StoreError::Timeout => ApiError::unavailable(StoreError::Timeout.to_string()),
                other => ApiError::internal(other.to_string()),
            },
            Self::Rejected(error) => (**error).clone(),
        }
    }
}

impl From<ApiError> for RegistryError {
    fn from(error: ApiError) -> Self {
        Self::Rejected(Box::new(error))
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Rejected(error) => *error,
            other => other.to_api_error(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_outcomes_become_kube_statuses() {
        let pods = crate::resources::find("", "v1", "pods").expect("pods");
        let missing = ApiError::from(RegistryError::storage(pods, "web", StoreError::NotFound));
        assert_eq!((missing.code, missing.reason), (404, "NotFound"));
        assert_eq!(missing.message, "pods \"web\" not found");
        let stale = ApiError::from(RegistryError::storage(pods, "web", StoreError::Conflict));
        assert_eq!((stale.code, stale.reason), (409, "Conflict"));
        assert!(stale.message.contains("the object has been modified"));
        let down = ApiError::from(RegistryError::storage(pods, "web", StoreError::Timeout));
        assert_eq!(down.code, 503);
    }
}
