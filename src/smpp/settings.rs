//! What one route's session pool needs: where the SMSC is ([`SmscAddress`]), how to talk to
//! it ([`SessionOptions`]), and which numbers it serves ([`RouteSettings`]). The defaults
//! here are the only ones: the configuration's `[smpp]` section starts from
//! [`SessionOptions::default`], and every `[[smpp.routes]]` entry overrides what it names
//! through [`SessionOverrides`], generated from the same field list so an option is declared once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::encoding::Concatenation;
use super::receipts::MessageIdFormat;
use crate::de;
use crate::domain::Secret;

/// Which bind the sessions use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    /// bind_transceiver: submits and receipts on one session.
    #[default]
    Transceiver,
    /// bind_transmitter: submits only (receipts need another bind).
    Transmitter,
}

/// What an operator-specific command_status means (`status_map`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusAction {
    /// The number cannot receive SMS: 403 PHONE_NUMBER_NOT_ALLOWED.
    NotAllowed,
    /// The number is barred: 403 PHONE_NUMBER_BLOCKED.
    Blocked,
    /// A service problem: 503 UNAVAILABLE, no retry.
    Unavailable,
}

/// Operator command_status → meaning; keys are written in hex (`"0x0400"`) or decimal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusMap(BTreeMap<u32, StatusAction>);

impl StatusMap {
    /// The meaning configured for `command_status`, if any.
    pub fn get(&self, command_status: u32) -> Option<StatusAction> {
        self.0.get(&command_status).copied()
    }

    /// Adds (or replaces) one meaning.
    pub fn insert(&mut self, command_status: u32, action: StatusAction) {
        self.0.insert(command_status, action);
    }
}

impl<'de> Deserialize<'de> for StatusMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, StatusAction>::deserialize(d)?;
        let mut map = BTreeMap::new();
        for (k, action) in raw {
            let status = de::parse_command_status(&k).map_err(serde::de::Error::custom)?;
            if status == 0 {
                return Err(serde::de::Error::custom("0 (ESME_ROK) cannot be mapped"));
            }
            map.insert(status, action);
        }
        Ok(StatusMap(map))
    }
}

/// A sender address: alphanumeric (at most 11 characters) or a number (at most 20 digits).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SourceAddr(String);

impl SourceAddr {
    /// The address as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SourceAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() || s.len() > 20 {
            return Err("source_addr must be 1 to 20 characters".into());
        }
        if s.chars().any(|c| !c.is_ascii_digit() && c != '+') && s.len() > 11 {
            return Err("an alphanumeric source_addr is at most 11 characters".into());
        }
        Ok(SourceAddr(s))
    }
}

impl FromStr for SourceAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SourceAddr::try_from(s.to_owned())
    }
}

/// Marks the option name in a deserialisation error, so the configuration loader can name the
/// key: serde's `flatten` (how `[smpp]` embeds these options) loses the field path.
pub const FIELD_MARK: char = '\u{1f}';

/// A duration written the humantime way (`500ms`, `30s`).
struct Humantime(Duration);

impl<'de> Deserialize<'de> for Humantime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        humantime_serde::deserialize(d).map(Humantime)
    }
}

macro_rules! read_option {
    ($map:ident, $ty:ty) => {
        $map.next_value::<$ty>()
    };
    ($map:ident, $ty:ty, $de:ty) => {
        $map.next_value::<$de>().map(|v| v.0)
    };
}

/// Declares the per-route session options once: the plain struct with its defaults, the
/// all-optional overrides of a `[[smpp.routes]]` entry, how overrides apply, and one
/// deserialiser for both that names the option in its errors.
macro_rules! session_options {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty $(as $de:ty)? = $default:expr ),* $(,)?) => {
        /// Options of one route's sessions; `[smpp]` sets them for every route.
        #[derive(Clone, Debug, PartialEq)]
        pub struct SessionOptions {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        impl Default for SessionOptions {
            fn default() -> Self {
                SessionOptions { $( $name: $default, )* }
            }
        }

        /// The options a `[[smpp.routes]]` entry names; the others come from `[smpp]`.
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct SessionOverrides {
            $( #[allow(missing_docs)] pub $name: Option<$ty>, )*
        }

        impl SessionOverrides {
            /// `base` with every option this entry names replaced.
            pub fn apply_to(self, base: &SessionOptions) -> SessionOptions {
                SessionOptions {
                    $( $name: match self.$name { Some(v) => v, None => base.$name.clone() }, )*
                }
            }
        }

        const OPTION_NAMES: &[&str] = &[$(stringify!($name)),*];

        struct OverridesVisitor;

        impl<'de> serde::de::Visitor<'de> for OverridesVisitor {
            type Value = SessionOverrides;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("SMPP session options")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SessionOverrides, A::Error> {
                use serde::de::Error;
                let mut o = SessionOverrides::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        $( stringify!($name) => {
                            let v = read_option!(map, $ty $(, $de)?).map_err(|e| {
                                A::Error::custom(format!("{FIELD_MARK}{}{FIELD_MARK}{e}", stringify!($name)))
                            })?;
                            o.$name = Some(v);
                        } )*
                        other => {
                            return Err(A::Error::custom(format!("{FIELD_MARK}{other}{FIELD_MARK}unknown key")));
                        }
                    }
                }
                Ok(o)
            }
        }

        impl<'de> Deserialize<'de> for SessionOverrides {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // A struct, not a map: under `flatten` only these keys are handed over.
                d.deserialize_struct("SessionOptions", OPTION_NAMES, OverridesVisitor)
            }
        }

        impl<'de> Deserialize<'de> for SessionOptions {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(SessionOverrides::deserialize(d)?.apply_to(&SessionOptions::default()))
            }
        }
    };
}

