//! The OTP rules: issue a code for a number (policy, quota, superseding, delivery), and check
//! a presented code (ownership, expiry, attempts, single use). No HTTP, SMPP or Redis here:
//! delivery goes through [`SmsSender`] and state through [`ChallengeStore`].

mod clock;
mod code;
mod events;
mod port;

use std::sync::Arc;
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

pub use clock::{Clock, ManualClock, SystemClock};
pub use code::{generate, generate_from, CodeAlphabet, CodeHasher};
pub use port::{DeliveryError, SandboxPort, SandboxRoute, Sent, SmsSender};

use crate::audit::Audit;
use crate::domain::{
    AttemptOutcome, AuthenticationId, Challenge, ChallengeId, ClientTag, CodeAttempt, IdKey,
    MessageTemplate, PhoneNumber, StoreBucket,
};
use crate::metrics::Metrics;
use crate::policy::{
    GuardRefusal, Guards, NumberPolicy, PolicyViolation, QuotaError, QuotaTicket, TenantProfile,
    TenantQuotas, TenantRefusal, Tenants,
};
use crate::store::{ChallengeStore, Discard, InsertError, SendQuotas, Store, StoreError};
use crate::usage::Usage;

const TARGET: &str = "otp_gateway::otp";

/// Outcomes the API maps to CAMARA errors (one variant per distinct answer).
#[derive(Debug, thiserror::Error)]
pub enum OtpError {
    /// The number is outside the operator's ranges.
    #[error("number not served by this operator")]
    NotOperatorNumber,
    /// The number cannot receive SMS.
    #[error("number cannot receive SMS")]
    PhoneNotAllowed,
    /// The number has SMS barring.
    #[error("number has SMS barring")]
    PhoneBlocked,
    /// Too many codes for this number in the window: from this client, or from all clients
    /// together.
    #[error("too many codes for this number")]
    TooManyCodes,
    /// The id was never issued to this client, or is past retention.
    #[error("unknown authenticationId")]
    UnknownId,
    /// Used, superseded or expired.
    #[error("authenticationId no longer valid")]
    Expired,
    /// Wrong code, attempts remain.
    #[error("wrong code")]
    InvalidCode,
    /// Attempts exhausted.
    #[error("attempts exhausted")]
    Locked,
    /// Delivery failed; nothing was left behind.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// Store backend failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The system random generator failed.
    #[error("random generator failure")]
    Random,
    /// The number is outside the client's allowed destinations (its tenant profile).
    #[error("destination not allowed for this client")]
    DestinationNotAllowed,
    /// The template is not one the client may send (its tenant profile).
    #[error("message template not allowed for this client")]
    TemplateNotAllowed,
    /// The client's daily or monthly quota is spent.
    #[error("the client's {period} quota is spent")]
    QuotaExceeded {
        /// `daily` or `monthly`.
        period: &'static str,
        /// Seconds until the period ends.
        retry_after_secs: u64,
    },
    /// The destination's prefix cools down after suspected SMS pumping (answered as
    /// [`OtpError::PhoneNotAllowed`]).
    #[error("destination prefix cooling down")]
    PumpingCooldown,
    /// The number lookup failed and `policy.lookup.on_failure = "closed"`.
    #[error(transparent)]
    Lookup(crate::policy::lookup::LookupUnavailable),
}

impl From<TenantRefusal> for OtpError {
    fn from(r: TenantRefusal) -> OtpError {
        match r {
            TenantRefusal::DestinationNotAllowed => OtpError::DestinationNotAllowed,
            TenantRefusal::TemplateNotAllowed => OtpError::TemplateNotAllowed,
        }
    }
}

impl From<QuotaError> for OtpError {
    fn from(e: QuotaError) -> OtpError {
        match e {
            QuotaError::Spent {
                period,
                retry_after_secs,
            } => OtpError::QuotaExceeded {
                period,
                retry_after_secs,
            },
            QuotaError::Store(e) => OtpError::Store(e),
        }
    }
}

