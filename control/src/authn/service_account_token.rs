//! Issuing and verifying bound ServiceAccount tokens, as kube-apiserver's TokenRequest
//! (`pkg/registry/core/serviceaccount/storage/token.go`) and its ServiceAccount token
//! authenticator (`pkg/serviceaccount/jwt.go`, `claims.go`) do.
//!
//! Verification is in two steps: [`TokenIssuer::verify`] checks the signature, issuer,
//! audiences and validity period and gives an [`UncheckedToken`]; its
//! [`UncheckedToken::check`] then checks that the ServiceAccount and the bound object
//! still exist, and only then yields the user.
//!
//! Where Skiff differs from kube's defaults:
//! - the longest token is 48 h (`--service-account-max-token-expiration` is unlimited by
//!   default in kube): longer requests are shortened, with kube's warning;
//! - the extension of 3607 s projected tokens to a year is off unless asked for
//!   ([`TokenIssuer::with_extended_expiration`]); Skiff's agent refreshes tokens itself;
//! - a token without `exp` is refused (only legacy Secret-based tokens lack it, and Skiff
//!   issues none).

use jiff::Timestamp;

use super::{
    binding::{Binding, BindingError, BoundObjects},
    claims::Claims,
    jwt::{self, JwtError},
    signing_key::{PublicKey, SigningKey, VerificationKeys},
};
use crate::model::{
    user::{SERVICE_ACCOUNT_PREFIX, SERVICE_ACCOUNTS, UserInfo},
    validation::FieldError,
};

/// Expiry of a TokenRequest that names none (kube's API default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest token kube's validation allows.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest expiry kube's validation accepts at all (2^32 s).
pub const MAX_EXPIRATION_SECONDS_ACCEPTED: i64 = 1 << 32;
/// Skiff's default `--service-account-max-token-expiration`: 48 h.
pub const DEFAULT_MAX_TOKEN_EXPIRATION_SECONDS: i64 = 48 * 3600;
/// The expiry kubelet asks for projected tokens, which kube may extend
/// (`WarnOnlyBoundTokenExpirationSeconds`).
pub const WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS: i64 = 3600 + 7;
/// How long an extended projected token lives (`ExpirationExtensionSeconds`, a year).
pub const EXPIRATION_EXTENSION_SECONDS: i64 = 24 * 365 * 3600;
/// Clock skew tolerated on `exp`, `nbf` and `iat` (go-jose's `DefaultLeeway`).
pub const LEEWAY_SECONDS: i64 = 60;

/// `user.extra` key of a bound pod's name.
pub const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
/// `user.extra` key of a bound pod's UID.
pub const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";
/// `user.extra` key of the node's name.
pub const NODE_NAME_KEY: &str = "authentication.kubernetes.io/node-name";
/// `user.extra` key of the node's UID.
pub const NODE_UID_KEY: &str = "authentication.kubernetes.io/node-uid";
/// `user.extra` key of the token's credential id (`JTI=<jti>`).
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";
/// Audit annotation kube adds to a TokenRequest with the issued credential id.
pub const ISSUED_CREDENTIAL_ID_ANNOTATION: &str =
    "authentication.kubernetes.io/issued-credential-id";

/// A TokenRequest, after the lead looked up the ServiceAccount and the bound object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundTokenRequest {
    /// The ServiceAccount and what the token is bound to.
    pub binding: Binding,
    /// `spec.audiences`; empty means the API server's audiences.
    pub audiences: Vec<String>,
    /// `spec.expirationSeconds`; `None` means [`DEFAULT_EXPIRATION_SECONDS`].
    pub expiration_seconds: Option<i64>,
}

/// An issued token and what the TokenRequest answer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// `status.token`.
    pub token: String,
    /// `status.expirationTimestamp`.
    pub expiration_timestamp: Timestamp,
    /// `spec.audiences` as defaulted.
    pub audiences: Vec<String>,
    /// `spec.expirationSeconds` as defaulted and capped.
    pub expiration_seconds: i64,
    /// `JTI=<jti>`: the audit annotation [`ISSUED_CREDENTIAL_ID_ANNOTATION`].
    pub credential_id: String,
    /// Warnings for the response (`Warning:` headers).
    pub warnings: Vec<String>,
}

