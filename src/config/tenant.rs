//! `[auth.clients.tenant]`: one client's tenant profile (destinations, sender id, templates,
//! code shape, lifetime, attempts, quotas, WebOTP line), and `[otp.tenant_bounds]`, the
//! operator's limits on what a profile may set. An external issuer's client with the same id
//! as an `[[auth.clients]]` entry gets that entry's profile.

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError, OtpSettings};
use crate::domain::{SenderId, MAX_CODE_CHARS, PLACEHOLDER};
use crate::otp::CodeAlphabet;

/// One client's tenant profile; every key is optional, an absent one keeps the `[otp]` rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSettings {
    /// E.164 prefixes (country calling codes such as `+34`, or longer ranges) this client may
    /// send to; empty allows every number the operator policy allows.
    pub allowed_prefixes: Vec<String>,
    /// The SMS sender (`source_addr`): at most 11 letters/digits, `+` and an E.164 number, or
    /// digits (a national number or short code); the route's `smpp.source_addr` when absent.
    pub sender_id: Option<String>,
    /// Templates this client may send: exact strings, where `*` stands for any text without
    /// `{{code}}`; empty allows any template.
    pub templates: Vec<String>,
    /// Characters per code (4..=10).
    pub code_length: Option<usize>,
    /// `digits` or `alphanumeric` (upper-case letters and digits without look-alikes).
    pub code_alphabet: Option<CodeAlphabet>,
    /// Code lifetime, within `otp.tenant_bounds`.
    #[serde(with = "humantime_serde::option")]
    pub ttl: Option<Duration>,
    /// Wrong answers before the id locks, within `otp.tenant_bounds`.
    pub max_attempts: Option<u32>,
    /// Codes this client may send per UTC day.
    pub daily_quota: Option<u32>,
    /// Codes this client may send per UTC calendar month.
    pub monthly_quota: Option<u32>,
    /// A host name: the SMS gets a last line `@<host> #<code>` (WebOTP origin-bound format).
    pub webotp_origin: Option<String>,
}

/// `[otp.tenant_bounds]`: what a tenant profile may set for `ttl` and `max_attempts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantBounds {
    /// Shortest tenant `ttl`.
    #[serde(with = "humantime_serde")]
    pub min_ttl: Duration,
    /// Longest tenant `ttl` (at most `otp.id_retention`).
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// Fewest tenant `max_attempts`.
    pub min_attempts: u32,
    /// Most tenant `max_attempts`.
    pub max_attempts: u32,
}

impl Default for TenantBounds {
    fn default() -> Self {
        TenantBounds {
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(3600),
            min_attempts: 1,
            max_attempts: 10,
        }
    }
}

/// Longest WebOTP host accepted (a DNS name).
const MAX_HOST: usize = 253;

impl TenantBounds {
    pub(super) fn check(&self, otp: &OtpSettings) -> Result<(), ConfigError> {
        if self.min_ttl < Duration::from_secs(1) || self.min_ttl > self.max_ttl {
            return Err(invalid(
                "otp.tenant_bounds.min_ttl",
                "must be at least 1s and not above max_ttl",
            ));
        }
        if self.max_ttl > otp.id_retention {
            return Err(invalid(
                "otp.tenant_bounds.max_ttl",
                "must not be longer than otp.id_retention",
            ));
        }
        if self.min_attempts == 0 || self.min_attempts > self.max_attempts {
            return Err(invalid(
                "otp.tenant_bounds.min_attempts",
                "must be at least 1 and not above max_attempts",
            ));
        }
        Ok(())
    }
}

