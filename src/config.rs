//! Typed settings: embedded defaults, then an optional TOML file, then `OTPGW_<SECTION>__<KEY>`
//! environment variables. Everything is validated once, in [`Settings::validate`], which turns
//! raw values into the types the rest of the gateway uses, so no later code re-checks them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The demo client that exists only when no client is configured and the API listens on loopback.
pub const DEMO_CLIENT_ID: &str = "demo";
/// Its secret; printed in the start-up banner.
pub const DEMO_CLIENT_SECRET: &str = "demo-secret";

/// Raw settings as read from defaults, file and environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Public API listener.
    pub http: HttpSettings,
    /// Admin listener (metrics, health, sandbox inbox).
    pub admin: AdminSettings,
    /// Token issuing and validation.
    pub auth: AuthSettings,
    /// SMSC connection.
    pub smpp: SmppConfig,
    /// One-time-password rules.
    pub otp: OtpSettings,
    /// Challenge store.
    pub store: StoreSettings,
    /// Operator number policy.
    pub policy: PolicySettings,
    /// Logging.
    pub log: LogSettings,
}

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address of the public API.
    pub listen: String,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long readiness reports draining, while the API still serves, before the API stops
    /// accepting on shutdown; load balancers need a few polls to take the replica out.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Address of the admin listener.
    pub listen: String,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9091".into(),
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// `iss` of issued tokens and the base of the discovery document.
    pub issuer: String,
    /// `aud` of issued tokens, required on presented tokens.
    pub audience: String,
    /// Lifetime of issued access tokens.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// OAuth2 clients allowed to obtain tokens.
    pub clients: Vec<ClientEntry>,
    /// P-256 private key (PKCS#8, PEM or DER) that signs tokens; generated per process when
    /// absent, so tokens then survive neither a restart nor a hop to another replica.
    pub signing_key_file: Option<std::path::PathBuf>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            audience: "one-time-password-sms".into(),
            token_ttl: Duration::from_secs(3600),
            clients: Vec::new(),
            signing_key_file: None,
        }
    }
}

/// One `[[auth.clients]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// `client_id`.
    pub id: String,
    /// Plain secret or its `pbkdf2-sha256$…` hashed form.
    pub secret: String,
    /// Scopes the client may request.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// This client's token lifetime, when it differs from `auth.token_ttl`.
    #[serde(default, with = "humantime_serde::option")]
    pub token_ttl: Option<Duration>,
    /// API requests per second (and burst) allowed to this client; none means unlimited.
    #[serde(default)]
    pub rate_limit: Option<u32>,
}

/// `[smpp]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmppConfig {
    /// `smpp://SYSTEM_ID:PASSWORD@HOST:PORT`, or `embedded` for the built-in simulator.
    pub url: String,
    /// Sender address: alphanumeric (max 11) or a number.
    pub source_addr: String,
    /// `system_type` sent in the bind.
    pub system_type: String,
    /// Deadline for the SMSC to acknowledge a submit.
    #[serde(with = "humantime_serde")]
    pub submit_timeout: Duration,
    /// Interval between enquire_link PDUs.
    #[serde(with = "humantime_serde")]
    pub enquire_link_interval: Duration,
    /// Maximum submits awaiting their response, per session.
    pub window: usize,
    /// Sessions kept bound to the SMSC.
    pub binds: usize,
    /// `transceiver` or `transmitter`.
    pub bind_mode: String,
    /// With `transmitter`: one more session with bind_receiver for delivery receipts.
    pub receiver_bind: bool,
    /// Segments per second per session; 0 = unlimited.
    pub max_tps: u32,
    /// Longest wait for one submit_sm_resp before retrying on another session.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// Operator command_status (`"0x0400"` or `"1024"`) → `not_allowed`, `blocked` or `unavailable`.
    pub status_map: BTreeMap<String, String>,
    /// How receipt ids relate to submit_sm_resp ids: `auto`, `hex`, `decimal`,
    /// `hex_resp_decimal_receipt` or `opaque`.
    pub message_id_format: String,
    /// Long texts: `udh8`, `udh16`, `sar` or `message_payload`.
    pub concatenation: String,
    /// First reconnect delay.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Cap of the reconnect back-off.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Delay before the embedded simulator sends a delivery receipt.
    #[serde(with = "humantime_serde")]
    pub embedded_receipt_delay: Duration,
    /// Fault injection of the embedded simulator (`smpp.url = "embedded"` only).
    pub simulator: crate::smsc_sim::SimFaults,
    /// PEM bundle of CAs trusted for an `smpps://` url; public web roots when absent.
    pub ca_file: Option<String>,
    /// Several SMSCs; when present they replace `smpp.url`.
    pub routes: Vec<RouteConfig>,
}

