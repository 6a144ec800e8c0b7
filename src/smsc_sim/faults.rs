//! The one definition of the simulator's injected faults.
//!
//! [`SimFaults`] is read both from the `[smpp.simulator]` TOML table (serde) and from the
//! `otp-gateway smsc-sim` flags (clap), so the two interfaces cannot drift apart. Every value
//! type parses itself (`FromStr` for clap, `Deserialize` for serde) and rejects bad input at
//! parse time: once a `SimFaults` exists, it is valid, and no later code re-checks it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::ArgAction;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Faults the simulator injects. The default injects none.
///
/// `PartialEq` lets tests check that the TOML and the CLI forms of the same faults agree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct SimFaults {
    /// Answer ESME_RTHROTTLED (0x58) above N accepted submit_sm per second per bind
    /// (0 = never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub throttle_tps: u32,
    /// Fraction (0.0-1.0) of submit_sm answered with the error status.
    #[arg(long, value_name = "FRACTION", default_value = "0.0")]
    pub error_rate: Fraction,
    /// command_status for the error rate, hex (0x08) or decimal (default ESME_RSYSERR).
    #[arg(long, value_name = "STATUS", default_value = "0x08")]
    pub error_status: CommandStatus,
    /// Fixed error per destination prefix ('+' and digits), e.g. "+3460=0x0B,+44=0x45";
    /// the first matching prefix wins.
    #[arg(long, value_name = "PREFIX=STATUS,...", default_value = "")]
    pub prefix_errors: PrefixErrors,
    /// Drop a session, unanswered, on its N-th PDU (0 = never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub disconnect_after: u64,
    /// Delay before every submit_sm_resp (e.g. 50ms).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub response_delay: Duration,
    /// Weighted receipt states, e.g. "delivered=90,undeliverable=10" (empty = always
    /// delivered; states: delivered, undeliverable, expired, deleted, rejected).
    #[arg(long, value_name = "STATE=WEIGHT,...", default_value = "")]
    pub receipt_states: ReceiptMix,
    /// Message ids: hex, decimal or hex-resp-decimal-receipt.
    #[arg(long, value_name = "FORMAT", default_value = "hex")]
    pub message_ids: MessageIdFormat,
    /// Send each receipt before its submit_sm_resp.
    // The flag has always been plural; the TOML key singular. Both are documented.
    #[arg(long = "receipts-before-response")]
    pub receipt_before_response: bool,
    /// Send receipted_message_id / message_state TLVs besides the text form
    /// (--no-receipt-tlvs: text form only).
    #[arg(long = "no-receipt-tlvs", action = ArgAction::SetFalse)]
    pub receipt_tlvs: bool,
    /// Send an enquire_link in the same TCP write as every bind response.
    #[arg(long)]
    pub pdu_after_bind: bool,
    /// Answer the first N submit_sm of the simulator only after `late_delay` (0 = none): a
    /// response that arrives after the ESME gave up on it, on whichever session took it.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub late_submits: u64,
    /// Delay of the `late_submits` answers (e.g. 800ms).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub late_delay: Duration,
}

impl Default for SimFaults {
    fn default() -> Self {
        SimFaults {
            throttle_tps: 0,
            error_rate: Fraction::ZERO,
            error_status: CommandStatus::SYSERR,
            prefix_errors: PrefixErrors::default(),
            disconnect_after: 0,
            response_delay: Duration::ZERO,
            receipt_states: ReceiptMix::default(),
            message_ids: MessageIdFormat::Hex,
            receipt_before_response: false,
            receipt_tlvs: true,
            pdu_after_bind: false,
            late_submits: 0,
            late_delay: Duration::ZERO,
        }
    }
}

/// Deserialises a string through the type's `FromStr`, so TOML and CLI share one parser.
fn from_str_de<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    String::deserialize(d)?.parse().map_err(D::Error::custom)
}

/// A command_status, written in hex (`0x0B`) or decimal (`11`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandStatus(pub u32);

