//! `[policy.lookup]` (the HLR / number-portability hook) and `[policy.pumping]` (SMS-pumping
//! protection): optional parts of the number policy, each absent unless configured.

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::de;
use crate::domain::Secret;

/// What a failed lookup (timeout, connection error, bad answer) means for the send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LookupFailure {
    /// Serve the number as if the lookup had said `serve` (logged, counted).
    Open,
    /// Refuse the send with 503 UNAVAILABLE.
    Closed,
}

/// `[policy.lookup]`: the gateway POSTs `{"phoneNumber": "+…"}` to `url` and reads
/// `{"result": "serve" | "not_allowed" | "blocked" | "other_operator"}` (README: "Number lookup").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSettings {
    /// `http://` or `https://` URL of the lookup service.
    pub url: String,
    /// The whole lookup (waiting for a slot, connecting, answering) must end within this.
    #[serde(default = "default_lookup_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long a `serve` answer is reused.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// How long a `not_allowed`, `blocked` or `other_operator` answer is reused.
    #[serde(default = "default_negative_ttl", with = "humantime_serde")]
    pub negative_cache_ttl: Duration,
    /// Numbers whose answers the cache holds at most.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: u64,
    /// Lookups in flight at once toward the service; more wait (within `timeout`).
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// `open` (serve, with a warning and a metric) or `closed` (503 UNAVAILABLE).
    #[serde(default = "default_on_failure")]
    pub on_failure: LookupFailure,
    /// Credential sent with every lookup: `Authorization: Bearer <token>`, or the raw value
    /// under `credential_header` when that is set.
    #[serde(default)]
    pub credential: Option<Secret>,
    /// Header carrying `credential` as is (e.g. `X-API-Key`) instead of `Authorization`.
    #[serde(default)]
    pub credential_header: Option<String>,
}

fn default_lookup_timeout() -> Duration {
    Duration::from_millis(500)
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_negative_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_cache_entries() -> u64 {
    100_000
}
fn default_concurrency() -> usize {
    32
}
fn default_on_failure() -> LookupFailure {
    LookupFailure::Open
}

impl LookupSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| invalid("policy.lookup.url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(invalid(
                "policy.lookup.url",
                "must be an http:// or https:// URL with a host",
            ));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(30) {
            return Err(invalid(
                "policy.lookup.timeout",
                "must be between 1ms and 30s",
            ));
        }
        if self.max_concurrency == 0 {
            return Err(invalid(
                "policy.lookup.max_concurrency",
                "must be at least 1",
            ));
        }
        if let Some(h) = &self.credential_header {
            if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(invalid(
                    "policy.lookup.credential_header",
                    "is not a valid header name",
                ));
            }
            if self.credential.is_none() {
                return Err(invalid(
                    "policy.lookup.credential_header",
                    "needs policy.lookup.credential",
                ));
            }
        }
        if let Some(c) = &self.credential {
            if reqwest::header::HeaderValue::from_str(c.expose()).is_err() {
                return Err(invalid(
                    "policy.lookup.credential",
                    "must be visible ASCII (it is sent in a header)",
                ));
            }
        }
        Ok(())
    }
}

/// `[policy.pumping]`: per destination prefix, sends against validations over a sliding window;
/// a prefix whose conversion falls below `min_conversion` with at least `min_sends` sends in
/// the window is refused (403 PHONE_NUMBER_NOT_ALLOWED) for `cooldown`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PumpingSettings {
    /// The sliding window sends and validations are counted over.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Sends in the window below which a prefix is never judged.
    pub min_sends: u32,
    /// Validated codes per send (0 to 1) below which a prefix cools down.
    pub min_conversion: f64,
    /// How long a prefix that tripped is refused.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// A number outside `prefixes` is tracked under `+` and its first `prefix_digits` digits
    /// (1 to 8; e.g. 2 for the country code +34, 5 for a range such as +34612).
    pub prefix_digits: usize,
    /// Ranges tracked as one each (longest match wins), e.g. country codes of unequal length.
    #[serde(deserialize_with = "de::prefixes")]
    pub prefixes: Vec<String>,
    /// Tracked prefixes that never cool down (the admin API pins more at run time).
    #[serde(deserialize_with = "de::prefixes")]
    pub pinned_prefixes: Vec<String>,
}

