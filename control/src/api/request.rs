//! Parsing a resource request: the path (which resource, namespace, name, subresource) and
//! the query parameters every verb shares.

use std::collections::HashMap;

use crate::{
    model::{
        ApiError,
        selector::{FieldSelector, LabelSelector},
    },
    resources::{self, ResourceInfo},
};

/// What a resource path addresses.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource.
    pub info: &'static ResourceInfo,
    /// Namespace from the path (namespaced resources; `None` = all namespaces).
    pub namespace: Option<String>,
    /// Object name, if the path names one.
    pub name: Option<String>,
    /// Subresource segment (`status`, `scale`…).
    pub subresource: Option<String>,
    /// Legacy `/watch/` path form.
    pub watch_path: bool,
}

/// Parse `/api/v1/...` or `/apis/<group>/<version>/...`.
pub fn parse_path(path: &str) -> Result<Target, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_route()),
    };
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let find =
        |plural: &str| resources::find(group, version, plural).ok_or_else(ApiError::no_route);
    let target = |info, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
        info,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        subresource: sub.map(str::to_owned),
        watch_path,
    };
    let result = match rest {
        // /namespaces/{ns}/{plural}[/{name}[/{sub}]] — unless {plural} is a namespace subresource.
        ["namespaces", ns, plural, tail @ ..]
            if resources::find(group, version, plural).is_some_and(|r| r.namespaced) =>
        {
            let info = find(plural)?;
            match tail {
                [] => target(info, Some(ns), None, None),
                [name] => target(info, Some(ns), Some(name), None),
                [name, sub] => target(info, Some(ns), Some(name), Some(sub)),
                _ => return Err(ApiError::no_route()),
            }
        }
        [plural] => target(find(plural)?, None, None, None),
        [plural, name] => target(find(plural)?, None, Some(name), None),
        [plural, name, sub] => target(find(plural)?, None, Some(name), Some(sub)),
        _ => return Err(ApiError::no_route()),
    };
    if result.info.namespaced && result.name.is_some() && result.namespace.is_none() {
        return Err(ApiError::no_route());
    }
    if !result.info.namespaced && result.namespace.is_some() {
        return Err(ApiError::no_route());
    }
    if let Some(sub) = &result.subresource
        && !result.info.subresources.iter().any(|s| s.name() == sub)
    {
        return Err(ApiError::no_route());
    }
    Ok(result)
}

/// Query parameters, decoded.
#[derive(Debug, Default, Clone)]
pub struct Query(pub HashMap<String, String>);

impl Query {
    /// Parse a raw query string (tolerating kube-rs's `?&`).
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map = HashMap::new();
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(decode(k), decode(v));
        }
        Self(map)
    }

    /// A parameter's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// A non-negative integer parameter.
    pub fn number(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("invalid value for {key}: {v:?}"))),
        }
    }

    /// The label selector.
    pub fn label_selector(&self) -> Result<LabelSelector, ApiError> {
        LabelSelector::parse(self.get("labelSelector").unwrap_or_default())
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))
    }

    /// The field selector, checked against the resource's selectable fields.
    pub fn field_selector(&self, info: &ResourceInfo) -> Result<FieldSelector, ApiError> {
        FieldSelector::parse(
            self.get("fieldSelector").unwrap_or_default(),
            &info.selectable_fields(),
        )
        .map_err(ApiError::bad_request)
    }

    /// `dryRun=All`.
    pub fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

/// Percent-decode a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_address_resources() {
        let t = parse_path("/api/v1/namespaces/default/pods/web/status").expect("pod status");
        assert_eq!(
            (
                t.info.plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("pods", Some("default"), Some("web"), Some("status"))
        );
        let t = parse_path("/api/v1/namespaces/default").expect("namespace");
        assert_eq!(
            (t.info.plural, t.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let t = parse_path("/api/v1/namespaces/kube-system/status").expect("namespace status");
        assert_eq!(
            (t.info.plural, t.name.as_deref(), t.subresource.as_deref()),
            ("namespaces", Some("kube-system"), Some("status"))
        );
        let t = parse_path("/apis/apps/v1/deployments").expect("all deployments");
        assert_eq!((t.info.plural, t.namespace), ("deployments", None));
        let t = parse_path("/api/v1/watch/namespaces/x/pods").expect("legacy watch");
        assert!(t.watch_path);
        assert!(parse_path("/api/v1/namespaces/x/bogus").is_err());
        assert!(parse_path("/api/v1/pods/web").is_err());
        assert!(parse_path("/api/v1/namespaces/x/configmaps/c/status").is_err());
    }

    #[test]
    fn queries_decode() {
        let q = Query::parse(Some(
            "&labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&limit=5",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.number("limit").expect("limit"), Some(5));
        assert!(Query::parse(Some("limit=-1")).number("limit").is_err());
    }
}
