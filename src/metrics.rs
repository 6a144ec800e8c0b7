//! Prometheus metrics in an owned registry (no globals, so tests run in parallel). Labels are
//! bounded enums only: route patterns, outcomes, SMPP command statuses; never numbers or ids.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

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
    /// submit_sm → all submit_sm_resp latency.
    pub submit_duration: Histogram,
    /// SMS segments submitted.
    pub segments_sent: IntCounter,
    /// 1 when an SMPP session is bound.
    pub smpp_bound: IntGauge,
}

impl Metrics {
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
        let submit_duration = Histogram::with_opts(
            HistogramOpts::new(
                "otp_sms_smpp_submit_duration_seconds",
                "submit_sm until every submit_sm_resp",
            )
            .buckets(latency),
        )?;
        let segments_sent =
            IntCounter::new("otp_sms_smpp_segments_sent_total", "SMS segments submitted")?;
        let smpp_bound = IntGauge::new("otp_sms_smpp_bound", "1 when an SMPP session is bound")?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(codes_sent.clone()))?;
        registry.register(Box::new(send_failures.clone()))?;
        registry.register(Box::new(validations.clone()))?;
        registry.register(Box::new(submit_duration.clone()))?;
        registry.register(Box::new(segments_sent.clone()))?;
        registry.register(Box::new(smpp_bound.clone()))?;
        Ok(Metrics {
            registry,
            http_requests,
            http_duration,
            codes_sent,
            send_failures,
            validations,
            submit_duration,
            segments_sent,
            smpp_bound,
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