/// One `[[smpp.routes]]` entry; unset keys take the `[smpp]` value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name in logs and metric labels.
    pub name: String,
    /// `smpp://` or `smpps://SYSTEM_ID:PASSWORD@HOST:PORT`.
    pub url: String,
    /// E.164 prefixes served; empty serves every number.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Lower is tried first; the longest matching prefix breaks ties.
    #[serde(default)]
    pub priority: u32,
    /// `system_type` of the bind.
    #[serde(default)]
    pub system_type: Option<String>,
    /// Sender address.
    #[serde(default)]
    pub source_addr: Option<String>,
    /// Source TON (with `source_npi`); auto-detected from the sender when absent.
    #[serde(default)]
    pub source_ton: Option<u8>,
    /// Source NPI (with `source_ton`).
    #[serde(default)]
    pub source_npi: Option<u8>,
    /// Sessions of this route.
    #[serde(default)]
    pub binds: Option<usize>,
    /// Window per session.
    #[serde(default)]
    pub window: Option<usize>,
    /// Segments per second per session.
    #[serde(default)]
    pub max_tps: Option<u32>,
    /// `udh8`, `udh16`, `sar` or `message_payload`.
    #[serde(default)]
    pub concatenation: Option<String>,
    /// `auto`, `hex`, `decimal`, `hex_resp_decimal_receipt` or `opaque`.
    #[serde(default)]
    pub message_id_format: Option<String>,
    /// PEM bundle of CAs trusted for an `smpps://` url.
    #[serde(default)]
    pub ca_file: Option<String>,
}

impl Default for SmppConfig {
    fn default() -> Self {
        Self {
            url: "embedded".into(),
            source_addr: "OTPGateway".into(),
            system_type: String::new(),
            submit_timeout: Duration::from_secs(5),
            enquire_link_interval: Duration::from_secs(30),
            window: 64,
            binds: 1,
            bind_mode: "transceiver".into(),
            receiver_bind: false,
            max_tps: 0,
            response_timeout: Duration::from_secs(2),
            status_map: BTreeMap::new(),
            message_id_format: "auto".into(),
            concatenation: "udh8".into(),
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(30),
            embedded_receipt_delay: Duration::from_millis(200),
            simulator: crate::smsc_sim::SimFaults::default(),
            ca_file: None,
            routes: Vec::new(),
        }
    }
}

/// `[otp]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtpSettings {
    /// Digits per code (4..=10).
    pub code_length: usize,
    /// How long a code can be validated.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Wrong answers after which an authenticationId is locked.
    pub max_attempts: u32,
    /// Codes accepted per phone number within `max_codes_window`.
    pub max_codes_per_number: u32,
    /// The sliding window of `max_codes_per_number`.
    #[serde(with = "humantime_serde")]
    pub max_codes_window: Duration,
    /// How long a used, superseded or expired id answers VERIFICATION_EXPIRED rather than 404.
    #[serde(with = "humantime_serde")]
    pub id_retention: Duration,
    /// Key for code hashes and authenticationId MACs (at least 32 bytes); random when absent.
    pub hash_key: Option<String>,
}

impl Default for OtpSettings {
    fn default() -> Self {
        Self {
            code_length: 6,
            ttl: Duration::from_secs(300),
            max_attempts: 3,
            max_codes_per_number: 5,
            max_codes_window: Duration::from_secs(600),
            id_retention: Duration::from_secs(24 * 3600),
            hash_key: None,
        }
    }
}

/// `[store]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `memory` (the only backend so far).
    pub backend: String,
    /// Upper bound of live challenges held in memory.
    pub max_challenges: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: "memory".into(),
            max_challenges: 1_000_000,
        }
    }
}

/// `[policy]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// E.164 prefixes served by this operator; others get 404. Empty: every number.
    pub operator_prefixes: Vec<String>,
    /// Prefixes that cannot receive SMS (landlines, data-only ranges): 403 PHONE_NUMBER_NOT_ALLOWED.
    pub not_allowed_prefixes: Vec<String>,
    /// Numbers with SMS barring: 403 PHONE_NUMBER_BLOCKED.
    pub blocked_numbers: Vec<String>,
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// tracing filter directive, e.g. `info` or `otp_gateway=debug`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// A configuration problem, naming the key that caused it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be read or has the wrong shape.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is out of range or inconsistent with another.
    #[error("configuration key `{key}`: {reason}")]
    Invalid {
        /// Dotted key, e.g. `otp.code_length`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Where SMS go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmscTarget {
    /// Start the built-in simulator in-process on a free loopback port.
    Embedded,
    /// A real SMSC.
    Remote {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// Bind `system_id`.
        system_id: String,
        /// Bind password.
        password: String,
        /// `smpps://`: connect with TLS.
        tls: bool,
    },
}

