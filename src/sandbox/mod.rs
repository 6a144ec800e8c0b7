//! Sandbox tenants: clients flagged `sandbox = true` whose SMS never reach an SMSC. Their
//! messages land in an in-process inbox scoped to the client ([`SandboxSender`] is the
//! [`SmsSender`] the rules use for them, whatever SMSC is configured), which the client reads
//! with its own token ([`http`]). `[[sandbox.numbers]]` ([`MagicNumber`]) answer such clients a
//! fixed code or a chosen CAMARA error, so every path can be exercised without a handset.
//!
//! Security: the sender is chosen by the client, never by the number, so a sandbox client
//! cannot reach a real handset; a production client sending to a magic number is treated like
//! any other (the table is consulted for sandbox clients only), so fixed codes exist for
//! sandbox clients only. A fixed code is still hashed, single use and attempts-limited: it goes
//! through the same challenge as a generated one.

pub mod http;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::domain::{OtpCode, PhoneNumber};
use crate::otp::{DeliveryError, OtpError, SandboxPort, SandboxRoute, Sent, SmsSender};
use crate::sync::lock;

/// The route name sandbox messages report (logs, audit events).
pub const ROUTE: &str = "sandbox";

/// The CAMARA error a magic number answers send-code with: the send-code errors of the CAMARA
/// YAML that depend on the number (403s, 404), and the Commonalities 503/504 the gateway gives
/// when the SMSC is down or silent. Spelled as the `code` of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum MagicError {
    /// 404 NOT_FOUND: the number is not served by this operator.
    #[serde(rename = "NOT_FOUND")]
    NotFound,
    /// 403 ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED.
    #[serde(rename = "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED")]
    PhoneNumberNotAllowed,
    /// 403 ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED.
    #[serde(rename = "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED")]
    PhoneNumberBlocked,
    /// 403 ONE_TIME_PASSWORD_SMS.MAX_OTP_CODES_EXCEEDED.
    #[serde(rename = "ONE_TIME_PASSWORD_SMS.MAX_OTP_CODES_EXCEEDED")]
    MaxOtpCodesExceeded,
    /// 503 UNAVAILABLE: as when no SMSC can take the message.
    #[serde(rename = "UNAVAILABLE")]
    Unavailable,
    /// 504 TIMEOUT: as when the SMSC did not answer in time.
    #[serde(rename = "TIMEOUT")]
    Timeout,
}

impl MagicError {
    /// The rules' outcome that the API maps to this error.
    fn to_otp_error(self) -> OtpError {
        match self {
            MagicError::NotFound => OtpError::NotOperatorNumber,
            MagicError::PhoneNumberNotAllowed => OtpError::PhoneNotAllowed,
            MagicError::PhoneNumberBlocked => OtpError::PhoneBlocked,
            MagicError::MaxOtpCodesExceeded => OtpError::TooManyCodes,
            MagicError::Unavailable => {
                OtpError::Delivery(DeliveryError::Unavailable(Box::new(MagicFault(self))))
            }
            MagicError::Timeout => {
                OtpError::Delivery(DeliveryError::OutcomeUnknown(Box::new(MagicFault(self))))
            }
        }
    }
}

/// The cause a simulated 5xx logs: nothing failed, a magic number asked for it.
#[derive(Debug, thiserror::Error)]
#[error("sandbox magic number configured to answer {0:?}")]
struct MagicFault(MagicError);

/// One `[[sandbox.numbers]]` entry: a number and either the code it always receives or the
/// error it always answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MagicNumber {
    /// The test number (E.164).
    pub number: PhoneNumber,
    /// The code every send to it carries (4 to 10 ASCII letters or digits).
    #[serde(default)]
    pub code: Option<String>,
    /// The CAMARA error every send to it answers.
    #[serde(default)]
    pub error: Option<MagicError>,
}

/// Checks `[[sandbox.numbers]]`: each number once, exactly one of `code` and `error`, codes of
/// 4 to 10 ASCII letters or digits (validate-code accepts at most 10 characters).
pub fn check_numbers(numbers: &[MagicNumber]) -> Result<(), String> {
    let mut seen = HashSet::new();
    // Entries are named by position and masked number: config errors are logged too.
    for (i, entry) in numbers.iter().enumerate() {
        let name = format!("entry {i} ({})", entry.number);
        if !seen.insert(entry.number.as_e164()) {
            return Err(format!("{name} repeats an earlier number"));
        }
        match (&entry.code, &entry.error) {
            (Some(code), None) => {
                let ok = (4..=10).contains(&code.len())
                    && code.bytes().all(|b| b.is_ascii_alphanumeric());
                if !ok {
                    return Err(format!(
                        "{name}: code must be 4 to 10 ASCII letters or digits"
                    ));
                }
            }
            (None, Some(_)) => {}
            _ => return Err(format!("{name}: set exactly one of code and error")),
        }
    }
    Ok(())
}

