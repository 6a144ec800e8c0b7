//! Why a submit failed, in the words an SMSC operator uses, with the library's error kept as
//! the source so the cause chain reaches the log intact.

use std::time::Duration;

/// A lower-level error kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// SMPP 3.4 command_status values with a fixed meaning for the pool.
pub mod status {
    /// ESME_RMSGQFUL: the SMSC's queue is full; slow down and retry.
    pub const MSGQFUL: u32 = 0x14;
    /// ESME_RTHROTTLED: the bind exceeded its rate; slow down and retry.
    pub const THROTTLED: u32 = 0x58;
    /// ESME_RSYSERR: the SMSC failed internally; retry on another session.
    pub const SYSERR: u32 = 0x08;
    /// Statuses that reject the destination itself (invalid address, its
    /// TON, its NPI) unless `status_map` says otherwise.
    pub const DESTINATION: [u32; 3] = [0x0B, 0x50, 0x51];
}

/// Why the SMSC may hold a message the client could not confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uncertainty {
    /// A submit_sm went out and its submit_sm_resp did not come in time.
    NoResponse {
        /// The deadline of the whole submit.
        after: Duration,
    },
    /// The session broke while a submit_sm was in flight.
    SessionLost,
    /// Some segments were acknowledged, the rest failed.
    PartlyAcknowledged {
        /// Segments the SMSC acknowledged.
        acknowledged: usize,
        /// Segments of the message.
        segments: usize,
    },
}

impl std::fmt::Display for Uncertainty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uncertainty::NoResponse { after } => write!(f, "no submit_sm_resp within {after:?}"),
            Uncertainty::SessionLost => f.write_str("the session broke with a submit_sm in flight"),
            Uncertainty::PartlyAcknowledged {
                acknowledged,
                segments,
            } => write!(f, "{acknowledged} of {segments} segments acknowledged"),
        }
    }
}

/// Why a submit failed. Every variant but [`SmppError::MayHold`] means the SMSC holds nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmppError {
    /// No bound SMPP session is available (SMSC down, bind refused, or
    /// reconnect in progress); the message was not sent.
    #[error("no bound SMPP session")]
    NotBound,
    /// Every session's window (or rate budget) stayed full until the
    /// deadline; the message was not sent.
    #[error("SMPP window full")]
    Busy,
    /// The SMSC kept answering ESME_RTHROTTLED / ESME_RMSGQFUL until the
    /// deadline; the message was not accepted.
    #[error("SMSC throttled the message: command_status 0x{command_status:08X}")]
    Throttled {
        /// The last throttling status.
        command_status: u32,
    },
    /// The SMSC refused the destination (built-in destination statuses, or
    /// `not_allowed` in `status_map`).
    #[error("SMSC refused the destination: command_status 0x{command_status:08X}")]
    NotAllowed {
        /// SMPP command_status.
        command_status: u32,
    },
    /// The SMSC reports the destination as barred (`blocked` in `status_map`).
    #[error("SMSC reports the destination blocked: command_status 0x{command_status:08X}")]
    Blocked {
        /// SMPP command_status.
        command_status: u32,
    },
    /// The SMSC may hold (part of) the message: the outcome is unknown, and sending it again
    /// could deliver it twice. `cause` is the last failure seen, when there was one.
    #[error("the SMSC may hold the message: {why}")]
    MayHold {
        /// What makes the outcome unknown.
        why: Uncertainty,
        /// The failure that ended the submit after the outcome became unknown.
        #[source]
        cause: Option<Box<SmppError>>,
    },
    /// The SMSC answered a segment with a non-zero command_status that is
    /// neither retried nor a destination status (the status of the first
    /// failing segment).
    #[error("SMSC rejected the message: command_status 0x{command_status:08X}")]
    Rejected {
        /// SMPP command_status, e.g. 0x45 (ESME_RSUBMITFAIL).
        command_status: u32,
    },
    /// No route serves the destination (`[[smpp.routes]]` prefixes).
    #[error("no SMPP route serves the destination")]
    NoRoute,
    /// The message cannot be expressed as SMPP PDUs (sender, too many segments).
    #[error("cannot encode the message: {field}")]
    Encoding {
        /// The part that does not fit.
        field: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The session failed while the message was being submitted.
    #[error("SMPP session error")]
    Connection(#[source] rusmppc::error::Error),
}

impl SmppError {
    /// The command_status the SMSC answered with, when this error is one.
    pub fn command_status(&self) -> Option<u32> {
        match self {
            SmppError::Throttled { command_status }
            | SmppError::NotAllowed { command_status }
            | SmppError::Blocked { command_status }
            | SmppError::Rejected { command_status } => Some(*command_status),
            SmppError::NotBound
            | SmppError::Busy
            | SmppError::MayHold { .. }
            | SmppError::NoRoute
            | SmppError::Encoding { .. }
            | SmppError::Connection(_) => None,
        }
    }

    pub(crate) fn encoding(field: &'static str, source: impl Into<BoxError>) -> SmppError {
        SmppError::Encoding {
            field,
            source: source.into(),
        }
    }
}