/// Why a token could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// The request is invalid: answer 422 as `TokenRequest.authentication.k8s.io "" is
    /// invalid: …` (`ApiError::invalid("authentication.k8s.io", "TokenRequest", "", …)`).
    #[error("TokenRequest is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Invalid(Vec<FieldError>),
    /// The expiry is past what a timestamp holds.
    #[error("token expiration out of range")]
    OutOfRange,
    /// Signing failed.
    #[error("failed to generate token: {0}")]
    Sign(#[from] JwtError),
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT of this issuer at all: let the next authenticator try it (kube's
    /// authenticator answers "not mine" rather than an error).
    #[error("not a service account token of this issuer")]
    NotServiceAccountToken,
    /// Bad signature, algorithm or encoding.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// The claims are malformed or incomplete.
    #[error("service account token claims could not be validated: {detail}")]
    InvalidClaims {
        /// What is wrong.
        detail: String,
    },
    /// Not issued by an accepted issuer.
    #[error("token issuer {issuer:?} is invalid")]
    InvalidIssuer {
        /// The token's `iss`.
        issuer: String,
    },
    /// No audience in common with the audiences wanted.
    #[error("token audiences {} is invalid for the target audiences {}", go_quoted(.token), go_quoted(.target))]
    InvalidAudience {
        /// The token's audiences.
        token: Vec<String>,
        /// The audiences wanted.
        target: Vec<String>,
    },
    /// `exp` passed (more than the leeway ago).
    #[error("service account token has expired")]
    Expired,
    /// `nbf` not reached (by more than the leeway).
    #[error("service account token is not valid yet")]
    NotValidYet,
    /// `iat` in the future (by more than the leeway).
    #[error("service account token is issued in the future")]
    IssuedInTheFuture,
    /// The ServiceAccount or the bound object is gone.
    #[error(transparent)]
    Binding(#[from] BindingError),
}

/// Signs ServiceAccount tokens and verifies them (kube's token generator and
/// authenticator, configured as `--service-account-issuer`, `--api-audiences`,
/// `--service-account-signing-key-file`, `--service-account-key-file` and
/// `--service-account-max-token-expiration`).
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    key: SigningKey,
    issuer: String,
    accepted_issuers: Vec<String>,
    api_audiences: Vec<String>,
    keys: VerificationKeys,
    max_expiration_seconds: Option<i64>,
    extend_expiration: bool,
}

impl TokenIssuer {
    /// An issuer signing with `key` as `issuer`. `api_audiences` are the audiences the
    /// API server accepts; empty means `[issuer]` (kube's default for `--api-audiences`).
    pub fn new(key: SigningKey, issuer: impl Into<String>, api_audiences: Vec<String>) -> Self {
        let issuer = issuer.into();
        let api_audiences = if api_audiences.is_empty() {
            vec![issuer.clone()]
        } else {
            api_audiences
        };
        let keys = VerificationKeys::new(&key, []);
        Self {
            key,
            accepted_issuers: vec![issuer.clone()],
            issuer,
            api_audiences,
            keys,
            max_expiration_seconds: Some(DEFAULT_MAX_TOKEN_EXPIRATION_SECONDS),
            extend_expiration: false,
        }
    }

    /// Also verifies tokens signed by `keys` (keys being rotated out).
    #[must_use]
    pub fn with_verification_keys(mut self, keys: Vec<PublicKey>) -> Self {
        self.keys = VerificationKeys::new(&self.key, keys);
        self
    }

    /// Also accepts tokens of these issuers (kube's repeated `--service-account-issuer`:
    /// the first signs, all are accepted).
    #[must_use]
    pub fn with_accepted_issuers(mut self, issuers: Vec<String>) -> Self {
        for issuer in issuers {
            if !self.accepted_issuers.contains(&issuer) {
                self.accepted_issuers.push(issuer);
            }
        }
        self
    }

    /// The longest token issued (`None`: unlimited, kube's default).
    #[must_use]
    pub fn with_max_expiration_seconds(mut self, max: Option<i64>) -> Self {
        self.max_expiration_seconds = max.filter(|m| *m > 0);
        self
    }

    /// kube's `--service-account-extend-token-expiration`: pod-bound tokens asked for
    /// 3607 s with API audiences live a year (or the maximum expiry, if shorter) and
    /// carry `warnafter` at 3607 s.
    #[must_use]
    pub fn with_extended_expiration(mut self, extend: bool) -> Self {
        self.extend_expiration = extend;
        self
    }

    /// The issuer written into tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The API server's audiences.
    pub fn api_audiences(&self) -> &[String] {
        &self.api_audiences
    }

    /// The keys tokens are verified with (for the JWKS).
    pub fn verification_keys(&self) -> &VerificationKeys {
        &self.keys
    }

    /// Issues a token for `request` at `now`.
    pub fn issue(
        &self,
        request: &BoundTokenRequest,
        now: Timestamp,
    ) -> Result<IssuedToken, IssueError> {
        let audiences = if request.audiences.is_empty() {
            self.api_audiences.clone()
        } else {
            request.audiences.clone()
        };
        let mut expiration_seconds = request
            .expiration_seconds
            .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
        let errors = validate_expiration_seconds(expiration_seconds);
        if !errors.is_empty() {
            return Err(IssueError::Invalid(errors));
        }
        let mut warnings = Vec::new();
        if let Some(max) = self.max_expiration_seconds
            && expiration_seconds > max
        {
            warnings.push(format!(
                "requested expiration of {expiration_seconds} seconds shortened to {max} seconds"
            ));
            expiration_seconds = max;
        }
        let mut token_seconds = expiration_seconds;
        let mut warn_after = None;
        let now_seconds = now.as_second();
        if self.extend_expiration
            && request.binding.pod().is_some()
            && expiration_seconds == WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS
            && audiences.iter().all(|a| self.api_audiences.contains(a))
        {
            warn_after = Some(
                now_seconds
                    .checked_add(expiration_seconds)
                    .ok_or(IssueError::OutOfRange)?,
            );
            token_seconds = self
                .max_expiration_seconds
                .map_or(EXPIRATION_EXTENSION_SECONDS, |max| {
                    max.min(EXPIRATION_EXTENSION_SECONDS)
                });
        }
        let expires_at = now_seconds
            .checked_add(expiration_seconds)
            .ok_or(IssueError::OutOfRange)?;
        let expiration_timestamp =
            Timestamp::from_second(expires_at).map_err(|_| IssueError::OutOfRange)?;
        let binding = &request.binding;
        let jti = uuid::Uuid::new_v4().to_string();
        let claims = Claims {
            aud: audiences.clone(),
            exp: Some(
                now_seconds
                    .checked_add(token_seconds)
                    .ok_or(IssueError::OutOfRange)?,
            ),
            iat: Some(now_seconds),
            iss: self.issuer.clone(),
            jti: jti.clone(),
            kubernetes: Some(binding.to_claims(warn_after)),
            nbf: Some(now_seconds),
            sub: service_account_user_name(&binding.namespace, &binding.service_account.name),
        };
        let token = jwt::encode(&self.key, &claims)?;
        Ok(IssuedToken {
            token,
            expiration_timestamp,
            audiences,
            expiration_seconds,
            credential_id: credential_id(&jti),
            warnings,
        })
    }

    /// Verifies `token` for the API server's audiences at `now`.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<UncheckedToken, TokenError> {
        self.verify_for_audiences(token, &self.api_audiences, now)
    }

    /// Verifies `token` for `target` audiences (a TokenReview's `spec.audiences`) at
    /// `now`: signature, issuer, audiences, validity period (with 60 s leeway) and the
    /// shape of the claims. The binding is checked next, by [`UncheckedToken::check`].
    pub fn verify_for_audiences(
        &self,
        token: &str,
        target: &[String],
        now: Timestamp,
    ) -> Result<UncheckedToken, TokenError> {
        if !self.is_ours(token) {
            return Err(TokenError::NotServiceAccountToken);
        }
        let verified = jwt::verify(token, &self.keys)?;
        let claims =
            Claims::from_json(&verified.payload).map_err(|e| TokenError::InvalidClaims {
                detail: e.to_string(),
            })?;
        if !self.accepted_issuers.contains(&claims.iss) {
            return Err(TokenError::InvalidIssuer { issuer: claims.iss });
        }
        let token_audiences = if claims.aud.is_empty() {
            self.api_audiences.clone()
        } else {
            claims.aud.clone()
        };
        let audiences: Vec<String> = token_audiences
            .iter()
            .filter(|a| target.contains(a))
            .cloned()
            .collect();
        if audiences.is_empty() {
            return Err(TokenError::InvalidAudience {
                token: token_audiences,
                target: target.to_vec(),
            });
        }
        check_times(&claims, now)?;
        let invalid = |detail: &str| TokenError::InvalidClaims {
            detail: detail.to_owned(),
        };
        let expiration = claims
            .exp
            .and_then(|exp| Timestamp::from_second(exp).ok())
            .ok_or_else(|| invalid("exp is missing or out of range"))?;
        let private = claims
            .kubernetes
            .as_ref()
            .ok_or_else(|| invalid("the kubernetes.io claim is missing"))?;
        let binding = Binding::from_claims(private)
            .ok_or_else(|| invalid("the kubernetes.io claim is incomplete or ambiguous"))?;
        if claims.sub
            != service_account_user_name(&binding.namespace, &binding.service_account.name)
        {
            return Err(invalid(
                "sub does not name the kubernetes.io service account",
            ));
        }
        Ok(UncheckedToken {
            binding,
            audiences,
            credential_id: credential_id(&claims.jti),
            expiration,
            warn_after: private
                .warnafter
                .and_then(|at| Timestamp::from_second(at).ok()),
            key_id: verified.key_id,
        })
    }

    /// kube's `hasCorrectIssuer`: a compact JWS whose (unverified) `iss` is accepted here.
    fn is_ours(&self, token: &str) -> bool {
        #[derive(serde::Deserialize)]
        struct Issuer {
            #[serde(default)]
            iss: String,
        }
        if token.trim_start().starts_with('{') {
            return false;
        }
        jwt::unverified_payload(token)
            .ok()
            .and_then(|payload| serde_json::from_slice::<Issuer>(&payload).ok())
            .is_some_and(|claims| self.accepted_issuers.contains(&claims.iss))
    }
}