impl From<GuardRefusal> for OtpError {
    fn from(r: GuardRefusal) -> OtpError {
        match r {
            GuardRefusal::Violation(PolicyViolation::NotOperatorNumber) => {
                OtpError::NotOperatorNumber
            }
            GuardRefusal::Violation(PolicyViolation::NotAllowed) => OtpError::PhoneNotAllowed,
            GuardRefusal::Violation(PolicyViolation::Blocked) => OtpError::PhoneBlocked,
            GuardRefusal::Pumping => OtpError::PumpingCooldown,
            GuardRefusal::Unavailable(e) => OtpError::Lookup(e),
        }
    }
}

/// The configurable rules.
#[derive(Debug, Clone)]
pub struct OtpRules {
    /// Digits per code.
    pub code_length: usize,
    /// Code lifetime.
    pub ttl: Duration,
    /// Wrong answers before lock.
    pub max_attempts: u32,
    /// Send limits per (client, number) and per number across all clients.
    pub quotas: SendQuotas,
    /// How long an issued id still answers VERIFICATION_EXPIRED instead of 404.
    pub id_retention: Duration,
}

/// Issues and checks codes.
pub struct OtpService {
    store: Store,
    sender: Arc<dyn SmsSender>,
    policy: NumberPolicy,
    rules: OtpRules,
    hasher: CodeHasher,
    id_key: IdKey,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
    metrics: Metrics,
    tenants: Tenants,
    quotas: TenantQuotas,
    guards: Guards,
    sandbox: Option<Arc<dyn SandboxPort>>,
    usage: Usage,
    audit: Audit,
}

impl OtpService {
    /// Wires the rules to their collaborators. `secret` is the gateway's hash key.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        sender: Arc<dyn SmsSender>,
        policy: NumberPolicy,
        rules: OtpRules,
        secret: &[u8],
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> OtpService {
        OtpService {
            store,
            sender,
            policy,
            hasher: CodeHasher::derive(secret),
            id_key: IdKey::derive(secret),
            clock,
            rng: SystemRandom::new(),
            metrics,
            tenants: Tenants::uniform(TenantProfile::uniform(
                rules.code_length,
                rules.ttl,
                rules.max_attempts,
            )),
            quotas: TenantQuotas::default(),
            guards: Guards::default(),
            sandbox: None,
            usage: Usage::default(),
            audit: Audit::default(),
            rules,
        }
    }

    /// Applies per-client tenant profiles and their quota counters (see `policy::tenant`).
    pub fn with_tenants(mut self, tenants: Tenants, quotas: TenantQuotas) -> OtpService {
        self.tenants = tenants;
        self.quotas = quotas;
        self
    }

    async fn refund_quota(&self, client_id: &str, ticket: QuotaTicket) {
        if let Err(e) = self.quotas.refund(client_id, ticket).await {
            tracing::error!(target: TARGET, error = %e, "could not refund the client's quota");
        }
    }

    /// The same service with the lookup hook and pumping protection of `guards`.
    pub fn with_guards(mut self, guards: Guards) -> OtpService {
        self.guards = guards;
        self
    }

    /// Sends of sandbox clients go to `sandbox`, never to the SMSC.
    pub fn with_sandbox(mut self, sandbox: Arc<dyn SandboxPort>) -> OtpService {
        self.sandbox = Some(sandbox);
        self
    }

    /// Counts outcomes in `usage` and records them as audit events in `audit`.
    pub fn with_reports(mut self, usage: Usage, audit: Audit) -> OtpService {
        self.usage = usage;
        self.audit = audit;
        self
    }

