//! Prometheus metrics in an owned registry (no globals, so tests run in parallel). Labels are
//! bounded enums only: route patterns, outcomes, SMPP command statuses; never numbers or ids.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Distinct command_status label values kept before further ones are counted as `other`; an
/// SMSC could otherwise grow the series without bound by answering with arbitrary statuses.
const MAX_STATUS_LABELS: usize = 32;

/// Every metric the gateway exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route pattern, method and status.
    pub http_requests: IntCounterVec,
    /// HTTP latency by route pattern.
    pub http_duration: HistogramVec,
    /// SMS accepted by the SMSC for a send-code.
    pub codes_sent: IntCounter,
    /// send-code requests that did not produce an SMS, by reason.
    pub send_failures: IntCounterVec,
    /// validate-code results by outcome.
    pub validations: IntCounterVec,
    /// SMS segments submitted.
    pub segments_sent: IntCounter,
    /// 1 when an SMPP session is bound.
    pub smpp_bound: IntGauge,
    /// Per-session SMPP metrics (binds, window, throttling, command statuses).
    pub smpp: SmppMetrics,
    /// Challenge-store (and shared rate limiter) call latency and failures.
    pub store: StoreMetrics,
    /// Bearer-token validations and the external identity providers behind them.
    pub auth: AuthMetrics,
}

/// What bearer-token validation records. The `issuer` label is `embedded` or the configured
/// name of an `[[auth.issuers]]` entry (never a value read from a token), `outcome` one of
/// [`AuthMetrics::OUTCOMES`]: both bounded by the configuration.
#[derive(Clone)]
pub struct AuthMetrics {
    /// Validations by issuer and outcome (`issuer` is `unknown` when no configured issuer
    /// matched the token).
    pub validations: IntCounterVec,
    /// JWKS (and discovery) fetches by issuer and result (`ok`, `failed`).
    pub jwks_refreshes: IntCounterVec,
    /// RFC 7662 introspection round trips by issuer, whatever their outcome.
    pub introspection_seconds: HistogramVec,
    /// 1 while the issuer's keys are loaded (readiness needs every issuer at 1).
    pub issuer_ready: IntGaugeVec,
}

impl AuthMetrics {
    /// Every `outcome` label value.
    pub const OUTCOMES: [&'static str; 16] = [
        "valid",
        "cached",
        "insufficient_scope",
        "malformed",
        "bad_signature",
        "unsupported_algorithm",
        "unknown_key",
        "key_mismatch",
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_audience",
        "missing_claim",
        "unknown_client",
        "inactive",
        "idp_unavailable",
    ];

    /// Creates the metrics without registering them (see [`Metrics::new`]).
    pub fn new() -> Result<AuthMetrics, prometheus::Error> {
        Ok(AuthMetrics {
            validations: IntCounterVec::new(
                Opts::new(
                    "otp_sms_token_validations_total",
                    "bearer-token validations by issuer and outcome",
                ),
                &["issuer", "outcome"],
            )?,
            jwks_refreshes: IntCounterVec::new(
                Opts::new(
                    "otp_sms_jwks_refreshes_total",
                    "JWKS fetches from external identity providers by result",
                ),
                &["issuer", "result"],
            )?,
            introspection_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "otp_sms_introspection_seconds",
                    "RFC 7662 introspection round trips",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
                &["issuer"],
            )?,
            issuer_ready: IntGaugeVec::new(
                Opts::new(
                    "otp_sms_identity_provider_ready",
                    "1 while an external issuer's keys are loaded",
                ),
                &["issuer"],
            )?,
        })
    }

    /// Metrics no registry exports (tests, benchmarks).
    pub fn detached() -> AuthMetrics {
        // The definitions are constants that `new` accepts; a failure here is a bug in this file.
        #[allow(clippy::expect_used)]
        AuthMetrics::new().expect("static auth metric definitions are valid")
    }

    fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.validations.clone()))?;
        registry.register(Box::new(self.jwks_refreshes.clone()))?;
        registry.register(Box::new(self.introspection_seconds.clone()))?;
        registry.register(Box::new(self.issuer_ready.clone()))?;
        Ok(())
    }
}

/// What the store records around every backend call, for either backend. Labels: `op`, one of
/// [`StoreMetrics::OPS`], and `kind`, one of [`StoreMetrics::KINDS`]: both fixed sets.
#[derive(Clone)]
pub struct StoreMetrics {
    /// Duration of each store call by operation, whatever its outcome.
    pub operation_seconds: HistogramVec,
    /// Store calls that failed (a backend failure, never a business outcome such as a spent
    /// quota), by operation and kind.
    pub errors: IntCounterVec,
}

