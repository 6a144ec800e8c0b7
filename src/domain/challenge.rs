//! A live challenge and the one state transition that validation performs on it. Every store
//! backend applies [`Challenge::attempt`] atomically (under a lock, or in a Redis script that
//! mirrors it), so the rules live here once.

use super::code_hash::{hashes_match, CodeHash};

/// What the store keeps for one issued code. Never the code itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The authenticationId bytes.
    pub id: [u8; 16],
    /// The number it was sent to (E.164), for superseding and quotas.
    pub phone: String,
    /// HMAC of the code bound to the id.
    pub code_hash: CodeHash,
    /// Unix milliseconds after which the code is no longer accepted.
    pub expires_at_ms: u64,
    /// Wrong answers so far.
    pub failed_attempts: u32,
}

/// Result of presenting a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The code matched; the challenge is consumed.
    Valid,
    /// Wrong code; more attempts remain.
    Invalid,
    /// The attempt budget is spent (now or earlier); the id stays locked until it expires.
    Locked,
    /// Past its deadline, or no live challenge (used, superseded or expired).
    Expired,
}

impl Challenge {
    /// Applies one attempt. Expiry wins over a lock, and a locked id stays locked even for the
    /// right code: the spec's "maximum number of attempts was exceeded".
    pub fn attempt(
        &mut self,
        presented: &CodeHash,
        now_ms: u64,
        max_attempts: u32,
    ) -> AttemptOutcome {
        if now_ms >= self.expires_at_ms {
            return AttemptOutcome::Expired;
        }
        if self.failed_attempts >= max_attempts {
            return AttemptOutcome::Locked;
        }
        if hashes_match(&self.code_hash, presented) {
            return AttemptOutcome::Valid;
        }
        self.failed_attempts += 1;
        if self.failed_attempts >= max_attempts {
            AttemptOutcome::Locked
        } else {
            AttemptOutcome::Invalid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge() -> Challenge {
        Challenge {
            id: [0; 16],
            phone: "+34600000001".into(),
            code_hash: [1; 32],
            expires_at_ms: 10_000,
            failed_attempts: 0,
        }
    }

    #[test]
    fn right_code_before_deadline_is_valid() {
        assert_eq!(
            challenge().attempt(&[1; 32], 9_999, 3),
            AttemptOutcome::Valid
        );
    }

    #[test]
    fn the_max_th_wrong_attempt_locks_and_the_lock_holds_for_the_right_code() {
        let mut c = challenge();
        assert_eq!(c.attempt(&[2; 32], 0, 3), AttemptOutcome::Invalid);
        assert_eq!(c.attempt(&[2; 32], 0, 3), AttemptOutcome::Invalid);
        assert_eq!(c.attempt(&[2; 32], 0, 3), AttemptOutcome::Locked);
        assert_eq!(c.attempt(&[1; 32], 0, 3), AttemptOutcome::Locked);
        assert_eq!(c.failed_attempts, 3);
    }

    #[test]
    fn expiry_wins_over_everything() {
        let mut c = challenge();
        assert_eq!(c.attempt(&[1; 32], 10_000, 3), AttemptOutcome::Expired);
        c.failed_attempts = 3;
        assert_eq!(c.attempt(&[1; 32], 10_001, 3), AttemptOutcome::Expired);
    }

    #[test]
    fn a_single_attempt_budget_locks_on_the_first_wrong_code() {
        assert_eq!(challenge().attempt(&[2; 32], 0, 1), AttemptOutcome::Locked);
    }
}
