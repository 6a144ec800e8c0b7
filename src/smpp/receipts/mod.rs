//! Delivery receipts: reading them from deliver_sm ([`parse`]) and matching them to the
//! segments they report on, per opaque tag ([`tracker`]).

pub mod parse;
pub(crate) mod tracker;

pub use parse::{DeliveryState, MessageIdFormat};
pub use tracker::{DeliveryReport, SegmentReport};
