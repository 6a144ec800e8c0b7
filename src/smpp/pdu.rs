//! From a text and a destination to submit_sm PDUs: encoding and segmentation (see
//! [`super::encoding`]), addresses with their TON/NPI, the validity period and the receipt
//! request.

use std::str::FromStr;
use std::time::Duration;

use rusmpp::pdus::SubmitSm;
use rusmpp::tlvs::MessageSubmissionRequestTlvValue;
use rusmpp::types::{AnyOctetString, COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, MessagePayload, Npi, RegisteredDelivery, ServiceType, Ton,
};

use super::encoding;
use super::error::SmppError;
use super::settings::{SessionOptions, SourceAddr};
use crate::domain::{PhoneNumber, Secret};

/// esm_class bit telling the SMSC the short_message starts with a UDH.
const ESM_UDHI: u8 = 0x40;
/// registered_delivery: SMSC delivery receipt on final success or failure.
const RECEIPT_ON_FINAL_OUTCOME: u8 = 0x01;

/// One message to be sent to a handset.
#[derive(Clone, Debug)]
pub struct OutboundSms {
    /// Where it goes (its `Debug` is masked).
    pub destination: PhoneNumber,
    /// Message text (any Unicode; encoding is chosen automatically). It carries the code, so
    /// it is a [`Secret`]: no log line can show it.
    pub text: Secret,
    /// How long the SMSC should keep trying to deliver.
    pub validity: Duration,
    /// This message's sender, in place of the route's `source_addr` (and its TON/NPI); `None`
    /// sends from the route's.
    pub source: Option<MessageSource>,
}

/// A per-message sender address with the TON/NPI to send it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageSource {
    /// The address (checked like `source_addr`).
    pub addr: SourceAddr,
    /// source_addr_ton.
    pub ton: u8,
    /// source_addr_npi.
    pub npi: u8,
}

/// Formats `validity` as an SMPP 3.4 §7.1.1 relative time
/// (`YYMMDDhhmmss000R`), with years of 365 days and months of 30 days, capped
/// at 99 years. A zero duration yields `None` (use the SMSC default).
pub fn relative_validity(validity: Duration) -> Option<String> {
    const MAX: &str = "991129235959000R";
    let secs = validity.as_secs();
    if secs == 0 {
        return None;
    }
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (years, rest_days) = (days / 365, days % 365);
    if years > 99 {
        return Some(MAX.to_owned());
    }
    let (months, days) = (rest_days / 30, rest_days % 30);
    // 12 months of 30 days are 360 < 365, so months may reach 12.
    let (years, months) = if months >= 12 {
        (years + 1, months - 12)
    } else {
        (years, months)
    };
    if years > 99 {
        return Some(MAX.to_owned());
    }
    Some(format!(
        "{years:02}{months:02}{days:02}{:02}{:02}{:02}000R",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    ))
}

/// Source TON/NPI and address as sent on the wire.
pub(crate) fn source_address(source: &str) -> (Ton, Npi, &str) {
    let digits = source.strip_prefix('+').unwrap_or(source);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        (Ton::International, Npi::Isdn, digits)
    } else {
        (Ton::Alphanumeric, Npi::Unknown, source)
    }
}

