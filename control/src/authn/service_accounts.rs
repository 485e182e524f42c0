//! The API server's ServiceAccount token machinery in one value: the issuer (signing key,
//! issuer URL, audiences), the watch caches binding checks read, and the OIDC discovery
//! documents.

use std::sync::Arc;

use jiff::Timestamp;

use super::{CachedObjects, OpenIdMetadata, TokenError, TokenIssuer, VerifiedToken};
use crate::store::Store;

/// Issues and authenticates ServiceAccount tokens.
pub struct ServiceAccountTokens {
    /// The issuer.
    pub issuer: TokenIssuer,
    /// Where bound objects are looked up.
    pub objects: CachedObjects,
    /// `/.well-known/openid-configuration` and `/openid/v1/jwks` (None if the issuer is
    /// not an https URL, as kube then does not serve them).
    pub metadata: Option<OpenIdMetadata>,
}

impl ServiceAccountTokens {
    /// The machinery over `store`'s caches, serving discovery for `external_address`
    /// (`host:port` of the API server) when the issuer allows.
    pub fn new(issuer: TokenIssuer, store: &Arc<Store>, external_address: Option<&str>) -> Self {
        let metadata = OpenIdMetadata::new(
            issuer.issuer(),
            None,
            external_address,
            issuer.verification_keys(),
        )
        .ok();
        Self {
            objects: CachedObjects::new(store),
            issuer,
            metadata,
        }
    }

    /// Authenticate a bearer token as a ServiceAccount: `Ok(None)` if it is not one of
    /// this issuer's tokens (another authenticator may know it), Err if it is one and is
    /// invalid (expired, tampered, bound to a deleted pod…).
    pub fn authenticate(&self, token: &str) -> Result<Option<VerifiedToken>, TokenError> {
        let now = Timestamp::now();
        match self.issuer.verify(token, now) {
            Err(TokenError::NotServiceAccountToken) => Ok(None),
            Err(e) => Err(e),
            Ok(unchecked) => unchecked.check(&self.objects, now).map(Some),
        }
    }
}
