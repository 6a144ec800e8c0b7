//! E.164 phone numbers as CAMARA writes them: `^\+[1-9][0-9]{4,14}$`.

use std::fmt;

/// A phone number in international format with a leading `+`.
#[derive(Clone, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct PhoneNumber(String);

impl TryFrom<String> for PhoneNumber {
    type Error = String;
    fn try_from(s: String) -> Result<PhoneNumber, String> {
        PhoneNumber::parse(&s)
    }
}

impl PhoneNumber {
    /// Accepts exactly the CAMARA `PhoneNumber` pattern.
    pub fn parse(s: &str) -> Result<PhoneNumber, String> {
        let digits = s
            .strip_prefix('+')
            .ok_or_else(|| "phoneNumber must start with '+'".to_string())?;
        let ok = (5..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok {
            Ok(PhoneNumber(s.to_string()))
        } else {
            Err("phoneNumber must match ^\\+[1-9][0-9]{4,14}$".into())
        }
    }

    /// The number with its leading `+`.
    pub fn as_e164(&self) -> &str {
        &self.0
    }

    /// The digits as an integer, for compact in-process keys: E.164 has at most 15 digits and
    /// never a leading zero, so the value is unique per number and fits in 50 bits.
    pub fn as_u64(&self) -> u64 {
        self.0
            .bytes()
            .skip(1)
            .fold(0u64, |n, d| n * 10 + u64::from(d.wrapping_sub(b'0')))
    }

    /// The first four and last two characters, the rest starred: safe for logs.
    pub fn masked(&self) -> String {
        mask_digits(&self.0)
    }
}

/// Masks any address for logs (a number read off the network that is not a [`PhoneNumber`]):
/// keeps the first 4 and last 2 characters; 6 or fewer are starred entirely.
pub fn mask_digits(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let mut out: String = chars[..4].iter().collect();
    out.extend(std::iter::repeat_n('*', chars.len() - 6));
    out.extend(&chars[chars.len() - 2..]);
    out
}

/// Debug never prints the full number, so a stray `{:?}` cannot leak it into a log.
impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_camara_pattern_only() {
        for ok in ["+12345", "+346661113334", "+123456789012345"] {
            assert!(PhoneNumber::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "+",
            "3301",
            "+1234",
            "+0123456",
            "+1234567890123456",
            "+12 345",
            "12345678",
            "+12345a",
            "++12345",
            "+١٢٣٤٥٦",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_and_debug_are_masked() {
        let p = PhoneNumber::parse("+346661113334").unwrap();
        assert_eq!(p.to_string(), "+346*******34");
        assert!(!format!("{p:?}").contains("6661113"));
        assert_eq!(p.as_e164(), "+346661113334");
    }

    #[test]
    fn the_integer_form_is_the_digits_and_distinct_per_number() {
        let n = |s: &str| PhoneNumber::parse(s).unwrap().as_u64();
        assert_eq!(n("+346661113334"), 346_661_113_334);
        assert_eq!(n("+123456789012345"), 123_456_789_012_345);
        assert_ne!(n("+12345"), n("+123450"));
    }
}
