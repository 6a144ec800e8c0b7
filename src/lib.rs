//! otp-gateway: the CAMARA One Time Password SMS API v1.1 over a direct SMPP session.
//!
//! # Layout
//! - [`api`]: HTTP handlers, the CAMARA error table, `x-correlator`, bearer auth, OpenAPI.
//! - [`auth`]: the embedded OAuth2 token issuer and token validation.
//! - [`otp`]: the rules (codes, hashing, expiry, superseding, quotas).
//! - [`domain`]: validated types (phone number, template, code, authenticationId), and the
//!   challenge state with its attempt rule, shared by `otp` and `store`.
//! - [`policy`]: the operator's number policy.
//! - [`store`]: the challenge store trait and its moka backend.
//! - [`smpp`] and [`delivery`]: the SMPP client and its use as the SMS channel.
//! - [`smsc_sim`]: the project's own SMSC simulator.
//! - [`admin`], [`metrics`], [`telemetry`]: operations; [`usage`] and [`audit`]: usage
//!   counters and audit events; [`sandbox`]: sandbox clients, their inboxes, magic numbers.
//! - [`sync`]: the poison-recovering lock helper.
//! - [`config`] and [`startup`]: settings and wiring; [`shutdown`]: the orderly stop.

pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod config;
pub mod de;
pub mod delivery;
pub mod delivery_state;
pub mod domain;
pub mod metrics;
pub mod otp;
pub mod policy;
pub mod sandbox;
pub mod shutdown;
pub mod smpp;
pub mod smsc_sim;
pub mod startup;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod usage;
