//! Delivery receipts: parsing deliver_sm receipts (TLVs first, then the
//! `id:… sub:… dlvrd:… submit date:… done date:… stat:… err:…` text that
//! SMPP 3.4 Appendix B suggests and vendors vary) and normalising message
//! ids so the id in a receipt finds the id of its submit_sm_resp.
//!
//! SMSCs disagree on ids: hex in the response and decimal in the receipt,
//! leading zeros on one side only, lower- vs upper-case hex. Every id is
//! turned into comparable keys according to [`MessageIdFormat`].

use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::TlvValue;
use rusmpp::values::MessageState;

/// esm_class bits that carry the message type.
const RECEIPT_TYPE_MASK: u8 = 0x3C;
/// esm_class message type "SMSC delivery receipt".
const MC_DELIVERY_RECEIPT: u8 = 0x04;
/// esm_class message type "intermediate delivery notification".
const INTERMEDIATE_NOTIFICATION: u8 = 0x20;

/// How message ids in submit_sm_resp and receipts relate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageIdFormat {
    /// Exact match, else the receipt id read as decimal and written as hex
    /// (and the reverse); leading zeros and letter case never matter.
    #[default]
    Auto,
    /// Both sides hex.
    Hex,
    /// Both sides decimal.
    Decimal,
    /// Hex in submit_sm_resp, decimal in receipts.
    #[serde(rename = "hex_resp_decimal_receipt")]
    HexResponseDecimalReceipt,
    /// Opaque strings (UUIDs, alphanumerics): exact match only.
    Opaque,
}

/// Final or intermediate state reported by a receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Submitted, no receipt yet.
    Submitted,
    /// ENROUTE / ACCEPTD / SCHEDULED: not final.
    Enroute,
    /// DELIVRD.
    Delivered,
    /// EXPIRED.
    Expired,
    /// DELETED.
    Deleted,
    /// UNDELIV.
    Undeliverable,
    /// REJECTD.
    Rejected,
    /// UNKNOWN or a state word nobody documents.
    Unknown,
    /// Accepted after its submit answered "may hold" (504), then deleted with cancel_sm
    /// before delivery; no receipt reports it.
    Cancelled,
}

impl DeliveryState {
    /// Whether no further receipt is expected.
    pub fn is_final(self) -> bool {
        !matches!(self, DeliveryState::Submitted | DeliveryState::Enroute)
    }

    /// Bounded metric label.
    pub fn label(self) -> &'static str {
        match self {
            DeliveryState::Submitted => "submitted",
            DeliveryState::Enroute => "enroute",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Expired => "expired",
            DeliveryState::Deleted => "deleted",
            DeliveryState::Undeliverable => "undeliverable",
            DeliveryState::Rejected => "rejected",
            DeliveryState::Unknown => "unknown",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    /// The state a [`DeliveryState::label`] names (how a shared backend stores it); `None`
    /// for any other word.
    pub fn from_label(label: &str) -> Option<DeliveryState> {
        Some(match label {
            "submitted" => DeliveryState::Submitted,
            "enroute" => DeliveryState::Enroute,
            "delivered" => DeliveryState::Delivered,
            "expired" => DeliveryState::Expired,
            "deleted" => DeliveryState::Deleted,
            "undeliverable" => DeliveryState::Undeliverable,
            "rejected" => DeliveryState::Rejected,
            "unknown" => DeliveryState::Unknown,
            "cancelled" => DeliveryState::Cancelled,
            _ => return None,
        })
    }

    /// The state of a whole message from its segments' states: `submitted` (or `enroute`)
    /// until every segment has a final receipt, then `delivered` if all were delivered, else
    /// the first failure's state.
    pub fn aggregate(states: impl IntoIterator<Item = DeliveryState>) -> DeliveryState {
        let all: Vec<DeliveryState> = states.into_iter().collect();
        if all.iter().any(|s| !s.is_final()) {
            if all.contains(&DeliveryState::Enroute) {
                DeliveryState::Enroute
            } else {
                DeliveryState::Submitted
            }
        } else {
            all.iter()
                .copied()
                .find(|s| *s != DeliveryState::Delivered)
                .unwrap_or(DeliveryState::Delivered)
        }
    }

    fn from_message_state(s: MessageState) -> DeliveryState {
        match s {
            MessageState::Scheduled | MessageState::Enroute | MessageState::Accepted => {
                DeliveryState::Enroute
            }
            MessageState::Delivered => DeliveryState::Delivered,
            MessageState::Expired => DeliveryState::Expired,
            MessageState::Deleted => DeliveryState::Deleted,
            MessageState::Undeliverable => DeliveryState::Undeliverable,
            MessageState::Rejected => DeliveryState::Rejected,
            MessageState::Unknown | MessageState::Skipped | MessageState::Other(_) => {
                DeliveryState::Unknown
            }
        }
    }

    /// The `stat:` word; vendors abbreviate to 7 letters or spell it out.
    fn from_stat(word: &str) -> DeliveryState {
        let w = word.to_ascii_uppercase();
        match w.as_str() {
            "DELIVRD" | "DELIVERED" => DeliveryState::Delivered,
            "EXPIRED" => DeliveryState::Expired,
            "DELETED" => DeliveryState::Deleted,
            "UNDELIV" | "UNDELIVERABLE" | "FAILED" => DeliveryState::Undeliverable,
            "REJECTD" | "REJECTED" => DeliveryState::Rejected,
            "ENROUTE" | "ACCEPTD" | "ACCEPTED" | "SCHEDULED" | "BUFFRED" => DeliveryState::Enroute,
            _ => DeliveryState::Unknown,
        }
    }
}

/// What a receipt says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The id as the SMSC wrote it (not normalised).
    pub message_id: String,
    /// Reported state.
    pub state: DeliveryState,
    /// The `err:` code, when present.
    pub error: Option<String>,
}

