//! The audit event of a send-code outcome: the policy decision and outcome the rules reached,
//! in the words of [`crate::audit`].

use super::{DeliveryError, OtpError, Sent};
use crate::audit::{AuditEvent, EventKind};
use crate::domain::{AuthenticationId, PhoneNumber};

/// The event of one send: `magic` when a sandbox magic number decided the answer.
pub(super) fn send_event(
    client_id: &str,
    phone: &PhoneNumber,
    sandbox: bool,
    magic: bool,
    result: &Result<(AuthenticationId, Sent), OtpError>,
) -> AuditEvent {
    let (outcome, policy) = match result {
        Ok(_) => ("sent", "allowed"),
        Err(e) => match e {
            OtpError::NotOperatorNumber => ("refused", "not_operator_number"),
            OtpError::PhoneNotAllowed => ("refused", "not_allowed"),
            OtpError::PhoneBlocked => ("refused", "blocked"),
            OtpError::TooManyCodes => ("refused", "max_codes"),
            OtpError::Delivery(d) => (
                match d {
                    DeliveryError::Unavailable(_) => "smsc_unavailable",
                    DeliveryError::OutcomeUnknown(_) => "smsc_timeout",
                    DeliveryError::DestinationRejected(_) => "destination_rejected",
                    DeliveryError::DestinationBlocked(_) => "destination_blocked",
                },
                "allowed",
            ),
            OtpError::Store(_) => ("store_unavailable", "allowed"),
            OtpError::UnknownId
            | OtpError::Expired
            | OtpError::InvalidCode
            | OtpError::Locked
            | OtpError::Random => ("error", "allowed"),
        },
    };
    let mut event = AuditEvent::new(EventKind::Send, client_id, outcome);
    event.phone_number = Some(phone.masked());
    event.policy = Some(if magic { "sandbox_number" } else { policy });
    event.sandbox = sandbox;
    if let Ok((id, sent)) = result {
        event.authentication_id = Some(id.to_string());
        event.route = Some(sent.route.clone());
    }
    event
}
