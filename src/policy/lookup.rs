//! The number lookup hook: an operator's HLR or number-portability service, asked whether a
//! number that passed the static lists may receive a code. Answers are cached in process (a
//! `serve` for `cache_ttl`, any refusal for `negative_cache_ttl`), concurrent lookups of one
//! number share one request, and at most `max_concurrency` requests are in flight toward the
//! service, so a slow or flooded lookup service costs the gateway bounded work. A failure is
//! never cached: it means `serve` (`on_failure = "open"`) or 503 (`"closed"`).
//!
//! The contract (README "Number lookup"): `POST <url>` with `Content-Type: application/json`
//! and `{"phoneNumber": "+34…"}`; a 200 answer with `{"result": "serve" | "not_allowed" |
//! "blocked" | "other_operator"}` (other fields ignored). Anything else is a failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use prometheus::{IntCounter, IntCounterVec, Opts};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::config::{LookupFailure, LookupSettings};
use crate::domain::PhoneNumber;

const TARGET: &str = "otp_gateway::policy::lookup";
/// A lookup answer is a few dozen bytes; anything much longer is not one.
const MAX_ANSWER_BYTES: usize = 4 * 1024;

/// What the lookup service says about a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupVerdict {
    /// This operator serves the number and it can receive SMS.
    Serve,
    /// The number cannot receive SMS (403 PHONE_NUMBER_NOT_ALLOWED).
    NotAllowed,
    /// The number has SMS barring (403 PHONE_NUMBER_BLOCKED).
    Blocked,
    /// The number was ported to, or belongs to, another operator (404 NOT_FOUND).
    OtherOperator,
}

impl LookupVerdict {
    fn label(self) -> &'static str {
        match self {
            LookupVerdict::Serve => "serve",
            LookupVerdict::NotAllowed => "not_allowed",
            LookupVerdict::Blocked => "blocked",
            LookupVerdict::OtherOperator => "other_operator",
        }
    }
}

/// The lookup failed and `on_failure = "closed"`: the send is refused with 503.
#[derive(Debug, Clone, thiserror::Error)]
#[error("number lookup failed: {0}")]
pub struct LookupUnavailable(pub String);

#[derive(Deserialize)]
struct Answer {
    result: LookupVerdict,
}

/// Lookup metrics: answers by result (`failed` included), failures by reason, cache hits.
#[derive(Clone)]
pub struct LookupMetrics {
    /// Answers used for a send, by result (`serve`, `not_allowed`, `blocked`,
    /// `other_operator`, `failed`), cached or not.
    pub lookups: IntCounterVec,
    /// Failed requests to the service by reason (`timeout`, `unreachable`, `bad_answer`) and
    /// what the gateway did (`open`, `closed`).
    pub failures: IntCounterVec,
    /// Answers served from the cache.
    pub cache_hits: IntCounter,
}

impl LookupMetrics {
    /// Creates the metrics; `register` adds them to the gateway's registry.
    pub fn new() -> Result<LookupMetrics, prometheus::Error> {
        Ok(LookupMetrics {
            lookups: IntCounterVec::new(
                Opts::new("otp_sms_lookup_total", "Number lookups by result"),
                &["result"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "otp_sms_lookup_failures_total",
                    "Failed number lookups by reason and the send's fate",
                ),
                &["reason", "on_failure"],
            )?,
            cache_hits: IntCounter::new(
                "otp_sms_lookup_cache_hits_total",
                "Number lookups answered from the cache",
            )?,
        })
    }

    /// Adds the metrics to `metrics`' registry.
    pub fn register(&self, metrics: &crate::metrics::Metrics) -> Result<(), prometheus::Error> {
        metrics.register(Box::new(self.lookups.clone()))?;
        metrics.register(Box::new(self.failures.clone()))?;
        metrics.register(Box::new(self.cache_hits.clone()))
    }
}

/// Per-entry lifetimes: a `serve` is trusted longer than a refusal, which a port-in or a
/// lifted barring may soon change.
struct VerdictExpiry {
    positive: Duration,
    negative: Duration,
}

impl moka::Expiry<String, LookupVerdict> for VerdictExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &LookupVerdict,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match value {
            LookupVerdict::Serve => self.positive,
            _ => self.negative,
        })
    }
}

/// The hook: a client of the lookup service with its cache.
pub struct NumberLookup {
    http: reqwest::Client,
    url: reqwest::Url,
    credential: Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    timeout: Duration,
    on_failure: LookupFailure,
    cache: Cache<String, LookupVerdict>,
    slots: Arc<Semaphore>,
    metrics: LookupMetrics,
}

impl std::fmt::Debug for NumberLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a credential in its query; the header value always does.
        f.debug_struct("NumberLookup")
            .field("host", &self.url.host_str())
            .finish_non_exhaustive()
    }
}