impl CommandStatus {
    /// ESME_RSYSERR, the default status of the error rate.
    pub const SYSERR: CommandStatus = CommandStatus(0x08);

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl FromStr for CommandStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::de::parse_command_status(s).map(CommandStatus)
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X}", self.0)
    }
}

impl<'de> Deserialize<'de> for CommandStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // TOML users write "0x08"; an environment variable `8` arrives as a number.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => u32::try_from(n)
                .map(CommandStatus)
                .map_err(|_| D::Error::custom(format!("{n} is not a command_status"))),
            Raw::Text(s) => s.parse().map_err(D::Error::custom),
        }
    }
}

impl Serialize for CommandStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A fraction between 0.0 and 1.0 inclusive.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Fraction(f64);

impl Fraction {
    /// Never.
    pub const ZERO: Fraction = Fraction(0.0);

    /// Checks the range (NaN is rejected too).
    pub fn new(value: f64) -> Result<Fraction, String> {
        if (0.0..=1.0).contains(&value) {
            Ok(Fraction(value))
        } else {
            Err(format!("{value} must be between 0.0 and 1.0"))
        }
    }

    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl FromStr for Fraction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a number between 0.0 and 1.0"))?;
        Fraction::new(value)
    }
}

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Fraction::new(f64::deserialize(d)?).map_err(D::Error::custom)
    }
}

impl Serialize for Fraction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

/// Fixed command_status per destination prefix; the first matching prefix wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixErrors(Vec<(String, CommandStatus)>);

impl PrefixErrors {
    /// Builds from pairs, checking every prefix is `+` and 1 to 15 digits.
    pub fn new(pairs: Vec<(String, CommandStatus)>) -> Result<PrefixErrors, String> {
        if let Some((p, _)) = pairs.iter().find(|(p, _)| !crate::de::is_prefix(p)) {
            return Err(format!("{p:?} is not a '+' followed by digits"));
        }
        Ok(PrefixErrors(pairs))
    }

    /// The status injected for `phone` (`+` and digits), if a prefix matches.
    pub fn status_for(&self, phone: &str) -> Option<u32> {
        self.0
            .iter()
            .find(|(prefix, _)| phone.starts_with(prefix.as_str()))
            .map(|(_, status)| status.get())
    }

    /// The pairs in matching order.
    pub fn to_vec(&self) -> Vec<(String, u32)> {
        self.0.iter().map(|(p, s)| (p.clone(), s.get())).collect()
    }
}

/// Splits `A=B,C=D` (blank items ignored) into trimmed pairs.
fn pairs<'a>(s: &'a str, shape: &'static str) -> Result<Vec<(&'a str, &'a str)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| format!("{pair:?} is not {shape}"))
        })
        .collect()
}

impl FromStr for PrefixErrors {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let list = pairs(s, "PREFIX=STATUS")?
            .into_iter()
            .map(|(p, st)| Ok((p.to_owned(), st.parse()?)))
            .collect::<Result<Vec<_>, String>>()?;
        PrefixErrors::new(list)
    }
}

impl<'de> Deserialize<'de> for PrefixErrors {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = BTreeMap::<String, CommandStatus>::deserialize(d)?;
        PrefixErrors::new(table.into_iter().collect()).map_err(D::Error::custom)
    }
}

impl Serialize for PrefixErrors {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(p, st)| (p, st)))
    }
}

/// Final state a simulated receipt reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReceiptState {
    /// `DELIVRD`, message_state 2.
    Delivered,
    /// `EXPIRED`, message_state 3.
    Expired,
    /// `DELETED`, message_state 4.
    Deleted,
    /// `UNDELIV`, message_state 5.
    Undeliverable,
    /// `REJECTD`, message_state 8.
    Rejected,
}

impl ReceiptState {
    /// The `stat:` word of the receipt text.
    pub fn stat(self) -> &'static str {
        match self {
            ReceiptState::Delivered => "DELIVRD",
            ReceiptState::Expired => "EXPIRED",
            ReceiptState::Deleted => "DELETED",
            ReceiptState::Undeliverable => "UNDELIV",
            ReceiptState::Rejected => "REJECTD",
        }
    }

    /// The name used in `receipt_states` (TOML and CLI).
    pub fn name(self) -> &'static str {
        match self {
            ReceiptState::Delivered => "delivered",
            ReceiptState::Expired => "expired",
            ReceiptState::Deleted => "deleted",
            ReceiptState::Undeliverable => "undeliverable",
            ReceiptState::Rejected => "rejected",
        }
    }
}

