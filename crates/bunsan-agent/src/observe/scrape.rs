//! The `scrape` method: `GET` a URL per server every interval and read one number.
//!
//! - `load` = the body as a number (surrounding whitespace ignored), or, with a metric
//!   name, the value of the first Prometheus text line `NAME value` or `NAME{…} value`.
//!   It must be finite and non-negative. What it measures is the server's business (e.g.
//!   requests in flight); the agent only relays it.
//!
//! A failed scrape keeps the previous value for up to [`KEEP_FOR`] intervals (one lost
//! request must not make a server vanish from the table). After that the server's load is
//! unknown (`None`) and the agent stops reporting it: a stale number is worse than none,
//! because a frozen low value keeps attracting new work to a server whose real load
//! nobody sees, and a frozen high one starves it. With no report, control ages the
//! server's figures out and subscribers fall back on their own view.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use tokio::task::JoinSet;

use super::Sample;
use crate::client::HttpClient;

/// Failed scrapes in a row during which the last good value still stands.
pub const KEEP_FOR: u32 = 3;
/// At most this many bytes of a metrics page are read.
const BODY_LIMIT: usize = 4 << 20;

/// Why a scrape gave no number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScrapeError {
    /// The request failed.
    #[error("{0}")]
    Http(String),
    /// The server answered with a non-2xx status.
    #[error("status {0}")]
    Status(u16),
    /// The body is not a number.
    #[error("the body is not a number: {0:?}")]
    NotANumber(String),
    /// The number is negative, infinite or NaN.
    #[error("{0} is not a usable load (finite, not negative)")]
    BadValue(String),
    /// No line of the page has the metric.
    #[error("no {0} line on the page")]
    NoMetric(String),
    /// The metric's line is malformed.
    #[error("malformed line for {0}")]
    Malformed(String),
}

/// Reads the load from a scraped body: the whole body, or `metric`'s first sample.
pub fn parse_load(body: &str, metric: Option<&str>) -> Result<f64, ScrapeError> {
    match metric {
        None => number(body.trim()).map_err(|e| match e {
            ScrapeError::BadValue(v) => ScrapeError::BadValue(v),
            _ => ScrapeError::NotANumber(body.chars().take(40).collect()),
        }),
        Some(name) => metric_value(body, name),
    }
}

/// The value of the first `name` or `name{…}` line of Prometheus text.
fn metric_value(body: &str, name: &str) -> Result<f64, ScrapeError> {
    for line in body.lines().map(str::trim_start).filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let rest = match rest.as_bytes().first() {
            Some(b'{') => after_labels(rest).ok_or_else(|| ScrapeError::Malformed(name.to_owned()))?,
            Some(b' ' | b'\t') => rest,
            // A longer name that starts with this one.
            _ => continue,
        };
        let value =
            rest.split_ascii_whitespace().next().ok_or_else(|| ScrapeError::Malformed(name.to_owned()))?;
        return number(value);
    }
    Err(ScrapeError::NoMetric(name.to_owned()))
}

/// The text after the label set `{…}` at the start of `text`; label values are quoted
/// and may contain `}` and escaped quotes.
fn after_labels(text: &str) -> Option<&str> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in text.char_indices().skip(1) {
        match (c, quoted, escaped) {
            (_, true, true) => escaped = false,
            ('\\', true, false) => escaped = true,
            ('"', _, false) => quoted = !quoted,
            ('}', false, _) => return text.get(i + 1..),
            _ => {}
        }
    }
    None
}

fn number(text: &str) -> Result<f64, ScrapeError> {
    let value: f64 = text.parse().map_err(|_| ScrapeError::NotANumber(text.to_owned()))?;
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(ScrapeError::BadValue(text.to_owned()))
    }
}

/// One server's scrape target and recent history.
#[derive(Debug)]
struct Target {
    url: Option<http::Uri>,
    last: Option<f64>,
    failures: u32,
}

/// The `scrape` method.
#[derive(Debug)]
pub struct Scrape {
    client: HttpClient,
    targets: Vec<Target>,
    metric: Option<String>,
    timeout: Duration,
}

impl Scrape {
    /// Scrapes `urls` (one per server; `None` gives no load) every interval of `interval`,
    /// which is also each request's timeout.
    pub fn new(urls: Vec<Option<http::Uri>>, metric: Option<String>, interval: Duration) -> Self {
        let targets = urls.into_iter().map(|url| Target { url, last: None, failures: 0 }).collect();
        Self { client: HttpClient::new(), targets, metric, timeout: interval }
    }