/// One validated SMSC route (from `[[smpp.routes]]`).
#[derive(Clone)]
pub struct RouteSpec {
    /// Name.
    pub name: String,
    /// Served prefixes (empty: all).
    pub prefixes: Vec<String>,
    /// Lower first.
    pub priority: u32,
    /// Where and how to bind (never [`SmscTarget::Embedded`]).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Bind system_id.
    pub system_id: String,
    /// Bind password.
    pub password: String,
    /// TLS.
    pub tls: bool,
    /// CA bundle for TLS.
    pub ca_file: Option<std::path::PathBuf>,
    /// system_type.
    pub system_type: String,
    /// Sender.
    pub source_addr: String,
    /// Explicit source TON/NPI.
    pub source_ton_npi: Option<(u8, u8)>,
    /// Sessions.
    pub binds: usize,
    /// Window per session.
    pub window: usize,
    /// Segments per second per session.
    pub max_tps: u32,
    /// Long-text mode.
    pub concatenation: crate::smpp::encoding::Concatenation,
    /// Receipt id matching.
    pub message_id_format: crate::smpp::MessageIdFormat,
}

impl std::fmt::Debug for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written so the bind password never reaches a log line.
        f.debug_struct("RouteSpec")
            .field("name", &self.name)
            .field("prefixes", &self.prefixes)
            .field("priority", &self.priority)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("system_id", &self.system_id)
            .field("password", &"<redacted>")
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("source_addr", &self.source_addr)
            .field("binds", &self.binds)
            .finish_non_exhaustive()
    }
}

/// Settings after validation.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The raw settings (for the parts that need no conversion).
    pub raw: Settings,
    /// Parsed public listener address.
    pub http_listen: SocketAddr,
    /// Parsed admin listener address.
    pub admin_listen: SocketAddr,
    /// The SMSC to use.
    pub smsc: SmscTarget,
    /// The secret key, and whether it was generated because none was configured.
    pub hash_key: Vec<u8>,
    /// True when `hash_key` was generated at start.
    pub hash_key_generated: bool,
    /// True when the demo client was added because no client was configured.
    pub demo_client: bool,
    /// The token signing key read from `auth.signing_key_file`.
    pub signing_key: Option<Vec<u8>>,
    /// `smpp.bind_mode`, parsed.
    pub smpp_bind_mode: crate::smpp::BindMode,
    /// `smpp.status_map`, parsed.
    pub smpp_status_map: BTreeMap<u32, crate::smpp::StatusAction>,
    /// `smpp.concatenation`, parsed.
    pub smpp_concatenation: crate::smpp::encoding::Concatenation,
    /// `smpp.message_id_format`, parsed.
    pub smpp_message_id_format: crate::smpp::MessageIdFormat,
    /// `[[smpp.routes]]`, validated; empty when `smpp.url` is used.
    pub routes: Vec<RouteSpec>,
    /// `smpp.ca_file`, checked.
    pub smpp_ca_file: Option<std::path::PathBuf>,
    /// `[smpp.simulator]`, parsed (used with the embedded simulator only).
    pub embedded_faults: crate::smsc_sim::SimFaults,
}

