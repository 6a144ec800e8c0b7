//! Delivery receipts: reading them from deliver_sm ([`parse`]) and matching them to the
//! segments they report on, per opaque tag ([`tracker`] in process, [`shared`] when several
//! gateways share the state).

pub mod parse;
pub mod shared;
pub(crate) mod tracker;

pub use parse::{DeliveryState, MessageIdFormat};
pub use shared::SharedDeliveryState;
pub use tracker::{DeliveryReport, SegmentReport};
