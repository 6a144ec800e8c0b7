//! A per-client sender id: the `source_addr` the handset shows as the SMS's sender.

/// How the SMSC should read a [`SenderId`] (its TON/NPI on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderKind {
    /// Letters and digits, at most 11 characters (TON 5, NPI 0).
    Alphanumeric,
    /// `+` and an E.164 number (TON 1, NPI 1; sent without the `+`).
    International,
    /// Digits without `+`: a national number or short code (TON 2, NPI 1).
    National,
}

/// A validated sender id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderId {
    address: String,
    kind: SenderKind,
}

/// Longest alphanumeric sender (GSM 03.40 TP-OA: 11 characters in 7-bit packing).
pub const MAX_ALPHANUMERIC_SENDER: usize = 11;

impl SenderId {
    /// `+digits` (international), `digits` (national, short code) or at most 11 ASCII letters,
    /// digits, spaces, `-`, `.` and `_` holding at least one letter (alphanumeric).
    pub fn parse(s: &str) -> Result<SenderId, String> {
        if let Some(digits) = s.strip_prefix('+') {
            if !(1..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "sender id {s:?}: after `+` it must be 1 to 15 digits (an E.164 number)"
                ));
            }
            return Ok(SenderId {
                address: digits.to_owned(),
                kind: SenderKind::International,
            });
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            if s.len() > 20 {
                return Err(format!("sender id {s:?}: a number is at most 20 digits"));
            }
            return Ok(SenderId {
                address: s.to_owned(),
                kind: SenderKind::National,
            });
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'-' | b'.' | b'_');
        if s.is_empty()
            || s.len() > MAX_ALPHANUMERIC_SENDER
            || !s.bytes().all(allowed)
            || s.starts_with(' ')
            || s.ends_with(' ')
        {
            return Err(format!(
                "sender id {s:?}: an alphanumeric sender is 1 to {MAX_ALPHANUMERIC_SENDER} ASCII letters, digits, inner spaces, `-`, `.` or `_`; a number is `+` and E.164 digits, or digits"
            ));
        }
        Ok(SenderId {
            address: s.to_owned(),
            kind: SenderKind::Alphanumeric,
        })
    }

    /// The address as sent (an international number without its `+`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// How the address is to be read.
    pub fn kind(&self) -> SenderKind {
        self.kind
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_id_is_alphanumeric_international_or_national() {
        let a = SenderId::parse("CoolApp").unwrap();
        assert_eq!(
            (a.address(), a.kind()),
            ("CoolApp", SenderKind::Alphanumeric)
        );
        let i = SenderId::parse("+447700900123").unwrap();
        assert_eq!(
            (i.address(), i.kind()),
            ("447700900123", SenderKind::International)
        );
        let n = SenderId::parse("12345").unwrap();
        assert_eq!((n.address(), n.kind()), ("12345", SenderKind::National));
        assert!(SenderId::parse("Cool App 1").is_ok());
        for bad in [
            "",
            "TwelveChars1",
            "+",
            "+12a",
            "Cool/App",
            " Cool",
            "Ünïcode",
        ] {
            assert!(SenderId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