session_options! {
    /// `system_type` sent in the bind (may be empty).
    system_type: String = String::new(),
    /// Sender: alphanumeric → TON 5/NPI 0; digits (optionally with a leading `+`) → TON 1/NPI 1.
    source_addr: SourceAddr = SourceAddr("OTPGateway".into()),
    /// Explicit source TON (0–6, with `source_npi`); auto-detected from the sender when absent.
    source_ton: Option<u8> = None,
    /// Explicit source NPI (0–18, with `source_ton`).
    source_npi: Option<u8> = None,
    /// Destination TON (0–6, with `dest_npi`); international (1) when absent. The address is
    /// always the E.164 digits without `+`.
    dest_ton: Option<u8> = None,
    /// Destination NPI (0–18, with `dest_ton`); ISDN/E.164 (1) when absent.
    dest_npi: Option<u8> = None,
    /// Sessions kept bound to this SMSC (1–64).
    binds: usize = 1,
    /// Submits awaiting their response at once, per session (1–10000).
    window: usize = 64,
    /// Segments per second per session, in any one-second window (0 = unlimited, at most 100000).
    max_tps: u32 = 0,
    /// How texts longer than one segment are sent.
    concatenation: Concatenation = Concatenation::Udh8,
    /// How message ids in receipts relate to those in submit_sm_resp.
    message_id_format: MessageIdFormat = MessageIdFormat::Auto,
    /// PEM bundle of the CAs trusted for `smpps://`; the public web roots when absent.
    ca_file: Option<PathBuf> = None,
    /// Deadline of a whole submit (every segment, every retry; at least 10ms).
    submit_timeout: Duration as Humantime = Duration::from_secs(5),
    /// Longest wait for one submit_sm_resp, capped by what is left of `submit_timeout`
    /// (at least 10ms).
    response_timeout: Duration as Humantime = Duration::from_secs(2),
    /// Interval between enquire_link PDUs on an idle session.
    enquire_link_interval: Duration as Humantime = Duration::from_secs(30),
    /// First reconnect delay after a failed connect/bind or a lost session.
    reconnect_min: Duration as Humantime = Duration::from_millis(250),
    /// Cap of the doubling reconnect delay.
    reconnect_max: Duration as Humantime = Duration::from_secs(30),
    /// bind_transceiver or bind_transmitter.
    bind_mode: BindMode = BindMode::Transceiver,
    /// With [`BindMode::Transmitter`]: one more session, bound with bind_receiver, for receipts.
    receiver_bind: bool = false,
    /// Operator-specific command_status meanings; they take precedence over the built-in ones.
    status_map: StatusMap = StatusMap::default(),
}

impl SessionOptions {
    /// Ranges, and the rules that tie options together; `Err` names the offending option.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let fail = |key, why: &str| Err((key, why.to_owned()));
        if !(1..=64).contains(&self.binds) {
            return fail("binds", "must be between 1 and 64");
        }
        if !(1..=10_000).contains(&self.window) {
            return fail("window", "must be between 1 and 10000");
        }
        if self.max_tps > 100_000 {
            return fail("max_tps", "must be between 0 (unlimited) and 100000");
        }
        if self.submit_timeout < Duration::from_millis(10) {
            return fail("submit_timeout", "must be at least 10ms");
        }
        if self.response_timeout < Duration::from_millis(10) {
            return fail("response_timeout", "must be at least 10ms");
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            return fail(
                "reconnect_max",
                "reconnect_min must be > 0 and reconnect_max >= reconnect_min",
            );
        }
        if self.receiver_bind && self.bind_mode != BindMode::Transmitter {
            return fail(
                "receiver_bind",
                "only with bind_mode = \"transmitter\" (a transceiver takes receipts itself)",
            );
        }
        for (key, ton, npi) in [
            ("source_ton", self.source_ton, self.source_npi),
            ("dest_ton", self.dest_ton, self.dest_npi),
        ] {
            match (ton, npi) {
                (Some(t), Some(n)) if t <= 6 && n <= 18 => {}
                (None, None) => {}
                _ => return fail(key, "a TON (0-6) and an NPI (0-18) go together"),
            }
        }
        Ok(())
    }
}

