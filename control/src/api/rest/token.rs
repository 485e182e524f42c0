//! `serviceaccounts/{name}/token` (TokenRequest): a bound token for a ServiceAccount,
//! optionally bound to a pod, secret or node of the same namespace, as kube-apiserver's
//! token REST storage issues them (`kubectl create token`, and every node's agent for its
//! pods' projected volumes).

use axum::{http::StatusCode, response::Response};
use bytes::Bytes;
use k8s_openapi::api::authentication::v1::TokenRequest;
use serde_json::{Value, json};

use super::Ctx;
use crate::{
    admission::Operation,
    api::{body, response},
    authn::{Binding, BoundObject, BoundTokenRequest, IssueError, ObjectRef},
    model::{ApiError, meta},
    store::object_key,
};

/// The stored object at `key` (404 as kube words it for `plural`).
async fn stored(
    ctx: &Ctx<'_>,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Result<Value, ApiError> {
    ctx.state
        .store
        .get(&object_key("", plural, namespace, name))
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => ApiError::not_found("", plural, name),
            other => ApiError::unavailable(other.to_string()),
        })
}

/// POST serviceaccounts/{name}/token.
pub async fn create(ctx: &Ctx<'_>, name: &str, raw: &Bytes) -> Result<Response, ApiError> {
    let Some(tokens) = ctx.state.service_accounts.as_ref() else {
        return Err(ApiError::not_found("", "serviceaccounts/token", name));
    };
    let body = body::decode_object(ctx.headers, raw)?;
    let request: TokenRequest = serde_json::from_value(body.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: {e}"
        ))
    })?;
    let namespace = ctx.namespace().to_owned();
    let account = ctx.load(name).await?;
    let mut binding = Binding {
        namespace: namespace.clone(),
        service_account: ObjectRef::new(name, meta::meta_str(&account, "uid")),
        bound: None,
    };
    let bad = |message: String| ApiError::bad_request(message);
    if let Some(bound) = &request.spec.bound_object_ref {
        let bound_name = bound.name.clone().unwrap_or_default();
        let kind = bound.kind.clone().unwrap_or_default();
        let (plural, expected_version) = match kind.as_str() {
            "Pod" => ("pods", "v1"),
            "Secret" => ("secrets", "v1"),
            "Node" => ("nodes", "v1"),
            other => {
                return Err(bad(format!(
                    "cannot bind token object of kind {other:?}: only Pod, Secret and Node are supported"
                )));
            }
        };
        if bound
            .api_version
            .as_deref()
            .is_some_and(|v| v != expected_version)
        {
            return Err(bad(format!(
                "cannot bind token object of apiVersion {:?}",
                bound.api_version.as_deref().unwrap_or_default()
            )));
        }
        let object_ns = if kind == "Node" {
            ""
        } else {
            namespace.as_str()
        };
        let object = stored(ctx, plural, object_ns, &bound_name).await?;
        let uid = meta::meta_str(&object, "uid").to_owned();
        if let Some(wanted) = bound.uid.as_deref().filter(|u| !u.is_empty())
            && wanted != uid
        {
            return Err(ApiError::conflict(
                "",
                plural,
                &bound_name,
                &format!(
                    "the UID in the bound object reference ({wanted}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        let reference = ObjectRef::new(&bound_name, &uid);
        binding.bound = Some(match kind.as_str() {
            "Pod" => {
                let pod_account = meta::field_value(&object, "spec.serviceAccountName");
                if !pod_account.is_empty() && pod_account != name {
                    return Err(bad(format!(
                        "cannot bind token for serviceaccount \"{name}\" to pod running with different serviceaccount name."
                    )));
                }
                let node_name = meta::field_value(&object, "spec.nodeName");
                let node = if node_name.is_empty() {
                    None
                } else {
                    let node_uid = stored(ctx, "nodes", "", &node_name)
                        .await
                        .map(|n| meta::meta_str(&n, "uid").to_owned())
                        .unwrap_or_default();
                    Some(ObjectRef::new(&node_name, &node_uid))
                };
                BoundObject::Pod {
                    pod: reference,
                    node,
                }
            }
            "Secret" => BoundObject::Secret(reference),
            _ => BoundObject::Node(reference),
        });
    }
    // Admission (NodeRestriction: a node asks only for its own pods' tokens).
    let mut request_object = body;
    let registry_request = ctx.request()?;
    let attributes = crate::admission::Attributes {
        operation: Operation::Create,
        resource: ctx.info(),
        subresource: "token",
        namespace: &namespace,
        name,
        user: ctx.user,
        dry_run: registry_request.dry_run,
    };
    let mut warnings = Vec::new();
    let chain = ctx.registry().admission();
    chain
        .admit(&attributes, &mut request_object, None, &mut warnings)
        .await?;
    chain
        .validate(&attributes, &request_object, None, &mut warnings)
        .await?;
    let issued = tokens
        .issuer
        .issue(
            &BoundTokenRequest {
                binding,
                audiences: request.spec.audiences.clone(),
                expiration_seconds: request.spec.expiration_seconds,
            },
            jiff::Timestamp::now(),
        )
        .map_err(|e| match e {
            IssueError::Invalid(errors) => {
                ApiError::invalid("authentication.k8s.io", "TokenRequest", "", &errors)
            }
            other => ApiError::internal(other.to_string()),
        })?;
    warnings.extend(issued.warnings.iter().cloned());
    let answer = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace,
                     "creationTimestamp": crate::registry::metadata::now()},
        "spec": {
            "audiences": issued.audiences,
            "expirationSeconds": issued.expiration_seconds,
            "boundObjectRef": request.spec.bound_object_ref,
        },
        "status": {
            "token": issued.token,
            "expirationTimestamp": issued.expiration_timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        },
    });
    let mut response = response::json(StatusCode::CREATED, &answer);
    for warning in &warnings {
        if let Ok(value) = axum::http::HeaderValue::from_str(&format!("299 - {warning:?}")) {
            response.headers_mut().append("warning", value);
        }
    }
    Ok(response)
}