impl FromStr for ReceiptState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "delivered" | "delivrd" => Ok(ReceiptState::Delivered),
            "expired" => Ok(ReceiptState::Expired),
            "deleted" => Ok(ReceiptState::Deleted),
            "undeliverable" | "undeliv" => Ok(ReceiptState::Undeliverable),
            "rejected" | "rejectd" => Ok(ReceiptState::Rejected),
            other => Err(format!("unknown receipt state {other:?}")),
        }
    }
}

/// Weighted final states of receipts (empty = always delivered).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiptMix(Vec<(ReceiptState, u32)>);

impl ReceiptMix {
    /// Builds from (state, weight) pairs.
    pub fn new(weights: Vec<(ReceiptState, u32)>) -> ReceiptMix {
        ReceiptMix(weights)
    }

    /// The (state, weight) pairs.
    pub fn weights(&self) -> &[(ReceiptState, u32)] {
        &self.0
    }

    /// The pairs as a vector.
    pub fn to_vec(&self) -> Vec<(ReceiptState, u32)> {
        self.0.clone()
    }
}

impl FromStr for ReceiptMix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        pairs(s, "STATE=WEIGHT")?
            .into_iter()
            .map(|(state, weight)| {
                let weight = weight
                    .parse()
                    .map_err(|_| format!("{weight:?} is not a weight"))?;
                Ok((state.parse()?, weight))
            })
            .collect::<Result<Vec<_>, String>>()
            .map(ReceiptMix)
    }
}

impl<'de> Deserialize<'de> for ReceiptMix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<String, u32>::deserialize(d)?
            .into_iter()
            .map(|(state, w)| Ok((state.parse().map_err(D::Error::custom)?, w)))
            .collect::<Result<Vec<_>, D::Error>>()
            .map(ReceiptMix)
    }
}

impl Serialize for ReceiptMix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(state, w)| (state.name(), w)))
    }
}

/// How the simulator formats the message ids it hands out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MessageIdFormat {
    /// 10 upper-case hex digits with leading zeros, everywhere.
    #[default]
    Hex,
    /// Decimal without leading zeros, everywhere.
    Decimal,
    /// Hex (leading zeros) in submit_sm_resp and the receipted_message_id
    /// TLV, decimal in the receipt text: the mix several vendors send.
    HexRespDecimalReceipt,
}

impl MessageIdFormat {
    /// The name used in `message_ids` (TOML and CLI).
    pub fn name(self) -> &'static str {
        match self {
            MessageIdFormat::Hex => "hex",
            MessageIdFormat::Decimal => "decimal",
            MessageIdFormat::HexRespDecimalReceipt => "hex-resp-decimal-receipt",
        }
    }
}

impl FromStr for MessageIdFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hex" => Ok(MessageIdFormat::Hex),
            "decimal" => Ok(MessageIdFormat::Decimal),
            "hex-resp-decimal-receipt" => Ok(MessageIdFormat::HexRespDecimalReceipt),
            other => Err(format!(
                "{other:?} is not hex, decimal or hex-resp-decimal-receipt"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for MessageIdFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_de(d)
    }
}