/// Where an SMSC listens and how to log in: `smpp[s]://SYSTEM_ID:PASSWORD@HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmscAddress {
    /// Host name or address.
    pub host: String,
    /// TCP port (usually 2775).
    pub port: u16,
    /// `smpps://`: connect with TLS.
    pub tls: bool,
    /// Bind `system_id` (at most 15 characters).
    pub system_id: String,
    /// Bind password (at most 8 characters).
    pub password: Secret,
}

impl SmscAddress {
    /// A plain-TCP address with these credentials.
    pub fn new(host: &str, port: u16, system_id: &str, password: &str) -> SmscAddress {
        SmscAddress {
            host: host.to_owned(),
            port,
            tls: false,
            system_id: system_id.to_owned(),
            password: Secret::new(password),
        }
    }

    /// The URL without the password, for banners and logs.
    pub fn display_url(&self) -> String {
        let scheme = if self.tls { "smpps" } else { "smpp" };
        format!("{scheme}://{}@{}:{}", self.system_id, self.host, self.port)
    }
}

impl FromStr for SmscAddress {
    type Err = String;

    /// Parses `smpp[s]://SYSTEM_ID:PASSWORD@HOST:PORT`, user info percent-decoded.
    fn from_str(url: &str) -> Result<SmscAddress, String> {
        let bad = |why: &str| format!("{why}; expected smpp[s]://SYSTEM_ID:PASSWORD@HOST:PORT");
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
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .ok()
                .filter(|_| !has_bad_escape(s))
                .map(|c| c.into_owned())
        };
        let system_id = decode(user).ok_or_else(|| bad("bad escape in system id"))?;
        let password = decode(pass).ok_or_else(|| bad("bad escape in password"))?;
        if system_id.len() > 15 || password.len() > 8 {
            return Err(bad(
                "SMPP 3.4 limits system_id to 15 and password to 8 characters",
            ));
        }
        Ok(SmscAddress {
            host: host.to_owned(),
            port,
            tls,
            system_id,
            password: Secret::new(password),
        })
    }
}

/// `%` not followed by two hex digits: percent-encoding passes it through, a URL must not.
fn has_bad_escape(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().any(|(i, c)| {
        *c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// Everything one route's session pool needs.
#[derive(Clone, Debug)]
pub struct RouteSettings {
    /// Name in logs and metric labels (bounded by configuration).
    pub name: String,
    /// E.164 prefixes served; empty serves every number.
    pub prefixes: Vec<String>,
    /// Lower is tried first; the longest matching prefix breaks ties.
    pub priority: u32,
    /// The SMSC.
    pub smsc: SmscAddress,
    /// How the sessions behave.
    pub options: SessionOptions,
    /// How long delivery reports of tagged messages are kept.
    pub receipt_retention: Duration,
    /// Delivery reports kept at most.
    pub receipt_capacity: u64,
}

impl RouteSettings {
    /// A catch-all route named `default` to `smsc` with default options.
    pub fn new(smsc: SmscAddress) -> RouteSettings {
        RouteSettings {
            name: "default".into(),
            prefixes: Vec::new(),
            priority: 0,
            smsc,
            options: SessionOptions::default(),
            receipt_retention: Duration::from_secs(300),
            receipt_capacity: 100_000,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn smpp_urls_parse_with_escapes() {
        assert_eq!(
            "smpp://otp:p%40ss@smsc.example:2775"
                .parse::<SmscAddress>()
                .unwrap(),
            SmscAddress {
                host: "smsc.example".into(),
                port: 2775,
                system_id: "otp".into(),
                password: Secret::new("p@ss"),
                tls: false,
            }
        );
        assert!(matches!(
            "smpps://otp:pw@smsc.example:3550"
                .parse::<SmscAddress>()
                .unwrap(),
            SmscAddress {
                tls: true,
                port: 3550,
                ..
            }
        ));
        assert!("smpp://otp@host:1".parse::<SmscAddress>().is_err());
        assert!("smpp://a:b@host:notaport".parse::<SmscAddress>().is_err());
        assert!("smpp://a%:b@host:1".parse::<SmscAddress>().is_err());
        assert!("http://a:b@host:1".parse::<SmscAddress>().is_err());
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let base = SessionOptions {
            max_tps: 7,
            ..SessionOptions::default()
        };
        let o = SessionOverrides {
            binds: Some(3),
            dest_ton: Some(Some(2)),
            dest_npi: Some(Some(1)),
            ..SessionOverrides::default()
        }
        .apply_to(&base);
        assert_eq!(
            (o.binds, o.max_tps, o.dest_ton, o.dest_npi),
            (3, 7, Some(2), Some(1))
        );
        assert_eq!(o.window, SessionOptions::default().window);
    }
}
