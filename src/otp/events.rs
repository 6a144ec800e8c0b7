//! What the rules report once an outcome is known: the usage counts and the audit event of a
//! send or a validation (the policy decision and outcome in the words of [`crate::audit`]).

use super::{DeliveryError, OtpError, OtpService, Sent};
use crate::audit::{AuditEvent, EventKind};
use crate::domain::{AuthenticationId, PhoneNumber};
use crate::usage::Validation;

impl OtpService {
    /// Counts and audits a send; `magic` when a sandbox magic number decided the answer.
    pub(super) fn report_send(
        &self,
        client_id: &str,
        phone: &PhoneNumber,
        in_sandbox: bool,
        magic: bool,
        result: &Result<(AuthenticationId, Sent), OtpError>,
    ) {
        if let Ok((id, sent)) = result {
            // A sandbox SMS has no receipt to count.
            let tag = (!in_sandbox).then_some(id);
            self.usage
                .sent(client_id, self.clock.now_ms(), sent.segments, tag);
        }
        self.audit
            .record(&send_event(client_id, phone, in_sandbox, magic, result));
    }

    /// Counts and audits a validation whose metric label is `outcome`.
    pub(super) fn report_validation(
        &self,
        client_id: &str,
        authentication_id: &str,
        outcome: &'static str,
        result: &Result<(), OtpError>,
    ) {
        let counted = match result {
            Ok(()) => Some(Validation::Valid),
            Err(OtpError::InvalidCode) => Some(Validation::Failed),
            Err(OtpError::Expired) => Some(Validation::Expired),
            Err(OtpError::Locked) => Some(Validation::Locked),
            Err(_) => None,
        };
        if let Some(v) = counted {
            self.usage.validated(client_id, self.clock.now_ms(), v);
        }
        let mut event = AuditEvent::new(EventKind::Validate, client_id, outcome);
        event.authentication_id = Some(authentication_id.to_owned());
        event.sandbox = self
            .sandbox
            .as_ref()
            .is_some_and(|s| s.is_sandbox(client_id));
        self.audit.record(&event);
    }
}

/// The event of one send: `magic` when a sandbox magic number decided the answer.
fn send_event(
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
            OtpError::DestinationNotAllowed => ("refused", "tenant_destination"),
            OtpError::TemplateNotAllowed => ("refused", "tenant_template"),
            OtpError::QuotaExceeded { .. } => ("refused", "tenant_quota"),
            OtpError::Lookup(_) => ("lookup_unavailable", "lookup_failed"),
            OtpError::PumpingCooldown => ("refused", "pumping_cooldown"),
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