impl StoreMetrics {
    /// Every `op` label value.
    pub const OPS: [&'static str; 6] = [
        "insert",
        "activate",
        "discard",
        "attempt",
        "ping",
        "rate_limit",
    ];
    /// Every `kind` label value: `unavailable` (unreachable, timed out or an error answer),
    /// `full` (the memory store at `store.max_challenges`).
    pub const KINDS: [&'static str; 2] = ["unavailable", "full"];

    /// Creates the metrics without registering them (see [`Metrics::new`]).
    pub fn new() -> Result<StoreMetrics, prometheus::Error> {
        Ok(StoreMetrics {
            operation_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "otp_sms_store_operation_seconds",
                    "challenge store calls by operation",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5,
                ]),
                &["op"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "otp_sms_store_errors_total",
                    "challenge store calls that failed, by operation and kind",
                ),
                &["op", "kind"],
            )?,
        })
    }

    /// Metrics no registry exports, for a store built on its own (tests, benchmarks).
    pub fn detached() -> StoreMetrics {
        // The definitions are constants that `new` accepts; a failure here is a bug in this file.
        #[allow(clippy::expect_used)]
        StoreMetrics::new().expect("static store metric definitions are valid")
    }

    /// Records one call of `op` that took `elapsed`, failed with `error` (a `KINDS` value)
    /// when it failed.
    pub fn record(
        &self,
        op: &'static str,
        elapsed: std::time::Duration,
        error: Option<&'static str>,
    ) {
        self.operation_seconds
            .with_label_values(&[op])
            .observe(elapsed.as_secs_f64());
        if let Some(kind) = error {
            self.errors.with_label_values(&[op, kind]).inc();
        }
    }

    fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.operation_seconds.clone()))?;
        registry.register(Box::new(self.errors.clone()))?;
        Ok(())
    }
}

/// Metrics the SMPP session pool records. Labels: `route` (from configuration) and
/// `command_status` (hex, capped at [`MAX_STATUS_LABELS`] distinct values).
#[derive(Clone)]
pub struct SmppMetrics {
    /// Sessions by route and state (`up` = bound, `down` = not bound).
    pub binds: IntGaugeVec,
    /// submit_sm PDUs awaiting their response, by route.
    pub window_in_use: IntGaugeVec,
    /// ESME_RTHROTTLED / ESME_RMSGQFUL answers, by route.
    pub throttled: IntCounterVec,
    /// submit_sm results by route and command_status (`timeout` when no response came).
    pub submit_results: IntCounterVec,
    /// submit_sm PDUs written, by route (retries included).
    pub segments_submitted: IntCounterVec,
    /// From the first submit_sm of a message to its last submit_sm_resp, by the route that
    /// carried it (failover included).
    pub submit_latency: HistogramVec,
    /// A whole submit through the router, whatever its outcome.
    pub submit_duration: Histogram,
    /// Delivery receipts by final state.
    pub receipts: IntCounterVec,
    /// First submit_sm until its delivery receipt.
    pub receipt_latency: Histogram,
    /// cancel_sm sent for segments the SMSC accepted after the submit gave up on them (504),
    /// by route and result: `cancelled`, `failed` (another status, e.g. already delivered),
    /// `timeout`, `no_session`, `unsupported` (an `smpps://` session).
    pub cancels: IntCounterVec,
    seen_statuses: Arc<Mutex<HashSet<u32>>>,
}

