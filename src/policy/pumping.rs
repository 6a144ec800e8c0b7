//! SMS-pumping protection. Artificially inflated traffic (numbers a fraudster's ranges
//! collect termination fees for) shows as codes sent that nobody validates. Per destination
//! prefix the gateway counts SMS the SMSC accepted and codes validated over a sliding window
//! (in tenths of it); when at least `min_sends` were sent and validated / sent is below
//! `min_conversion`, the prefix trips: its sends get 403 PHONE_NUMBER_NOT_ALLOWED for
//! `cooldown`, and it starts again with an empty window afterwards. Pinned prefixes never trip.
//!
//! The counts live in the process ([`memory`]) or, with the Redis store, in Redis (see
//! `store::redis::pumping`), so every replica counts into and judges by the same figures. A
//! validation finds its prefix through the authenticationId, remembered at send for the
//! code's lifetime (a replica that validates may not be the one that sent).

mod memory;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntGauge, Opts};

use crate::config::PumpingSettings;
use crate::domain::PhoneNumber;
use crate::otp::Clock;
use crate::store::redis::RedisHandle;
use crate::store::StoreError;

const TARGET: &str = "otp_gateway::policy::pumping";
/// The window is counted in this many slices.
const SLICES: u64 = 10;

/// A prefix refused for a while, and the figures that tripped it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cooling {
    /// The tracked prefix (`+` and digits).
    pub prefix: String,
    /// Unix milliseconds at which sends are accepted again.
    pub until_ms: u64,
    /// SMS sent in the window when it tripped.
    pub sent: u64,
    /// Codes validated in the window when it tripped.
    pub validated: u64,
}

/// What a check found, in the form both backends answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Sends may go on.
    Open,
    /// Cooling down (tripped earlier).
    Cooling,
    /// Tripped by this check.
    Tripped,
    /// Pinned at run time: never judged.
    Pinned,
}

/// One check's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) verdict: Verdict,
    pub(crate) sent: u64,
    pub(crate) validated: u64,
    pub(crate) until_ms: u64,
    /// Prefixes cooling down now (for the gauge).
    pub(crate) cooling: u64,
}

/// The thresholds a check applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    pub(crate) min_sends: u64,
    /// `min_conversion` in thousandths.
    pub(crate) permille: u64,
    pub(crate) until_ms: u64,
}

impl Thresholds {
    pub(crate) fn trips(&self, sent: u64, validated: u64) -> bool {
        sent >= self.min_sends
            && validated.saturating_mul(1000) < sent.saturating_mul(self.permille)
    }
}

/// Whether a counted event is a send or a validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Sent,
    Validated,
}

/// What a pin answer says about its origin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PinSource {
    /// `policy.pumping.pinned_prefixes`.
    Config,
    /// The admin API.
    Admin,
}

/// A pinned prefix.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pin {
    /// The prefix.
    pub prefix: String,
    /// Where the pin comes from.
    pub source: PinSource,
}

/// Pumping-protection metrics.
#[derive(Clone)]
pub struct PumpingMetrics {
    /// Sends refused because their prefix cools down.
    pub blocked: IntCounter,
    /// Prefixes that tripped.
    pub trips: IntCounter,
    /// Prefixes cooling down, as this replica last saw them.
    pub cooling: IntGauge,
    /// Counter reads or writes that failed (the send then goes on).
    pub errors: IntCounter,
}

impl PumpingMetrics {
    /// Creates the metrics; `register` adds them to the gateway's registry.
    pub fn new() -> Result<PumpingMetrics, prometheus::Error> {
        Ok(PumpingMetrics {
            blocked: IntCounter::with_opts(Opts::new(
                "otp_sms_pumping_blocked_total",
                "Sends refused because their destination prefix cools down",
            ))?,
            trips: IntCounter::new(
                "otp_sms_pumping_trips_total",
                "Destination prefixes that tripped the conversion threshold",
            )?,
            cooling: IntGauge::new(
                "otp_sms_pumping_cooling_prefixes",
                "Destination prefixes cooling down",
            )?,
            errors: IntCounter::new(
                "otp_sms_pumping_errors_total",
                "Pumping counters that could not be read or written (the send went on)",
            )?,
        })
    }

