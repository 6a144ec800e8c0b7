//! Tenant profiles: what each client (by client id, whichever issuer it uses) may send and how
//! its codes look. Resolved once per request from the principal's client id (a map lookup);
//! a client without a profile gets the `[otp]` rules and no restriction.
//!
//! Templates are matched because a client-chosen text is a phishing tool (CAMARA
//! OTPValidation issues #27 and #90): an operator lists the texts each client may send.
//! Pattern syntax: the template must equal the pattern, where each `*` stands for any text
//! (also none) that holds no `{{code}}`; everything else is literal, `{{code}}` included. So
//! `"{{code}} is your Cool App code*"` allows a suffix but never a second code or another
//! position of it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::quota::Quota;
use super::PrefixSet;
use crate::config::{ClientEntry, OtpSettings, TenantSettings};
use crate::domain::{MessageTemplate, OtpCode, PhoneNumber, SenderId, PLACEHOLDER};
use crate::otp::CodeAlphabet;

/// Why a tenant profile refuses a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantRefusal {
    /// The number is outside the client's allowed prefixes (403 PHONE_NUMBER_NOT_ALLOWED).
    DestinationNotAllowed,
    /// The template is not one the client may send (403 PERMISSION_DENIED).
    TemplateNotAllowed,
}

/// One allowed template: literal parts between `*`s.
#[derive(Debug, Clone)]
struct TemplatePattern {
    parts: Vec<String>,
    placeholders: usize,
}

impl TemplatePattern {
    fn new(pattern: &str) -> TemplatePattern {
        TemplatePattern {
            parts: pattern.split('*').map(str::to_owned).collect(),
            placeholders: pattern.matches(PLACEHOLDER).count(),
        }
    }

    /// Glob match; a `*` cannot hide an extra `{{code}}` because the counts must agree.
    fn matches(&self, text: &str) -> bool {
        if text.matches(PLACEHOLDER).count() != self.placeholders {
            return false;
        }
        let (first, rest) = match self.parts.split_first() {
            Some(split) => split,
            None => return text.is_empty(),
        };
        let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return remaining.is_empty();
        };
        for part in middle {
            match remaining.find(part.as_str()) {
                Some(at) => remaining = &remaining[at + part.len()..],
                None => return false,
            }
        }
        remaining.ends_with(last.as_str())
    }
}

/// One client's effective rules.
#[derive(Debug, Clone)]
pub struct TenantProfile {
    allowed_prefixes: Option<PrefixSet>,
    templates: Vec<TemplatePattern>,
    sender: Option<SenderId>,
    /// Characters per code.
    pub code_length: usize,
    /// Characters a code is drawn from.
    pub alphabet: CodeAlphabet,
    /// Code lifetime (and SMS validity period).
    pub ttl: Duration,
    /// Wrong answers before the id locks.
    pub max_attempts: u32,
    /// Daily / monthly send quota.
    pub quota: Quota,
    /// `@host #` of the WebOTP last line, when set.
    webotp_prefix: Option<String>,
}

impl TenantProfile {
    /// The `[otp]` rules with no restriction: clients without a profile.
    pub fn uniform(code_length: usize, ttl: Duration, max_attempts: u32) -> TenantProfile {
        TenantProfile {
            allowed_prefixes: None,
            templates: Vec::new(),
            sender: None,
            code_length,
            alphabet: CodeAlphabet::Digits,
            ttl,
            max_attempts,
            quota: Quota::default(),
            webotp_prefix: None,
        }
    }

    /// A validated `[auth.clients.tenant]` over the `[otp]` defaults.
    fn from_settings(t: &TenantSettings, defaults: &TenantProfile) -> TenantProfile {
        TenantProfile {
            allowed_prefixes: (!t.allowed_prefixes.is_empty())
                .then(|| PrefixSet::new(t.allowed_prefixes.iter().map(String::as_str))),
            templates: t
                .templates
                .iter()
                .map(|p| TemplatePattern::new(p))
                .collect(),
            // Validation parsed it already; a failure here cannot happen.
            sender: t.sender_id.as_deref().and_then(|s| SenderId::parse(s).ok()),
            code_length: t.code_length.unwrap_or(defaults.code_length),
            alphabet: t.code_alphabet.unwrap_or(defaults.alphabet),
            ttl: t.ttl.unwrap_or(defaults.ttl),
            max_attempts: t.max_attempts.unwrap_or(defaults.max_attempts),
            quota: Quota {
                daily: t.daily_quota,
                monthly: t.monthly_quota,
            },
            webotp_prefix: t.webotp_origin.as_ref().map(|h| format!("@{h} #")),
        }
    }

