//! AdmissionReview (admission.k8s.io/v1, or v1beta1 of the same shape): the request kube
//! sends a webhook and the response it expects back, checked as kube's
//! `VerifyAdmissionResponse` checks it.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value, json};

use super::CallError;
use crate::{
    admission::{Attributes, Operation},
    model::ApiError,
    resources::ResourceInfo,
};

/// The only patch type webhooks may answer.
pub const JSON_PATCH: &str = "JSONPatch";

/// `{group, version, kind}` of the object the request carries as `resource`'s version:
/// the subresource's own kind (Scale, Binding, Eviction) or the resource's.
fn kind_of(resource: &ResourceInfo, subresource: &str) -> Value {
    let sub = resource
        .subresources
        .iter()
        .find(|s| s.name() == subresource)
        .and_then(|s| s.response_kind());
    let (group, version, kind) = sub.unwrap_or((resource.group, resource.version, resource.kind));
    json!({"group": group, "version": version, "kind": kind})
}

fn resource_of(resource: &ResourceInfo) -> Value {
    json!({"group": resource.group, "version": resource.version, "resource": resource.plural})
}

/// The operation's options object, as kube sends it (`null` for CONNECT).
fn options(operation: Operation, dry_run: bool) -> Value {
    let kind = match operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
        Operation::Connect => return Value::Null,
    };
    let mut options = json!({"apiVersion": "meta.k8s.io/v1", "kind": kind});
    if dry_run {
        options["dryRun"] = json!(["All"]);
    }
    options
}

/// An object as sent to a webhook that asked for `resource`'s version (the request's
/// own or an equivalent one): its apiVersion rewritten (versions of one resource share
/// a schema here, as a CRD's versions under the None conversion do).
pub fn as_version(object: &Value, resource: &ResourceInfo) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut()
        && map.contains_key("apiVersion")
    {
        map.insert("apiVersion".to_owned(), json!(resource.api_version()));
    }
    object
}

/// The AdmissionReview for one webhook call. `sent_as` is the resource version the
/// webhook matched (the request's own, or an equivalent one); `object` and `old` are
/// already in that version.
pub fn request(
    uid: &str,
    review_version: &str,
    attributes: &Attributes<'_>,
    sent_as: &ResourceInfo,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Value {
    let user = attributes.user;
    let mut request = Map::new();
    request.insert("uid".to_owned(), json!(uid));
    request.insert("kind".to_owned(), kind_of(sent_as, attributes.subresource));
    request.insert("resource".to_owned(), resource_of(sent_as));
    if !attributes.subresource.is_empty() {
        request.insert("subResource".to_owned(), json!(attributes.subresource));
        request.insert(
            "requestSubResource".to_owned(),
            json!(attributes.subresource),
        );
    }
    request.insert(
        "requestKind".to_owned(),
        kind_of(attributes.resource, attributes.subresource),
    );
    request.insert(
        "requestResource".to_owned(),
        resource_of(attributes.resource),
    );
    if !attributes.name.is_empty() {
        request.insert("name".to_owned(), json!(attributes.name));
    }
    if !attributes.namespace.is_empty() {
        request.insert("namespace".to_owned(), json!(attributes.namespace));
    }
    request.insert("operation".to_owned(), json!(attributes.operation.as_str()));
    let mut user_info = json!({"username": user.name});
    if !user.uid.is_empty() {
        user_info["uid"] = json!(user.uid);
    }
    if !user.groups.is_empty() {
        user_info["groups"] = json!(user.groups);
    }
    if !user.extra.is_empty() {
        user_info["extra"] = json!(user.extra);
    }
    request.insert("userInfo".to_owned(), user_info);
    // A delete carries the object only as oldObject (kube sends DeleteOptions, not an
    // object, as the new one).
    let object = if attributes.operation == Operation::Delete {
        None
    } else {
        object
    };
    request.insert("object".to_owned(), object.cloned().unwrap_or(Value::Null));
    request.insert("oldObject".to_owned(), old.cloned().unwrap_or(Value::Null));
    request.insert("dryRun".to_owned(), json!(attributes.dry_run));
    request.insert(
        "options".to_owned(),
        options(attributes.operation, attributes.dry_run),
    );
    json!({
        "apiVersion": format!("admission.k8s.io/{review_version}"),
        "kind": "AdmissionReview",
        "request": request,
    })
}

/// A webhook's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// allowed.
    pub allowed: bool,
    /// status.code (0 if none).
    pub code: u16,
    /// status.message.
    pub message: String,
    /// status.reason.
    pub reason: String,
    /// The decoded JSON patch document, if any.
    pub patch: Option<Vec<u8>>,
    /// warnings.
    pub warnings: Vec<String>,
    /// auditAnnotations.
    pub audit_annotations: BTreeMap<String, String>,
}