    /// Adds the metrics to `metrics`' registry.
    pub fn register(&self, metrics: &crate::metrics::Metrics) -> Result<(), prometheus::Error> {
        metrics.register(Box::new(self.blocked.clone()))?;
        metrics.register(Box::new(self.trips.clone()))?;
        metrics.register(Box::new(self.cooling.clone()))?;
        metrics.register(Box::new(self.errors.clone()))
    }
}

enum Backend {
    Memory(memory::MemoryPumping),
    Redis(RedisHandle),
}

/// The pumping guard of one gateway.
pub struct PumpingGuard {
    window_ms: u64,
    slice_ms: u64,
    min_sends: u64,
    permille: u64,
    cooldown_ms: u64,
    prefix_digits: usize,
    /// Longest first.
    tracked: Vec<String>,
    config_pins: HashSet<String>,
    /// How long a sent code's prefix is remembered for its validation.
    code_ttl: Duration,
    backend: Backend,
    clock: Arc<dyn Clock>,
    metrics: PumpingMetrics,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl PumpingGuard {
    /// A guard counting in this process; `code_ttl` is the OTP lifetime.
    pub fn new(
        s: &PumpingSettings,
        code_ttl: Duration,
        clock: Arc<dyn Clock>,
        metrics: PumpingMetrics,
    ) -> PumpingGuard {
        let window_ms = millis(s.window);
        let mut tracked = s.prefixes.clone();
        tracked.sort_by_key(|p| std::cmp::Reverse(p.len()));
        PumpingGuard {
            window_ms,
            slice_ms: (window_ms / SLICES).max(1),
            min_sends: u64::from(s.min_sends),
            // Validated in `PumpingSettings::check` to lie in 0..=1.
            permille: (s.min_conversion * 1000.0).round() as u64,
            cooldown_ms: millis(s.cooldown),
            prefix_digits: s.prefix_digits,
            tracked,
            config_pins: s.pinned_prefixes.iter().cloned().collect(),
            code_ttl,
            backend: Backend::Memory(memory::MemoryPumping::new(code_ttl)),
            clock,
            metrics,
        }
    }

    /// The same guard counting in the store's Redis, shared by every replica.
    pub fn shared(mut self, redis: &crate::store::RedisStore) -> PumpingGuard {
        self.backend = Backend::Redis(redis.handle());
        self
    }

    /// The prefix `phone` is tracked under: the longest configured prefix that starts it,
    /// else `+` and its first `prefix_digits` digits.
    pub fn prefix_of(&self, phone: &PhoneNumber) -> String {
        let n = phone.as_e164();
        if let Some(p) = self.tracked.iter().find(|p| n.starts_with(p.as_str())) {
            return p.clone();
        }
        n.chars().take(1 + self.prefix_digits).collect()
    }

    fn slices(&self, now_ms: u64) -> std::ops::RangeInclusive<u64> {
        let last = now_ms / self.slice_ms;
        (last + 1).saturating_sub(SLICES)..=last
    }

    /// Whether a send to `phone` may go on. A backend failure lets it go on (the store call
    /// that follows fails the request anyway when the backend is down).
    pub async fn allows(&self, phone: &PhoneNumber) -> bool {
        let prefix = self.prefix_of(phone);
        if self.config_pins.contains(&prefix) {
            return true;
        }
        let now_ms = self.clock.now_ms();
        let limits = Thresholds {
            min_sends: self.min_sends,
            permille: self.permille,
            until_ms: now_ms.saturating_add(self.cooldown_ms),
        };
        let answer = match &self.backend {
            Backend::Memory(m) => Ok(m.check(&prefix, now_ms, self.slices(now_ms), limits)),
            Backend::Redis(r) => {
                r.pumping_check(&prefix, now_ms, self.slices(now_ms), limits)
                    .await
            }
        };
        let check = match answer {
            Ok(c) => c,
            Err(e) => {
                self.metrics.errors.inc();
                tracing::warn!(target: TARGET, prefix, error = %e, "pumping counters unreadable; the send goes on");
                return true;
            }
        };
        self.metrics
            .cooling
            .set(i64::try_from(check.cooling).unwrap_or(i64::MAX));
        let conversion = if check.sent == 0 {
            1.0
        } else {
            check.validated as f64 / check.sent as f64
        };
        match check.verdict {
            Verdict::Open | Verdict::Pinned => true,
            Verdict::Tripped => {
                self.metrics.trips.inc();
                self.metrics.blocked.inc();
                tracing::warn!(
                    target: TARGET,
                    decision = "cool_down",
                    prefix,
                    sent = check.sent,
                    validated = check.validated,
                    conversion,
                    min_conversion = self.permille as f64 / 1000.0,
                    min_sends = self.min_sends,
                    window_secs = self.window_ms / 1000,
                    cooldown_secs = self.cooldown_ms / 1000,
                    "destination prefix cools down: too few codes validated for the codes sent"
                );
                false
            }
            Verdict::Cooling => {
                self.metrics.blocked.inc();
                tracing::info!(
                    target: TARGET,
                    decision = "refused",
                    prefix,
                    sent = check.sent,
                    validated = check.validated,
                    remaining_secs = check.until_ms.saturating_sub(now_ms) / 1000,
                    "send refused: destination prefix cools down"
                );
                false
            }
        }
    }

    /// Counts an SMS the SMSC accepted, and remembers the id's prefix for its validation.
    pub async fn sent(&self, authentication_id: &str, phone: &PhoneNumber) {
        let prefix = self.prefix_of(phone);
        let now_ms = self.clock.now_ms();
        let result = match &self.backend {
            Backend::Memory(m) => {
                m.record(
                    &prefix,
                    Event::Sent,
                    now_ms / self.slice_ms,
                    *self.slices(now_ms).start(),
                );
                m.remember(authentication_id, &prefix);
                Ok(())
            }
            Backend::Redis(r) => {
                let slice = now_ms / self.slice_ms;
                match r
                    .pumping_record(&prefix, Event::Sent, slice, self.window_ms + self.slice_ms)
                    .await
                {
                    Ok(()) => {
                        r.pumping_remember(authentication_id, &prefix, self.code_ttl)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
        };
        self.failed(result);
    }

    /// Counts a validated code toward the prefix it was sent to.
    pub async fn validated(&self, authentication_id: &str) {
        let now_ms = self.clock.now_ms();
        let slice = now_ms / self.slice_ms;
        let result = match &self.backend {
            Backend::Memory(m) => {
                if let Some(prefix) = m.take(authentication_id) {
                    m.record(
                        &prefix,
                        Event::Validated,
                        slice,
                        *self.slices(now_ms).start(),
                    );
                }
                Ok(())
            }
            Backend::Redis(r) => match r.pumping_take(authentication_id).await {
                Ok(Some(prefix)) => {
                    r.pumping_record(
                        &prefix,
                        Event::Validated,
                        slice,
                        self.window_ms + self.slice_ms,
                    )
                    .await
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
        };
        self.failed(result);
    }

    fn failed(&self, result: Result<(), StoreError>) {
        if let Err(e) = result {
            self.metrics.errors.inc();
            tracing::warn!(target: TARGET, error = %e, "pumping counter not updated");
        }
    }

    /// Prefixes cooling down now (soonest end first), and the pinned ones.
    pub async fn status(&self) -> Result<(Vec<Cooling>, Vec<Pin>), StoreError> {
        let now_ms = self.clock.now_ms();
        let (mut cooling, admin_pins) = match &self.backend {
            Backend::Memory(m) => m.status(now_ms),
            Backend::Redis(r) => r.pumping_status(now_ms).await?,
        };
        cooling.sort_by_key(|c| c.until_ms);
        self.metrics
            .cooling
            .set(i64::try_from(cooling.len()).unwrap_or(i64::MAX));
        let mut pins: Vec<Pin> = self
            .config_pins
            .iter()
            .map(|p| Pin {
                prefix: p.clone(),
                source: PinSource::Config,
            })
            .collect();
        pins.extend(
            admin_pins
                .into_iter()
                .filter(|p| !self.config_pins.contains(p))
                .map(|prefix| Pin {
                    prefix,
                    source: PinSource::Admin,
                }),
        );
        pins.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        Ok((cooling, pins))
    }

    /// Ends a prefix's cool-down now: true when it was cooling down.
    pub async fn lift(&self, prefix: &str) -> Result<bool, StoreError> {
        let lifted = match &self.backend {
            Backend::Memory(m) => m.lift(prefix),
            Backend::Redis(r) => r.pumping_lift(prefix).await?,
        };
        if lifted {
            tracing::warn!(target: TARGET, decision = "lifted", prefix, "cool-down lifted by the admin API");
        }
        Ok(lifted)
    }

    /// Pins a prefix (never judged, its cool-down ends): true when it was not pinned yet.
    pub async fn pin(&self, prefix: &str) -> Result<bool, StoreError> {
        let added = match &self.backend {
            Backend::Memory(m) => m.pin(prefix, true),
            Backend::Redis(r) => r.pumping_pin(prefix, true).await?,
        };
        self.lift(prefix).await?;
        tracing::warn!(target: TARGET, decision = "pinned", prefix, "prefix pinned by the admin API");
        Ok(added)
    }

    /// Removes an admin pin: true when there was one.
    pub async fn unpin(&self, prefix: &str) -> Result<bool, StoreError> {
        let removed = match &self.backend {
            Backend::Memory(m) => m.pin(prefix, false),
            Backend::Redis(r) => r.pumping_pin(prefix, false).await?,
        };
        if removed {
            tracing::warn!(target: TARGET, decision = "unpinned", prefix, "prefix pin removed by the admin API");
        }
        Ok(removed)
    }

    /// True when `policy.pumping.pinned_prefixes` pins `prefix`.
    pub fn pinned_by_config(&self, prefix: &str) -> bool {
        self.config_pins.contains(prefix)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::otp::ManualClock;

    fn guard(clock: &ManualClock) -> PumpingGuard {
        PumpingGuard::new(
            &PumpingSettings {
                window: Duration::from_secs(100),
                min_sends: 4,
                min_conversion: 0.5,
                cooldown: Duration::from_secs(30),
                prefix_digits: 4,
                prefixes: vec!["+44".into(), "+4420".into()],
                pinned_prefixes: vec!["+3491".into()],
            },
            Duration::from_secs(60),
            Arc::new(clock.clone()),
            PumpingMetrics::new().unwrap(),
        )
    }

    fn n(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s).unwrap()
    }

    #[test]
    fn a_number_is_tracked_under_the_longest_listed_prefix_or_its_first_digits() {
        let g = guard(&ManualClock::new());
        assert_eq!(g.prefix_of(&n("+442012345678")), "+4420");
        assert_eq!(g.prefix_of(&n("+447700900000")), "+44");
        assert_eq!(g.prefix_of(&n("+34600000001")), "+3460");
    }

    #[test]
    fn the_threshold_needs_both_the_volume_and_the_low_conversion() {
        let t = Thresholds {
            min_sends: 4,
            permille: 500,
            until_ms: 0,
        };
        assert!(!t.trips(3, 0), "too little volume");
        assert!(t.trips(4, 1));
        assert!(!t.trips(4, 2), "exactly the threshold is fine");
        let never = Thresholds { permille: 0, ..t };
        assert!(!never.trips(1000, 0));
    }

    #[tokio::test]
    async fn a_prefix_trips_cools_down_and_starts_again_with_an_empty_window() {
        let clock = ManualClock::new();
        let g = guard(&clock);
        let phone = n("+34600000001");
        for i in 0..4 {
            assert!(g.allows(&phone).await, "send {i}");
            g.sent(&format!("id{i}"), &phone).await;
        }
        g.validated("id0").await;
        assert!(!g.allows(&phone).await, "4 sent, 1 validated: below 50 %");
        assert!(!g.allows(&n("+34609999999")).await, "the whole prefix");
        assert!(g.allows(&n("+34610000000")).await, "another prefix");
        assert!(g.allows(&n("+34910000000")).await, "pinned by config");
        let (cooling, _) = g.status().await.unwrap();
        assert_eq!(cooling.len(), 1);
        assert_eq!((cooling[0].sent, cooling[0].validated), (4, 1));
        clock.advance(Duration::from_secs(31));
        assert!(g.allows(&phone).await, "cool-down over, window empty");
        assert!(g.status().await.unwrap().0.is_empty());
    }

    #[tokio::test]
    async fn sends_older_than_the_window_no_longer_count() {
        let clock = ManualClock::new();
        let g = guard(&clock);
        let phone = n("+34600000001");
        for i in 0..3 {
            g.sent(&format!("id{i}"), &phone).await;
        }
        clock.advance(Duration::from_secs(101));
        g.sent("late", &phone).await;
        assert!(g.allows(&phone).await, "only one send in the window");
    }
}
