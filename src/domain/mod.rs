//! Validated domain types. Each is built by a `parse` that rejects what the CAMARA schema
//! rejects, so code below the API layer never handles raw strings for these. Also the state of
//! a live challenge and its one transition, which both the OTP rules and every store backend
//! need: keeping them here lets `store` and `otp` depend on `domain` without depending on each
//! other. This module imports nothing from `otp` or `store`.

mod authentication_id;
mod challenge;
mod code_hash;
mod phone_number;
mod secret;
mod sender_id;
mod template;

#[cfg(test)]
pub(crate) use authentication_id::with_bucket_bits;
pub use authentication_id::{AuthenticationId, IdKey};
pub use challenge::{
    attempt_rules, AttemptOutcome, Challenge, ChallengeId, ClientTag, StoreBucket,
};
pub use code_hash::{hashes_match, short as short_code_hash, CodeHash, ShortCodeHash};
pub use phone_number::{mask_digits, PhoneNumber};
pub use secret::Secret;
pub use sender_id::{SenderId, SenderKind, MAX_ALPHANUMERIC_SENDER};
pub use template::{
    CodeAttempt, MessageTemplate, OtpCode, MAX_CODE_CHARS, MAX_TEMPLATE_CHARS, PLACEHOLDER,
};
