//! Projected `serviceAccountToken` files, as kubelet's token manager keeps them
//! (`pkg/kubelet/token/token_manager.go`): a bound token is asked of the TokenRequest API
//! (`POST /api/v1/namespaces/<ns>/serviceaccounts/<sa>/token`, bound to the pod by name and
//! UID) when the volume is set up, written into the volume, and asked for again once 80 %
//! of its lifetime has passed or it is 24 hours old, whichever comes first. The new token
//! replaces the file atomically; the container keeps running. A refused or failed request
//! is a Warning event on the pod and is retried with back-off; the old token stays in place
//! meanwhile.

use std::{path::PathBuf, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::{Api, Client, api::PostParams};
use serde_json::{Value, json};

use super::payload::{FileProjection, Ownership};

/// `expirationSeconds` when the projection gives none (the API's default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// kubelet's `maxTTL`: a token older than this is refreshed whatever its lifetime.
const MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// Never ask again sooner than this after a token arrived (a server answering with
/// already-expired tokens must not turn the refresher into a busy loop).
const MIN_REFRESH_DELAY: Duration = Duration::from_secs(10);
/// First retry after a failed refresh; doubles up to [`RETRY_MAX`].
const RETRY_INITIAL: Duration = Duration::from_secs(2);
/// Retry ceiling.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What the kubelet asks of the TokenRequest API for one projected token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenProjection {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's ServiceAccount.
    pub service_account: String,
    /// The token's audiences (empty: the API server's own).
    pub audiences: Vec<String>,
    /// The lifetime asked for.
    pub expiration_seconds: i64,
    /// The pod the token is bound to.
    pub pod_name: String,
    /// Its UID.
    pub pod_uid: String,
}

impl TokenProjection {
    /// The request for `source` of `pod`'s projected volume.
    pub fn new(pod: &Pod, source: &ServiceAccountTokenProjection) -> Self {
        let service_account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            service_account,
            audiences: source
                .audience
                .clone()
                .filter(|a| !a.is_empty())
                .into_iter()
                .collect(),
            expiration_seconds: source
                .expiration_seconds
                .unwrap_or(DEFAULT_EXPIRATION_SECONDS),
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }

    /// The TokenRequest body.
    pub fn body(&self) -> Value {
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": self.audiences,
                "expirationSeconds": self.expiration_seconds,
                "boundObjectRef": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "name": self.pod_name,
                    "uid": self.pod_uid,
                },
            },
        })
    }
}

/// A token the API issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// `status.expirationTimestamp`.
    pub expires: Timestamp,
    /// The lifetime it was issued for (`spec.expirationSeconds` of the answer).
    pub expiration_seconds: i64,
}

/// Why a token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The API answered with an error Status (403 Forbidden, 404 NotFound…).
    #[error("{message}")]
    Api {
        /// HTTP status code.
        code: u16,
        /// The Status message.
        message: String,
    },
    /// The API could not be reached or the answer not read.
    #[error("{0}")]
    Transport(String),
    /// The answer lacks a field.
    #[error("the TokenRequest answer has no valid {0}")]
    Malformed(&'static str),
}

/// Read a TokenRequest answer; `asked` is the lifetime asked for, used if the answer's
/// spec does not say.
pub fn parse_answer(answer: &Value, asked: i64) -> Result<IssuedToken, TokenError> {
    let token = answer["status"]["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or(TokenError::Malformed("status.token"))?;
    let expires = answer["status"]["expirationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .ok_or(TokenError::Malformed("status.expirationTimestamp"))?;
    let expiration_seconds = answer["spec"]["expirationSeconds"]
        .as_i64()
        .unwrap_or(asked);
    Ok(IssuedToken {
        token: token.to_owned(),
        expires,
        expiration_seconds,
    })
}

/// Where tokens come from (the API; a fake in tests).
pub trait TokenSource: Send + Sync {
    /// Ask for a token.
    fn request<'a>(
        &'a self,
        projection: &'a TokenProjection,
    ) -> BoxFuture<'a, Result<IssuedToken, TokenError>>;
}

/// Tokens from the TokenRequest API through the node's client.
#[derive(Clone)]
pub struct KubeTokenSource(pub Client);

impl TokenSource for KubeTokenSource {
    fn request<'a>(
        &'a self,
        projection: &'a TokenProjection,
    ) -> BoxFuture<'a, Result<IssuedToken, TokenError>> {
        Box::pin(async move {
            let accounts: Api<ServiceAccount> =
                Api::namespaced(self.0.clone(), &projection.namespace);
            let answer: Value = accounts
                .create_subresource(
                    "token",
                    &projection.service_account,
                    &PostParams::default(),
                    &projection.body(),
                )
                .await
                .map_err(|e| match e {
                    kube::Error::Api(status) => TokenError::Api {
                        code: status.code,
                        message: status.message,
                    },
                    other => TokenError::Transport(other.to_string()),
                })?;
            parse_answer(&answer, projection.expiration_seconds)
        })
    }
}

