//! Tokens issued while a pod's volumes are set up, kept for the next attempt. When a later
//! volume source fails (a missing ConfigMap), the whole setup runs again a few seconds
//! later and asks again for every projected token; as kubelet's token manager
//! (`pkg/kubelet/token/token_manager.go`, `GetServiceAccountToken`), a token issued in an
//! earlier attempt is handed out again until it needs refreshing, so a pod stuck on a
//! missing ConfigMap does not mint a new token every five seconds.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use futures::future::BoxFuture;

use super::token::{Clock, IssuedToken, TokenError, TokenProjection, TokenSource, refresh_at};

/// A [`TokenSource`] that remembers what `inner` issued, per projection.
pub struct CachingTokenSource {
    inner: Arc<dyn TokenSource>,
    clock: Arc<dyn Clock>,
    issued: Mutex<HashMap<TokenProjection, IssuedToken>>,
}

impl CachingTokenSource {
    /// Tokens from `inner`, reused while `clock` says they do not need refreshing.
    pub fn new(inner: Arc<dyn TokenSource>, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner,
            clock,
            issued: Mutex::default(),
        }
    }

    /// Forget every token (the refreshers own them once the volumes are set up).
    pub fn clear(&self) {
        self.issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn cached(&self, projection: &TokenProjection) -> Option<IssuedToken> {
        let issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        let token = issued.get(projection)?;
        (self.clock.now() < refresh_at(token)).then(|| token.clone())
    }
}

impl TokenSource for CachingTokenSource {
    fn request<'a>(
        &'a self,
        projection: &'a TokenProjection,
    ) -> BoxFuture<'a, Result<IssuedToken, TokenError>> {
        Box::pin(async move {
            if let Some(token) = self.cached(projection) {
                return Ok(token);
            }
            let token = self.inner.request(projection).await?;
            self.issued
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(projection.clone(), token.clone());
            Ok(token)
        })
    }
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};

    use super::*;

    /// A clock the test moves.
    struct ManualClock(Mutex<Timestamp>);

    impl ManualClock {
        fn advance(&self, seconds: i64) {
            let mut now = self.0.lock().expect("lock");
            *now = now
                .checked_add(SignedDuration::from_secs(seconds))
                .expect("time");
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Timestamp {
            *self.0.lock().expect("lock")
        }
    }

    /// Issues numbered hour-long tokens and counts the requests.
    struct CountingSource {
        clock: Arc<ManualClock>,
        requests: Mutex<u32>,
    }

    impl TokenSource for CountingSource {
        fn request<'a>(
            &'a self,
            projection: &'a TokenProjection,
        ) -> BoxFuture<'a, Result<IssuedToken, TokenError>> {
            Box::pin(async move {
                let mut requests = self.requests.lock().expect("lock");
                *requests += 1;
                Ok(IssuedToken {
                    token: format!("{}-{}", projection.pod_name, *requests),
                    expires: self
                        .clock
                        .now()
                        .checked_add(SignedDuration::from_secs(projection.expiration_seconds))
                        .expect("expiry"),
                    expiration_seconds: projection.expiration_seconds,
                })
            })
        }
    }

    fn projection(pod: &str) -> TokenProjection {
        TokenProjection {
            namespace: "ns".into(),
            service_account: "default".into(),
            audiences: Vec::new(),
            expiration_seconds: 3600,
            pod_name: pod.into(),
            pod_uid: format!("uid-{pod}"),
        }
    }

    #[tokio::test]
    async fn setup_attempts_reuse_the_token_until_it_needs_refreshing() {
        let clock = Arc::new(ManualClock(Mutex::new(
            Timestamp::from_second(1_800_000_000).expect("time"),
        )));
        let source = Arc::new(CountingSource {
            clock: clock.clone(),
            requests: Mutex::new(0),
        });
        let cache = CachingTokenSource::new(source.clone(), clock.clone());
        let web = projection("web");
        // Attempts every five seconds (a later volume keeps failing): one token.
        for _ in 0..10 {
            let token = cache.request(&web).await.expect("token");
            assert_eq!(token.token, "web-1");
            clock.advance(5);
        }
        assert_eq!(*source.requests.lock().expect("lock"), 1);
        // Another projection (another pod, audience or lifetime) has its own token.
        assert_eq!(
            cache.request(&projection("db")).await.expect("db").token,
            "db-2"
        );
        // Once 80 % of its lifetime has passed, a new one is asked for.
        clock.advance(2880);
        assert_eq!(cache.request(&web).await.expect("token").token, "web-3");
        cache.clear();
        assert_eq!(cache.request(&web).await.expect("token").token, "web-4");
    }
}
