//! camara-conformance: executes CAMARA Gherkin test definitions (the official One Time Password
//! SMS v1.1.0 and v1.1.1 files and the Commonalities files unmodified, or our own) against any
//! implementation's base URL.
//!
//! # Layout
//! - [`gherkin`]: feature files through the `gherkin` crate, after a pre-pass repairing the
//!   official files' upstream quirks; outlines expanded.
//! - [`plan`]: adapting Commonalities files (Background, tag placeholders, which apply).
//! - [`env`]: the environment file describing the system under test.
//! - [`tokens`], [`inbox`], [`http`]: access tokens, reading sent codes, requests.
//! - [`schema`]: response checks against the OAS document.
//! - [`generate`]: values that comply (or do not) with a schema of the OAS document.
//! - [`steps`]: the CAMARA step vocabulary.
//! - [`runner`] and [`report`]: running scenarios and reporting (console, JUnit XML, JSON).

pub mod env;
pub mod generate;
pub mod gherkin;
pub mod http;
pub mod inbox;
pub mod plan;
pub mod report;
pub mod runner;
pub mod schema;
pub mod steps;
pub mod tokens;

pub use gherkin::{load, parse, Feature, Scenario, Step};
