//! `[smpp]` and `[[smpp.routes]]` → one `Vec<smpp::RouteSettings>`: `smpp.url` is simply
//! route 0 when no routes are listed, `embedded` starts the simulator on loopback. Every
//! session option (`smpp::SessionOptions`) is set in `[smpp]` and may be overridden per route.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::de;
use crate::domain::Secret;
use crate::smpp::{RouteSettings, SessionOptions, SessionOverrides, SmscAddress};
use crate::smsc_sim::SimFaults;

/// The `smpp.url` value: the embedded simulator or a real SMSC.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum SmscUrl {
    /// Start the built-in simulator in-process on a free loopback port.
    Embedded,
    /// A real SMSC.
    Smsc(SmscAddress),
}

impl FromStr for SmscUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<SmscUrl, String> {
        if s == "embedded" {
            return Ok(SmscUrl::Embedded);
        }
        s.parse()
            .map(SmscUrl::Smsc)
            .map_err(|e: String| format!("{e} (or `embedded`)"))
    }
}

impl TryFrom<String> for SmscUrl {
    type Error = String;
    fn try_from(s: String) -> Result<SmscUrl, String> {
        s.parse()
    }
}

/// Keys a flattened section did not claim. serde cannot combine `flatten` with
/// `deny_unknown_fields`, so the leftovers are collected and rejected in `validate`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct UnknownKeys(BTreeMap<String, IgnoredAny>);

impl UnknownKeys {
    fn reject(&self, section: &str) -> Result<(), ConfigError> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(k) => Err(ConfigError::Invalid {
                key: format!("{section}.{k}"),
                reason: "unknown key".into(),
            }),
        }
    }
}

/// `[smpp]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SmppSettings {
    /// `smpp[s]://SYSTEM_ID:PASSWORD@HOST:PORT`, or `embedded` for the built-in simulator;
    /// not used when `routes` are listed.
    pub url: SmscUrl,
    /// Delay before the embedded simulator sends a delivery receipt.
    #[serde(with = "humantime_serde")]
    pub embedded_receipt_delay: Duration,
    /// Fault injection of the embedded simulator (`url = "embedded"` only).
    pub simulator: SimFaults,
    /// Several SMSCs; when present they replace `url`.
    pub routes: Vec<RouteEntry>,
    /// Options of every route's sessions.
    #[serde(flatten)]
    pub session: SessionOptions,
    #[serde(flatten)]
    unknown: UnknownKeys,
}

impl Default for SmppSettings {
    fn default() -> Self {
        SmppSettings {
            url: SmscUrl::Embedded,
            embedded_receipt_delay: Duration::from_millis(200),
            simulator: SimFaults::default(),
            routes: Vec::new(),
            session: SessionOptions::default(),
            unknown: UnknownKeys::default(),
        }
    }
}

/// One `[[smpp.routes]]` entry; options it does not name come from `[smpp]`.
#[derive(Debug, Clone, Deserialize)]
pub struct RouteEntry {
    /// Name in logs and metric labels (unique, 1 to 32 characters).
    pub name: String,
    /// `smpp://` or `smpps://SYSTEM_ID:PASSWORD@HOST:PORT`.
    pub url: SmscUrl,
    /// E.164 prefixes served; empty serves every number.
    #[serde(default, deserialize_with = "de::prefixes")]
    pub prefixes: Vec<String>,
    /// Lower is tried first; the longest matching prefix breaks ties.
    #[serde(default)]
    pub priority: u32,
    /// The session options this route sets itself.
    #[serde(flatten)]
    pub overrides: SessionOverrides,
    #[serde(flatten)]
    unknown: UnknownKeys,
}

impl RouteEntry {
    /// A route to `url` serving `prefixes`, with every option from `[smpp]`.
    pub fn new(name: &str, url: SmscUrl, prefixes: &[&str], priority: u32) -> RouteEntry {
        RouteEntry {
            name: name.to_owned(),
            url,
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            priority,
            overrides: SessionOverrides::default(),
            unknown: UnknownKeys::default(),
        }
    }
}

