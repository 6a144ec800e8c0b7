//! camara-conformance: executes CAMARA Gherkin test definitions (the official One Time Password
//! SMS v1.1.0 files unmodified, or our own) against any implementation's base URL.
//!
//! # Layout
//! - [`gherkin`]: a tolerant parser for the subset of Gherkin CAMARA files use.
//! - [`env`]: the environment file describing the system under test.
//! - [`tokens`], [`inbox`], [`http`]: access tokens, reading sent codes, requests.
//! - [`schema`]: response checks against the OAS document.
//! - [`steps`]: the CAMARA step vocabulary.
//! - [`runner`] and [`report`]: running scenarios and reporting (console, JUnit XML, JSON).

pub mod env;
pub mod gherkin;
pub mod http;
pub mod inbox;
pub mod report;
pub mod runner;
pub mod schema;
pub mod steps;
pub mod tokens;

pub use gherkin::{load, parse, Feature, Scenario};