impl TenantSettings {
    /// Checks one client's profile against the operator's bounds; errors name the client.
    pub(super) fn check(&self, client: &str, bounds: &TenantBounds) -> Result<(), ConfigError> {
        let what = |key: &str, msg: String| {
            invalid(
                &format!("auth.clients.tenant.{key}"),
                format!("client {client}: {msg}"),
            )
        };
        for p in &self.allowed_prefixes {
            let digits = p.strip_prefix('+').unwrap_or("");
            if !(1..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(what(
                    "allowed_prefixes",
                    format!("{p:?} is not `+` followed by 1 to 15 digits"),
                ));
            }
        }
        if let Some(s) = &self.sender_id {
            SenderId::parse(s).map_err(|e| what("sender_id", e))?;
        }
        for t in &self.templates {
            if !t.contains(PLACEHOLDER) {
                return Err(what(
                    "templates",
                    format!("{t:?} does not contain {PLACEHOLDER}"),
                ));
            }
            if t.replace('*', "").chars().count() > crate::domain::MAX_TEMPLATE_CHARS {
                return Err(what(
                    "templates",
                    format!("{t:?} is longer than a message may be (160 characters)"),
                ));
            }
        }
        if let Some(n) = self.code_length {
            if !(4..=MAX_CODE_CHARS).contains(&n) {
                return Err(what(
                    "code_length",
                    format!("{n} is not between 4 and {MAX_CODE_CHARS}"),
                ));
            }
        }
        if let Some(ttl) = self.ttl {
            if ttl < bounds.min_ttl || ttl > bounds.max_ttl {
                return Err(what(
                    "ttl",
                    format!(
                        "{} is outside otp.tenant_bounds ({} to {})",
                        humantime::format_duration(ttl),
                        humantime::format_duration(bounds.min_ttl),
                        humantime::format_duration(bounds.max_ttl)
                    ),
                ));
            }
        }
        if let Some(n) = self.max_attempts {
            if n < bounds.min_attempts || n > bounds.max_attempts {
                return Err(what(
                    "max_attempts",
                    format!(
                        "{n} is outside otp.tenant_bounds ({} to {})",
                        bounds.min_attempts, bounds.max_attempts
                    ),
                ));
            }
        }
        if self.daily_quota == Some(0) || self.monthly_quota == Some(0) {
            return Err(what(
                "daily_quota",
                "a quota must be at least 1 (leave it out for none)".into(),
            ));
        }
        if let (Some(d), Some(m)) = (self.daily_quota, self.monthly_quota) {
            if d > m {
                return Err(what(
                    "daily_quota",
                    format!("{d} is above monthly_quota {m}"),
                ));
            }
        }
        if let Some(host) = &self.webotp_origin {
            if !is_host(host) {
                return Err(what(
                    "webotp_origin",
                    format!("{host:?} is not a host name such as \"login.example.com\" (no scheme, path or port)"),
                ));
            }
        }
        Ok(())
    }
}

/// A lower-case DNS host name: dot-separated labels of letters, digits and inner hyphens.
fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_HOST
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Checks every client's profile; run by `Settings::validate`.
pub(super) fn check_all(
    clients: &[super::ClientEntry],
    otp: &OtpSettings,
) -> Result<(), ConfigError> {
    otp.tenant_bounds.check(otp)?;
    for c in clients {
        c.tenant.check(&c.id, &otp.tenant_bounds)?;
    }
    Ok(())
}

