//! End-to-end tests: the real application on port 0, real HTTP, real JWTs, a real SMPP session
//! to the project's SMSC simulator. Tests named after an official CAMARA scenario carry its tag
//! in a doc comment (`conformance-tests` checks that every official tag is covered).

#![allow(clippy::unwrap_used)]

mod admin;
mod chaos;
mod framework;
mod helpers;
mod operations;
mod send_code;
mod shutdown;
mod validate_code;
