//! Glue between the OTP rules and SMPP: the SMPP router (one or more SMSCs) as an
//! [`SmsSender`], with SMPP outcomes mapped to what the API may honestly say about the SMS.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::domain::PhoneNumber;
use crate::otp::{DeliveryError, SmsSender};
use crate::smpp::{OutboundSms, SmppError, SmppRouter};

impl SmsSender for SmppRouter {
    fn send(
        &self,
        to: &PhoneNumber,
        text: String,
        validity: Duration,
        authentication_id: &str,
    ) -> BoxFuture<'_, Result<usize, DeliveryError>> {
        let sms = OutboundSms {
            destination: to.as_e164().to_string(),
            text,
            validity,
        };
        let tag = authentication_id.to_owned();
        Box::pin(async move {
            match self.submit_tagged(sms, Some(&tag)).await {
                Ok(receipt) => Ok(receipt.segments),
                Err(SmppError::Timeout { .. }) => Err(DeliveryError::Timeout),
                // The SMPP layer already applied `smpp.status_map` and the built-in
                // destination statuses (ESME_RINVDSTADR, bad TON/NPI).
                Err(SmppError::NotAllowed { command_status }) => {
                    Err(DeliveryError::DestinationRejected(command_status))
                }
                Err(SmppError::Blocked { command_status }) => {
                    Err(DeliveryError::DestinationBlocked(command_status))
                }
                Err(e) => Err(DeliveryError::Unavailable(e.to_string())),
            }
        })
    }
}