    /// Sends a fresh code to `phone` and returns its id once the SMSC has accepted the SMS.
    #[tracing::instrument(name = "send_code", skip_all, fields(client_id = %client_id, phone = %phone))]
    pub async fn send_code(
        &self,
        client_id: &str,
        phone: &PhoneNumber,
        template: &MessageTemplate,
    ) -> Result<AuthenticationId, OtpError> {
        let sandbox = self
            .sandbox
            .as_ref()
            .and_then(|s| s.route(client_id, phone));
        let in_sandbox = sandbox.is_some();
        let magic = sandbox
            .as_ref()
            .is_some_and(|r| !matches!(r.magic, Ok(None)));
        let result = self.send(client_id, phone, template, sandbox).await;
        self.report_send(client_id, phone, in_sandbox, magic, &result);
        result.map(|(id, _)| id)
    }

    async fn send(
        &self,
        client_id: &str,
        phone: &PhoneNumber,
        template: &MessageTemplate,
        sandbox: Option<SandboxRoute>,
    ) -> Result<(AuthenticationId, Sent), OtpError> {
        let (fixed, sender) = match sandbox {
            Some(route) => (route.magic?, Some(route.sender)),
            None => (None, None),
        };
        // A magic number answers the sandbox client as configured, whatever the policy says.
        if fixed.is_none() {
            self.policy.check(phone).map_err(|v| match v {
                PolicyViolation::NotOperatorNumber => OtpError::NotOperatorNumber,
                PolicyViolation::NotAllowed => OtpError::PhoneNotAllowed,
                PolicyViolation::Blocked => OtpError::PhoneBlocked,
            })?;
        }
        let tenant = self.tenants.of(client_id);
        if fixed.is_none() {
            tenant.admit(phone, template)?;
        }
        // Lookup and pumping protection are about real SMS: a sandbox send is neither.
        if sender.is_none() {
            self.guards.before_send(phone).await?;
        }
        let now_ms = self.clock.now_ms();
        let mut random = [0u8; 8];
        self.rng.fill(&mut random).map_err(|_| OtpError::Random)?;
        let id = AuthenticationId::mint_in_bucket(
            &self.id_key,
            client_id,
            now_ms / 1000,
            u64::from_be_bytes(random),
            StoreBucket::of(phone),
        );
        let code = match fixed {
            Some(code) => code,
            None => generate_from(&self.rng, tenant.code_length, tenant.alphabet)
                .map_err(|_| OtpError::Random)?,
        };
        let ttl_ms = u64::try_from(tenant.ttl.as_millis()).unwrap_or(u64::MAX);
        let key = ChallengeId::from(&id);
        let client = ClientTag::of(client_id);
        let challenge = Challenge {
            id: key,
            phone: phone.clone(),
            code_hash: self.hasher.hash(&id, code.expose()),
            expires_at_ms: now_ms.saturating_add(ttl_ms),
            failed_attempts: 0,
        };
        let ticket = self.quotas.take(client_id, &tenant.quota, now_ms).await?;
        let inserted = self
            .store
            .insert_pending(challenge, client, self.rules.quotas, now_ms)
            .await;
        if inserted.is_err() {
            self.refund_quota(client_id, ticket).await;
        }
        match inserted {
            Ok(()) => {}
            Err(InsertError::QuotaExceeded) => return Err(OtpError::TooManyCodes),
            Err(InsertError::NumberCapExceeded) => {
                // The same answer as the client's own quota, but a sign of SMS bombing through
                // several clients that the operator wants to see.
                tracing::warn!(target: TARGET, "number reached its cap across all clients");
                return Err(OtpError::TooManyCodes);
            }
            Err(InsertError::Store(e)) => return Err(e.into()),
        }
        let text = tenant.render(template, &code);
        drop(code);
        let tag = id.to_string();
        // A sandbox client's channel is the sandbox, never the SMSC.
        let in_sandbox = sender.is_some();
        let channel = sender.as_deref().unwrap_or(&*self.sender);
        let sent = channel
            .send_from(phone, text, tenant.ttl, &tag, tenant.sender())
            .await;
        match sent {
            Ok(sent) => {
                self.store
                    .activate(key, client, phone, self.clock.now_ms())
                    .await?;
                self.metrics.codes_sent.inc();
                self.metrics.segments_sent.inc_by(sent.segments as u64);
                if !in_sandbox {
                    self.guards.sent(&id, phone).await;
                }
                Ok((id, sent))
            }
            Err(e) => {
                // The client gets no id, so the challenge must not outlive this request. The
                // quota is refunded only when the SMSC definitely holds nothing: after an
                // unknown outcome the SMS may still arrive, and it counts like any other.
                let how = match &e {
                    DeliveryError::OutcomeUnknown(_) => Discard::KeepCounted,
                    DeliveryError::Unavailable(_)
                    | DeliveryError::DestinationRejected(_)
                    | DeliveryError::DestinationBlocked(_) => Discard::Refund,
                };
                if let Err(store) = self
                    .store
                    .discard(key, client, phone, how, self.clock.now_ms())
                    .await
                {
                    tracing::error!(target: TARGET, %id, error = %store, "could not discard challenge");
                }
                if how == Discard::Refund {
                    self.refund_quota(client_id, ticket).await;
                }
                let reason = match &e {
                    DeliveryError::Unavailable(_) => "smsc_unavailable",
                    DeliveryError::OutcomeUnknown(_) => "smsc_timeout",
                    DeliveryError::DestinationRejected(_) => "destination_rejected",
                    DeliveryError::DestinationBlocked(_) => "destination_blocked",
                };
                self.metrics
                    .send_failures
                    .with_label_values(&[reason])
                    .inc();
                // The cause chain is logged once, where the API answers 5xx.
                tracing::warn!(target: TARGET, %id, reason, "SMS not accepted");
                Err(e.into())
            }
        }
    }

