//! Talking to the state manager (`bunsan_proto::control`): register once
//! (`POST /v1/agents`), then deliver reports (`POST /v1/reports`).
//!
//! Control may restart or be unreachable for a while. A delivery then retries with
//! exponential backoff and full jitter ([`Backoff`]), moving to the next control URL after
//! each failure and pausing only once every URL failed in a row. Each attempt sends the
//! report *current at that moment* — nothing queues up while control is away, so when it
//! returns it gets one up-to-date report, not a backlog. A 400 naming an unknown server
//! means control lost its registry (a restart without its store, or another instance):
//! the agent registers again and resends once.

use std::time::Duration;

use bunsan_proto::control::{AgentRegistration, Report, Watched};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use tokio_util::sync::CancellationToken;

use crate::client::{HttpClient, HttpError};
use crate::config::AgentConfig;

/// The first retry waits up to this long…
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// …each further one up to twice as long, but never longer than this.
pub const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// Control's answers are small; anything longer is cut.
const ANSWER_LIMIT: usize = 64 * 1024;

/// Exponential backoff with full jitter: the n-th wait in a row is drawn uniformly from
/// `[base, min(cap, base·2ⁿ)]`. The floor of one `base` keeps a run of unlucky draws from
/// becoming a burst; the jitter keeps many agents from retrying in lockstep after a
/// control restart.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff from `base` doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap: cap.max(base), failures: 0 }
    }

    /// The next wait; `unit` is a random number in `[0, 1)`.
    pub fn next_wait(&mut self, unit: f64) -> Duration {
        let ceiling = self.base.saturating_mul(1 << self.failures.min(20)).min(self.cap);
        self.failures = self.failures.saturating_add(1);
        self.base + (ceiling - self.base).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// After a success: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// How control answered one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// 2xx.
    Accepted,
    /// 400 naming an unknown pool, server or agent.
    Unknown(String),
    /// Another 4xx: retrying the same request will not help.
    Refused(String),
    /// No answer, or 5xx / 429: control is away or overloaded; retry later.
    Unavailable(String),
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Control took the report (or there was nothing to send).
    Sent,
    /// Control refused it; the next interval tries again.
    Refused,
    /// Shutdown came first.
    Stopped,
}

/// The agent's side of the control protocol.
#[derive(Debug)]
pub struct Reporter {
    client: HttpClient,
    controls: Vec<http::Uri>,
    current: usize,
    failed_in_a_row: usize,
    token: Option<String>,
    registration: Bytes,
    registered: bool,
    backoff: Backoff,
    timeout: Duration,
}

impl Reporter {
    /// A reporter for `config`'s control URLs and servers (not yet registered).
    pub fn new(config: &AgentConfig) -> Self {
        let registration = AgentRegistration {
            agent: config.name.clone(),
            method: config.method.as_str().to_owned(),
            servers: config
                .servers
                .iter()
                .map(|s| Watched { pool: s.pool.clone(), server: s.server.clone(), addr: s.addr.to_string() })
                .collect(),
        };
        Self {
            client: HttpClient::new(),
            controls: config.control.clone(),
            current: 0,
            failed_in_a_row: 0,
            token: config.token.clone(),
            registration: Bytes::from(serde_json::to_vec(&registration).unwrap_or_default()),
            registered: false,
            backoff: Backoff::new(BACKOFF_BASE, BACKOFF_CAP),
            // Long enough for a busy control, short enough that a hung one is left soon.
            timeout: config.interval.clamp(Duration::from_secs(1), Duration::from_secs(5)),
        }
    }