/// A token with a valid signature, issuer, audience and validity period, whose binding
/// is not checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncheckedToken {
    binding: Binding,
    audiences: Vec<String>,
    credential_id: String,
    expiration: Timestamp,
    warn_after: Option<Timestamp>,
    key_id: String,
}

impl UncheckedToken {
    /// What the token is bound to: what [`Self::check`] looks up.
    pub fn binding(&self) -> &Binding {
        &self.binding
    }

    /// Checks the binding (see [`Binding::check`]) and gives the authenticated token.
    pub fn check(
        self,
        objects: &impl BoundObjects,
        now: Timestamp,
    ) -> Result<VerifiedToken, TokenError> {
        self.binding.check(objects, now)?;
        Ok(VerifiedToken {
            user: user_info(&self.binding, &self.credential_id),
            audiences: self.audiences,
            binding: self.binding,
            credential_id: self.credential_id,
            expiration: self.expiration,
            warn_after: self.warn_after,
            key_id: self.key_id,
        })
    }
}

/// An authenticated ServiceAccount token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The user it authenticates.
    pub user: UserInfo,
    /// The token's audiences among those wanted (a TokenReview's `status.audiences`).
    pub audiences: Vec<String>,
    /// What it is bound to.
    pub binding: Binding,
    /// `JTI=<jti>`, or empty for a token without `jti`.
    pub credential_id: String,
    /// Its `exp`.
    pub expiration: Timestamp,
    /// Its `warnafter`: past it, kube annotates the audit event
    /// `authentication.k8s.io/stale-token`.
    pub warn_after: Option<Timestamp>,
    /// Id of the key that verified it.
    pub key_id: String,
}