impl SmppMetrics {
    /// Creates the metrics without registering them (see [`Metrics::new`]).
    pub fn new() -> Result<SmppMetrics, prometheus::Error> {
        Ok(SmppMetrics {
            binds: IntGaugeVec::new(
                Opts::new("otp_sms_smpp_binds", "SMPP sessions by state"),
                &["route", "state"],
            )?,
            window_in_use: IntGaugeVec::new(
                Opts::new(
                    "otp_sms_smpp_window_in_use",
                    "submit_sm awaiting submit_sm_resp",
                ),
                &["route"],
            )?,
            throttled: IntCounterVec::new(
                Opts::new(
                    "otp_sms_smpp_throttled_total",
                    "ESME_RTHROTTLED / ESME_RMSGQFUL answers",
                ),
                &["route"],
            )?,
            submit_results: IntCounterVec::new(
                Opts::new(
                    "otp_sms_smpp_submit_results_total",
                    "submit_sm results by command_status",
                ),
                &["route", "command_status"],
            )?,
            segments_submitted: IntCounterVec::new(
                Opts::new(
                    "otp_sms_smpp_submit_sm_total",
                    "submit_sm PDUs written, retries included",
                ),
                &["route"],
            )?,
            submit_latency: HistogramVec::new(
                HistogramOpts::new(
                    "otp_sms_smpp_submit_latency_seconds",
                    "first submit_sm until the last submit_sm_resp of a message",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ]),
                &["route"],
            )?,
            submit_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "otp_sms_smpp_submit_duration_seconds",
                    "a whole submit through the router (every route tried), whatever its outcome",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ]),
            )?,
            receipts: IntCounterVec::new(
                Opts::new("otp_sms_smpp_receipts_total", "delivery receipts by state"),
                &["state"],
            )?,
            receipt_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "otp_sms_smpp_receipt_latency_seconds",
                    "submit_sm until delivery receipt",
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ]),
            )?,
            cancels: IntCounterVec::new(
                Opts::new(
                    "otp_sms_smpp_cancel_total",
                    "cancel_sm for segments accepted after their submit answered 504",
                ),
                &["route", "result"],
            )?,
            seen_statuses: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// Metrics no registry exports, for a pool started on its own (tests, benchmarks, tools):
    /// the hot path then records unconditionally instead of branching on an `Option`.
    pub fn detached() -> SmppMetrics {
        // The definitions are constants that `new` accepts; a failure here is a bug in this file.
        #[allow(clippy::expect_used)]
        SmppMetrics::new().expect("static SMPP metric definitions are valid")
    }

    fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.binds.clone()))?;
        registry.register(Box::new(self.window_in_use.clone()))?;
        registry.register(Box::new(self.throttled.clone()))?;
        registry.register(Box::new(self.submit_results.clone()))?;
        registry.register(Box::new(self.segments_submitted.clone()))?;
        registry.register(Box::new(self.submit_latency.clone()))?;
        registry.register(Box::new(self.submit_duration.clone()))?;
        registry.register(Box::new(self.receipts.clone()))?;
        registry.register(Box::new(self.receipt_latency.clone()))?;
        registry.register(Box::new(self.cancels.clone()))?;
        Ok(())
    }

    /// The label for `command_status`: `0x%08X`, or `other` once the cap is reached.
    pub fn status_label(&self, command_status: u32) -> String {
        let mut seen = self
            .seen_statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if seen.contains(&command_status) || seen.len() < MAX_STATUS_LABELS {
            seen.insert(command_status);
            format!("0x{command_status:08X}")
        } else {
            "other".to_owned()
        }
    }
}

impl Metrics {
    /// Adds a collector another module owns (the number-policy guards, audit, usage) to the
    /// registry, so it renders with the rest.
    pub fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    /// Creates and registers the metrics.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let latency = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let http_requests = IntCounterVec::new(
            Opts::new(
                "otp_sms_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new("otp_sms_http_request_duration_seconds", "HTTP latency")
                .buckets(latency.clone()),
            &["route"],
        )?;
        let codes_sent = IntCounter::new("otp_sms_codes_sent_total", "Codes accepted by the SMSC")?;
        let send_failures = IntCounterVec::new(
            Opts::new(
                "otp_sms_send_failures_total",
                "send-code requests without an SMS",
            ),
            &["reason"],
        )?;
        let validations = IntCounterVec::new(
            Opts::new("otp_sms_validations_total", "validate-code results"),
            &["outcome"],
        )?;
        let segments_sent =
            IntCounter::new("otp_sms_smpp_segments_sent_total", "SMS segments submitted")?;
        let smpp_bound = IntGauge::new("otp_sms_smpp_bound", "1 when an SMPP session is bound")?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(codes_sent.clone()))?;
        registry.register(Box::new(send_failures.clone()))?;
        registry.register(Box::new(validations.clone()))?;
        registry.register(Box::new(segments_sent.clone()))?;
        registry.register(Box::new(smpp_bound.clone()))?;
        let smpp = SmppMetrics::new()?;
        smpp.register(&registry)?;
        let store = StoreMetrics::new()?;
        store.register(&registry)?;
        let auth = AuthMetrics::new()?;
        auth.register(&registry)?;
        Ok(Metrics {
            registry,
            http_requests,
            http_duration,
            codes_sent,
            send_failures,
            validations,
            segments_sent,
            smpp_bound,
            smpp,
            store,
            auth,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_bounded() {
        let m = SmppMetrics::new().unwrap();
        assert_eq!(m.status_label(0x58), "0x00000058");
        for s in 0..100 {
            m.status_label(s);
        }
        assert_eq!(
            m.status_label(0x58),
            "0x00000058",
            "known values keep their label"
        );
        assert_eq!(m.status_label(0x0400_0001), "other");
    }
}
