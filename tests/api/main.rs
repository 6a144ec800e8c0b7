//! End-to-end tests: the real application on port 0, real HTTP, real JWTs, a real SMPP session
//! to the project's SMSC simulator. Tests named after an official CAMARA scenario carry its tag
//! in a doc comment (`conformance-tests` checks that every official tag is covered).

#![allow(clippy::unwrap_used)]

mod admin;
mod audit;
mod chaos;
mod client_assertions;
mod error_log;
mod external_issuers;
mod framework;
mod helpers;
mod late_acceptance;
mod log_capture;
mod lookup;
mod operations;
mod policy;
mod pumping;
mod receipts_across;
mod replicas;
mod replicas_ops;
mod sandbox;
mod send_code;
mod shutdown;
mod tenant_profiles;
mod tenants;
mod tokens;
mod usage;
mod validate_code;