/// Builds one submit_sm per segment of `sms` (one in total with
/// [`encoding::Concatenation::MessagePayload`]).
pub(crate) fn build_submits(
    options: &SessionOptions,
    sms: &OutboundSms,
) -> Result<(encoding::Encoded, Vec<SubmitSm>), SmppError> {
    let source = options.source_addr.as_str();
    let mode = options.concatenation;
    // A PhoneNumber is `+` and 5 to 15 digits, so the address always fits.
    let digits = sms.destination.as_e164().trim_start_matches('+');
    let dest = COctetString::<1, 21>::from_str(digits)
        .map_err(|e| SmppError::encoding("destination_addr", e.to_string()))?;
    let (dest_ton, dest_npi) = match (options.dest_ton, options.dest_npi) {
        // Some SMSCs want another numbering plan (national, TON 2); the digits stay as they are.
        (Some(ton), Some(npi)) => (Ton::from(ton), Npi::from(npi)),
        _ => (Ton::International, Npi::Isdn),
    };
    let (src_ton, src_npi, src) = match (&sms.source, options.source_ton, options.source_npi) {
        (Some(s), _, _) => (Ton::from(s.ton), Npi::from(s.npi), s.addr.as_str()),
        // An operator-mandated TON/NPI is sent as configured, address untouched.
        (None, Some(ton), Some(npi)) => (Ton::from(ton), Npi::from(npi), source),
        _ => source_address(source),
    };
    let src = COctetString::<1, 21>::from_str(src)
        .map_err(|e| SmppError::encoding("source_addr", e.to_string()))?;
    let validity = match relative_validity(sms.validity) {
        Some(v) => EmptyOrFullCOctetString::<17>::from_str(&v)
            .map_err(|e| SmppError::encoding("validity_period", e.to_string()))?,
        None => EmptyOrFullCOctetString::empty(),
    };

    let encoded = encoding::encode_as(sms.text.expose(), mode);
    if encoded.message_payload
        && encoded.segments.iter().map(Vec::len).sum::<usize>() > encoding::MAX_PAYLOAD
    {
        return Err(SmppError::encoding(
            "message_payload",
            "text longer than message_payload allows",
        ));
    }
    if encoded.segments.len() > encoding::MAX_SEGMENTS {
        return Err(SmppError::encoding(
            "short_message",
            format!(
                "text needs {} segments (max {})",
                encoded.segments.len(),
                encoding::MAX_SEGMENTS
            ),
        ));
    }
    let esm_class = EsmClass::from(if encoded.udhi { ESM_UDHI } else { 0 });
    let total = u8::try_from(encoded.segments.len()).unwrap_or(u8::MAX);
    let submits = encoded
        .segments
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut tlvs: Vec<MessageSubmissionRequestTlvValue> = Vec::new();
            let short_message = if encoded.message_payload {
                tlvs.push(MessageSubmissionRequestTlvValue::MessagePayload(
                    MessagePayload::new(AnyOctetString::from_slice(body)),
                ));
                OctetString::<0, 255>::empty()
            } else {
                OctetString::<0, 255>::from_slice(body)
                    .map_err(|e| SmppError::encoding("short_message", e.to_string()))?
            };
            if let Some(reference) = encoded.sar_reference {
                tlvs.push(MessageSubmissionRequestTlvValue::SarMsgRefNum(reference));
                tlvs.push(MessageSubmissionRequestTlvValue::SarTotalSegments(total));
                tlvs.push(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(
                    u8::try_from(i + 1).unwrap_or(u8::MAX),
                ));
            }
            Ok(SubmitSm::builder()
                .service_type(ServiceType::default())
                .source_addr_ton(src_ton)
                .source_addr_npi(src_npi)
                .source_addr(src.clone())
                .dest_addr_ton(dest_ton)
                .dest_addr_npi(dest_npi)
                .destination_addr(dest.clone())
                .esm_class(esm_class)
                .validity_period(validity.clone())
                .registered_delivery(RegisteredDelivery::from(RECEIPT_ON_FINAL_OUTCOME))
                .data_coding(DataCoding::from(encoded.data_coding))
                .short_message(short_message)
                .tlvs(tlvs)
                .build())
        })
        .collect::<Result<Vec<_>, SmppError>>()?;
    Ok((encoded, submits))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sms() -> OutboundSms {
        OutboundSms {
            destination: PhoneNumber::parse("+34600000001").unwrap(),
            text: Secret::new("123456 is your code"),
            validity: Duration::from_secs(300),
            source: None,
        }
    }

    #[test]
    fn a_message_source_replaces_the_route_sender_and_its_ton_npi() {
        let mut m = sms();
        m.source = Some(MessageSource {
            addr: SourceAddr::try_from("CoolApp".to_owned()).unwrap(),
            ton: 5,
            npi: 0,
        });
        let pinned = SessionOptions {
            source_ton: Some(1),
            source_npi: Some(1),
            ..SessionOptions::default()
        };
        let (_, pdus) = build_submits(&pinned, &m).unwrap();
        assert_eq!(pdus[0].source_addr.as_str(), "CoolApp");
        assert_eq!(pdus[0].source_addr_ton, Ton::Alphanumeric);
        assert_eq!(pdus[0].source_addr_npi, Npi::Unknown);
        let (_, pdus) = build_submits(&SessionOptions::default(), &sms()).unwrap();
        assert_eq!(pdus[0].source_addr.as_str(), "OTPGateway");
    }

    #[test]
    fn destination_ton_npi_default_to_international_and_follow_the_route() {
        let (_, pdus) = build_submits(&SessionOptions::default(), &sms()).unwrap();
        assert_eq!(pdus[0].dest_addr_ton, Ton::International);
        assert_eq!(pdus[0].dest_addr_npi, Npi::Isdn);
        assert_eq!(pdus[0].destination_addr.as_str(), "34600000001");
        let national = SessionOptions {
            dest_ton: Some(2),
            dest_npi: Some(1),
            ..SessionOptions::default()
        };
        let (_, pdus) = build_submits(&national, &sms()).unwrap();
        assert_eq!(pdus[0].dest_addr_ton, Ton::National);
        assert_eq!(pdus[0].dest_addr_npi, Npi::Isdn);
        assert_eq!(pdus[0].destination_addr.as_str(), "34600000001");
    }

    #[test]
    fn the_outbound_text_never_reaches_a_debug_line() {
        let shown = format!("{:?}", sms());
        assert!(
            !shown.contains("123456") && !shown.contains("600000001"),
            "{shown}"
        );
    }
}
