//! The operator's number policy: which numbers this gateway serves, which cannot receive SMS,
//! which are barred. Prefix lists are digit tries ([`PrefixSet`]), so a numbering plan of
//! 100,000 ranges costs a request no more than one of three; barred numbers come from the
//! configuration, a reloaded file and the admin API ([`Barring`]).

mod barring;
mod guards;
pub mod lookup;
mod prefixes;
pub mod pumping;
mod quota;
mod rate;
mod tenant;

use std::sync::Arc;

pub use barring::{read_file as read_barring_file, BarSource, Barring};
pub use guards::{GuardRefusal, Guards};
pub use prefixes::PrefixSet;
pub use quota::{Quota, QuotaError, QuotaTicket, TenantQuotas};
pub use rate::ClientRateLimiter;
pub use tenant::{TenantProfile, TenantRefusal, Tenants};

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
    operator_prefixes: Arc<PrefixSet>,
    not_allowed_prefixes: Arc<PrefixSet>,
    barring: Arc<Barring>,
}

impl NumberPolicy {
    /// Builds the policy from validated settings; reads the barring file, which must parse.
    pub fn new(s: &PolicySettings) -> Result<NumberPolicy, String> {
        Ok(NumberPolicy {
            operator_prefixes: Arc::new(PrefixSet::new(
                s.operator_prefixes.iter().map(String::as_str),
            )),
            not_allowed_prefixes: Arc::new(PrefixSet::new(
                s.not_allowed_prefixes.iter().map(String::as_str),
            )),
            barring: Arc::new(Barring::new(
                &s.blocked_numbers,
                s.blocked_numbers_file.as_deref(),
            )?),
        })
    }

    /// The barred numbers, for the admin API and the file watcher.
    pub fn barring(&self) -> &Arc<Barring> {
        &self.barring
    }

    /// Ok when the number may receive a code.
    pub fn check(&self, phone: &PhoneNumber) -> Result<(), PolicyViolation> {
        let n = phone.as_e164();
        if !self.operator_prefixes.is_empty() && !self.operator_prefixes.matches(n) {
            return Err(PolicyViolation::NotOperatorNumber);
        }
        if self.not_allowed_prefixes.matches(n) {
            return Err(PolicyViolation::NotAllowed);
        }
        if self.barring.is_barred(phone) {
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
            ..PolicySettings::default()
        })
        .unwrap();
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