    /// Ok when this client may send `template` to `phone`.
    pub fn admit(
        &self,
        phone: &PhoneNumber,
        template: &MessageTemplate,
    ) -> Result<(), TenantRefusal> {
        let refusal = if self
            .allowed_prefixes
            .as_ref()
            .is_some_and(|allowed| !allowed.matches(phone.as_e164()))
        {
            TenantRefusal::DestinationNotAllowed
        } else if !self.templates.is_empty()
            && !self.templates.iter().any(|t| t.matches(template.as_str()))
        {
            TenantRefusal::TemplateNotAllowed
        } else {
            return Ok(());
        };
        // Neither the number nor the template is logged: the span has the masked number.
        tracing::info!(target: "otp_gateway::policy", ?refusal, "send refused by the client's tenant profile");
        Err(refusal)
    }

    /// The SMS text: the rendered template, then the WebOTP line `@host #code` when set (the
    /// format's rule: it is the message's last line). The line is part of the SMS like any
    /// other text: the SMPP layer counts it into the encoding and the segments.
    pub fn render(&self, template: &MessageTemplate, code: &OtpCode) -> String {
        let mut text = template.render(code);
        if let Some(prefix) = &self.webotp_prefix {
            text.reserve(1 + prefix.len() + code.expose().len());
            text.push('\n');
            text.push_str(prefix);
            text.push_str(code.expose());
        }
        text
    }

    /// The client's sender id, when it has one.
    pub fn sender(&self) -> Option<&SenderId> {
        self.sender.as_ref()
    }

    /// A presented code as it was issued: alphanumeric codes are upper-case only, so a
    /// handset's or a user's lower case is accepted without losing any entropy.
    pub fn normalise<'a>(&self, presented: &'a str) -> Cow<'a, str> {
        match self.alphabet {
            CodeAlphabet::Alphanumeric if presented.bytes().any(|b| b.is_ascii_lowercase()) => {
                Cow::Owned(presented.to_ascii_uppercase())
            }
            _ => Cow::Borrowed(presented),
        }
    }
}

/// Every client's profile, by client id.
#[derive(Debug, Clone)]
pub struct Tenants {
    by_client: HashMap<String, Arc<TenantProfile>>,
    default: Arc<TenantProfile>,
}

impl Tenants {
    /// No profile: every client gets `default`.
    pub fn uniform(default: TenantProfile) -> Tenants {
        Tenants {
            by_client: HashMap::new(),
            default: Arc::new(default),
        }
    }

    /// The profiles of validated `[[auth.clients]]` over the `[otp]` rules.
    pub fn new(clients: &[ClientEntry], otp: &OtpSettings) -> Tenants {
        let default = TenantProfile::uniform(otp.code_length, otp.ttl, otp.max_attempts);
        let by_client = clients
            .iter()
            .map(|c| {
                (
                    c.id.clone(),
                    Arc::new(TenantProfile::from_settings(&c.tenant, &default)),
                )
            })
            .collect();
        Tenants {
            by_client,
            default: Arc::new(default),
        }
    }

    /// The profile of `client_id`.
    pub fn of(&self, client_id: &str) -> &TenantProfile {
        self.by_client.get(client_id).unwrap_or(&self.default)
    }