impl Serialize for MessageIdFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;
    use figment::providers::{Format, Toml};
    use figment::Figment;

    use super::*;

    /// The `smsc-sim` subcommand's view of the faults, without the rest of the binary.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        faults: SimFaults,
    }

    fn cli(args: &[&str]) -> Result<SimFaults, clap::Error> {
        Cli::try_parse_from(std::iter::once("smsc-sim").chain(args.iter().copied()))
            .map(|c| c.faults)
    }

    fn toml(text: &str) -> Result<SimFaults, Box<figment::Error>> {
        Figment::from(Toml::string(text))
            .extract()
            .map_err(Box::new)
    }

    #[test]
    fn no_flags_and_an_empty_table_are_the_default() {
        assert_eq!(cli(&[]).unwrap(), SimFaults::default());
        assert_eq!(toml("").unwrap(), SimFaults::default());
        assert!(SimFaults::default().receipt_tlvs);
    }

    #[test]
    fn cli_and_toml_give_the_same_faults() {
        let from_cli = cli(&[
            "--throttle-tps",
            "5",
            "--error-rate",
            "0.25",
            "--error-status",
            "0x45",
            "--prefix-errors",
            "+3460=0x0B,+44=69",
            "--disconnect-after",
            "7",
            "--response-delay",
            "50ms",
            "--receipt-states",
            "delivered=9,undeliverable=1",
            "--message-ids",
            "hex-resp-decimal-receipt",
            "--receipts-before-response",
            "--no-receipt-tlvs",
            "--pdu-after-bind",
            "--late-submits",
            "3",
            "--late-delay",
            "800ms",
        ])
        .unwrap();
        let from_toml = toml(
            r#"
            throttle_tps = 5
            error_rate = 0.25
            error_status = "0x45"
            disconnect_after = 7
            response_delay = "50ms"
            message_ids = "hex-resp-decimal-receipt"
            receipt_before_response = true
            receipt_tlvs = false
            pdu_after_bind = true
            late_submits = 3
            late_delay = "800ms"
            [prefix_errors]
            "+3460" = "0x0B"
            "+44" = 69
            [receipt_states]
            delivered = 9
            undeliverable = 1
            "#,
        )
        .unwrap();
        assert_eq!(from_cli, from_toml);
        assert_eq!(from_cli.error_status.get(), 0x45);
        assert_eq!(
            from_cli.prefix_errors.status_for("+34600000001"),
            Some(0x0B)
        );
        assert_eq!(from_cli.response_delay, Duration::from_millis(50));
        assert!(!from_cli.receipt_tlvs);
        assert_eq!(from_cli.late_submits, 3);
        assert_eq!(from_cli.late_delay, Duration::from_millis(800));
    }

    #[test]
    fn bad_values_are_rejected_by_both() {
        let cases: [(&[&str], &str); 6] = [
            (&["--error-rate", "1.5"], "error_rate = 1.5"),
            (&["--error-status", "0xZZ"], "error_status = \"0xZZ\""),
            (
                &["--prefix-errors", "34=0x0B"],
                "prefix_errors = { \"34\" = \"0x0B\" }",
            ),
            (
                &["--prefix-errors", "+34=oops"],
                "prefix_errors = { \"+34\" = \"oops\" }",
            ),
            (
                &["--receipt-states", "lost=1"],
                "receipt_states = { lost = 1 }",
            ),
            (&["--message-ids", "octal"], "message_ids = \"octal\""),
        ];
        for (args, table) in cases {
            assert!(cli(args).is_err(), "CLI accepted {args:?}");
            assert!(toml(table).is_err(), "TOML accepted {table}");
        }
        assert!(cli(&["--prefix-errors", "+34"]).is_err());
        assert!(toml("no_such_fault = 1").is_err());
    }

    #[test]
    fn a_status_may_be_hex_or_decimal_text_or_a_number() {
        assert_eq!("0x0B".parse(), Ok(CommandStatus(0x0B)));
        assert_eq!("11".parse(), Ok(CommandStatus(11)));
        assert_eq!(
            toml("error_status = 11").unwrap().error_status,
            CommandStatus(11)
        );
        assert!(toml("error_status = -1").is_err());
    }

    #[test]
    fn serialised_defaults_read_back_unchanged() {
        // Settings::load feeds the serialised defaults back through figment.
        let faults = cli(&[
            "--prefix-errors",
            "+34=0x0B",
            "--receipt-states",
            "expired=2",
        ])
        .unwrap();
        let back: SimFaults = Figment::from(figment::providers::Serialized::defaults(&faults))
            .extract()
            .unwrap();
        assert_eq!(back, faults);
    }
}