impl Settings {
    /// Defaults, then `file` (when given), then `OTPGW_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("OTPGW_").split("__"));
        figment
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// Checks every value and derives the typed forms.
    pub fn validate(mut self) -> Result<Validated, ConfigError> {
        let http_listen: SocketAddr = self
            .http
            .listen
            .parse()
            .map_err(|e| invalid("http.listen", format!("not an address:port ({e})")))?;
        let admin_listen: SocketAddr = self
            .admin
            .listen
            .parse()
            .map_err(|e| invalid("admin.listen", format!("not an address:port ({e})")))?;
        if self.http.max_body_bytes < 512 {
            return Err(invalid("http.max_body_bytes", "must be at least 512"));
        }
        if !(4..=10).contains(&self.otp.code_length) {
            return Err(invalid("otp.code_length", "must be between 4 and 10"));
        }
        if self.otp.ttl < Duration::from_secs(1) || self.otp.ttl > Duration::from_secs(24 * 3600) {
            return Err(invalid("otp.ttl", "must be between 1s and 24h"));
        }
        if self.otp.max_attempts == 0 {
            return Err(invalid("otp.max_attempts", "must be at least 1"));
        }
        if self.otp.max_codes_per_number == 0 {
            return Err(invalid("otp.max_codes_per_number", "must be at least 1"));
        }
        if self.otp.max_codes_window.is_zero() {
            return Err(invalid("otp.max_codes_window", "must be longer than 0s"));
        }
        if self.otp.id_retention < self.otp.ttl {
            return Err(invalid(
                "otp.id_retention",
                "must not be shorter than otp.ttl",
            ));
        }
        let (hash_key, hash_key_generated) = match &self.otp.hash_key {
            Some(k) if k.len() < 32 => {
                return Err(invalid("otp.hash_key", "must be at least 32 bytes long"))
            }
            Some(k) => (k.as_bytes().to_vec(), false),
            None => (random_key()?, true),
        };
        if self.store.backend != "memory" {
            return Err(invalid(
                "store.backend",
                format!(
                    "unknown backend {:?} (supported: memory)",
                    self.store.backend
                ),
            ));
        }
        if self.store.max_challenges < 1000 {
            return Err(invalid("store.max_challenges", "must be at least 1000"));
        }
        let smsc = parse_smpp_url(&self.smpp.url)?;
        check_source_addr("smpp.source_addr", &self.smpp.source_addr)?;
        if self.smpp.window == 0 || self.smpp.window > 10_000 {
            return Err(invalid("smpp.window", "must be between 1 and 10000"));
        }
        if self.smpp.binds == 0 || self.smpp.binds > 64 {
            return Err(invalid("smpp.binds", "must be between 1 and 64"));
        }
        let smpp_bind_mode = match self.smpp.bind_mode.as_str() {
            "transceiver" => crate::smpp::BindMode::Transceiver,
            "transmitter" => crate::smpp::BindMode::Transmitter,
            other => {
                return Err(invalid(
                    "smpp.bind_mode",
                    format!("{other:?} is not `transceiver` or `transmitter`"),
                ))
            }
        };
        if self.smpp.receiver_bind && smpp_bind_mode != crate::smpp::BindMode::Transmitter {
            return Err(invalid(
                "smpp.receiver_bind",
                "only with smpp.bind_mode = \"transmitter\" (a transceiver takes receipts itself)",
            ));
        }
        if self.smpp.max_tps > 100_000 {
            return Err(invalid(
                "smpp.max_tps",
                "must be between 0 (unlimited) and 100000",
            ));
        }
        if self.smpp.response_timeout < Duration::from_millis(10) {
            return Err(invalid("smpp.response_timeout", "must be at least 10ms"));
        }
        let smpp_status_map = parse_status_map(&self.smpp.status_map)?;
        let embedded_faults = self.smpp.simulator.clone();
        let smpp_concatenation =
            parse_concatenation("smpp.concatenation", &self.smpp.concatenation)?;
        let smpp_message_id_format =
            parse_id_format("smpp.message_id_format", &self.smpp.message_id_format)?;
        let smpp_ca_file = self
            .smpp
            .ca_file
            .as_deref()
            .map(|f| check_ca_file("smpp.ca_file", f))
            .transpose()?;
        let routes = self.validate_routes()?;
        if self.smpp.submit_timeout < Duration::from_millis(10) {
            return Err(invalid("smpp.submit_timeout", "must be at least 10ms"));
        }
        if self.smpp.reconnect_min.is_zero() || self.smpp.reconnect_max < self.smpp.reconnect_min {
            return Err(invalid(
                "smpp.reconnect_max",
                "reconnect_min must be > 0 and reconnect_max >= reconnect_min",
            ));
        }
        for p in self
            .policy
            .operator_prefixes
            .iter()
            .chain(&self.policy.not_allowed_prefixes)
        {
            if !is_prefix(p) {
                return Err(invalid(
                    "policy.operator_prefixes",
                    format!("{p:?} is not a '+' followed by digits"),
                ));
            }
        }
        for n in &self.policy.blocked_numbers {
            if crate::domain::PhoneNumber::parse(n).is_err() {
                return Err(invalid(
                    "policy.blocked_numbers",
                    format!("{n:?} is not an E.164 number"),
                ));
            }
        }
        if self.log.format != "text" && self.log.format != "json" {
            return Err(invalid("log.format", "must be `text` or `json`"));
        }
        if self.auth.token_ttl < Duration::from_secs(10) {
            return Err(invalid("auth.token_ttl", "must be at least 10s"));
        }
        if self.auth.issuer.trim().is_empty() {
            return Err(invalid("auth.issuer", "must not be empty"));
        }
        self.auth.issuer = self.auth.issuer.trim_end_matches('/').to_string();
        for c in &self.auth.clients {
            if c.id.is_empty() || c.secret.len() < 8 {
                return Err(invalid(
                    "auth.clients",
                    "each client needs an id and a secret of at least 8 characters",
                ));
            }
            if c.rate_limit == Some(0) {
                return Err(invalid(
                    "auth.clients",
                    "rate_limit must be at least 1 request per second",
                ));
            }
            if c.token_ttl.is_some_and(|t| t < Duration::from_secs(1)) {
                return Err(invalid("auth.clients", "token_ttl must be at least 1s"));
            }
        }
        let signing_key = match &self.auth.signing_key_file {
            None => None,
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    invalid("auth.signing_key_file", format!("{}: {e}", path.display()))
                })?;
                crate::auth::jwt::SigningKey::from_pkcs8(&bytes).map_err(|e| {
                    invalid("auth.signing_key_file", format!("{}: {e}", path.display()))
                })?;
                Some(bytes)
            }
        };
        let mut demo_client = false;
        if self.auth.clients.is_empty() {
            if !http_listen.ip().is_loopback() {
                return Err(invalid(
                    "auth.clients",
                    "no client configured; the demo client is only offered on a loopback listener",
                ));
            }
            self.auth.clients.push(ClientEntry {
                id: DEMO_CLIENT_ID.into(),
                secret: DEMO_CLIENT_SECRET.into(),
                scopes: vec![crate::auth::SEND_VALIDATE_SCOPE.into()],
                token_ttl: None,
                rate_limit: None,
            });
            demo_client = true;
        }
        Ok(Validated {
            raw: self,
            http_listen,
            admin_listen,
            smsc,
            hash_key,
            hash_key_generated,
            demo_client,
            signing_key,
            smpp_bind_mode,
            smpp_status_map,
            embedded_faults,
            smpp_message_id_format,
            smpp_concatenation,
            routes,
            smpp_ca_file,
        })
    }

    fn validate_routes(&self) -> Result<Vec<RouteSpec>, ConfigError> {
        let s = &self.smpp;
        let mut names = std::collections::HashSet::new();
        s.routes
            .iter()
            .map(|r| {
                let bad =
                    |why: String| invalid("smpp.routes", format!("route {:?}: {why}", r.name));
                if r.name.is_empty() || r.name.len() > 32 || !names.insert(r.name.clone()) {
                    return Err(bad("needs a unique name of 1 to 32 characters".into()));
                }
                let (host, port, system_id, password, tls) = match parse_smpp_url(&r.url) {
                    Ok(SmscTarget::Remote {
                        host,
                        port,
                        system_id,
                        password,
                        tls,
                    }) => (host, port, system_id, password, tls),
                    Ok(SmscTarget::Embedded) => return Err(bad("url cannot be `embedded`".into())),
                    Err(e) => return Err(bad(e.to_string())),
                };
                if let Some(p) = r.prefixes.iter().find(|p| !is_prefix(p)) {
                    return Err(bad(format!("prefix {p:?} is not a '+' followed by digits")));
                }
                let source_addr = r
                    .source_addr
                    .clone()
                    .unwrap_or_else(|| s.source_addr.clone());
                check_source_addr("smpp.routes", &source_addr).map_err(|e| bad(e.to_string()))?;
                let source_ton_npi = match (r.source_ton, r.source_npi) {
                    (Some(t), Some(n)) if t <= 6 && n <= 18 => Some((t, n)),
                    (None, None) => None,
                    _ => {
                        return Err(bad(
                            "source_ton (0-6) and source_npi (0-18) go together".into()
                        ))
                    }
                };
                let binds = r.binds.unwrap_or(s.binds);
                let window = r.window.unwrap_or(s.window);
                if binds == 0 || binds > 64 || window == 0 || window > 10_000 {
                    return Err(bad("binds must be 1-64 and window 1-10000".into()));
                }
                let concatenation = parse_concatenation(
                    "smpp.routes",
                    r.concatenation.as_deref().unwrap_or(&s.concatenation),
                )
                .map_err(|e| bad(e.to_string()))?;
                let message_id_format = parse_id_format(
                    "smpp.routes",
                    r.message_id_format
                        .as_deref()
                        .unwrap_or(&s.message_id_format),
                )
                .map_err(|e| bad(e.to_string()))?;
                let ca_file = r
                    .ca_file
                    .as_deref()
                    .or(s.ca_file.as_deref())
                    .map(|f| check_ca_file("smpp.routes", f))
                    .transpose()
                    .map_err(|e| bad(e.to_string()))?;
                Ok(RouteSpec {
                    name: r.name.clone(),
                    prefixes: r.prefixes.clone(),
                    priority: r.priority,
                    host,
                    port,
                    system_id,
                    password,
                    tls,
                    ca_file,
                    system_type: r
                        .system_type
                        .clone()
                        .unwrap_or_else(|| s.system_type.clone()),
                    source_addr,
                    source_ton_npi,
                    binds,
                    window,
                    max_tps: r.max_tps.unwrap_or(s.max_tps),
                    concatenation,
                    message_id_format,
                })
            })
            .collect()
    }
}

