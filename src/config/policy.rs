//! `[policy]`: the operator's number ranges and barred numbers.

use serde::Deserialize;

use crate::de;
use crate::domain::PhoneNumber;

/// `[policy]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// E.164 prefixes served by this operator; others get 404. Empty: every number.
    #[serde(deserialize_with = "de::prefixes")]
    pub operator_prefixes: Vec<String>,
    /// Prefixes that cannot receive SMS (landlines, data-only ranges): 403 PHONE_NUMBER_NOT_ALLOWED.
    #[serde(deserialize_with = "de::prefixes")]
    pub not_allowed_prefixes: Vec<String>,
    /// Numbers with SMS barring: 403 PHONE_NUMBER_BLOCKED.
    pub blocked_numbers: Vec<PhoneNumber>,
}