/// Reads a receipt from a deliver_sm; `None` for mobile-originated messages
/// and receipts without any id.
pub fn parse(deliver: &DeliverSm) -> Option<Receipt> {
    let kind = u8::from(deliver.esm_class) & RECEIPT_TYPE_MASK;
    if kind != MC_DELIVERY_RECEIPT && kind != INTERMEDIATE_NOTIFICATION {
        return None;
    }
    let mut tlv_id = None;
    let mut tlv_state = None;
    for tlv in deliver.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => tlv_id = Some(id.as_str().to_owned()),
            Some(TlvValue::MessageState(s)) => {
                tlv_state = Some(DeliveryState::from_message_state(*s))
            }
            _ => {}
        }
    }
    // Receipt text is ASCII by convention whatever data_coding says.
    let text = String::from_utf8_lossy(deliver.short_message().as_ref());
    let fields = parse_text(&text);
    let message_id = tlv_id.filter(|id| !id.is_empty()).or(fields.id)?;
    let state = tlv_state
        .or(fields.stat.map(|s| DeliveryState::from_stat(&s)))
        .unwrap_or(DeliveryState::Unknown);
    Some(Receipt {
        message_id,
        state,
        error: fields.err,
    })
}

/// Fields of the receipt text that matter here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TextFields {
    /// `id:`
    pub id: Option<String>,
    /// `stat:`
    pub stat: Option<String>,
    /// `err:`
    pub err: Option<String>,
}

/// Parses `id:… stat:… err:…` wherever the keys are, in any case, with any
/// of the other fields missing; `text:` and everything after it is ignored.
pub fn parse_text(text: &str) -> TextFields {
    let mut fields = TextFields::default();
    let mut rest = text;
    // The free-text excerpt may contain anything, including "stat:".
    if let Some(at) = find_key(rest, "text:") {
        rest = &rest[..at];
    }
    let value = |key: &str| -> Option<String> {
        let at = find_key(rest, key)?;
        let v = rest[at + key.len()..].trim_start();
        let v: String = v.chars().take_while(|c| !c.is_whitespace()).collect();
        (!v.is_empty()).then_some(v)
    };
    fields.id = value("id:");
    fields.stat = value("stat:");
    fields.err = value("err:");
    fields
}

