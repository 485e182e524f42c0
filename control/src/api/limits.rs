//! How much one server takes on at once, as kube-apiserver's max-in-flight filter and
//! request timeout: at most 400 mutating and 800 read-only requests run concurrently
//! (more are answered 429 with `Retry-After`), and a request that is not long-running
//! (watches, exec/attach/port-forward, followed logs) gets 60 s (or less, by its
//! `timeout` parameter) before it is answered 504.

use std::{sync::Arc, time::Duration};

use axum::http::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::request::Query;
use crate::authz::Attributes;
use crate::model::ApiError;

/// kube-apiserver's --max-mutating-requests-inflight.
pub const MAX_MUTATING_IN_FLIGHT: usize = 400;
/// kube-apiserver's --max-requests-inflight.
pub const MAX_READ_ONLY_IN_FLIGHT: usize = 800;
/// kube-apiserver's --request-timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The server's in-flight budget.
pub struct InFlight {
    mutating: Arc<Semaphore>,
    read_only: Arc<Semaphore>,
}

impl Default for InFlight {
    fn default() -> Self {
        Self::new(MAX_MUTATING_IN_FLIGHT, MAX_READ_ONLY_IN_FLIGHT)
    }
}

/// Whether a request may hold its connection indefinitely: a watch, a stream into a pod
/// (exec, attach, port-forward, proxy), a followed log — judged from what authorization
/// saw, so neither `?watch=true` on a write nor an object named `exec` escapes the limits.
pub fn long_running(attributes: &Attributes, query: &Query) -> bool {
    attributes.resource_request
        && (attributes.verb == "watch"
            || (attributes.resource == "pods"
                && matches!(
                    attributes.subresource.as_str(),
                    "exec" | "attach" | "portforward" | "proxy"
                ))
            || (attributes.resource == "pods"
                && attributes.subresource == "log"
                && query.flag("follow")))
}

impl InFlight {
    /// A budget of `mutating` and `read_only` concurrent requests.
    pub fn new(mutating: usize, read_only: usize) -> Self {
        Self {
            mutating: Arc::new(Semaphore::new(mutating)),
            read_only: Arc::new(Semaphore::new(read_only)),
        }
    }

    /// A slot for a request with `method`, or the 429 to answer.
    pub fn admit(&self, method: &Method) -> Result<OwnedSemaphorePermit, ApiError> {
        let mutating = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let pool = if mutating {
            &self.mutating
        } else {
            &self.read_only
        };
        Arc::clone(pool)
            .try_acquire_owned()
            .map_err(|_| ApiError::too_many_requests("Too many requests, please try again later."))
    }
}

/// How long a request may take: 60 s, or its `timeout` parameter when shorter (Go duration
/// syntax: `30s`, `1m`, `500ms`).
pub fn timeout(query: &Query) -> Duration {
    query
        .get("timeout")
        .and_then(parse_go_duration)
        .filter(|d| *d < REQUEST_TIMEOUT && !d.is_zero())
        .unwrap_or(REQUEST_TIMEOUT)
}

/// A Go `time.Duration` string (`1m30s`, `500ms`); None if malformed or negative.
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let value: f64 = number.parse().ok()?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let seconds = match unit {
            "ns" => value / 1e9,
            "us" | "µs" => value / 1e6,
            "ms" => value / 1e3,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return None,
        };
        total = total.checked_add(Duration::try_from_secs_f64(seconds).ok()?)?;
        rest = next;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_refuse_beyond_their_size() {
        let limits = InFlight::new(1, 1);
        let held = limits.admit(&Method::POST).expect("first mutating");
        let refused = limits.admit(&Method::PATCH).expect_err("second mutating");
        assert_eq!(refused.code, 429);
        assert!(
            limits.admit(&Method::GET).is_ok(),
            "read-only has its own budget"
        );
        drop(held);
        assert!(limits.admit(&Method::DELETE).is_ok());
    }

    #[test]
    fn long_running_requests_are_recognised() {
        let user = crate::model::user::UserInfo::authenticated("u", vec![]);
        let check = |method: Method, path: &str, raw: &str| {
            let query = Query::parse(Some(raw));
            let attributes =
                super::super::authorize::request_attributes(&user, &method, path, &query);
            long_running(&attributes, &query)
        };
        assert!(check(Method::GET, "/api/v1/pods", "watch=true"));
        assert!(check(Method::GET, "/api/v1/watch/pods", ""));
        assert!(check(Method::POST, "/api/v1/namespaces/n/pods/p/exec", ""));
        assert!(check(
            Method::GET,
            "/api/v1/namespaces/n/pods/p/log",
            "follow=true"
        ));
        assert!(!check(Method::GET, "/api/v1/namespaces/n/pods/p/log", ""));
        assert!(!check(Method::GET, "/api/v1/namespaces/n/pods", ""));
        // Writes with ?watch=true and objects named like streams stay bounded.
        assert!(!check(
            Method::POST,
            "/api/v1/namespaces/n/configmaps",
            "watch=true"
        ));
        assert!(!check(
            Method::GET,
            "/api/v1/namespaces/n/configmaps/exec",
            ""
        ));
        assert!(!check(
            Method::GET,
            "/api/v1/namespaces/watch/configmaps",
            ""
        ));
    }

    #[test]
    fn timeouts_follow_go_durations_and_never_exceed_the_default() {
        let q = |raw: &str| Query::parse(Some(raw));
        assert_eq!(timeout(&q("timeout=30s")), Duration::from_secs(30));
        assert_eq!(timeout(&q("timeout=1m30s")), REQUEST_TIMEOUT);
        assert_eq!(timeout(&q("timeout=500ms")), Duration::from_millis(500));
        assert_eq!(timeout(&q("timeout=bogus")), REQUEST_TIMEOUT);
        assert_eq!(
            timeout(&q("timeout=99999999999999999999h")),
            REQUEST_TIMEOUT
        );
    }
}
