//! Review kinds (authentication.k8s.io, authorization.k8s.io): created, answered, never
//! stored — the answer is computed by the API server (`api/rest/reviews.rs`).

use k8s_openapi::api::{
    authentication::v1::{SelfSubjectReview, TokenReview},
    authorization::v1::{
        LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview,
        SubjectAccessReview,
    },
};

use crate::resources::strategy::Kind;

impl Kind for TokenReview {}
impl Kind for SelfSubjectReview {}
impl Kind for LocalSubjectAccessReview {}
impl Kind for SelfSubjectAccessReview {}
impl Kind for SelfSubjectRulesReview {}
impl Kind for SubjectAccessReview {}