/// Decode and check a webhook's AdmissionReview answer to the request `uid` (kube's
/// VerifyAdmissionResponse): same apiVersion family, `response` present, the same uid;
/// patches only from mutating webhooks, base64 and of type JSONPatch.
pub fn response(
    answer: &Value,
    uid: &str,
    review_version: &str,
    mutating: bool,
) -> Result<Verdict, CallError> {
    let bad = |m: String| CallError::BadResponse(m);
    let api_version = answer
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = answer
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let expected = format!("admission.k8s.io/{review_version}");
    if api_version != expected || kind != "AdmissionReview" {
        return Err(bad(format!(
            "expected webhook response of {expected}, Kind=AdmissionReview, got {api_version}, Kind={kind}"
        )));
    }
    let Some(response) = answer.get("response").filter(|r| r.is_object()) else {
        return Err(bad("webhook response was absent".to_owned()));
    };
    let got = response
        .get("uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if got != uid {
        return Err(bad(format!(
            "expected response.uid=\"{uid}\", got \"{got}\""
        )));
    }
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    let status = response.get("status");
    let code = status
        .and_then(|s| s.get("code"))
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(0);
    let patch_type = response.get("patchType").and_then(Value::as_str);
    let patch = match response
        .get("patch")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(_) if !mutating => {
            return Err(bad("validating webhooks may not return patches".to_owned()));
        }
        Some(encoded) => {
            match patch_type {
                Some(JSON_PATCH) => {}
                None => return Err(bad("webhook returned patch but not patchType".to_owned())),
                Some(other) => {
                    return Err(bad(format!(
                        "webhook returned invalid patchType: \"{other}\""
                    )));
                }
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| bad(format!("webhook returned a patch that is not base64: {e}")))?;
            Some(bytes)
        }
    };
    let warnings = response
        .get("warnings")
        .and_then(Value::as_array)
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let audit_annotations = response
        .get("auditAnnotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Verdict {
        allowed: response
            .get("allowed")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        code,
        message: text(status.and_then(|s| s.get("message"))),
        reason: text(status.and_then(|s| s.get("reason"))),
        patch,
        warnings,
        audit_annotations,
    })
}

/// kube's well-known Status reasons (a webhook's own reason outside these is dropped).
const REASONS: &[&str] = &[
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "Invalid",
    "ServerTimeout",
    "Timeout",
    "TooManyRequests",
    "MethodNotAllowed",
    "NotAcceptable",
    "RequestEntityTooLarge",
    "UnsupportedMediaType",
    "InternalError",
    "Expired",
    "ServiceUnavailable",
];

/// kube's ToStatusErr: the refusal a denying webhook's status becomes — its code (400 if
/// below 400), and `admission webhook "<name>" denied the request: <message>`.
pub fn denial(hook_name: &str, verdict: &Verdict) -> ApiError {
    let denied = format!("admission webhook \"{hook_name}\" denied the request");
    let message = if !verdict.message.is_empty() {
        format!("{denied}: {}", verdict.message)
    } else if !verdict.reason.is_empty() {
        format!("{denied}: {}", verdict.reason)
    } else {
        format!("{denied} without explanation")
    };
    let code = if verdict.code < 400 || verdict.code > 599 {
        400
    } else {
        verdict.code
    };
    let mut error = ApiError::failure(code, message);
    if let Some(reason) = REASONS.iter().find(|r| **r == verdict.reason) {
        error.reason = reason;
    }
    error
}

