//! Validated domain types. Each is built by a `parse` that rejects what the CAMARA schema
//! rejects, so code below the API layer never handles raw strings for these.

mod authentication_id;
mod phone_number;
mod template;

pub use authentication_id::{AuthenticationId, IdKey};
pub use phone_number::PhoneNumber;
pub use template::{CodeAttempt, MessageTemplate, OtpCode};