/// Byte offset of `key` (ASCII, case-insensitive) at a word start.
fn find_key(haystack: &str, key: &str) -> Option<usize> {
    let lower = haystack.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find(key) {
        let at = from + pos;
        let boundary = at == 0 || lower[..at].ends_with(|c: char| c.is_whitespace());
        if boundary {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

fn strip_zeros(s: &str) -> &str {
    let t = s.trim_start_matches('0');
    if t.is_empty() && !s.is_empty() {
        "0"
    } else {
        t
    }
}

fn number(id: &str, radix: u32) -> Option<u128> {
    let id = id.trim();
    if id.is_empty() || id.len() > 38 {
        return None;
    }
    u128::from_str_radix(id, radix).ok()
}

/// The key a submit_sm_resp id is filed under.
pub fn response_key(id: &str, format: MessageIdFormat) -> String {
    let id = id.trim();
    match format {
        MessageIdFormat::Auto => format!("s:{}", strip_zeros(&id.to_ascii_uppercase())),
        MessageIdFormat::Hex | MessageIdFormat::HexResponseDecimalReceipt => {
            number(id, 16).map_or_else(|| format!("s:{id}"), |n| format!("n:{n}"))
        }
        MessageIdFormat::Decimal => {
            number(id, 10).map_or_else(|| format!("s:{id}"), |n| format!("n:{n}"))
        }
        MessageIdFormat::Opaque => format!("s:{id}"),
    }
}

/// The keys a receipt id may match, most likely first.
pub fn receipt_keys(id: &str, format: MessageIdFormat) -> Vec<String> {
    let id = id.trim();
    match format {
        MessageIdFormat::Auto => {
            let upper = id.to_ascii_uppercase();
            let mut keys = vec![format!("s:{}", strip_zeros(&upper))];
            // Decimal in the receipt for a hex id in the response, or the reverse.
            if let Some(n) = number(id, 10) {
                keys.push(format!("s:{n:X}"));
            }
            if let Some(n) = number(id, 16) {
                keys.push(format!("s:{n}"));
            }
            keys.dedup();
            keys
        }
        MessageIdFormat::Hex => vec![response_key(id, MessageIdFormat::Hex)],
        MessageIdFormat::Decimal | MessageIdFormat::HexResponseDecimalReceipt => {
            vec![number(id, 10).map_or_else(|| format!("s:{id}"), |n| format!("n:{n}"))]
        }
        MessageIdFormat::Opaque => vec![format!("s:{id}")],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn text_receipts_in_vendor_variants() {
        let f = parse_text(
            "id:00B8BE19 sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000 text:stat:UNDELIV",
        );
        assert_eq!(f.id.as_deref(), Some("00B8BE19"));
        assert_eq!(f.stat.as_deref(), Some("DELIVRD"), "text: excerpt ignored");
        assert_eq!(f.err.as_deref(), Some("000"));
        // No sub/dlvrd/dates, other case, extra spaces.
        let f = parse_text("ID: 1234567890  Stat:undeliv ERR:005");
        assert_eq!(f.id.as_deref(), Some("1234567890"));
        assert_eq!(f.stat.as_deref(), Some("undeliv"));
        assert_eq!(f.err.as_deref(), Some("005"));
        // `id:` must be its own word, not the end of another key.
        let f = parse_text("msgid:9 stat:EXPIRED");
        assert_eq!(f.id, None);
        assert_eq!(DeliveryState::from_stat("expired"), DeliveryState::Expired);
        assert_eq!(DeliveryState::from_stat("ACCEPTD"), DeliveryState::Enroute);
        assert_eq!(DeliveryState::from_stat("weird"), DeliveryState::Unknown);
        assert_eq!(parse_text(""), TextFields::default());
    }

    #[test]
    fn ids_normalise_across_hex_decimal_and_zeros() {
        let fmt = MessageIdFormat::Auto;
        // Jasmin #1129: hex with leading zeros in the response, without in the receipt.
        let key = response_key("00B8BE19", fmt);
        assert!(receipt_keys("B8BE19", fmt).contains(&key));
        assert!(receipt_keys("b8be19", fmt).contains(&key));
        // Decimal receipt for a hex response.
        assert!(receipt_keys(&0xB8BE19u32.to_string(), fmt).contains(&key));
        // Hex receipt for a decimal response.
        let key = response_key("12345", fmt);
        assert!(receipt_keys("3039", fmt).contains(&key));
        assert!(receipt_keys("0012345", fmt).contains(&key));
        // Opaque ids match exactly.
        let uuid = "6f1c2a9e-1b7d-4c55-9e0a-2f4d7c1b9a10";
        assert_eq!(
            receipt_keys(uuid, MessageIdFormat::Opaque),
            vec![response_key(uuid, MessageIdFormat::Opaque)]
        );
        // Explicit formats.
        let key = response_key("000000FF", MessageIdFormat::HexResponseDecimalReceipt);
        assert_eq!(
            receipt_keys("255", MessageIdFormat::HexResponseDecimalReceipt),
            vec![key]
        );
        assert_eq!(
            response_key("0255", MessageIdFormat::Decimal),
            receipt_keys("255", MessageIdFormat::Decimal)[0]
        );
        assert_eq!(
            response_key("ff", MessageIdFormat::Hex),
            receipt_keys("00FF", MessageIdFormat::Hex)[0]
        );
    }
}
