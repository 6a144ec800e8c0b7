//! The rules with virtual time. The SMS channel here is a test double that records texts in
//! memory (the real SMPP path is covered by the integration tests against the simulator).

use std::sync::Mutex;

use super::*;
use crate::store::{MemoryStore, SendQuota};
use futures::future::BoxFuture;

#[derive(Default)]
struct RecordingSender {
    texts: Mutex<Vec<String>>,
    fail: Mutex<Option<fn() -> DeliveryError>>,
}

impl SmsSender for RecordingSender {
    fn send(
        &self,
        _to: &PhoneNumber,
        text: String,
        _validity: Duration,
        _authentication_id: &str,
    ) -> BoxFuture<'_, Result<Sent, DeliveryError>> {
        Box::pin(async move {
            if let Some(f) = *self.fail.lock().unwrap() {
                return Err(f());
            }
            self.texts.lock().unwrap().push(text);
            Ok(Sent {
                segments: 1,
                route: "test".into(),
            })
        })
    }
}

struct Fixture {
    svc: OtpService,
    sender: Arc<RecordingSender>,
    clock: ManualClock,
}

fn fixture(policy: NumberPolicy) -> Fixture {
    let sender = Arc::new(RecordingSender::default());
    let clock = ManualClock::new();
    let rules = OtpRules {
        code_length: 6,
        ttl: Duration::from_secs(300),
        max_attempts: 3,
        quotas: SendQuotas {
            per_client: SendQuota {
                max: 5,
                window: Duration::from_secs(600),
            },
            all_clients: SendQuota {
                max: 10,
                window: Duration::from_secs(600),
            },
        },
        id_retention: Duration::from_secs(3600),
    };
    let svc = OtpService::new(
        Store::Memory(MemoryStore::new(10_000, Duration::from_secs(600))),
        Arc::<RecordingSender>::clone(&sender),
        policy,
        rules,
        &[9u8; 32],
        Arc::new(clock.clone()),
        Metrics::new().unwrap(),
    );
    Fixture { svc, sender, clock }
}

fn phone(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s).unwrap()
}

fn template() -> MessageTemplate {
    MessageTemplate::parse("Your code is {{code}}").unwrap()
}

impl Fixture {
    async fn send(&self, p: &str) -> (String, CodeAttempt) {
        let id = self
            .svc
            .send_code("app", &phone(p), &template())
            .await
            .unwrap();
        let text = self.sender.texts.lock().unwrap().last().cloned().unwrap();
        let code = text.trim_start_matches("Your code is ").to_string();
        (id.to_string(), CodeAttempt::parse(&code).unwrap())
    }

    async fn validate(&self, id: &str, code: &CodeAttempt) -> Result<(), OtpError> {
        self.svc.validate_code("app", id, code).await
    }
}

fn wrong(code: &CodeAttempt) -> CodeAttempt {
    let flipped: String = code
        .expose()
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    CodeAttempt::parse(&flipped).unwrap()
}

#[tokio::test]
async fn right_code_validates_once_then_answers_expired() {
    let f = fixture(NumberPolicy::default());
    let (id, code) = f.send("+34600000001").await;
    assert_eq!(code.expose().len(), 6);
    f.validate(&id, &code).await.unwrap();
    assert!(matches!(
        f.validate(&id, &code).await,
        Err(OtpError::Expired)
    ));
}

#[tokio::test]
async fn code_expires_after_ttl_in_virtual_time() {
    let f = fixture(NumberPolicy::default());
    let (id, code) = f.send("+34600000002").await;
    f.clock.advance(Duration::from_secs(299));
    let (id2, code2) = f.send("+34600000003").await;
    f.clock.advance(Duration::from_secs(1));
    assert!(matches!(
        f.validate(&id, &code).await,
        Err(OtpError::Expired)
    ));
    f.validate(&id2, &code2).await.unwrap();
}

#[tokio::test]
async fn max_th_wrong_attempt_answers_locked_and_the_lock_holds() {
    let f = fixture(NumberPolicy::default());
    let (id, code) = f.send("+34600000004").await;
    assert!(matches!(
        f.validate(&id, &wrong(&code)).await,
        Err(OtpError::InvalidCode)
    ));
    assert!(matches!(
        f.validate(&id, &wrong(&code)).await,
        Err(OtpError::InvalidCode)
    ));
    assert!(matches!(
        f.validate(&id, &wrong(&code)).await,
        Err(OtpError::Locked)
    ));
    assert!(matches!(
        f.validate(&id, &code).await,
        Err(OtpError::Locked)
    ));
    f.clock.advance(Duration::from_secs(301));
    assert!(matches!(
        f.validate(&id, &code).await,
        Err(OtpError::Expired)
    ));
}

#[tokio::test]
async fn a_newer_code_supersedes_the_older_one() {
    let f = fixture(NumberPolicy::default());
    let (id1, code1) = f.send("+34600000005").await;
    let (id2, code2) = f.send("+34600000005").await;
    assert!(matches!(
        f.validate(&id1, &code1).await,
        Err(OtpError::Expired)
    ));
    f.validate(&id2, &code2).await.unwrap();
}

