//! The number-policy steps beyond the static lists, each optional: the lookup hook (HLR /
//! number portability) and SMS-pumping protection. The OTP rules call [`Guards`] at three
//! points: before a send, once the SMSC accepted it, and when a code validates.

use std::sync::Arc;

use super::lookup::{LookupUnavailable, LookupVerdict, NumberLookup};
use super::pumping::PumpingGuard;
use super::PolicyViolation;
use crate::domain::{AuthenticationId, PhoneNumber};

/// Why a guard refused a send.
#[derive(Debug, thiserror::Error)]
pub enum GuardRefusal {
    /// The lookup refused the number.
    #[error("number refused by policy: {0:?}")]
    Violation(PolicyViolation),
    /// The destination's prefix is cooling down after SMS pumping was suspected; answered as
    /// a number that cannot receive SMS, told apart for the audit trail.
    #[error("destination prefix cooling down (suspected SMS pumping)")]
    Pumping,
    /// The lookup failed and fails closed.
    #[error(transparent)]
    Unavailable(#[from] LookupUnavailable),
}

/// The configured guards; the default has none.
#[derive(Clone, Default)]
pub struct Guards {
    /// `[policy.lookup]`.
    pub lookup: Option<Arc<NumberLookup>>,
    /// `[policy.pumping]`.
    pub pumping: Option<Arc<PumpingGuard>>,
}

impl Guards {
    /// After the static checks: the lookup (cached), then the destination's pumping state.
    pub async fn before_send(&self, phone: &PhoneNumber) -> Result<(), GuardRefusal> {
        if let Some(lookup) = &self.lookup {
            let violation = match lookup.check(phone).await? {
                LookupVerdict::Serve => None,
                LookupVerdict::NotAllowed => Some(PolicyViolation::NotAllowed),
                LookupVerdict::Blocked => Some(PolicyViolation::Blocked),
                LookupVerdict::OtherOperator => Some(PolicyViolation::NotOperatorNumber),
            };
            if let Some(v) = violation {
                return Err(GuardRefusal::Violation(v));
            }
        }
        if let Some(pumping) = &self.pumping {
            if !pumping.allows(phone).await {
                return Err(GuardRefusal::Pumping);
            }
        }
        Ok(())
    }

    /// The SMSC accepted the code's SMS.
    pub async fn sent(&self, id: &AuthenticationId, phone: &PhoneNumber) {
        if let Some(pumping) = &self.pumping {
            pumping.sent(&id.to_string(), phone).await;
        }
    }

    /// The code of `id` validated.
    pub async fn validated(&self, id: &AuthenticationId) {
        if let Some(pumping) = &self.pumping {
            pumping.validated(&id.to_string()).await;
        }
    }
}

impl Guards {
    /// The guards `[policy.lookup]` and `[policy.pumping]` ask for, their metrics registered;
    /// with `redis` (the Redis store) the pumping counters are shared by every replica.
    pub(crate) fn build(
        settings: &crate::config::PolicySettings,
        code_ttl: std::time::Duration,
        clock: Arc<dyn crate::otp::Clock>,
        metrics: &crate::metrics::Metrics,
        redis: Option<&crate::store::RedisStore>,
    ) -> Result<Guards, String> {
        let lookup = match &settings.lookup {
            None => None,
            Some(s) => {
                let m = super::lookup::LookupMetrics::new().map_err(|e| e.to_string())?;
                m.register(metrics).map_err(|e| e.to_string())?;
                Some(Arc::new(
                    NumberLookup::new(s, m).map_err(|e| format!("policy.lookup: {e}"))?,
                ))
            }
        };
        let pumping = match &settings.pumping {
            None => None,
            Some(s) => {
                let m = super::pumping::PumpingMetrics::new().map_err(|e| e.to_string())?;
                m.register(metrics).map_err(|e| e.to_string())?;
                let guard = PumpingGuard::new(s, code_ttl, clock, m);
                Some(Arc::new(match redis {
                    Some(r) => guard.shared(r),
                    None => guard,
                }))
            }
        };
        Ok(Guards { lookup, pumping })
    }
}