    /// Checks a presented code.
    #[tracing::instrument(name = "validate_code", skip_all, fields(client_id = %client_id))]
    pub async fn validate_code(
        &self,
        client_id: &str,
        authentication_id: &str,
        code: &CodeAttempt,
    ) -> Result<(), OtpError> {
        let result = self.check(client_id, authentication_id, code).await;
        let outcome = match &result {
            Ok(()) => "valid",
            Err(OtpError::UnknownId) => "unknown_id",
            Err(OtpError::Expired) => "expired",
            Err(OtpError::InvalidCode) => "invalid_code",
            Err(OtpError::Locked) => "locked",
            Err(_) => "error",
        };
        self.metrics.validations.with_label_values(&[outcome]).inc();
        // Usage counts and the audit trail of a verification (who, which id, what came of
        // it); never the code.
        self.report_validation(client_id, authentication_id, outcome, &result);
        result
    }

    async fn check(
        &self,
        client_id: &str,
        authentication_id: &str,
        code: &CodeAttempt,
    ) -> Result<(), OtpError> {
        let id = AuthenticationId::verify(&self.id_key, client_id, authentication_id)
            .ok_or(OtpError::UnknownId)?;
        let now_ms = self.clock.now_ms();
        let retention = self.rules.id_retention.as_secs();
        if now_ms / 1000 > id.issued_at().saturating_add(retention) {
            return Err(OtpError::UnknownId);
        }
        let tenant = self.tenants.of(client_id);
        let presented = self.hasher.hash(&id, &tenant.normalise(code.expose()));
        match self
            .store
            .attempt(
                ChallengeId::from(&id),
                presented,
                now_ms,
                tenant.max_attempts,
            )
            .await?
        {
            AttemptOutcome::Valid => {
                self.guards.validated(&id).await;
                Ok(())
            }
            AttemptOutcome::Invalid => Err(OtpError::InvalidCode),
            AttemptOutcome::Locked => Err(OtpError::Locked),
            AttemptOutcome::Expired => Err(OtpError::Expired),
        }
    }

    /// True when the store answers.
    pub async fn store_ready(&self) -> bool {
        self.store.ping().await.is_ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