/// Warnings worth passing on: non-empty, printable (kube drops the others).
pub fn usable_warnings(warnings: &[String]) -> impl Iterator<Item = String> + '_ {
    warnings
        .iter()
        .map(|w| w.trim())
        .filter(|w| !w.is_empty() && !w.chars().any(char::is_control))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::user::UserInfo, resources};

    fn user() -> UserInfo {
        UserInfo::authenticated(
            "alice",
            vec!["devs".to_owned(), "system:authenticated".to_owned()],
        )
    }

    #[test]
    fn a_request_carries_what_kube_sends() {
        let user = user();
        let attributes = Attributes {
            operation: Operation::Update,
            resource: resources::find("", "v1", "pods").expect("pods"),
            subresource: "status",
            namespace: "default",
            name: "web",
            user: &user,
            dry_run: true,
        };
        let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}});
        let review = request(
            "u-1",
            "v1",
            &attributes,
            attributes.resource,
            Some(&object),
            Some(&object),
        );
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(review["kind"], "AdmissionReview");
        let r = &review["request"];
        assert_eq!(r["uid"], "u-1");
        assert_eq!(
            r["kind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert_eq!(
            r["resource"],
            json!({"group": "", "version": "v1", "resource": "pods"})
        );
        assert_eq!(r["subResource"], "status");
        assert_eq!(r["requestKind"], r["kind"]);
        assert_eq!(r["requestResource"], r["resource"]);
        assert_eq!(
            (&r["name"], &r["namespace"]),
            (&json!("web"), &json!("default"))
        );
        assert_eq!(r["operation"], "UPDATE");
        assert_eq!(r["userInfo"]["username"], "alice");
        assert_eq!(r["userInfo"]["groups"][0], "devs");
        assert_eq!(r["object"], object);
        assert_eq!(r["oldObject"], object);
        assert_eq!(r["dryRun"], true);
        assert_eq!(
            r["options"],
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions", "dryRun": ["All"]})
        );

        let delete = Attributes {
            operation: Operation::Delete,
            subresource: "",
            dry_run: false,
            ..attributes
        };
        let r = request(
            "u-2",
            "v1beta1",
            &delete,
            delete.resource,
            Some(&object),
            Some(&object),
        );
        assert_eq!(r["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(r["request"]["object"], Value::Null);
        assert_eq!(r["request"]["oldObject"], object);
        assert_eq!(r["request"]["options"]["kind"], "DeleteOptions");
        assert!(r["request"].get("subResource").is_none());

        let binding = Attributes {
            operation: Operation::Create,
            subresource: "binding",
            ..attributes
        };
        let r = request("u-3", "v1", &binding, binding.resource, Some(&object), None);
        assert_eq!(r["request"]["kind"]["kind"], "Binding");
    }

    #[test]
    fn responses_are_checked_as_kube_checks_them() {
        let patch = base64::engine::general_purpose::STANDARD
            .encode(br#"[{"op":"add","path":"/a","value":1}]"#);
        let ok = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": "u", "allowed": true, "patch": patch, "patchType": "JSONPatch",
                         "warnings": ["careful", ""], "auditAnnotations": {"k": "v"}}});
        let verdict = response(&ok, "u", "v1", true).expect("valid");
        assert!(verdict.allowed);
        assert_eq!(
            verdict.patch.as_deref(),
            Some(br#"[{"op":"add","path":"/a","value":1}]"#.as_slice())
        );
        assert_eq!(
            usable_warnings(&verdict.warnings).collect::<Vec<_>>(),
            ["careful"]
        );
        assert_eq!(
            verdict.audit_annotations.get("k").map(String::as_str),
            Some("v")
        );

        let message = |answer: &Value, mutating| {
            response(answer, "u", "v1", mutating)
                .expect_err("refused")
                .to_string()
        };
        assert!(message(&ok, false).contains("validating webhooks may not return patches"));
        let mut other_uid = ok.clone();
        other_uid["response"]["uid"] = json!("x");
        assert_eq!(
            message(&other_uid, true),
            "expected response.uid=\"u\", got \"x\""
        );
        let mut no_type = ok.clone();
        no_type["response"]
            .as_object_mut()
            .expect("object")
            .remove("patchType");
        assert!(message(&no_type, true).contains("not patchType"));
        let absent = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
        assert_eq!(message(&absent, true), "webhook response was absent");
        let wrong = json!({"apiVersion": "v1", "kind": "Status"});
        assert!(message(&wrong, true).contains("expected webhook response of admission.k8s.io/v1"));
    }

    #[test]
    fn denials_carry_the_webhooks_code_and_message() {
        let verdict = Verdict {
            code: 403,
            message: "no way".to_owned(),
            reason: "Forbidden".to_owned(),
            ..Verdict::default()
        };
        let error = denial("deny.example.com", &verdict);
        assert_eq!(error.code, 403);
        assert_eq!(error.reason, "Forbidden");
        assert_eq!(
            error.message,
            "admission webhook \"deny.example.com\" denied the request: no way"
        );
        let bare = denial(
            "deny.example.com",
            &Verdict {
                code: 200,
                ..Verdict::default()
            },
        );
        assert_eq!(bare.code, 400);
        assert_eq!(
            bare.message,
            "admission webhook \"deny.example.com\" denied the request without explanation"
        );
    }
}
