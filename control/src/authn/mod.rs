//! Authentication of ServiceAccount tokens, without I/O: the ES256 signing key and the
//! keys tokens are verified with, compact JWS, kube's claims, issuing and verifying bound
//! tokens (the TokenRequest and the token authenticator), and the OIDC discovery
//! documents.
//!
//! Followed from kube: `pkg/serviceaccount/{jwt,claims,openidmetadata}.go`,
//! `pkg/registry/core/serviceaccount/storage/token.go`,
//! `pkg/apis/authentication/validation`, `k8s.io/apiserver/pkg/authentication/serviceaccount`.

pub mod binding;
pub mod cached_objects;
pub mod claims;
pub mod discovery;
pub mod jwt;
pub mod service_account_token;
pub mod service_accounts;
pub mod signing_key;

pub use binding::{Binding, BindingError, BoundObject, BoundObjects, LiveObject, ObjectRef};
pub use cached_objects::CachedObjects;
pub use discovery::OpenIdMetadata;
pub use service_account_token::{
    BoundTokenRequest, IssueError, IssuedToken, TokenError, TokenIssuer, UncheckedToken,
    VerifiedToken,
};
pub use service_accounts::ServiceAccountTokens;
pub use signing_key::{KeyError, PublicKey, SigningKey, VerificationKeys};