fn parse_concatenation(
    key: &'static str,
    value: &str,
) -> Result<crate::smpp::encoding::Concatenation, ConfigError> {
    use crate::smpp::encoding::Concatenation;
    match value {
        "udh8" => Ok(Concatenation::Udh8),
        "udh16" => Ok(Concatenation::Udh16),
        "sar" => Ok(Concatenation::Sar),
        "message_payload" => Ok(Concatenation::MessagePayload),
        other => Err(invalid(
            key,
            format!("{other:?} is not udh8, udh16, sar or message_payload"),
        )),
    }
}

fn parse_id_format(
    key: &'static str,
    value: &str,
) -> Result<crate::smpp::MessageIdFormat, ConfigError> {
    use crate::smpp::MessageIdFormat;
    match value {
        "auto" => Ok(MessageIdFormat::Auto),
        "hex" => Ok(MessageIdFormat::Hex),
        "decimal" => Ok(MessageIdFormat::Decimal),
        "hex_resp_decimal_receipt" => Ok(MessageIdFormat::HexResponseDecimalReceipt),
        "opaque" => Ok(MessageIdFormat::Opaque),
        other => Err(invalid(
            key,
            format!("{other:?} is not auto, hex, decimal, hex_resp_decimal_receipt or opaque"),
        )),
    }
}