/// When the token must be asked for again: kubelet's `requiresRefresh` (80 % of its
/// lifetime passed, or 24 hours old, whichever is first), without jitter.
pub fn refresh_at(issued: &IssuedToken) -> Timestamp {
    let lifetime = jiff::SignedDuration::from_secs(issued.expiration_seconds.max(0));
    let issued_at = issued
        .expires
        .checked_sub(lifetime)
        .unwrap_or(issued.expires);
    let max_age = jiff::SignedDuration::try_from(MAX_AGE).unwrap_or(jiff::SignedDuration::MAX);
    let by_age = issued_at.checked_add(max_age).unwrap_or(issued.expires);
    let by_lifetime = issued
        .expires
        .checked_sub(lifetime / 5)
        .unwrap_or(issued.expires);
    by_age.min(by_lifetime)
}

/// How long after `now` the token must be asked for again (see [`refresh_at`]), never
/// sooner than a few seconds.
pub fn refresh_delay(now: Timestamp, issued: &IssuedToken) -> Duration {
    let wait = Duration::try_from(now.duration_until(refresh_at(issued))).unwrap_or(Duration::ZERO);
    wait.max(MIN_REFRESH_DELAY)
}

/// The wall clock (token expiry is wall time); a test clock follows tokio's paused time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Where refresh failures are reported (the pod's events).
pub trait Events: Send + Sync {
    /// A Warning event on the pod.
    fn warning<'a>(&'a self, reason: &'a str, message: String) -> BoxFuture<'a, ()>;
}

/// One projected token file to keep fresh.
#[derive(Debug, Clone)]
pub struct TokenFile {
    /// The volume's name (for messages).
    pub volume: String,
    /// The volume's directory.
    pub dir: PathBuf,
    /// The file's path in the volume.
    pub path: String,
    /// The file's mode (kubelet's rules, see [`token_file_mode`]).
    pub mode: u32,
    /// The file's owner (kubelet's `FsUser`).
    pub uid: Option<u32>,
    /// fsGroup ownership of the volume.
    pub ownership: Ownership,
    /// What is asked of the API.
    pub projection: TokenProjection,
    /// The token in the file now.
    pub issued: IssuedToken,
}

impl TokenFile {
    /// The file as written for `token`.
    pub fn contents(&self, token: &IssuedToken) -> FileProjection {
        FileProjection {
            data: token.token.as_bytes().to_vec(),
            mode: self.mode,
            uid: self.uid,
        }
    }
}

/// kubelet's mode for a projected token file: the volume's `defaultMode`, but 0600 when the
/// pod has an fsGroup or an fsUser (fsGroup then widens it to 0640).
pub fn token_file_mode(default_mode: u32, fs_user: Option<u32>, fs_group: Option<u32>) -> u32 {
    if fs_user.is_some() || fs_group.is_some() {
        0o600
    } else {
        default_mode
    }
}

/// The message of a failed token request, as kubelet words a projected volume's failure.
pub fn failure_message(volume: &str, error: &TokenError, expired: bool) -> String {
    let what = if expired {
        "token expired and refresh failed"
    } else {
        "failed to fetch token"
    };
    format!("MountVolume.SetUp failed for volume \"{volume}\" : {what}: {error}")
}