    /// Scrapes every server at once and returns their samples.
    pub async fn sample(&mut self) -> Vec<Sample> {
        let mut scrapes = JoinSet::new();
        for (i, target) in self.targets.iter().enumerate() {
            let Some(url) = target.url.clone() else { continue };
            let (client, metric, timeout) = (self.client.clone(), self.metric.clone(), self.timeout);
            scrapes.spawn(async move { (i, scrape(&client, url, metric.as_deref(), timeout).await) });
        }
        let mut results = vec![Err(ScrapeError::Http("not scraped".to_owned())); self.targets.len()];
        while let Some(joined) = scrapes.join_next().await {
            if let Ok((i, result)) = joined {
                results[i] = result;
            }
        }
        self.targets.iter_mut().zip(results).map(|(target, result)| target.settle(result)).collect()
    }
}

impl Target {
    /// Records one scrape's result and gives the load to report.
    fn settle(&mut self, result: Result<f64, ScrapeError>) -> Sample {
        match result {
            Ok(value) => {
                if self.failures > KEEP_FOR {
                    tracing::info!(url = ?self.url, "scrape works again");
                }
                (self.last, self.failures) = (Some(value), 0);
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                self.log_failure(&error);
            }
        }
        let fresh_enough = self.failures <= KEEP_FOR;
        Sample { load: self.last.filter(|_| fresh_enough), new_per_sec: None }
    }

    /// The first failure and the moment the value goes stale are worth a warning; the
    /// rest of a long outage is not.
    fn log_failure(&self, error: &ScrapeError) {
        let url = self.url.as_ref().map(ToString::to_string).unwrap_or_default();
        match self.failures {
            1 => tracing::warn!(%url, %error, "scrape failed; keeping the last value"),
            n if n == KEEP_FOR + 1 => {
                tracing::warn!(%url, %error, "scrape failing for {n} intervals; no longer reporting its load")
            }
            _ => tracing::debug!(%url, %error, "scrape failed"),
        }
    }
}

async fn scrape(
    client: &HttpClient,
    url: http::Uri,
    metric: Option<&str>,
    timeout: Duration,
) -> Result<f64, ScrapeError> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header(http::header::USER_AGENT, "bunsan-agent")
        .body(Full::new(Bytes::new()))
        .map_err(|e| ScrapeError::Http(e.to_string()))?;
    let answer =
        client.send(request, timeout, BODY_LIMIT).await.map_err(|e| ScrapeError::Http(e.to_string()))?;
    if !answer.status.is_success() {
        return Err(ScrapeError::Status(answer.status.as_u16()));
    }
    parse_load(&String::from_utf8_lossy(&answer.body), metric)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP inflight Requests being served.
# TYPE inflight gauge
inflight_total 99
inflight{route=\"/a}\",code=\"2\\\"00\"} 7 1700000000000
inflight{route=\"/b\"} 3
conns 12.5
";

    #[test]
    fn a_plain_number_with_whitespace() {
        assert_eq!(parse_load(" 42\n", None), Ok(42.0));
        assert_eq!(parse_load("0.25", None), Ok(0.25));
    }

    #[test]
    fn prometheus_lines_with_and_without_labels() {
        assert_eq!(parse_load(PAGE, Some("conns")), Ok(12.5));
        // The first line of the metric wins; a longer name does not match.
        assert_eq!(parse_load(PAGE, Some("inflight")), Ok(7.0));
        assert_eq!(parse_load(PAGE, Some("inflight_total")), Ok(99.0));
    }

    #[test]
    fn garbage_and_unusable_values_are_errors() {
        assert!(matches!(parse_load("<html>busy</html>", None), Err(ScrapeError::NotANumber(_))));
        assert!(matches!(parse_load("", None), Err(ScrapeError::NotANumber(_))));
        assert!(matches!(parse_load("-1", None), Err(ScrapeError::BadValue(_))));
        assert!(matches!(parse_load("NaN", None), Err(ScrapeError::BadValue(_))));
        assert!(matches!(parse_load("x +Inf", Some("x")), Err(ScrapeError::BadValue(_))));
        assert_eq!(parse_load(PAGE, Some("missing")), Err(ScrapeError::NoMetric("missing".into())));
        assert_eq!(parse_load("x{a=\"1\" 5", Some("x")), Err(ScrapeError::Malformed("x".into())));
        assert_eq!(parse_load("x{a=\"1\"}", Some("x")), Err(ScrapeError::Malformed("x".into())));
    }

    #[test]
    fn a_failed_scrape_keeps_the_last_value_for_a_few_intervals_then_drops_it() {
        let mut target = Target { url: None, last: None, failures: 0 };
        let failed = || Err(ScrapeError::Status(503));
        assert_eq!(target.settle(failed()).load, None, "nothing known yet");
        assert_eq!(target.settle(Ok(5.0)).load, Some(5.0));
        for _ in 0..KEEP_FOR {
            assert_eq!(target.settle(failed()).load, Some(5.0));
        }
        assert_eq!(target.settle(failed()).load, None);
        assert_eq!(target.settle(Ok(6.0)).load, Some(6.0));
    }
}