fn check_source_addr(key: &'static str, source: &str) -> Result<(), ConfigError> {
    if source.is_empty() || source.len() > 20 {
        return Err(invalid(key, "source_addr must be 1 to 20 characters"));
    }
    if source.chars().any(|c| !c.is_ascii_digit() && c != '+') && source.len() > 11 {
        return Err(invalid(
            key,
            "an alphanumeric source_addr is at most 11 characters",
        ));
    }
    Ok(())
}

/// The file must exist and hold at least one PEM certificate.
fn check_ca_file(key: &'static str, file: &str) -> Result<std::path::PathBuf, ConfigError> {
    let path = std::path::PathBuf::from(file);
    crate::smpp::tls::load_ca(&path).map_err(|e| invalid(key, e))?;
    Ok(path)
}

/// Parses `smpp.status_map`: keys are command_status values in hex (`0x…`) or decimal.
fn parse_status_map(
    raw: &BTreeMap<String, String>,
) -> Result<BTreeMap<u32, crate::smpp::StatusAction>, ConfigError> {
    use crate::smpp::StatusAction;
    raw.iter()
        .map(|(k, v)| {
            let key = k.trim();
            let status = match key.strip_prefix("0x").or_else(|| key.strip_prefix("0X")) {
                Some(hex) => u32::from_str_radix(hex, 16),
                None => key.parse(),
            }
            .map_err(|_| {
                invalid(
                    "smpp.status_map",
                    format!("{k:?} is not a command_status (hex 0x… or decimal)"),
                )
            })?;
            if status == 0 {
                return Err(invalid("smpp.status_map", "0 (ESME_ROK) cannot be mapped"));
            }
            let action = match v.as_str() {
                "not_allowed" => StatusAction::NotAllowed,
                "blocked" => StatusAction::Blocked,
                "unavailable" => StatusAction::Unavailable,
                other => {
                    return Err(invalid(
                        "smpp.status_map",
                        format!("{other:?} is not `not_allowed`, `blocked` or `unavailable`"),
                    ))
                }
            };
            Ok((status, action))
        })
        .collect()
}

fn is_prefix(p: &str) -> bool {
    p.len() >= 2
        && p.len() <= 16
        && p.starts_with('+')
        && p[1..].bytes().all(|b| b.is_ascii_digit())
}

fn random_key() -> Result<Vec<u8>, ConfigError> {
    use ring::rand::SecureRandom;
    let mut key = vec![0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| invalid("otp.hash_key", "the system random generator failed"))?;
    Ok(key)
}

