//! What a request asks to do, as authorization sees it (kube's RequestInfo): verb,
//! namespace, resource, subresource and name parsed from the path alone, so that every
//! request is authorized — also those for resources that turn out not to exist — and
//! impersonation (`Impersonate-*` headers), itself authorized.

use axum::http::{HeaderMap, Method};

use super::request::Query;
use crate::{
    authz::{Attributes, Authorizer, Decision},
    model::{
        ApiError,
        user::{AUTHENTICATED, SERVICE_ACCOUNTS, UserInfo},
    },
};

/// Subresources of namespaces (kube's `namespaceSubresources`).
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Subresources that open a stream into a pod: authorized as `create` whatever the HTTP
/// method (kube 1.31+: a WebSocket GET on pods/exec needs `create`).
const CONNECT_SUBRESOURCES: &[&str] = &["exec", "attach", "portforward", "proxy"];

/// The attributes of a request by `user`.
pub fn request_attributes(
    user: &UserInfo,
    method: &Method,
    path: &str,
    query: &Query,
) -> Attributes {
    let mut attributes = Attributes {
        user: user.clone(),
        path: path.to_owned(),
        verb: method.as_str().to_ascii_lowercase(),
        ..Attributes::default()
    };
    let trimmed = path.trim_matches('/');
    let parts: Vec<&str> = trimmed.split('/').collect();
    let (group, version, mut rest) = match parts.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        // /api, /apis, /apis/<group>, /api/v1 discovery and everything else: non-resource.
        _ => return attributes,
    };
    attributes.resource_request = true;
    attributes.api_group = group.to_owned();
    attributes.api_version = version.to_owned();
    let mut watch = query.flag("watch");
    if let ["watch", after @ ..] = rest {
        watch = true;
        rest = after;
    }
    if let ["namespaces", namespace, after @ ..] = rest {
        attributes.namespace = (*namespace).to_owned();
        if let [next, ..] = after
            && !NAMESPACE_SUBRESOURCES.contains(next)
        {
            rest = after;
        }
    }
    if let Some(resource) = rest.first() {
        attributes.resource = (*resource).to_owned();
    }
    if let Some(name) = rest.get(1) {
        attributes.name = (*name).to_owned();
    }
    if let Some(sub) = rest.get(2) {
        attributes.subresource = (*sub).to_owned();
    }
    attributes.field_selector = equality_requirements(query.get("fieldSelector").unwrap_or(""));
    attributes.label_selector = equality_requirements(query.get("labelSelector").unwrap_or(""));
    let named = !attributes.name.is_empty();
    attributes.verb = match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "",
    }
    .to_owned();
    if CONNECT_SUBRESOURCES.contains(&attributes.subresource.as_str()) {
        attributes.verb = "create".to_owned();
    }
    // A list or watch of one object by `metadata.name` is authorized as that object.
    if !named
        && matches!(attributes.verb.as_str(), "list" | "watch")
        && let Some((_, name)) = attributes
            .field_selector
            .iter()
            .find(|(field, _)| field == "metadata.name")
    {
        attributes.name = name.clone();
    }
    attributes
}