impl Default for PumpingSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(3600),
            min_sends: 50,
            min_conversion: 0.2,
            cooldown: Duration::from_secs(3600),
            prefix_digits: 4,
            prefixes: Vec::new(),
            pinned_prefixes: Vec::new(),
        }
    }
}

impl PumpingSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.window < Duration::from_secs(1) {
            return Err(invalid("policy.pumping.window", "must be at least 1s"));
        }
        if self.cooldown.is_zero() {
            return Err(invalid("policy.pumping.cooldown", "must be longer than 0s"));
        }
        if self.min_sends == 0 {
            return Err(invalid("policy.pumping.min_sends", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.min_conversion) {
            return Err(invalid(
                "policy.pumping.min_conversion",
                "must be between 0 and 1",
            ));
        }
        // A tracked prefix shows in logs, metrics and Redis: a range, never a whole number.
        if !(1..=8).contains(&self.prefix_digits) {
            return Err(invalid(
                "policy.pumping.prefix_digits",
                "must be between 1 and 8",
            ));
        }
        for (key, list) in [
            ("policy.pumping.prefixes", &self.prefixes),
            ("policy.pumping.pinned_prefixes", &self.pinned_prefixes),
        ] {
            if let Some(p) = list.iter().find(|p| p.len() > 9) {
                return Err(invalid(
                    key,
                    format!("{p:?} is longer than `+` and 8 digits: track ranges, not numbers"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn the_example_policy_and_guard_files_load_and_validate_layered() {
        let files = ["examples/policy.toml", "examples/guards.toml"].map(std::path::Path::new);
        let s = Settings::load_all(files.into_iter()).unwrap();
        let c = s.validate().unwrap();
        // The lists of the first file survive the second's [policy] tables.
        assert_eq!(c.policy.operator_prefixes, ["+346", "+347", "+348", "+349"]);
        let lookup = c.policy.lookup.unwrap();
        assert_eq!(lookup.on_failure, LookupFailure::Open);
        assert_eq!(lookup.timeout, Duration::from_millis(300));
        let pumping = c.policy.pumping.unwrap();
        assert_eq!(pumping.min_sends, 50);
        assert_eq!(pumping.prefixes, ["+3460", "+34612"]);
        assert_eq!(c.otp.all_clients_cap(), 8);
    }

    #[test]
    fn bad_guard_values_name_their_key() {
        let lookup = |f: &dyn Fn(&mut LookupSettings)| {
            let mut l = LookupSettings {
                url: "https://hlr.example.net/v1/lookup".into(),
                timeout: default_lookup_timeout(),
                cache_ttl: default_cache_ttl(),
                negative_cache_ttl: default_negative_ttl(),
                cache_entries: 10,
                max_concurrency: 1,
                on_failure: LookupFailure::Closed,
                credential: None,
                credential_header: None,
            };
            f(&mut l);
            l.check().err().map(|e| e.to_string())
        };
        assert_eq!(lookup(&|_| {}), None);
        assert!(lookup(&|l| l.url = "ftp://x/".into())
            .unwrap()
            .contains("policy.lookup.url"));
        assert!(lookup(&|l| l.url = "not a url".into())
            .unwrap()
            .contains("policy.lookup.url"));
        assert!(lookup(&|l| l.max_concurrency = 0)
            .unwrap()
            .contains("policy.lookup.max_concurrency"));
        assert!(lookup(&|l| l.credential_header = Some("X-Key".into()))
            .unwrap()
            .contains("needs policy.lookup.credential"));
        let pumping = |f: &dyn Fn(&mut PumpingSettings)| {
            let mut p = PumpingSettings::default();
            f(&mut p);
            p.check().err().map(|e| e.to_string())
        };
        assert_eq!(pumping(&|_| {}), None);
        assert!(pumping(&|p| p.min_conversion = 1.5)
            .unwrap()
            .contains("policy.pumping.min_conversion"));
        assert!(pumping(&|p| p.prefix_digits = 12)
            .unwrap()
            .contains("policy.pumping.prefix_digits"));
        assert!(pumping(&|p| p.prefixes = vec!["+346123456789".into()])
            .unwrap()
            .contains("policy.pumping.prefixes"));
        assert!(pumping(&|p| p.min_sends = 0)
            .unwrap()
            .contains("policy.pumping.min_sends"));
    }
}