/// What a magic number answers.
#[derive(Debug, Clone)]
enum Answer {
    Code(String),
    Error(MagicError),
}

/// One message as its sandbox client reads it back.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SandboxMessage {
    /// The destination, in full: the client sent it, and only that client reads it.
    pub phone_number: String,
    /// The SMS text, code included.
    pub text: String,
    /// The authenticationId the message belongs to.
    pub authentication_id: String,
    /// RFC 3339 UTC time it was "sent".
    pub sent_at: String,
}

/// The sandbox clients, their inboxes and the magic numbers.
#[derive(Debug, Default)]
pub struct Sandbox {
    clients: HashSet<String>,
    numbers: HashMap<String, Answer>,
    capacity: usize,
    inboxes: Mutex<HashMap<String, VecDeque<SandboxMessage>>>,
}

impl Sandbox {
    /// `clients` are the ids flagged `sandbox = true`; each keeps its newest `capacity`
    /// messages.
    pub fn new(
        clients: impl IntoIterator<Item = String>,
        numbers: &[MagicNumber],
        capacity: usize,
    ) -> Sandbox {
        Sandbox {
            clients: clients.into_iter().collect(),
            numbers: numbers
                .iter()
                .filter_map(|n| {
                    let answer = match (&n.code, n.error) {
                        (Some(code), _) => Answer::Code(code.clone()),
                        (None, Some(e)) => Answer::Error(e),
                        // check_numbers refuses this; such a number stays an ordinary one.
                        (None, None) => return None,
                    };
                    Some((n.number.as_e164().to_owned(), answer))
                })
                .collect(),
            capacity: capacity.max(1),
            inboxes: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client_id` is a sandbox client.
    pub fn is_sandbox(&self, client_id: &str) -> bool {
        self.clients.contains(client_id)
    }

    /// The sender for a sandbox client; `None` for every other client (its SMS go to the
    /// SMSC as always).
    pub fn sender_for(self: &Arc<Sandbox>, client_id: &str) -> Option<SandboxSender> {
        self.is_sandbox(client_id).then(|| SandboxSender {
            sandbox: Arc::clone(self),
            client_id: client_id.to_owned(),
        })
    }

    /// The client's messages, newest first; those to `phone` only when given. Empty for a
    /// client that is not a sandbox client.
    pub fn messages(&self, client_id: &str, phone: Option<&PhoneNumber>) -> Vec<SandboxMessage> {
        let inboxes = lock(&self.inboxes);
        let Some(inbox) = inboxes.get(client_id) else {
            return Vec::new();
        };
        inbox
            .iter()
            .filter(|m| phone.is_none_or(|p| m.phone_number == p.as_e164()))
            .cloned()
            .collect()
    }

    fn record(&self, client_id: &str, message: SandboxMessage) {
        let mut inboxes = lock(&self.inboxes);
        let inbox = inboxes.entry(client_id.to_owned()).or_default();
        inbox.push_front(message);
        inbox.truncate(self.capacity);
    }
}

impl SandboxPort for Arc<Sandbox> {
    fn is_sandbox(&self, client_id: &str) -> bool {
        Sandbox::is_sandbox(self, client_id)
    }

    fn route(&self, client_id: &str, phone: &PhoneNumber) -> Option<SandboxRoute> {
        let sender = self.sender_for(client_id)?;
        let magic = sender.magic(phone);
        Some(SandboxRoute {
            sender: Box::new(sender),
            magic,
        })
    }
}

/// The SMS channel of one sandbox client: records the message in its inbox and reports it
/// accepted, on the route [`ROUTE`].
pub struct SandboxSender {
    sandbox: Arc<Sandbox>,
    client_id: String,
}

impl SandboxSender {
    /// What a magic number answers this client before any policy or store step: `Ok(Some)`
    /// the fixed code to send, `Err` the configured error, `Ok(None)` for any other number
    /// (normal treatment, the inbox as channel).
    pub fn magic(&self, phone: &PhoneNumber) -> Result<Option<OtpCode>, OtpError> {
        match self.sandbox.numbers.get(phone.as_e164()) {
            None => Ok(None),
            Some(Answer::Code(code)) => Ok(Some(OtpCode::new(code.clone()))),
            Some(Answer::Error(e)) => Err(e.to_otp_error()),
        }
    }
}

impl SmsSender for SandboxSender {
    fn send(
        &self,
        to: &PhoneNumber,
        text: String,
        _validity: Duration,
        authentication_id: &str,
    ) -> BoxFuture<'_, Result<Sent, DeliveryError>> {
        let segments = segments(&text);
        self.sandbox.record(
            &self.client_id,
            SandboxMessage {
                phone_number: to.as_e164().to_owned(),
                text,
                authentication_id: authentication_id.to_owned(),
                sent_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            },
        );
        Box::pin(async move {
            Ok(Sent {
                segments,
                route: ROUTE.to_owned(),
            })
        })
    }
}

/// Segments the text would take on an SMSC (GSM 7-bit assumed for ASCII, UCS-2 otherwise), so
/// usage reports of sandbox traffic look like real ones.
fn segments(text: &str) -> usize {
    let (single, part, len) = if text.is_ascii() {
        (160, 153, text.len())
    } else {
        (70, 67, text.encode_utf16().count())
    };
    if len <= single {
        1
    } else {
        len.div_ceil(part)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn n(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s).unwrap()
    }

    fn magic(number: &str, code: Option<&str>, error: Option<MagicError>) -> MagicNumber {
        MagicNumber {
            number: n(number),
            code: code.map(str::to_owned),
            error,
        }
    }

    #[tokio::test]
    async fn inboxes_are_scoped_to_their_client_and_bounded() {
        let sandbox = Arc::new(Sandbox::new(["a".into(), "b".into()], &[], 2));
        assert!(sandbox.sender_for("prod").is_none());
        let a = sandbox.sender_for("a").unwrap();
        let b = sandbox.sender_for("b").unwrap();
        for i in 0..3 {
            let text = format!("{i} is your code");
            a.send(&n("+34600000001"), text, Duration::ZERO, "id")
                .await
                .unwrap();
        }
        b.send(&n("+34600000002"), "9 x".into(), Duration::ZERO, "id")
            .await
            .unwrap();
        let texts: Vec<_> = sandbox
            .messages("a", None)
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(texts, ["2 is your code", "1 is your code"]);
        assert_eq!(sandbox.messages("b", None).len(), 1);
        assert!(sandbox.messages("a", Some(&n("+34600000002"))).is_empty());
        assert!(sandbox.messages("prod", None).is_empty());
    }

    #[test]
    fn magic_numbers_answer_their_code_or_error_and_others_act_normally() {
        let sandbox = Arc::new(Sandbox::new(
            ["a".into()],
            &[
                magic("+99900000001", Some("123456"), None),
                magic("+99900000002", None, Some(MagicError::PhoneNumberBlocked)),
            ],
            10,
        ));
        let a = sandbox.sender_for("a").unwrap();
        let code = a.magic(&n("+99900000001")).unwrap().unwrap();
        assert_eq!(code.expose(), "123456");
        assert!(matches!(
            a.magic(&n("+99900000002")),
            Err(OtpError::PhoneBlocked)
        ));
        assert!(a.magic(&n("+34600000001")).unwrap().is_none());
    }

    #[test]
    fn the_number_table_is_checked() {
        assert!(check_numbers(&[magic("+99900000001", Some("1234"), None)]).is_ok());
        for bad in [
            vec![magic("+99900000001", Some("12"), None)],
            vec![magic("+99900000001", Some("12 34"), None)],
            vec![magic("+99900000001", None, None)],
            vec![magic(
                "+99900000001",
                Some("1234"),
                Some(MagicError::Timeout),
            )],
            vec![
                magic("+99900000001", Some("1234"), None),
                magic("+99900000001", None, Some(MagicError::Timeout)),
            ],
        ] {
            assert!(check_numbers(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_are_spelled_as_their_camara_codes() {
        let e: MagicError =
            serde_json::from_str("\"ONE_TIME_PASSWORD_SMS.MAX_OTP_CODES_EXCEEDED\"").unwrap();
        assert_eq!(e, MagicError::MaxOtpCodesExceeded);
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
    }
}