/// kube's TokenRequest validation of `spec.expirationSeconds`.
pub fn validate_expiration_seconds(seconds: i64) -> Vec<FieldError> {
    const FIELD: &str = "spec.expirationSeconds";
    let mut errors = Vec::new();
    if seconds < MIN_EXPIRATION_SECONDS {
        errors.push(FieldError::invalid(
            FIELD,
            seconds,
            "may not specify a duration less than 10 minutes",
        ));
    }
    if seconds > MAX_EXPIRATION_SECONDS_ACCEPTED {
        errors.push(FieldError::invalid(
            FIELD,
            seconds,
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    errors
}

/// `system:serviceaccount:<namespace>:<name>`.
pub fn service_account_user_name(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}")
}

/// kube's `CredentialIDForJTI`: `JTI=<jti>`, or empty.
fn credential_id(jti: &str) -> String {
    if jti.is_empty() {
        String::new()
    } else {
        format!("JTI={jti}")
    }
}

/// kube's `ServiceAccountInfo.UserInfo()` plus `system:authenticated`.
fn user_info(binding: &Binding, credential_id: &str) -> UserInfo {
    let groups = vec![
        SERVICE_ACCOUNTS.to_owned(),
        format!("{SERVICE_ACCOUNTS}:{}", binding.namespace),
    ];
    let mut user = UserInfo::authenticated(
        service_account_user_name(&binding.namespace, &binding.service_account.name),
        groups,
    );
    user.uid = binding.service_account.uid.clone();
    if let Some(pod) = binding.pod()
        && !pod.name.is_empty()
        && !pod.uid.is_empty()
    {
        user.extra
            .insert(POD_NAME_KEY.into(), vec![pod.name.clone()]);
        user.extra.insert(POD_UID_KEY.into(), vec![pod.uid.clone()]);
    }
    if !credential_id.is_empty() {
        user.extra
            .insert(CREDENTIAL_ID_KEY.into(), vec![credential_id.to_owned()]);
    }
    if let Some(node) = binding.node()
        && !node.name.is_empty()
    {
        user.extra
            .insert(NODE_NAME_KEY.into(), vec![node.name.clone()]);
        if !node.uid.is_empty() {
            user.extra
                .insert(NODE_UID_KEY.into(), vec![node.uid.clone()]);
        }
    }
    user
}

/// go-jose's `ValidateWithLeeway` on `nbf`, `exp` and `iat`, in that order; `exp` is
/// required.
fn check_times(claims: &Claims, now: Timestamp) -> Result<(), TokenError> {
    let now = now.as_nanosecond();
    let leeway = i128::from(LEEWAY_SECONDS) * NANOS;
    let at = |seconds: i64| i128::from(seconds) * NANOS;
    if let Some(nbf) = claims.nbf
        && now + leeway < at(nbf)
    {
        return Err(TokenError::NotValidYet);
    }
    let Some(exp) = claims.exp else {
        return Err(TokenError::InvalidClaims {
            detail: "exp is missing".to_owned(),
        });
    };
    if now - leeway > at(exp) {
        return Err(TokenError::Expired);
    }
    if let Some(iat) = claims.iat
        && now + leeway < at(iat)
    {
        return Err(TokenError::IssuedInTheFuture);
    }
    Ok(())
}

/// Nanoseconds per second.
const NANOS: i128 = 1_000_000_000;

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

#[cfg(test)]
mod tests;