/// Parses `embedded` or `smpp://SYSTEM_ID:PASSWORD@HOST:PORT` (user info percent-decoded).
pub fn parse_smpp_url(url: &str) -> Result<SmscTarget, ConfigError> {
    if url == "embedded" {
        return Ok(SmscTarget::Embedded);
    }
    let bad = |why: &str| {
        invalid(
            "smpp.url",
            format!("{why}; expected `embedded` or smpp[s]://SYSTEM_ID:PASSWORD@HOST:PORT"),
        )
    };
    let (tls, rest) = match (url.strip_prefix("smpp://"), url.strip_prefix("smpps://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        (None, None) => return Err(bad("unsupported scheme")),
    };
    let (userinfo, hostport) = rest
        .rsplit_once('@')
        .ok_or_else(|| bad("missing credentials"))?;
    let (user, pass) = userinfo
        .split_once(':')
        .ok_or_else(|| bad("missing password"))?;
    let hostport = hostport.trim_end_matches('/');
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| bad("missing port"))?;
    let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || user.is_empty() {
        return Err(bad("empty host or system id"));
    }
    let system_id = percent_decode(user).ok_or_else(|| bad("bad escape in system id"))?;
    let password = percent_decode(pass).ok_or_else(|| bad("bad escape in password"))?;
    if system_id.len() > 15 || password.len() > 8 {
        return Err(bad(
            "SMPP 3.4 limits system_id to 15 and password to 8 characters",
        ));
    }
    Ok(SmscTarget::Remote {
        host: host.to_string(),
        port,
        system_id,
        password,
        tls,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_with_the_demo_client_on_loopback() {
        let v = Settings::default().validate().unwrap();
        assert!(v.demo_client);
        assert!(v.hash_key_generated);
        assert_eq!(v.smsc, SmscTarget::Embedded);
        assert_eq!(v.raw.auth.clients[0].id, DEMO_CLIENT_ID);
    }

    #[test]
    fn no_demo_client_on_a_public_listener() {
        let mut s = Settings::default();
        s.http.listen = "0.0.0.0:8080".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("auth.clients"), "{err}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        type Mutation = fn(&mut Settings);
        let cases: Vec<(Mutation, &str)> = vec![
            (|s| s.otp.code_length = 3, "otp.code_length"),
            (|s| s.otp.code_length = 11, "otp.code_length"),
            (|s| s.otp.max_attempts = 0, "otp.max_attempts"),
            (|s| s.otp.hash_key = Some("short".into()), "otp.hash_key"),
            (|s| s.smpp.url = "http://x".into(), "smpp.url"),
            (|s| s.store.backend = "etcd".into(), "store.backend"),
            (|s| s.http.listen = "nowhere".into(), "http.listen"),
            (
                |s| s.policy.blocked_numbers = vec!["123".into()],
                "policy.blocked_numbers",
            ),
            (
                |s| s.otp.id_retention = Duration::from_secs(1),
                "otp.id_retention",
            ),
            (|s| s.smpp.binds = 0, "smpp.binds"),
            (|s| s.smpp.receiver_bind = true, "smpp.receiver_bind"),
            (
                |s| s.smpp.concatenation = "udh7".into(),
                "smpp.concatenation",
            ),
            (
                |s| s.smpp.message_id_format = "base64".into(),
                "smpp.message_id_format",
            ),
            (|s| s.smpp.bind_mode = "receiver".into(), "smpp.bind_mode"),
            (|s| s.smpp.max_tps = 1_000_000, "smpp.max_tps"),
            (
                |s| s.smpp.response_timeout = Duration::ZERO,
                "smpp.response_timeout",
            ),
            (
                |s| {
                    s.smpp.status_map.insert("0x04zz".into(), "blocked".into());
                },
                "smpp.status_map",
            ),
            (
                |s| {
                    s.smpp.status_map.insert("0x0400".into(), "gone".into());
                },
                "smpp.status_map",
            ),
        ];
        for (mutate, key) in cases {
            let mut s = Settings::default();
            mutate(&mut s);
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains(key), "expected {key} in {err}");
        }
    }

    /// `[smpp.simulator]` values are checked while loading (the types parse themselves), so
    /// these cases go through a TOML file, and the figment error must still name the key.
    #[test]
    fn invalid_simulator_faults_name_their_key_when_loaded() {
        let dir = std::env::temp_dir().join(format!("otpgw-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sim.toml");
        let cases = [
            ("error_rate = 2.0", "smpp.simulator.error_rate"),
            ("message_ids = \"octal\"", "smpp.simulator.message_ids"),
            (
                "receipt_states = { lost = 1 }",
                "smpp.simulator.receipt_states",
            ),
            ("error_status = \"0xZZ\"", "smpp.simulator.error_status"),
            (
                "prefix_errors = { \"34\" = \"0x0B\" }",
                "smpp.simulator.prefix_errors",
            ),
        ];
        for (line, key) in cases {
            std::fs::write(&file, format!("[smpp.simulator]\n{line}\n")).unwrap();
            let err = Settings::load(Some(&file)).unwrap_err().to_string();
            assert!(err.contains(key), "expected {key} in {err}");
        }
        std::fs::write(
            &file,
            "[smpp.simulator]\nerror_rate = 0.5\nerror_status = 11\n",
        )
        .unwrap();
        let v = Settings::load(Some(&file)).unwrap().validate().unwrap();
        assert_eq!(v.embedded_faults.error_rate.get(), 0.5);
        assert_eq!(v.embedded_faults.error_status.get(), 11);
    }

    #[test]
    fn routes_validate_and_inherit_smpp_defaults() {
        let mut s = Settings::default();
        s.smpp.max_tps = 7;
        s.smpp.routes = vec![
            RouteConfig {
                name: "a".into(),
                url: "smpp://id:pw@host-a:2775".into(),
                prefixes: vec!["+3460".into()],
                priority: 1,
                system_type: None,
                source_addr: Some("12345".into()),
                source_ton: Some(2),
                source_npi: Some(1),
                binds: Some(3),
                window: None,
                max_tps: None,
                concatenation: Some("sar".into()),
                message_id_format: None,
                ca_file: None,
            },
            RouteConfig {
                name: "b".into(),
                url: "smpps://id:pw@host-b:3550".into(),
                prefixes: Vec::new(),
                priority: 2,
                system_type: Some("OTP".into()),
                source_addr: None,
                source_ton: None,
                source_npi: None,
                binds: None,
                window: None,
                max_tps: None,
                concatenation: None,
                message_id_format: Some("decimal".into()),
                ca_file: None,
            },
        ];
        let v = s.clone().validate().unwrap();
        assert_eq!(v.routes.len(), 2);
        let (a, b) = (&v.routes[0], &v.routes[1]);
        assert_eq!((a.binds, a.max_tps, a.source_ton_npi), (3, 7, Some((2, 1))));
        assert_eq!(a.concatenation, crate::smpp::encoding::Concatenation::Sar);
        assert!(b.tls && !a.tls);
        assert_eq!(b.source_addr, "OTPGateway");
        assert_eq!(b.message_id_format, crate::smpp::MessageIdFormat::Decimal);

        assert!(!format!("{a:?}").contains("pw"), "password redacted");
        let mut bad = s.clone();
        bad.smpp.routes[1].name = "a".into();
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("smpp.routes") && err.contains("unique"),
            "{err}"
        );
        let mut bad = s.clone();
        bad.smpp.routes[0].prefixes = vec!["34".into()];
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("smpp.routes"));
        let mut bad = s.clone();
        bad.smpp.routes[0].source_npi = None;
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("source_ton"));
        let mut bad = s;
        bad.smpp.routes[1].ca_file = Some("/nonexistent.pem".into());
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("smpp.routes"));
    }

    #[test]
    fn status_map_parses_hex_and_decimal() {
        let mut s = Settings::default();
        s.smpp.status_map.insert("0x0400".into(), "blocked".into());
        s.smpp
            .status_map
            .insert("1025".into(), "not_allowed".into());
        s.smpp
            .status_map
            .insert("0x0B".into(), "unavailable".into());
        let v = s.validate().unwrap();
        use crate::smpp::StatusAction;
        assert_eq!(v.smpp_status_map.get(&0x400), Some(&StatusAction::Blocked));
        assert_eq!(
            v.smpp_status_map.get(&1025),
            Some(&StatusAction::NotAllowed)
        );
        assert_eq!(
            v.smpp_status_map.get(&0x0B),
            Some(&StatusAction::Unavailable)
        );
    }

    #[test]
    fn a_signing_key_file_must_hold_a_p256_key() {
        let dir = std::env::temp_dir().join(format!("otpgw-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.pem");
        let der = crate::auth::jwt::generate_pkcs8().unwrap();
        std::fs::write(&good, crate::auth::jwt::pkcs8_pem(&der)).unwrap();
        let mut s = Settings::default();
        s.auth.signing_key_file = Some(good);
        assert!(s.validate().unwrap().signing_key.is_some());
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "not a key").unwrap();
        for path in [bad, dir.join("missing.pem")] {
            let mut s = Settings::default();
            s.auth.signing_key_file = Some(path);
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains("auth.signing_key_file"), "{err}");
        }
    }

    #[test]
    fn smpp_urls_parse_with_escapes() {
        assert_eq!(
            parse_smpp_url("smpp://otp:p%40ss@smsc.example:2775").unwrap(),
            SmscTarget::Remote {
                host: "smsc.example".into(),
                port: 2775,
                system_id: "otp".into(),
                password: "p@ss".into(),
                tls: false,
            }
        );
        assert!(matches!(
            parse_smpp_url("smpps://otp:pw@smsc.example:3550").unwrap(),
            SmscTarget::Remote {
                tls: true,
                port: 3550,
                ..
            }
        ));
        assert!(parse_smpp_url("smpp://otp@host:1").is_err());
        assert!(parse_smpp_url("smpp://a:b@host:notaport").is_err());
        assert!(parse_smpp_url("smpp://a:b@host:1%").is_err());
    }

    #[test]
    fn file_and_environment_layers_apply_in_order() {
        let dir = std::env::temp_dir().join(format!("otpgw-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[otp]\ncode_length = 8\nttl = \"2m\"\n").unwrap();
        let s = Settings::load(Some(&file)).unwrap();
        assert_eq!(s.otp.code_length, 8);
        assert_eq!(s.otp.ttl, Duration::from_secs(120));
        std::fs::write(&file, "[otp]\nunknown_key = 1\n").unwrap();
        assert!(Settings::load(Some(&file)).is_err());
        assert!(Settings::load(Some(&dir.join("missing.toml"))).is_err());
    }
}
