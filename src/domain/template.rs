//! The client's message template, the generated code, and a presented code.

use super::Secret;

/// The placeholder CAMARA requires in every template.
pub const PLACEHOLDER: &str = "{{code}}";
/// Maximum template length in Unicode code points (the schema's `maxLength`).
pub const MAX_TEMPLATE_CHARS: usize = 160;
/// Maximum length of a presented code (the schema's `maxLength`).
pub const MAX_CODE_CHARS: usize = 10;

/// A template holding `{{code}}` at least once, at most 160 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageTemplate(String);

impl MessageTemplate {
    /// Applies the schema: contains `{{code}}`, at most 160 characters.
    pub fn parse(s: &str) -> Result<MessageTemplate, String> {
        if s.chars().count() > MAX_TEMPLATE_CHARS {
            return Err(format!(
                "message must be at most {MAX_TEMPLATE_CHARS} characters"
            ));
        }
        if !s.contains(PLACEHOLDER) {
            return Err("message must contain the {{code}} placeholder".into());
        }
        Ok(MessageTemplate(s.to_string()))
    }

    /// The template as the client sent it (for matching against a tenant's allowed templates).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SMS text: every `{{code}}` replaced by the code.
    pub fn render(&self, code: &OtpCode) -> String {
        self.0.replace(PLACEHOLDER, code.expose())
    }
}

/// A generated one-time code, held as a [`Secret`] so it never reaches a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtpCode(Secret);

impl OtpCode {
    /// Wraps generated digits (only the OTP engine creates codes).
    pub(crate) fn new(digits: String) -> OtpCode {
        OtpCode(Secret::new(digits))
    }

    /// The digits, for rendering and hashing only.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// A code presented for validation: 1 to 10 characters, held as a [`Secret`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeAttempt(Secret);

impl CodeAttempt {
    /// Applies the schema (`maxLength: 10`) and rejects the empty string.
    pub fn parse(s: &str) -> Result<CodeAttempt, String> {
        let n = s.chars().count();
        if n == 0 {
            return Err("code must not be empty".into());
        }
        if n > MAX_CODE_CHARS {
            return Err(format!("code must be at most {MAX_CODE_CHARS} characters"));
        }
        Ok(CodeAttempt(Secret::new(s)))
    }

    /// The presented characters, for hashing only.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn template_needs_the_placeholder_and_at_most_160_chars() {
        assert!(MessageTemplate::parse("{{code}}").is_ok());
        assert!(MessageTemplate::parse("message without code").is_err());
        assert!(MessageTemplate::parse("{{ code }}").is_err());
        assert!(MessageTemplate::parse("").is_err());
        let exact = format!("{}{}", "x".repeat(152), PLACEHOLDER);
        assert_eq!(exact.chars().count(), 160);
        assert!(MessageTemplate::parse(&exact).is_ok());
        assert!(MessageTemplate::parse(&format!("y{exact}")).is_err());
        // Code points, not bytes: 152 two-byte characters still fit.
        let greek = format!("{}{}", "λ".repeat(152), PLACEHOLDER);
        assert!(MessageTemplate::parse(&greek).is_ok());
    }

    #[test]
    fn render_replaces_every_placeholder() {
        let t = MessageTemplate::parse("{{code}} is your code. Again: {{code}}").unwrap();
        let text = t.render(&OtpCode::new("123456".into()));
        assert_eq!(text, "123456 is your code. Again: 123456");
    }

    #[test]
    fn codes_are_redacted_in_debug() {
        assert!(!format!("{:?}", OtpCode::new("987654".into())).contains("987654"));
        assert!(!format!("{:?}", CodeAttempt::parse("987654").unwrap()).contains("987654"));
    }

    #[test]
    fn code_attempt_is_1_to_10_chars() {
        assert!(CodeAttempt::parse("").is_err());
        assert!(CodeAttempt::parse("AJY3").is_ok());
        assert!(CodeAttempt::parse("0123456789").is_ok());
        assert!(CodeAttempt::parse("thisCodeExceedsTenCharacters").is_err());
    }
}
