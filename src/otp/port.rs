//! The SMS channel as the rules see it: a port implemented over SMPP in `crate::delivery`,
//! and faked in tests. Its errors say what the API may honestly answer, nothing about SMPP.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::domain::{OtpCode, PhoneNumber, SenderId};

/// A lower-level error kept as the source of a [`DeliveryError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the SMS channel did not confirm a message.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The channel could not take the message and holds nothing (no bound session, the SMSC
    /// refused or throttled it): 503, and the quota is refunded.
    #[error("the SMS channel could not take the message")]
    Unavailable(#[source] BoxError),
    /// The SMSC may hold the message (no answer in time, a session lost with it in flight,
    /// only some segments acknowledged): 504, and the quota stays spent, since the SMS may
    /// still arrive.
    #[error("the SMSC may hold the message; its outcome is unknown")]
    OutcomeUnknown(#[source] BoxError),
    /// The SMSC refused this destination (the quota is refunded).
    #[error("SMSC refused the destination (command_status {0:#010x})")]
    DestinationRejected(u32),
    /// The SMSC reports the destination as barred (the quota is refunded).
    #[error("SMSC reports the destination blocked (command_status {0:#010x})")]
    DestinationBlocked(u32),
}

/// The SMS channel.
/// What the channel did with an accepted SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Segments the SMSC acknowledged (all of the message's).
    pub segments: usize,
    /// Name of the route (SMSC) that took it, for logs.
    pub route: String,
}

pub trait SmsSender: Send + Sync + 'static {
    /// Resolves when the SMSC acknowledged every segment; says how many and on which route.
    /// `authentication_id` tags the message so its delivery receipts can be looked up.
    fn send(
        &self,
        to: &PhoneNumber,
        text: String,
        validity: Duration,
        authentication_id: &str,
    ) -> BoxFuture<'_, Result<Sent, DeliveryError>>;

    /// [`send`](SmsSender::send) from the client's own sender id (`None`: the channel's
    /// default sender). The default ignores `sender`: right for channels that have no sender
    /// to choose (test doubles, an inbox); the SMPP channel overrides it.
    fn send_from(
        &self,
        to: &PhoneNumber,
        text: String,
        validity: Duration,
        authentication_id: &str,
        sender: Option<&SenderId>,
    ) -> BoxFuture<'_, Result<Sent, DeliveryError>> {
        let _ = sender;
        self.send(to, text, validity, authentication_id)
    }
}

/// Clients whose SMS go to a sandbox instead of an SMSC (implemented by `crate::sandbox`).
pub trait SandboxPort: Send + Sync + 'static {
    /// Whether `client_id` is a sandbox client.
    fn is_sandbox(&self, client_id: &str) -> bool;

    /// `None` for a client that is not a sandbox client (its SMS go to the SMSC); for a sandbox
    /// client, the channel to use and what `phone` answers as a magic number.
    fn route(&self, client_id: &str, phone: &PhoneNumber) -> Option<SandboxRoute>;
}

/// How a sandbox client's send goes.
pub struct SandboxRoute {
    /// The sandbox's channel (never an SMSC).
    pub sender: Box<dyn SmsSender>,
    /// `Ok(Some)`: the fixed code of a magic number; `Err`: the error a magic number answers;
    /// `Ok(None)`: an ordinary number.
    pub magic: Result<Option<OtpCode>, super::OtpError>,
}
