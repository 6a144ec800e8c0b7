//! The operator's number policy: which numbers this gateway serves, which cannot receive SMS,
//! which are barred. A minimal prefix/list engine, enough for the CAMARA scenarios.

mod rate;

use std::collections::HashSet;

pub use rate::ClientRateLimiter;

use crate::config::PolicySettings;
use crate::domain::PhoneNumber;

/// Why a number may not receive a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyViolation {
    /// Not in the operator's ranges (CAMARA 404 NOT_FOUND).
    NotOperatorNumber,
    /// Landline or otherwise unable to receive SMS (403 PHONE_NUMBER_NOT_ALLOWED).
    NotAllowed,
    /// Active SMS barring (403 PHONE_NUMBER_BLOCKED).
    Blocked,
}

/// Prefix and list checks, applied in the order CAMARA-NOTES §7 gives.
#[derive(Debug, Clone, Default)]
pub struct NumberPolicy {
    operator_prefixes: Vec<String>,
    not_allowed_prefixes: Vec<String>,
    blocked: HashSet<String>,
}

impl NumberPolicy {
    /// Builds the policy from validated settings.
    pub fn new(s: &PolicySettings) -> NumberPolicy {
        NumberPolicy {
            operator_prefixes: s.operator_prefixes.clone(),
            not_allowed_prefixes: s.not_allowed_prefixes.clone(),
            blocked: s
                .blocked_numbers
                .iter()
                .map(|n| n.as_e164().to_owned())
                .collect(),
        }
    }

    /// Ok when the number may receive a code.
    pub fn check(&self, phone: &PhoneNumber) -> Result<(), PolicyViolation> {
        let n = phone.as_e164();
        if !self.operator_prefixes.is_empty()
            && !self
                .operator_prefixes
                .iter()
                .any(|p| n.starts_with(p.as_str()))
        {
            return Err(PolicyViolation::NotOperatorNumber);
        }
        if self
            .not_allowed_prefixes
            .iter()
            .any(|p| n.starts_with(p.as_str()))
        {
            return Err(PolicyViolation::NotAllowed);
        }
        if self.blocked.contains(n) {
            return Err(PolicyViolation::Blocked);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn checks_run_in_order_operator_then_not_allowed_then_blocked() {
        let p = NumberPolicy::new(&PolicySettings {
            operator_prefixes: vec!["+346".into()],
            not_allowed_prefixes: vec!["+3469".into()],
            blocked_numbers: vec![
                PhoneNumber::parse("+34611111111").unwrap(),
                PhoneNumber::parse("+4911111111").unwrap(),
            ],
        });
        let n = |s: &str| PhoneNumber::parse(s).unwrap();
        assert_eq!(p.check(&n("+34600000001")), Ok(()));
        assert_eq!(
            p.check(&n("+4911111111")),
            Err(PolicyViolation::NotOperatorNumber)
        );
        assert_eq!(
            p.check(&n("+34690000000")),
            Err(PolicyViolation::NotAllowed)
        );
        assert_eq!(p.check(&n("+34611111111")), Err(PolicyViolation::Blocked));
        assert_eq!(NumberPolicy::default().check(&n("+4911111111")), Ok(()));
    }
}