/// The longest code lifetime any client can have: state must live that long.
pub fn longest_ttl(clients: &[super::ClientEntry], otp: &OtpSettings) -> Duration {
    clients
        .iter()
        .filter_map(|c| c.tenant.ttl)
        .fold(otp.ttl, Duration::max)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(t: TenantSettings) -> Result<(), String> {
        t.check("cool-app", &TenantBounds::default())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_tenant_ttl_or_attempts_outside_the_operator_bounds_names_the_client() {
        let err = check(TenantSettings {
            ttl: Some(Duration::from_secs(7200)),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.contains("auth.clients.tenant.ttl") && err.contains("client cool-app"),
            "{err}"
        );
        let err = check(TenantSettings {
            ttl: Some(Duration::from_secs(5)),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("outside otp.tenant_bounds"), "{err}");
        let err = check(TenantSettings {
            max_attempts: Some(11),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.contains("auth.clients.tenant.max_attempts") && err.contains("cool-app"),
            "{err}"
        );
        assert!(check(TenantSettings {
            ttl: Some(Duration::from_secs(3600)),
            max_attempts: Some(10),
            ..Default::default()
        })
        .is_ok());
    }

    #[test]
    fn malformed_profile_values_are_refused_with_their_key() {
        let cases: Vec<(TenantSettings, &str)> = vec![
            (
                TenantSettings {
                    allowed_prefixes: vec!["34".into()],
                    ..Default::default()
                },
                "allowed_prefixes",
            ),
            (
                TenantSettings {
                    sender_id: Some("TwelveChars1".into()),
                    ..Default::default()
                },
                "sender_id",
            ),
            (
                TenantSettings {
                    templates: vec!["no placeholder".into()],
                    ..Default::default()
                },
                "templates",
            ),
            (
                TenantSettings {
                    code_length: Some(11),
                    ..Default::default()
                },
                "code_length",
            ),
            (
                TenantSettings {
                    daily_quota: Some(0),
                    ..Default::default()
                },
                "daily_quota",
            ),
            (
                TenantSettings {
                    daily_quota: Some(10),
                    monthly_quota: Some(5),
                    ..Default::default()
                },
                "daily_quota",
            ),
            (
                TenantSettings {
                    webotp_origin: Some("https://example.com".into()),
                    ..Default::default()
                },
                "webotp_origin",
            ),
        ];
        for (t, key) in cases {
            let err = check(t).unwrap_err();
            assert!(err.contains(&format!("auth.clients.tenant.{key}")), "{err}");
        }
        assert!(is_host("login.example.com") && is_host("localhost"));
        assert!(!is_host("Example.com") && !is_host("a..b") && !is_host("-a.b"));
    }

    #[test]
    fn operator_bounds_must_be_ordered_and_within_id_retention() {
        let otp = OtpSettings::default();
        let b = TenantBounds {
            min_attempts: 5,
            max_attempts: 2,
            ..Default::default()
        };
        assert!(b
            .check(&otp)
            .unwrap_err()
            .to_string()
            .contains("min_attempts"));
        let b = TenantBounds {
            max_ttl: Duration::from_secs(48 * 3600),
            ..Default::default()
        };
        assert!(b.check(&otp).unwrap_err().to_string().contains("max_ttl"));
        TenantBounds::default().check(&otp).unwrap();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod file_tests {
    use figment::providers::{Format, Toml};
    use figment::Figment;

    use super::super::Settings;

    fn validate(text: &str) -> Result<super::super::Config, String> {
        let s: Settings = Figment::from(Toml::string(text))
            .extract()
            .map_err(|e| e.to_string())?;
        s.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn the_example_tenants_file_validates_and_sets_each_profile() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tenants.toml");
        let s = Settings::load(Some(std::path::Path::new(path))).unwrap();
        let c = s.validate().unwrap();
        let bank = c.auth.clients.iter().find(|c| c.id == "bank-app").unwrap();
        assert_eq!(bank.tenant.code_length, Some(8));
        assert_eq!(
            bank.tenant.webotp_origin.as_deref(),
            Some("login.mybank.example")
        );
        assert_eq!(c.otp.tenant_bounds.max_attempts, 5);
    }

    #[test]
    fn a_tenant_outside_the_bounds_in_a_file_stops_the_start_naming_the_client() {
        let err = validate(
            r#"
[otp.tenant_bounds]
max_attempts = 4
[[auth.clients]]
id = "greedy"
secret = "greedy-secret"
scopes = ["one-time-password-sms:send-validate"]
[auth.clients.tenant]
max_attempts = 9
"#,
        )
        .unwrap_err();
        assert!(
            err.contains("auth.clients.tenant.max_attempts") && err.contains("client greedy"),
            "{err}"
        );
        let err = validate(
            r#"
[[auth.clients]]
id = "typo"
secret = "typo-secret"
[auth.clients.tenant]
daily_qouta = 5
"#,
        )
        .unwrap_err();
        assert!(
            err.contains("daily_qouta"),
            "unknown keys are refused: {err}"
        );
    }
}