impl NumberLookup {
    /// Builds the client from validated settings; contacts nothing yet.
    pub fn new(s: &LookupSettings, metrics: LookupMetrics) -> Result<NumberLookup, String> {
        let url = reqwest::Url::parse(&s.url).map_err(|e| e.to_string())?;
        if url.scheme() == "http" && !url.host_str().is_some_and(is_loopback) {
            tracing::warn!(target: TARGET, host = url.host_str().unwrap_or_default(), "policy.lookup.url is plain HTTP: phone numbers and the credential travel unencrypted");
        }
        let http = reqwest::Client::builder()
            .timeout(s.timeout)
            .connect_timeout(s.timeout)
            // A lookup answer is never followed elsewhere: the number would travel on (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let credential = match &s.credential {
            None => None,
            Some(secret) => {
                let (name, value) = match &s.credential_header {
                    Some(h) => (
                        reqwest::header::HeaderName::from_bytes(h.as_bytes())
                            .map_err(|e| e.to_string())?,
                        secret.expose().to_owned(),
                    ),
                    None => (
                        reqwest::header::AUTHORIZATION,
                        format!("Bearer {}", secret.expose()),
                    ),
                };
                let mut value =
                    reqwest::header::HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        Ok(NumberLookup {
            http,
            url,
            credential,
            timeout: s.timeout,
            on_failure: s.on_failure,
            cache: Cache::builder()
                .max_capacity(s.cache_entries)
                .expire_after(VerdictExpiry {
                    positive: s.cache_ttl,
                    negative: s.negative_cache_ttl,
                })
                .build(),
            slots: Arc::new(Semaphore::new(s.max_concurrency)),
            metrics,
        })
    }

    /// The verdict for `phone`: cached, or asked once however many requests want it now. A
    /// failure is `Serve` when failing open, an error when failing closed.
    pub async fn check(&self, phone: &PhoneNumber) -> Result<LookupVerdict, LookupUnavailable> {
        let key = phone.as_e164().to_owned();
        if let Some(verdict) = self.cache.get(&key).await {
            self.metrics.cache_hits.inc();
            self.metrics
                .lookups
                .with_label_values(&[verdict.label()])
                .inc();
            return Ok(verdict);
        }
        match self.cache.try_get_with(key, self.ask(phone)).await {
            Ok(verdict) => {
                self.metrics
                    .lookups
                    .with_label_values(&[verdict.label()])
                    .inc();
                Ok(verdict)
            }
            Err(failure) => {
                let (reason, detail) = failure.as_ref();
                self.metrics.lookups.with_label_values(&["failed"]).inc();
                match self.on_failure {
                    LookupFailure::Open => {
                        self.metrics
                            .failures
                            .with_label_values(&[reason, "open"])
                            .inc();
                        tracing::warn!(target: TARGET, phone = %phone, reason, error = %detail, "number lookup failed; serving the number (policy.lookup.on_failure = open)");
                        Ok(LookupVerdict::Serve)
                    }
                    LookupFailure::Closed => {
                        self.metrics
                            .failures
                            .with_label_values(&[reason, "closed"])
                            .inc();
                        tracing::warn!(target: TARGET, phone = %phone, reason, error = %detail, "number lookup failed; refusing the send (policy.lookup.on_failure = closed)");
                        Err(LookupUnavailable(format!("{reason}: {detail}")))
                    }
                }
            }
        }
    }

    /// One request to the service, within `timeout` including the wait for a slot.
    async fn ask(&self, phone: &PhoneNumber) -> Result<LookupVerdict, (&'static str, String)> {
        let request = async {
            let _slot = self
                .slots
                .acquire()
                .await
                .map_err(|_| ("unreachable", "closed".to_owned()))?;
            let mut req = self
                .http
                .post(self.url.clone())
                .json(&serde_json::json!({"phoneNumber": phone.as_e164()}));
            if let Some((name, value)) = &self.credential {
                req = req.header(name.clone(), value.clone());
            }
            // Errors name the host only: reqwest's text would carry the URL.
            let mut res = req.send().await.map_err(|e| {
                let reason = if e.is_timeout() {
                    "timeout"
                } else {
                    "unreachable"
                };
                (reason, format!("request failed ({reason})"))
            })?;
            if res.status() != reqwest::StatusCode::OK {
                return Err(("bad_answer", format!("status {}", res.status())));
            }
            let mut body = Vec::new();
            while let Some(chunk) = res.chunk().await.map_err(|e| {
                let reason = if e.is_timeout() {
                    "timeout"
                } else {
                    "unreachable"
                };
                (reason, "answer cut short".to_owned())
            })? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_ANSWER_BYTES {
                    return Err(("bad_answer", "answer too large".to_owned()));
                }
            }
            serde_json::from_slice::<Answer>(&body)
                .map(|a| a.result)
                .map_err(|e| ("bad_answer", format!("answer not understood: {e}")))
        };
        tokio::time::timeout(self.timeout, request)
            .await
            .unwrap_or_else(|_| Err(("timeout", "no answer in time".to_owned())))
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_contract_reads_each_result_and_nothing_else() {
        for (text, verdict) in [
            ("serve", LookupVerdict::Serve),
            ("not_allowed", LookupVerdict::NotAllowed),
            ("blocked", LookupVerdict::Blocked),
            ("other_operator", LookupVerdict::OtherOperator),
        ] {
            let body = format!(r#"{{"result":"{text}","hlr":"x"}}"#);
            assert_eq!(
                serde_json::from_slice::<Answer>(body.as_bytes())
                    .unwrap()
                    .result,
                verdict
            );
            assert_eq!(verdict.label(), text);
        }
        assert!(serde_json::from_slice::<Answer>(br#"{"result":"SERVE"}"#).is_err());
        assert!(serde_json::from_slice::<Answer>(br#"{}"#).is_err());
    }

    #[test]
    fn debug_shows_the_host_but_never_the_credential() {
        let lookup = NumberLookup::new(
            &LookupSettings {
                url: "https://hlr.example.net/lookup?key=k".into(),
                timeout: Duration::from_secs(1),
                cache_ttl: Duration::from_secs(1),
                negative_cache_ttl: Duration::from_secs(1),
                cache_entries: 10,
                max_concurrency: 1,
                on_failure: LookupFailure::Open,
                credential: Some(crate::domain::Secret::new("top-secret-token")),
                credential_header: None,
            },
            LookupMetrics::new().unwrap(),
        )
        .unwrap();
        let shown = format!("{lookup:?}");
        assert!(shown.contains("hlr.example.net"), "{shown}");
        assert!(
            !shown.contains("top-secret") && !shown.contains("key=k"),
            "{shown}"
        );
    }
}
