//! Settings: embedded defaults, then an optional TOML file, then `OTPGW_<SECTION>__<KEY>`
//! environment variables, parsed straight into typed values (addresses, durations, enums,
//! [`Secret`](crate::domain::Secret)s), so a malformed value fails with its key at load time.
//! [`Settings::validate`] then applies the rules that span fields and produces the one
//! [`Config`] that start-up uses; nothing raw survives it.

mod api;
mod audit;
mod auth;
mod guard;
mod http;
mod issuers;
mod log;
mod otp;
mod policy;
mod smpp;
mod store;
mod tenant;
mod usage;

use std::path::Path;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

pub use self::api::ApiSettings;
pub use self::audit::AuditSettings;
pub use self::auth::{AuthConfig, AuthSettings, ClientEntry, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET};
pub use self::guard::{LookupFailure, LookupSettings, PumpingSettings};
pub use self::http::{AdminSettings, HttpSettings, SandboxSettings};
pub use self::issuers::{
    ClientIdClaim, IntrospectionConfig, IssuerConfig, IssuerEntry, KeySource, SUPPORTED_ALGORITHMS,
};
pub use self::log::{LogFormat, LogSettings};
pub use self::otp::{HashKey, OtpSettings};
pub use self::policy::PolicySettings;
pub use self::smpp::{EmbeddedSmsc, RouteEntry, SmppConfig, SmppSettings, SmscUrl, DEFAULT_ROUTE};
pub use self::store::{StoreBackend, StoreConfig, StoreSettings};
pub use self::tenant::{longest_ttl, TenantBounds, TenantSettings};
pub use self::usage::UsageSettings;

/// Settings as read from defaults, file and environment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The CAMARA release the API follows.
    pub api: ApiSettings,
    /// Public API listener.
    pub http: HttpSettings,
    /// Admin listener (metrics, health, sandbox inbox).
    pub admin: AdminSettings,
    /// Whether the sandbox inbox may be served beyond loopback.
    pub sandbox: SandboxSettings,
    /// Token issuing and validation.
    pub auth: AuthSettings,
    /// SMSC connections.
    pub smpp: SmppSettings,
    /// One-time-password rules.
    pub otp: OtpSettings,
    /// Challenge store.
    pub store: StoreSettings,
    /// Operator number policy.
    pub policy: PolicySettings,
    /// Logging.
    pub log: LogSettings,
    /// Audit events file.
    pub audit: AuditSettings,
    /// Usage counters.
    pub usage: UsageSettings,
}

/// The validated configuration start-up builds the gateway from.
#[derive(Debug, Clone)]
pub struct Config {
    /// The CAMARA release the API follows.
    pub api: ApiSettings,
    /// Public API listener.
    pub http: HttpSettings,
    /// Admin listener.
    pub admin: AdminSettings,
    /// Sandbox exposure (checked against the admin listener and the SMSC at validation).
    pub sandbox: SandboxSettings,
    /// Token issuer and clients.
    pub auth: AuthConfig,
    /// Every SMSC route, and the embedded simulator when it plays the SMSC.
    pub smpp: SmppConfig,
    /// Code rules.
    pub otp: OtpSettings,
    /// The key for code hashes and id MACs.
    pub hash_key: HashKey,
    /// Challenge store.
    pub store: StoreConfig,
    /// Number policy.
    pub policy: PolicySettings,
    /// Logging.
    pub log: LogSettings,
    /// Audit events file.
    pub audit: AuditSettings,
    /// Usage counters.
    pub usage: UsageSettings,
}

/// A configuration problem, naming the key that caused it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be read or has the wrong shape.
    #[error("configuration key `{key}`: {reason}{}", origin.as_deref().map(|o| format!(" (in {o})")).unwrap_or_default())]
    Load {
        /// Dotted key, e.g. `smpp.concatenation` (empty when the whole file is unreadable).
        key: String,
        /// What is wrong with it.
        reason: String,
        /// Where the value came from: a file, or the environment.
        origin: Option<String>,
    },
    /// A value is out of range or inconsistent with another.
    #[error("configuration key `{key}`: {reason}")]
    Invalid {
        /// Dotted key, e.g. `otp.code_length`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Names the key of a figment error: its path, plus the option name that a flattened
/// section's deserialiser put into the message (see `smpp::FIELD_MARK`).
fn load_error(e: figment::Error) -> ConfigError {
    let origin = e.metadata.as_ref().map(|md| match &md.source {
        Some(source) => format!("{source} {}", md.name),
        None => md.name.to_string(),
    });
    let mut key = e.path.join(".");
    let mut reason = e.kind.to_string();
    let mark = crate::smpp::FIELD_MARK;
    if let Some((field, rest)) = reason
        .strip_prefix(mark)
        .and_then(|r| r.split_once(mark))
        .map(|(f, r)| (f.to_owned(), r.to_owned()))
    {
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(&field);
        reason = rest;
    }
    ConfigError::Load {
        key,
        reason,
        origin,
    }
}

impl Settings {
    /// Defaults, then `file` (when given), then `OTPGW_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load_all(file.into_iter())
    }

    /// Defaults, then each of `files` in order (a later file's keys override an earlier
    /// one's; tables merge key by key, a list replaces the earlier list), then `OTPGW_*`
    /// environment variables. Lets an operator keep e.g. the number policy in a file of its
    /// own beside the gateway's configuration.
    pub fn load_all<'a>(files: impl Iterator<Item = &'a Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::new();
        for path in files {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("OTPGW_").split("__"));
        figment.extract().map_err(load_error)
    }

    /// Applies the rules that span fields and derives the typed forms start-up uses.
    pub fn validate(self) -> Result<Config, ConfigError> {
        self.http.check()?;
        self.admin.check()?;
        self.otp.check()?;
        let hash_key = self.otp.hash_key()?;
        // Delivery state lives as long as the challenge it belongs to.
        let smpp = self.smpp.validate(
            tenant::longest_ttl(&self.auth.clients, &self.otp),
            self.store.max_challenges,
        )?;
        let store = self.store.validate()?;
        // The embedded simulator's inbox holds every code sent: beyond loopback it is served
        // only when asked for (and then only with a credential, see `admin`).
        if smpp.embedded.is_some() && !self.admin.listen.ip().is_loopback() && !self.sandbox.expose
        {
            return Err(invalid(
                "sandbox.expose",
                format!(
                    "admin.listen {} is not loopback and smpp.url is \"embedded\": the simulator's sandbox inbox would show every code to the network; bind admin.listen to loopback, configure a real SMSC, or set sandbox.expose = true (the inbox then needs admin.token or a token with scope {})",
                    self.admin.listen,
                    crate::auth::ADMIN_SCOPE
                ),
            ));
        }
        let auth = self.auth.validate(self.http.listen.ip().is_loopback())?;
        self.policy.check()?;
        tenant::check_all(&auth.clients, &self.otp)?;
        self.sandbox.check()?;
        self.audit.check()?;
        self.usage.check()?;
        Ok(Config {
            api: self.api,
            http: self.http,
            admin: self.admin,
            sandbox: self.sandbox,
            auth,
            smpp,
            otp: self.otp,
            hash_key,
            store,
            policy: self.policy,
            log: self.log,
            audit: self.audit,
            usage: self.usage,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
