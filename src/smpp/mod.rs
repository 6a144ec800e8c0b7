//! A standalone SMPP 3.4 client that hands texts to one or more SMSCs.
//!
//! # Layout
//! - `settings`: what a route's pool needs ([`RouteSettings`], [`SessionOptions`]), defaults once.
//! - `client`: the handle ([`SmppClient`]): start the pool, submit, read receipts, shut down.
//! - `router`: several SMSCs by prefix and priority, with failover ([`SmppRouter`]).
//! - `pdu`: text and destination → submit_sm PDUs; `encoding`: GSM-7/UCS-2 and segments.
//! - `pool` and `slot`: which session takes a submit, and each session's window, rate and
//!   throttling state; `limiter`: the per-session segment rate.
//! - `session`: the supervisor task owning one session (connect, bind, serve, reconnect).
//! - `inflight`: which submit a response answers, per session (our own correlation, so each
//!   attempt waits exactly its budget and a late answer is still recognised).
//! - `cancel`: late acceptances after a 504, deleted with cancel_sm; `splice`: how that PDU,
//!   which rusmppc cannot send, reaches a live session.
//! - `receipts`: deliver_sm receipts matched to segments, per opaque tag.
//! - `error`: why a submit failed, and whether the SMSC may hold the message.
//! - `tls`: `smpps://` client configuration.
//!
//! Logging never includes SMS texts, passwords or full phone numbers.

mod cancel;
mod client;
pub mod encoding;
mod error;
mod inflight;
mod limiter;
mod pdu;
mod pool;
pub mod receipts;
mod router;
mod session;
mod settings;
mod slot;
mod splice;
pub mod tls;

pub use client::{SmppClient, SubmitReceipt};
pub use error::{status, BoxError, SmppError, Uncertainty};
pub use pdu::{relative_validity, MessageSource, OutboundSms};
pub use receipts::{
    DeliveryReport, DeliveryState, MessageIdFormat, SegmentReport, SharedDeliveryState,
};
pub use router::{RoutedError, RoutedReceipt, SmppRouter};
pub use settings::{
    BindMode, RouteSettings, SessionOptions, SessionOverrides, SmscAddress, SourceAddr,
    StatusAction, StatusMap, FIELD_MARK,
};

/// tracing target of every event emitted by this module.
pub const TARGET: &str = "otp_gateway::smpp";

#[cfg(test)]
mod tests;