    /// Registers, retrying until control accepts or `shutdown`; returns whether it did.
    pub async fn register(&mut self, shutdown: &CancellationToken) -> bool {
        loop {
            match self.post("/v1/agents", self.registration.clone()).await {
                Outcome::Accepted => {
                    tracing::info!(control = %self.controls[self.current], "registered with control");
                    self.registered = true;
                    self.succeeded();
                    return true;
                }
                Outcome::Unavailable(why) => {
                    if !self.fail_over("registration", &why, shutdown).await {
                        return false;
                    }
                }
                // A wrong token or a registration control rejects will not fix itself
                // soon: keep asking, at the backoff's pace.
                Outcome::Refused(why) | Outcome::Unknown(why) => {
                    let control = &self.controls[self.current];
                    tracing::error!(%control, %why, "control refused the registration");
                    if !self.pause(shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Delivers the current report, as given by `current` at each attempt: registers
    /// first if needed, and retries while control is unavailable.
    pub async fn deliver(
        &mut self,
        mut current: impl FnMut() -> Vec<Report>,
        shutdown: &CancellationToken,
    ) -> Delivery {
        let mut reregistered = false;
        loop {
            if !self.registered && !self.register(shutdown).await {
                return Delivery::Stopped;
            }
            let rows = current();
            if rows.is_empty() {
                return Delivery::Sent;
            }
            let body = Bytes::from(serde_json::to_vec(&rows).unwrap_or_default());
            match self.post("/v1/reports", body).await {
                Outcome::Accepted => {
                    self.succeeded();
                    return Delivery::Sent;
                }
                Outcome::Unknown(why) if !reregistered => {
                    tracing::warn!(%why, "control does not know our servers; registering again");
                    (self.registered, reregistered) = (false, true);
                }
                Outcome::Unknown(why) | Outcome::Refused(why) => {
                    let control = &self.controls[self.current];
                    tracing::error!(%control, %why, "control refused the report");
                    return Delivery::Refused;
                }
                Outcome::Unavailable(why) => {
                    if !self.fail_over("report", &why, shutdown).await {
                        return Delivery::Stopped;
                    }
                }
            }
        }
    }

    /// After a failed attempt: move to the next control URL, and once every one has
    /// failed in a row, wait. Returns false on shutdown.
    async fn fail_over(&mut self, what: &str, why: &str, shutdown: &CancellationToken) -> bool {
        tracing::warn!(control = %self.controls[self.current], %why, "{what} failed");
        self.current = (self.current + 1) % self.controls.len();
        self.failed_in_a_row += 1;
        if self.failed_in_a_row % self.controls.len() != 0 {
            return true;
        }
        self.pause(shutdown).await
    }

    /// Waits the next backoff interval; returns false on shutdown.
    async fn pause(&mut self, shutdown: &CancellationToken) -> bool {
        let wait = self.backoff.next_wait(fastrand::f64());
        tracing::debug!(?wait, "waiting before the next attempt");
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = shutdown.cancelled() => false,
        }
    }

    fn succeeded(&mut self) {
        if self.failed_in_a_row > 0 {
            let (failed, control) = (self.failed_in_a_row, &self.controls[self.current]);
            tracing::info!(failed, %control, "control reachable again");
        }
        self.failed_in_a_row = 0;
        self.backoff.reset();
    }

    /// POSTs JSON to the current control URL and classifies the answer.
    async fn post(&self, path: &str, body: Bytes) -> Outcome {
        let request = match self.request(path, body) {
            Ok(request) => request,
            Err(error) => return Outcome::Refused(error.to_string()),
        };
        classify(self.client.send(request, self.timeout, ANSWER_LIMIT).await)
    }

    fn request(&self, path: &str, body: Bytes) -> Result<Request<Full<Bytes>>, http::Error> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(endpoint(&self.controls[self.current], path)?)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, "bunsan-agent");
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        request.body(Full::new(body))
    }
}

/// `base` (which may carry a path prefix) joined with `path`.
pub fn endpoint(base: &http::Uri, path: &str) -> Result<http::Uri, http::Error> {
    let prefix = base.path().trim_end_matches('/');
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(format!("{prefix}{path}").parse()?);
    Ok(http::Uri::from_parts(parts)?)
}

fn classify(result: Result<crate::client::Answer, HttpError>) -> Outcome {
    let answer = match result {
        Ok(answer) => answer,
        Err(error) => return Outcome::Unavailable(error.to_string()),
    };
    let status = answer.status;
    let message = format!("{status}: {}", error_message(&answer.body));
    if status.is_success() {
        Outcome::Accepted
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Outcome::Unavailable(message)
    } else if status == StatusCode::BAD_REQUEST && names_unknown(&message) {
        Outcome::Unknown(message)
    } else {
        Outcome::Refused(message)
    }
}

/// The `error` of a `{"error": "…"}` body, else the start of the body.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => parsed.error,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_owned(),
    }
}

/// Whether control's complaint is that it does not know what the agent talks about.
fn names_unknown(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("unknown") || lower.contains("not registered")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Answer;

    #[test]
    fn backoff_doubles_from_the_base_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_CAP);
        let highs: Vec<u128> = (0..8).map(|_| backoff.next_wait(1.0).as_millis()).collect();
        assert_eq!(highs, vec![200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(backoff.next_wait(0.0), BACKOFF_BASE);
        backoff.reset();
        assert_eq!(backoff.next_wait(1.0), BACKOFF_BASE);
        for _ in 0..100 {
            let wait = backoff.next_wait(fastrand::f64());
            assert!((BACKOFF_BASE..=BACKOFF_CAP).contains(&wait), "{wait:?}");
        }
    }

    #[test]
    fn endpoints_keep_a_base_path() {
        let join = |base: &str| endpoint(&base.parse().unwrap(), "/v1/reports").unwrap().to_string();
        assert_eq!(join("http://10.0.0.1:7070"), "http://10.0.0.1:7070/v1/reports");
        assert_eq!(join("http://10.0.0.1:7070/"), "http://10.0.0.1:7070/v1/reports");
        assert_eq!(join("http://c.example/control/"), "http://c.example/control/v1/reports");
    }

    #[test]
    fn answers_are_classified() {
        let answer = |code: u16, body: &str| {
            Ok(Answer { status: StatusCode::from_u16(code).unwrap(), body: Bytes::from(body.to_owned()) })
        };
        assert_eq!(classify(answer(200, r#"{"accepted":1}"#)), Outcome::Accepted);
        assert!(matches!(classify(answer(503, "")), Outcome::Unavailable(_)));
        assert!(matches!(classify(answer(429, "")), Outcome::Unavailable(_)));
        assert!(matches!(classify(Err(HttpError::Timeout(Duration::from_secs(1)))), Outcome::Unavailable(_)));
        assert_eq!(
            classify(answer(400, r#"{"error":"unknown server app/b1"}"#)),
            Outcome::Unknown("400 Bad Request: unknown server app/b1".into())
        );
        assert!(matches!(classify(answer(400, r#"{"error":"load must be finite"}"#)), Outcome::Refused(_)));
        assert!(matches!(classify(answer(401, r#"{"error":"unknown token"}"#)), Outcome::Refused(_)));
    }
}