/// The `field=value` (or `==`) requirements of a field selector; others are left out.
fn equality_requirements(selector: &str) -> Vec<(String, String)> {
    selector
        .split(',')
        .filter(|r| !r.contains("!="))
        .filter_map(|r| {
            let (field, value) = r.split_once("==").or_else(|| r.split_once('='))?;
            Some((field.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// The 403 for a request the authorizers did not allow, worded as kube-apiserver's.
pub fn forbidden(attributes: &Attributes, reason: &str) -> ApiError {
    let why = attributes.forbidden_message(reason);
    if !attributes.resource_request {
        return ApiError::forbidden(format!("forbidden: {why}"));
    }
    let resource = if attributes.api_group.is_empty() {
        attributes.resource.clone()
    } else {
        format!("{}.{}", attributes.resource, attributes.api_group)
    };
    let message = if attributes.name.is_empty() {
        format!("{resource} is forbidden: {why}")
    } else {
        format!("{resource} \"{}\" is forbidden: {why}", attributes.name)
    };
    ApiError::forbidden(message).with_target(
        &attributes.api_group,
        &attributes.resource,
        &attributes.name,
    )
}

/// The user a request acts as: `user`, or whom its `Impersonate-*` headers name when
/// `user` may impersonate them.
pub fn impersonate(
    authorizer: &dyn Authorizer,
    user: &UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    };
    let target_user = values("impersonate-user").into_iter().next();
    let groups = values("impersonate-group");
    let uid = values("impersonate-uid").into_iter().next();
    let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-")
            && let Ok(value) = value.to_str()
        {
            let key = percent_decode(key);
            extra.entry(key).or_default().push(value.to_owned());
        }
    }
    let Some(target_user) = target_user else {
        if !groups.is_empty() || uid.is_some() || !extra.is_empty() {
            return Err(ApiError::bad_request(
                "requested impersonation of groups, uid or extra without impersonating a user",
            ));
        }
        return Ok(user.clone());
    };
    let check = |resource: &str, group: &str, namespace: &str, name: &str| {
        // `userextras/<key>`: resource userextras, subresource <key> (kube's shape).
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        let attributes = Attributes {
            user: user.clone(),
            verb: "impersonate".to_owned(),
            resource_request: true,
            api_group: group.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            ..Attributes::default()
        };
        match authorizer.authorize(&attributes) {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(reason) | Decision::NoOpinion(reason) => {
                Err(forbidden(&attributes, &reason))
            }
        }
    };
    let mut impersonated = UserInfo {
        name: target_user.clone(),
        uid: uid.clone().unwrap_or_default(),
        groups: groups.clone(),
        extra: extra.clone(),
    };
    match impersonated
        .service_account()
        .map(|(ns, n)| (ns.to_owned(), n.to_owned()))
    {
        Some((namespace, name)) => {
            check("serviceaccounts", "", &namespace, &name)?;
            if groups.is_empty() {
                impersonated.groups = vec![
                    SERVICE_ACCOUNTS.to_owned(),
                    format!("{SERVICE_ACCOUNTS}:{namespace}"),
                ];
            }
        }
        None => check("users", "", "", &target_user)?,
    }
    for group in &groups {
        check("groups", "", "", group)?;
    }
    if let Some(uid) = &uid {
        check("uids", "authentication.k8s.io", "", uid)?;
    }
    for (key, values) in &extra {
        for value in values {
            check(
                &format!("userextras/{key}"),
                "authentication.k8s.io",
                "",
                value,
            )?;
        }
    }
    if !impersonated.in_group(AUTHENTICATED) && target_user != "system:anonymous" {
        impersonated.groups.push(AUTHENTICATED.to_owned());
    }
    Ok(impersonated)
}

/// Percent-decode an `Impersonate-Extra-` key (kube escapes them as URL path segments).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(method: Method, path: &str, query: &str) -> Attributes {
        request_attributes(
            &UserInfo::authenticated("u", vec![]),
            &method,
            path,
            &Query::parse(Some(query)),
        )
    }

    #[test]
    fn paths_become_kube_request_attributes() {
        let a = attributes(Method::GET, "/api/v1/namespaces/ns/pods", "");
        assert_eq!(
            (a.verb.as_str(), a.namespace.as_str(), a.resource.as_str()),
            ("list", "ns", "pods")
        );
        let a = attributes(Method::GET, "/api/v1/namespaces/ns/pods", "watch=1");
        assert_eq!(a.verb, "watch");
        let a = attributes(Method::GET, "/api/v1/watch/namespaces/ns/pods/p", "");
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", "p"));
        let a = attributes(Method::POST, "/api/v1/namespaces/ns/pods/p/exec", "");
        assert_eq!(
            (a.verb.as_str(), a.subresource.as_str()),
            ("create", "exec")
        );
        let a = attributes(Method::GET, "/api/v1/namespaces/ns/pods/p/exec", "");
        assert_eq!(a.verb, "create", "a WebSocket exec needs create");
        let a = attributes(Method::GET, "/api/v1/namespaces/ns/pods/p/log", "");
        assert_eq!((a.verb.as_str(), a.subresource.as_str()), ("get", "log"));
        let a = attributes(
            Method::DELETE,
            "/apis/apps/v1/namespaces/ns/deployments",
            "",
        );
        assert_eq!(
            (a.verb.as_str(), a.api_group.as_str(), a.resource.as_str()),
            ("deletecollection", "apps", "deployments")
        );
        // A namespace is its own namespace; its status is a subresource.
        let a = attributes(Method::PUT, "/api/v1/namespaces/ns/finalize", "");
        assert_eq!(
            (
                a.resource.as_str(),
                a.name.as_str(),
                a.namespace.as_str(),
                a.subresource.as_str()
            ),
            ("namespaces", "ns", "ns", "finalize")
        );
        let a = attributes(Method::DELETE, "/api/v1/nodes/n2", "");
        assert_eq!(
            (a.verb.as_str(), a.resource.as_str(), a.name.as_str()),
            ("delete", "nodes", "n2")
        );
        let a = attributes(
            Method::GET,
            "/api/v1/namespaces/ns/secrets",
            "fieldSelector=metadata.name%3Ds&watch=true",
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", "s"));
        let a = attributes(Method::GET, "/apis/apps/v1", "");
        assert!(!a.resource_request);
        assert_eq!(a.verb, "get");
        let a = attributes(Method::GET, "/healthz", "");
        assert_eq!((a.resource_request, a.path.as_str()), (false, "/healthz"));
    }

    #[test]
    fn denials_name_the_object() {
        let a = attributes(Method::DELETE, "/api/v1/nodes/n2", "");
        let e = forbidden(&a, "");
        assert_eq!(
            e.message,
            "nodes \"n2\" is forbidden: User \"u\" cannot delete resource \"nodes\" in API group \"\" at the cluster scope"
        );
        assert_eq!(e.code, 403);
        let a = attributes(Method::GET, "/api/v1/namespaces/y/secrets", "");
        assert_eq!(
            forbidden(&a, "").message,
            "secrets is forbidden: User \"u\" cannot list resource \"secrets\" in API group \"\" in the namespace \"y\""
        );
        let a = attributes(Method::GET, "/metrics", "");
        assert_eq!(
            forbidden(&a, "").message,
            "forbidden: User \"u\" cannot get path \"/metrics\""
        );
    }

    struct AllowUsers;

    impl Authorizer for AllowUsers {
        fn name(&self) -> &'static str {
            "AllowUsers"
        }
        fn authorize(&self, a: &Attributes) -> Decision {
            if a.verb == "impersonate" && a.resource == "users" {
                Decision::Allow(String::new())
            } else {
                Decision::NoOpinion(String::new())
            }
        }
    }

    #[test]
    fn impersonation_is_authorized() {
        let alice = UserInfo::authenticated("alice", vec![]);
        let mut headers = HeaderMap::new();
        headers.insert("impersonate-user", "bob".parse().expect("header"));
        let bob = impersonate(&AllowUsers, &alice, &headers).expect("may impersonate users");
        assert_eq!(bob.name, "bob");
        assert!(bob.in_group(AUTHENTICATED));
        headers.insert("impersonate-group", "admins".parse().expect("header"));
        let refused = impersonate(&AllowUsers, &alice, &headers).expect_err("not groups");
        assert_eq!(refused.code, 403);
        assert!(
            refused
                .message
                .contains("cannot impersonate resource \"groups\"")
        );
        let mut only_group = HeaderMap::new();
        only_group.insert("impersonate-group", "admins".parse().expect("header"));
        assert_eq!(
            impersonate(&AllowUsers, &alice, &only_group)
                .expect_err("no user")
                .code,
            400
        );
    }
}