    /// Ids of the clients with a quota (their counters are made at start).
    pub fn with_quota(&self) -> impl Iterator<Item = &str> {
        self.by_client
            .iter()
            .filter(|(_, p)| p.quota.is_limited())
            .map(|(id, _)| id.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::smpp::encoding::{encode_as, Concatenation};

    fn template(s: &str) -> MessageTemplate {
        MessageTemplate::parse(s).unwrap()
    }

    fn profile(t: TenantSettings) -> TenantProfile {
        TenantProfile::from_settings(&t, &TenantProfile::uniform(6, Duration::from_secs(300), 3))
    }

    #[test]
    fn patterns_allow_exact_text_and_wildcards_that_add_no_code() {
        let p = TemplatePattern::new("{{code}} is your Cool App code*");
        assert!(p.matches("{{code}} is your Cool App code"));
        assert!(p.matches("{{code}} is your Cool App code. Do not share it."));
        assert!(!p.matches("{{code}} is your Cool App code, tell it to +1555 {{code}}"));
        assert!(!p.matches("Call us: {{code}} is your Cool App code"));
        let p = TemplatePattern::new("*: {{code}} is your code");
        assert!(p.matches("Cool App: {{code}} is your code"));
        assert!(!p.matches("Cool App: {{code}} is your code!"));
        let p = TemplatePattern::new("A*B*{{code}}");
        assert!(p.matches("AxxBy{{code}}"));
        assert!(p.matches("AB{{code}}"));
        assert!(!p.matches("A{{code}}"));
        let exact = TemplatePattern::new("Your code: {{code}}");
        assert!(exact.matches("Your code: {{code}}"));
        assert!(!exact.matches("Your code: {{code}} "));
    }

    #[test]
    fn a_profile_refuses_other_destinations_and_templates() {
        let p = profile(TenantSettings {
            allowed_prefixes: vec!["+34".into(), "+4477".into()],
            templates: vec!["{{code}} is your code".into()],
            ..Default::default()
        });
        let n = |s: &str| PhoneNumber::parse(s).unwrap();
        let ok = template("{{code}} is your code");
        assert_eq!(p.admit(&n("+34600000001"), &ok), Ok(()));
        assert_eq!(p.admit(&n("+447700900123"), &ok), Ok(()));
        assert_eq!(
            p.admit(&n("+447800900123"), &ok),
            Err(TenantRefusal::DestinationNotAllowed)
        );
        assert_eq!(
            p.admit(&n("+34600000001"), &template("Bank alert! {{code}}")),
            Err(TenantRefusal::TemplateNotAllowed)
        );
        let open = profile(TenantSettings::default());
        assert_eq!(
            open.admit(&n("+15550000000"), &template("anything {{code}}")),
            Ok(())
        );
    }

    #[test]
    fn the_webotp_line_ends_the_sms_and_counts_in_its_segments() {
        let p = profile(TenantSettings {
            webotp_origin: Some("login.example.com".into()),
            ..Default::default()
        });
        let code = OtpCode::new("123456".into());
        let text = p.render(&template("{{code}} is your code"), &code);
        assert_eq!(text, "123456 is your code\n@login.example.com #123456");
        // The line adds 1 (newline) + 20 (`@login.example.com #`) + 6 = 27 characters, all
        // GSM-7 (`@` and `#` are in the default alphabet): a rendered template of 133
        // characters plus it fills one 160-character segment, one more needs two (153 each
        // with a UDH).
        let suffix = text.len() - "123456 is your code".len();
        assert_eq!(suffix, 27);
        let body = |x: usize| template(&format!("{}{{{{code}}}}", "x".repeat(x)));
        let fits = p.render(&body(127), &code);
        assert_eq!(fits.chars().count(), 160, "{fits}");
        assert_eq!(encode_as(&fits, Concatenation::Udh8).segments.len(), 1);
        let over = p.render(&body(128), &code);
        assert_eq!(over.chars().count(), 161);
        assert_eq!(encode_as(&over, Concatenation::Udh8).segments.len(), 2);
    }

    #[test]
    fn alphanumeric_codes_are_checked_without_regard_to_case() {
        let p = profile(TenantSettings {
            code_alphabet: Some(CodeAlphabet::Alphanumeric),
            ..Default::default()
        });
        assert_eq!(p.normalise("ab3k"), "AB3K");
        assert!(matches!(p.normalise("AB3K"), Cow::Borrowed(_)));
        let digits = profile(TenantSettings::default());
        assert_eq!(digits.normalise("ab3k"), "ab3k");
    }

    #[test]
    fn tenants_resolve_by_client_id_and_fall_back_to_the_otp_rules() {
        let otp = OtpSettings::default();
        let clients = vec![ClientEntry {
            id: "cool-app".into(),
            tenant: TenantSettings {
                code_length: Some(8),
                daily_quota: Some(5),
                ..Default::default()
            },
            ..Default::default()
        }];
        let t = Tenants::new(&clients, &otp);
        assert_eq!(t.of("cool-app").code_length, 8);
        assert_eq!(t.of("other").code_length, otp.code_length);
        assert_eq!(t.with_quota().collect::<Vec<_>>(), vec!["cool-app"]);
    }
}