#[tokio::test]
async fn unknown_foreign_and_retired_ids_are_unknown() {
    let f = fixture(NumberPolicy::default());
    let (id, code) = f.send("+34600000006").await;
    let any = CodeAttempt::parse("123456").unwrap();
    for bogus in ["ea0840f3-3663-4149-bd10-c7c6b8912105", "x", ""] {
        assert!(matches!(
            f.validate(bogus, &any).await,
            Err(OtpError::UnknownId)
        ));
    }
    assert!(matches!(
        f.svc.validate_code("other-app", &id, &code).await,
        Err(OtpError::UnknownId)
    ));
    f.clock.advance(Duration::from_secs(3601));
    assert!(matches!(
        f.validate(&id, &code).await,
        Err(OtpError::UnknownId)
    ));
}

#[tokio::test]
async fn quota_counts_accepted_sends_per_number() {
    let f = fixture(NumberPolicy::default());
    for _ in 0..5 {
        f.send("+34600000007").await;
    }
    let sixth = f
        .svc
        .send_code("app", &phone("+34600000007"), &template())
        .await;
    assert!(matches!(sixth, Err(OtpError::TooManyCodes)));
    f.send("+34600000008").await;
    f.clock.advance(Duration::from_secs(600));
    f.send("+34600000007").await;
}

#[tokio::test]
async fn failed_delivery_leaves_no_challenge_and_no_quota_behind() {
    let f = fixture(NumberPolicy::default());
    let (old_id, old_code) = f.send("+34600000009").await;
    // A definite refusal: the SMSC holds nothing (an unknown outcome keeps the quota spent,
    // see below).
    *f.sender.fail.lock().unwrap() = Some(|| DeliveryError::Unavailable("no bound session".into()));
    for _ in 0..6 {
        let r = f
            .svc
            .send_code("app", &phone("+34600000009"), &template())
            .await;
        assert!(matches!(
            r,
            Err(OtpError::Delivery(DeliveryError::Unavailable(_)))
        ));
    }
    *f.sender.fail.lock().unwrap() = None;
    // The earlier code is still the live one, and the failures did not use up the quota.
    f.validate(&old_id, &old_code).await.unwrap();
    for _ in 0..4 {
        f.send("+34600000009").await;
    }
}

#[tokio::test]
async fn policy_rejections_send_nothing() {
    let f = fixture(
        NumberPolicy::new(&crate::config::PolicySettings {
            operator_prefixes: vec!["+34".into()],
            not_allowed_prefixes: vec!["+349".into()],
            blocked_numbers: vec![PhoneNumber::parse("+34611111111").unwrap()],
            ..crate::config::PolicySettings::default()
        })
        .unwrap(),
    );
    let t = template();
    let r = |p: &'static str| {
        let svc = &f.svc;
        let t = t.clone();
        async move { svc.send_code("app", &phone(p), &t).await }
    };
    assert!(matches!(
        r("+4915112345678").await,
        Err(OtpError::NotOperatorNumber)
    ));
    assert!(matches!(
        r("+34911111111").await,
        Err(OtpError::PhoneNotAllowed)
    ));
    assert!(matches!(
        r("+34611111111").await,
        Err(OtpError::PhoneBlocked)
    ));
    assert!(f.sender.texts.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unknown_outcome_leaves_no_challenge_but_keeps_the_quota_spent() {
    let f = fixture(NumberPolicy::default());
    let (old_id, old_code) = f.send("+34600000010").await;
    *f.sender.fail.lock().unwrap() =
        Some(|| DeliveryError::OutcomeUnknown("no submit_sm_resp".into()));
    for _ in 0..4 {
        let r = f
            .svc
            .send_code("app", &phone("+34600000010"), &template())
            .await;
        assert!(matches!(
            r,
            Err(OtpError::Delivery(DeliveryError::OutcomeUnknown(_)))
        ));
    }
    *f.sender.fail.lock().unwrap() = None;
    // The earlier code is still the live one; the four unknown outcomes used up the quota.
    f.validate(&old_id, &old_code).await.unwrap();
    let sixth = f
        .svc
        .send_code("app", &phone("+34600000010"), &template())
        .await;
    assert!(matches!(sixth, Err(OtpError::TooManyCodes)));
}

#[tokio::test]
async fn superseding_and_the_quota_belong_to_one_client_and_the_cap_to_all() {
    let f = fixture(NumberPolicy::default());
    let p = "+34600000011";
    let (a_id, a_code) = f.send(p).await;
    for _ in 0..5 {
        f.svc
            .send_code("other-app", &phone(p), &template())
            .await
            .unwrap();
    }
    assert!(matches!(
        f.svc.send_code("other-app", &phone(p), &template()).await,
        Err(OtpError::TooManyCodes)
    ));
    // Another client's five sends neither superseded nor starved this client's code.
    f.validate(&a_id, &a_code).await.unwrap();
    for _ in 0..4 {
        f.send(p).await;
    }
    // 5 + 5 sends: the cap of 10 across clients binds a third client at once.
    assert!(matches!(
        f.svc.send_code("third-app", &phone(p), &template()).await,
        Err(OtpError::TooManyCodes)
    ));
}
