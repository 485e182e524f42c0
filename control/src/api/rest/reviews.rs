//! The review kinds, answered and never stored: SelfSubjectAccessReview,
//! SubjectAccessReview and LocalSubjectAccessReview (`kubectl auth can-i`),
//! SelfSubjectRulesReview (`kubectl auth can-i --list`), SelfSubjectReview (`kubectl auth
//! whoami`) and TokenReview. Each asks the same authorizers and authenticators every
//! request passes.

use std::collections::BTreeMap;

use axum::{http::StatusCode, response::Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::Ctx;
use crate::{
    api::{body, response},
    authz::{Attributes, Decision},
    model::{ApiError, user::UserInfo},
};

/// POST of a review: the review with its status.
pub async fn create(ctx: &Ctx<'_>, raw: &Bytes) -> Result<Response, ApiError> {
    let review = body::decode_object(ctx.headers, raw)?;
    let review = super::check_type(ctx.info(), review)?;
    let status = match ctx.info().kind {
        "SelfSubjectAccessReview" => access_review(ctx, &review, ctx.user.clone())?,
        "LocalSubjectAccessReview" | "SubjectAccessReview" => {
            let spec = review.get("spec").cloned().unwrap_or(json!({}));
            access_review(ctx, &review, subject(&spec))?
        }
        "SelfSubjectRulesReview" => rules_review(ctx, &review),
        "SelfSubjectReview" => json!({"userInfo": user_info(ctx.user)}),
        "TokenReview" => token_review(ctx, &review),
        other => return Err(ApiError::method_not_allowed("create", other)),
    };
    let mut answer = review;
    answer["status"] = status;
    let metadata = answer
        .as_object_mut()
        .map(|map| map.entry("metadata").or_insert_with(|| json!({})));
    if let Some(metadata) = metadata {
        if !metadata.is_object() {
            *metadata = json!({});
        }
        metadata["creationTimestamp"] = Value::Null;
    }
    Ok(response::json(StatusCode::CREATED, &answer))
}

/// The user a SubjectAccessReview names.
fn subject(spec: &Value) -> UserInfo {
    let strings = |field: &str| -> Vec<String> {
        spec.get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let extra: BTreeMap<String, Vec<String>> = spec
        .get("extra")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let values = v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            (k.clone(), values)
        })
        .collect();
    UserInfo {
        name: spec
            .get("user")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        uid: spec
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        groups: strings("groups"),
        extra,
    }
}

fn user_info(user: &UserInfo) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

/// Allowed, denied and why, for `user` doing what the review's spec describes.
fn access_review(ctx: &Ctx<'_>, review: &Value, user: UserInfo) -> Result<Value, ApiError> {
    let spec = review.get("spec").cloned().unwrap_or(json!({}));
    let text = |value: Option<&Value>, field: &str| {
        value
            .and_then(|v| v.get(field))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let resource = spec.get("resourceAttributes");
    let non_resource = spec.get("nonResourceAttributes");
    let attributes = match (resource, non_resource) {
        (Some(r), None) => {
            let namespace = text(Some(r), "namespace");
            if ctx.info().kind == "LocalSubjectAccessReview" && namespace != ctx.namespace() {
                return Err(ApiError::bad_request(format!(
                    "spec.resourceAttributes.namespace must match namespace: {}",
                    ctx.namespace()
                )));
            }
            Attributes {
                user,
                verb: text(Some(r), "verb"),
                resource_request: true,
                namespace,
                api_group: text(Some(r), "group"),
                api_version: text(Some(r), "version"),
                resource: text(Some(r), "resource"),
                subresource: text(Some(r), "subresource"),
                name: text(Some(r), "name"),
                ..Attributes::default()
            }
        }
        (None, Some(n)) => Attributes {
            user,
            verb: text(Some(n), "verb"),
            path: text(Some(n), "path"),
            ..Attributes::default()
        },
        _ => {
            return Err(ApiError::invalid(
                "authorization.k8s.io",
                ctx.info().kind,
                "",
                &[crate::model::validation::FieldError::invalid(
                    "spec.resourceAttributes",
                    "",
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )],
            ));
        }
    };
    Ok(match ctx.state.authorizer.authorize(&attributes) {
        Decision::Allow(reason) => json!({"allowed": true, "reason": reason}),
        Decision::Deny(reason) => json!({"allowed": false, "denied": true, "reason": reason}),
        Decision::NoOpinion(reason) => json!({"allowed": false, "reason": reason}),
    })
}

/// The rules the requester holds in the review's namespace (RBAC's, as kube answers them).
fn rules_review(ctx: &Ctx<'_>, review: &Value) -> Value {
    let namespace = review
        .pointer("/spec/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match &ctx.state.rbac {
        Some(rbac) => {
            let status = rbac.policy().rules_review(ctx.user, namespace);
            serde_json::to_value(status).unwrap_or_else(|_| json!({"incomplete": true}))
        }
        None => json!({"resourceRules": [], "nonResourceRules": [], "incomplete": true,
                       "evaluationError": "RBAC is not enabled on this server"}),
    }
}

/// Whether the review's token authenticates, and as whom.
fn token_review(ctx: &Ctx<'_>, review: &Value) -> Value {
    let token = review
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let audiences: Vec<String> = review
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    if let Some(user) = ctx.state.tokens.authenticate(&format!("Bearer {token}")) {
        return json!({"authenticated": true, "user": user_info(&user)});
    }
    let Some(service_accounts) = &ctx.state.service_accounts else {
        return json!({"authenticated": false, "error": "invalid bearer token"});
    };
    let now = jiff::Timestamp::now();
    let target = if audiences.is_empty() {
        service_accounts.issuer.api_audiences().to_vec()
    } else {
        audiences
    };
    match service_accounts
        .issuer
        .verify_for_audiences(token, &target, now)
        .and_then(|unchecked| unchecked.check(&service_accounts.objects, now))
    {
        Ok(verified) => json!({
            "authenticated": true,
            "user": user_info(&verified.user),
            "audiences": verified.audiences,
        }),
        Err(e) => json!({"authenticated": false, "error": e.to_string()}),
    }
}