/// Keep `file` fresh until the task is dropped (the pod worker holds it).
pub async fn keep_fresh(
    mut file: TokenFile,
    source: Arc<dyn TokenSource>,
    events: Arc<dyn Events>,
    clock: Arc<dyn Clock>,
) {
    loop {
        tokio::time::sleep(refresh_delay(clock.now(), &file.issued)).await;
        let mut backoff = RETRY_INITIAL;
        loop {
            let outcome = match source.request(&file.projection).await {
                Ok(token) => {
                    let contents = file.contents(&token);
                    super::payload::write_file(&file.dir, &file.path, &contents, file.ownership)
                        .map(|()| token)
                        .map_err(|e| {
                            format!(
                                "MountVolume.SetUp failed for volume \"{}\" : {e}",
                                file.volume
                            )
                        })
                }
                Err(e) => Err(failure_message(
                    &file.volume,
                    &e,
                    clock.now() >= file.issued.expires,
                )),
            };
            match outcome {
                Ok(token) => {
                    tracing::debug!(volume = %file.volume, path = %file.path, "projected token refreshed");
                    file.issued = token;
                    break;
                }
                Err(message) => {
                    tracing::warn!(%message, "projected token refresh failed; retrying");
                    events.warning("FailedMount", message).await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("timestamp")
    }

    fn issued(now: i64, lifetime: i64) -> IssuedToken {
        IssuedToken {
            token: format!("t{now}"),
            expires: at(now + lifetime),
            expiration_seconds: lifetime,
        }
    }

    #[test]
    fn refresh_comes_at_eighty_percent_or_a_day() {
        assert_eq!(
            refresh_delay(at(0), &issued(0, 3600)),
            Duration::from_secs(2880)
        );
        // A year-long token (kube-apiserver's extended 3607 s tokens): a day.
        assert_eq!(
            refresh_delay(at(0), &issued(0, 365 * 86_400)),
            Duration::from_secs(86_400)
        );
        // Half-way through an hour's token: 80 % is 48 minutes after issue.
        assert_eq!(
            refresh_delay(at(1800), &issued(0, 3600)),
            Duration::from_secs(1080)
        );
        // Overdue, or an expired token: soon, never a busy loop.
        assert_eq!(refresh_delay(at(5000), &issued(0, 3600)), MIN_REFRESH_DELAY);
    }

    #[test]
    fn the_request_and_the_answer_follow_the_wire_format() {
        let projection = TokenProjection {
            namespace: "ns".into(),
            service_account: "default".into(),
            audiences: vec!["api".into()],
            expiration_seconds: 3607,
            pod_name: "p".into(),
            pod_uid: "u-1".into(),
        };
        let body = projection.body();
        assert_eq!(body["spec"]["audiences"], json!(["api"]));
        assert_eq!(body["spec"]["expirationSeconds"], 3607);
        assert_eq!(
            body["spec"]["boundObjectRef"],
            json!({"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u-1"})
        );
        let answer = json!({
            "spec": {"expirationSeconds": 3607},
            "status": {"token": "jwt", "expirationTimestamp": "2027-01-01T00:00:00Z"}
        });
        let token = parse_answer(&answer, 100).expect("parse");
        assert_eq!(token.token, "jwt");
        assert_eq!(token.expiration_seconds, 3607);
        assert_eq!(
            token.expires,
            "2027-01-01T00:00:00Z".parse::<Timestamp>().expect("ts")
        );
        let no_spec =
            json!({"status": {"token": "jwt", "expirationTimestamp": "2027-01-01T00:00:00Z"}});
        assert_eq!(
            parse_answer(&no_spec, 100)
                .expect("parse")
                .expiration_seconds,
            100
        );
        assert!(matches!(
            parse_answer(&json!({"status": {"token": ""}}), 1),
            Err(TokenError::Malformed("status.token"))
        ));
    }

    #[test]
    fn token_files_follow_kubelets_mode_rules() {
        assert_eq!(token_file_mode(0o644, None, None), 0o644);
        assert_eq!(token_file_mode(0o644, Some(1000), None), 0o600);
        assert_eq!(token_file_mode(0o644, None, Some(2000)), 0o600);
        let group = Ownership {
            fs_group: Some(2000),
            read_only: true,
        };
        assert_eq!(group.file(0o600, None).mode, 0o640);
    }

    /// Wall time that moves with tokio's (paused) clock.
    struct PausedClock {
        base: Timestamp,
        start: tokio::time::Instant,
    }

    impl Clock for PausedClock {
        fn now(&self) -> Timestamp {
            let elapsed = jiff::SignedDuration::try_from(self.start.elapsed()).expect("elapsed");
            self.base.checked_add(elapsed).expect("now")
        }
    }

    /// Issues tokens of a fixed lifetime; fails while `failures` lasts.
    struct FakeSource {
        clock: Arc<PausedClock>,
        lifetime: i64,
        requests: Mutex<Vec<Timestamp>>,
        failures: Mutex<u32>,
    }

    impl TokenSource for FakeSource {
        fn request<'a>(
            &'a self,
            _: &'a TokenProjection,
        ) -> BoxFuture<'a, Result<IssuedToken, TokenError>> {
            Box::pin(async move {
                let now = self.clock.now();
                let mut requests = self.requests.lock().expect("lock");
                requests.push(now);
                let mut failures = self.failures.lock().expect("lock");
                if *failures > 0 {
                    *failures -= 1;
                    return Err(TokenError::Api {
                        code: 403,
                        message: "serviceaccounts \"default\" is forbidden".into(),
                    });
                }
                Ok(IssuedToken {
                    token: format!("token-{}", requests.len()),
                    expires: now
                        .checked_add(jiff::SignedDuration::from_secs(self.lifetime))
                        .expect("expiry"),
                    expiration_seconds: self.lifetime,
                })
            })
        }
    }

    #[derive(Default)]
    struct RecordedEvents(Mutex<Vec<String>>);

    impl Events for RecordedEvents {
        fn warning<'a>(&'a self, reason: &'a str, message: String) -> BoxFuture<'a, ()> {
            Box::pin(async move {
                self.0
                    .lock()
                    .expect("lock")
                    .push(format!("{reason}: {message}"));
            })
        }
    }

    struct Setup {
        source: Arc<FakeSource>,
        events: Arc<RecordedEvents>,
        dir: PathBuf,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(name: &str, lifetime: i64, failures: u32) -> Setup {
        let clock = Arc::new(PausedClock {
            base: at(0),
            start: tokio::time::Instant::now(),
        });
        let source = Arc::new(FakeSource {
            clock: clock.clone(),
            lifetime,
            requests: Mutex::default(),
            failures: Mutex::new(failures),
        });
        let events = Arc::new(RecordedEvents::default());
        let dir = std::env::temp_dir().join(format!("skiff-token-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let file = TokenFile {
            volume: "kube-api-access-x".into(),
            dir: dir.clone(),
            path: "token".into(),
            mode: 0o644,
            uid: None,
            ownership: Ownership {
                fs_group: None,
                read_only: true,
            },
            projection: TokenProjection {
                namespace: "ns".into(),
                service_account: "default".into(),
                audiences: Vec::new(),
                expiration_seconds: lifetime,
                pod_name: "p".into(),
                pod_uid: "u".into(),
            },
            issued: issued(0, lifetime),
        };
        std::fs::write(dir.join("token"), "t0").expect("first token");
        let task = tokio::spawn(keep_fresh(
            file,
            source.clone(),
            events.clone(),
            clock as Arc<dyn Clock>,
        ));
        Setup {
            source,
            events,
            dir,
            task,
        }
    }

    fn requests(setup: &Setup) -> Vec<i64> {
        setup
            .source
            .requests
            .lock()
            .expect("lock")
            .iter()
            .map(|t| t.as_second() - at(0).as_second())
            .collect()
    }

    async fn advance(seconds: u64) {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_hour_token_is_refreshed_after_48_minutes_and_again_48_later() {
        let setup = start("hour", 3600, 0);
        advance(2879).await;
        assert!(requests(&setup).is_empty(), "not before 80 %");
        advance(2).await;
        assert_eq!(requests(&setup), [2880]);
        let token = std::fs::read_to_string(setup.dir.join("token")).expect("token");
        assert_eq!(token, "token-1", "the file holds the new token");
        advance(2880).await;
        assert_eq!(requests(&setup), [2880, 5760]);
        assert!(setup.events.0.lock().expect("lock").is_empty());
        setup.task.abort();
        let _ = std::fs::remove_dir_all(&setup.dir);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_token_is_refreshed_after_a_day() {
        let setup = start("day", 7 * 86_400, 0);
        advance(86_399).await;
        assert!(requests(&setup).is_empty());
        advance(2).await;
        assert_eq!(requests(&setup), [86_400]);
        setup.task.abort();
        let _ = std::fs::remove_dir_all(&setup.dir);
    }

    #[tokio::test(start_paused = true)]
    async fn refused_requests_become_events_and_retries_with_back_off() {
        let setup = start("refused", 3600, 3);
        advance(2880 + 2 + 4 + 8 + 1).await;
        // 2880 fails, then retries after 2, 4 and 8 seconds; the fourth attempt works.
        assert_eq!(requests(&setup), [2880, 2882, 2886, 2894]);
        let events = setup.events.0.lock().expect("lock").clone();
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[0],
            "FailedMount: MountVolume.SetUp failed for volume \"kube-api-access-x\" : \
             failed to fetch token: serviceaccounts \"default\" is forbidden"
        );
        let token = std::fs::read_to_string(setup.dir.join("token")).expect("token");
        assert_eq!(token, "token-4");
        setup.task.abort();
        let _ = std::fs::remove_dir_all(&setup.dir);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_past_its_expiry_says_so() {
        let setup = start("expired", 3600, 100);
        advance(3700).await;
        let events = setup.events.0.lock().expect("lock").clone();
        let last = events.last().expect("events");
        assert!(last.contains("token expired and refresh failed"), "{last}");
        // The old token stays in place meanwhile.
        let token = std::fs::read_to_string(setup.dir.join("token")).expect("token");
        assert_eq!(token, "t0");
        setup.task.abort();
        let _ = std::fs::remove_dir_all(&setup.dir);
    }
}
