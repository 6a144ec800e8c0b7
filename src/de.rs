//! Parsers shared by the settings of several modules (SMPP, the simulator, the number
//! policy), so a command_status or an E.164 prefix is read the same way everywhere. Used from
//! serde, so a bad value fails while the configuration is parsed, with the key that holds it.

use serde::{Deserialize, Deserializer};

/// A command_status written in hex (`"0x0400"`) or decimal (`"1024"` or `1024`).
pub fn parse_command_status(s: &str) -> Result<u32, String> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|_| format!("{s:?} is not a command_status (hex 0x… or decimal)"))
}

/// Whether `p` is an E.164 prefix: `+` and 1 to 15 digits.
pub fn is_prefix(p: &str) -> bool {
    p.len() >= 2
        && p.len() <= 16
        && p.starts_with('+')
        && p[1..].bytes().all(|b| b.is_ascii_digit())
}

/// A list of E.164 prefixes, each checked.
pub fn prefixes<'de, D>(d: D) -> Result<Vec<String>, D::Error>
where
    D: Deserializer<'de>,
{
    let v = Vec::<String>::deserialize(d)?;
    match v.iter().find(|p| !is_prefix(p)) {
        Some(p) => Err(serde::de::Error::custom(format!(
            "{p:?} is not a '+' followed by digits"
        ))),
        None => Ok(v),
    }
}
