//! The [`SmsSender`] port over the SMPP router (one or more SMSCs): the rules' words
//! (authenticationId, delivery outcome) become SMPP's (an opaque tag, submit results), and
//! SMPP outcomes become what the API may honestly say about the SMS.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::domain::{PhoneNumber, Secret, SenderId, SenderKind};
use crate::otp::{DeliveryError, Sent, SmsSender};
use crate::smpp::{MessageSource, OutboundSms, SmppError, SmppRouter, SourceAddr};

/// A client's sender id as SMPP addresses it (SMPP 3.4 §5.2.5-6).
fn message_source(sender: &SenderId) -> Option<MessageSource> {
    let (ton, npi) = match sender.kind() {
        SenderKind::Alphanumeric => (5, 0),
        SenderKind::International => (1, 1),
        SenderKind::National => (2, 1),
    };
    // A SenderId always passes SourceAddr's checks (it is the stricter of the two).
    let addr = SourceAddr::try_from(sender.address().to_owned()).ok()?;
    Some(MessageSource { addr, ton, npi })
}

impl SmsSender for SmppRouter {
    fn send(
        &self,
        to: &PhoneNumber,
        text: String,
        validity: Duration,
        authentication_id: &str,
    ) -> BoxFuture<'_, Result<Sent, DeliveryError>> {
        self.send_from(to, text, validity, authentication_id, None)
    }

    fn send_from(
        &self,
        to: &PhoneNumber,
        text: String,
        validity: Duration,
        authentication_id: &str,
        sender: Option<&SenderId>,
    ) -> BoxFuture<'_, Result<Sent, DeliveryError>> {
        let sms = OutboundSms {
            destination: to.clone(),
            text: Secret::new(text),
            validity,
            source: sender.and_then(message_source),
        };
        let tag = authentication_id.to_owned();
        Box::pin(async move {
            match self.submit_tagged(sms, Some(&tag)).await {
                Ok(sent) => Ok(Sent {
                    segments: sent.receipt.segments,
                    route: sent.route,
                }),
                Err(failed) => Err(match failed.error {
                    // The SMPP layer already applied `status_map` and the built-in
                    // destination statuses (ESME_RINVDSTADR, bad TON/NPI).
                    SmppError::NotAllowed { command_status } => {
                        DeliveryError::DestinationRejected(command_status)
                    }
                    SmppError::Blocked { command_status } => {
                        DeliveryError::DestinationBlocked(command_status)
                    }
                    ref e if matches!(e, SmppError::MayHold { .. }) => {
                        DeliveryError::OutcomeUnknown(Box::new(failed))
                    }
                    _ => DeliveryError::Unavailable(Box::new(failed)),
                }),
            }
        })
    }
}