/// The embedded simulator's part of the configuration, when `smpp.url = "embedded"`.
#[derive(Debug, Clone)]
pub struct EmbeddedSmsc {
    /// Delay before its delivery receipts.
    pub receipt_delay: Duration,
    /// Faults it injects.
    pub faults: SimFaults,
}

/// `[smpp]` after validation.
#[derive(Debug, Clone)]
pub struct SmppConfig {
    /// Every route, in configuration order. With the embedded simulator this is one route
    /// whose address is `127.0.0.1` port 0 until the simulator listens (see `startup`).
    pub routes: Vec<RouteSettings>,
    /// Present when the embedded simulator plays the SMSC.
    pub embedded: Option<EmbeddedSmsc>,
}

/// Name of the route built from `smpp.url`.
pub const DEFAULT_ROUTE: &str = "default";

impl SmppSettings {
    /// Builds every route; `receipt_retention`/`receipt_capacity` size the delivery reports.
    pub(super) fn validate(
        self,
        receipt_retention: Duration,
        receipt_capacity: u64,
    ) -> Result<SmppConfig, ConfigError> {
        self.unknown.reject("smpp")?;
        check_options("smpp", &self.session)?;
        let route = |name: &str, prefixes: Vec<String>, priority, smsc, options| RouteSettings {
            name: name.to_owned(),
            prefixes,
            priority,
            smsc,
            options,
            receipt_retention,
            receipt_capacity,
        };
        if self.routes.is_empty() {
            return Ok(match self.url {
                SmscUrl::Smsc(smsc) => SmppConfig {
                    routes: vec![route(DEFAULT_ROUTE, Vec::new(), 0, smsc, self.session)],
                    embedded: None,
                },
                SmscUrl::Embedded => SmppConfig {
                    routes: vec![route(
                        DEFAULT_ROUTE,
                        Vec::new(),
                        0,
                        embedded_address(),
                        self.session,
                    )],
                    embedded: Some(EmbeddedSmsc {
                        receipt_delay: self.embedded_receipt_delay,
                        faults: self.simulator,
                    }),
                },
            });
        }
        let mut names = HashSet::new();
        let mut routes = Vec::with_capacity(self.routes.len());
        for r in self.routes {
            let bad = |why: String| invalid("smpp.routes", format!("route {:?}: {why}", r.name));
            r.unknown.reject("smpp.routes")?;
            if r.name.is_empty() || r.name.len() > 32 || !names.insert(r.name.clone()) {
                return Err(bad("needs a unique name of 1 to 32 characters".into()));
            }
            let SmscUrl::Smsc(smsc) = r.url else {
                return Err(bad("url cannot be `embedded`".into()));
            };
            let options = r.overrides.apply_to(&self.session);
            check_options("smpp.routes", &options).map_err(|e| bad(e.to_string()))?;
            routes.push(route(&r.name, r.prefixes, r.priority, smsc, options));
        }
        Ok(SmppConfig {
            routes,
            embedded: None,
        })
    }
}

/// Ranges and cross-option rules, and the CA bundle must exist and hold a certificate.
fn check_options(section: &str, o: &SessionOptions) -> Result<(), ConfigError> {
    o.check().map_err(|(key, reason)| ConfigError::Invalid {
        key: format!("{section}.{key}"),
        reason,
    })?;
    if let Some(ca) = &o.ca_file {
        crate::smpp::tls::load_ca(ca).map_err(|e| ConfigError::Invalid {
            key: format!("{section}.ca_file"),
            reason: e,
        })?;
    }
    Ok(())
}

/// Where the gateway binds to its embedded simulator: loopback, a fresh password per run.
fn embedded_address() -> SmscAddress {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    // The simulator only listens on loopback; a weak password on RNG failure exposes nothing.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    SmscAddress {
        host: "127.0.0.1".into(),
        port: 0,
        tls: false,
        system_id: "otpgw".into(),
        password: Secret::new(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }
}
