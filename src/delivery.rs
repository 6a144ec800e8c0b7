//! Glue between the OTP rules and SMPP: the SMPP client as an [`SmsSender`], with SMPP
//! outcomes mapped to what the API may honestly say about the SMS.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::domain::PhoneNumber;
use crate::otp::{DeliveryError, SmsSender};
use crate::smpp::{OutboundSms, SmppClient, SmppError};

/// SMPP 3.4 command_status values that reject the destination itself rather than the service:
/// invalid destination address, its TON, its NPI.
const DESTINATION_STATUSES: [u32; 3] = [0x0000_000B, 0x0000_0050, 0x0000_0051];

impl SmsSender for SmppClient {
    fn send(
        &self,
        to: &PhoneNumber,
        text: String,
        validity: Duration,
    ) -> BoxFuture<'_, Result<usize, DeliveryError>> {
        let sms = OutboundSms {
            destination: to.as_e164().to_string(),
            text,
            validity,
        };
        Box::pin(async move {
            match self.submit(sms).await {
                Ok(receipt) => Ok(receipt.segments),
                Err(SmppError::Timeout { .. }) => Err(DeliveryError::Timeout),
                Err(SmppError::Rejected { command_status })
                    if DESTINATION_STATUSES.contains(&command_status) =>
                {
                    Err(DeliveryError::DestinationRejected(command_status))
                }
                Err(e) => Err(DeliveryError::Unavailable(e.to_string())),
            }
        })
    }
}
