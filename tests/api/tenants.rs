//! Several clients sending to one number: superseding and the CAMARA max-codes rule belong to
//! one (client, number), the operator-wide cap protects the subscriber across all clients; a
//! send whose outcome is unknown (504) keeps its quota spent; and a store at its capacity
//! refuses a new code before sending it rather than acknowledging one it cannot keep.

use std::time::Duration;

use otp_gateway::config::{ClientEntry, Settings};
use serde_json::json;

use crate::helpers::*;

fn client(id: &str) -> ClientEntry {
    ClientEntry {
        id: id.into(),
        secret: format!("{id}-secret").into(),
        scopes: vec![SCOPE.into()],
        token_ttl: None,
        rate_limit: None,
        ..Default::default()
    }
}

/// An app with the clients `ids` (and `demo`, whose token the harness fetches), and a token for
/// each of `ids`, in the same order.
async fn app_with_clients(
    ids: &[&str],
    customise: impl FnOnce(&mut Settings),
) -> (TestApp, Vec<String>) {
    let clients = ["demo"].iter().chain(ids).map(|id| client(id)).collect();
    let app = spawn_app_with(|s| {
        s.auth.clients = clients;
        customise(s);
    })
    .await;
    let mut tokens = Vec::new();
    for id in ids {
        tokens.push(app.fetch_token(id, &format!("{id}-secret")).await);
    }
    (app, tokens)
}

async fn send_as(app: &TestApp, token: &str, phone: &str) -> Reply {
    post_as(
        app,
        token,
        "/one-time-password-sms/v1/send-code",
        &json!({"phoneNumber": phone, "message": MESSAGE}),
    )
    .await
}

async fn validate_as(app: &TestApp, token: &str, id: &str, code: &str) -> Reply {
    post_as(
        app,
        token,
        "/one-time-password-sms/v1/validate-code",
        &json!({"authenticationId": id, "code": code}),
    )
    .await
}

/// Sends as `token` and reads the code back from the simulator.
async fn issue_as(app: &TestApp, token: &str, phone: &str) -> (String, String) {
    let r = send_as(app, token, phone).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["authenticationId"].as_str().unwrap().to_string();
    (id, app.last_code(phone))
}

#[actix_web::test]
async fn a_clients_code_survives_another_clients_sends_to_the_same_number() {
    let (app, t) = app_with_clients(&["app-a", "app-b"], |_| {}).await;
    let phone = "+34600000201";
    let (a_id, a_code) = issue_as(&app, &t[0], phone).await;
    let (b1_id, b1_code) = issue_as(&app, &t[1], phone).await;
    let (b2_id, b2_code) = issue_as(&app, &t[1], phone).await;
    // B's own newer code still supersedes B's older one...
    validate_as(&app, &t[1], &b1_id, &b1_code)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED");
    // ...but not A's.
    assert_eq!(validate_as(&app, &t[0], &a_id, &a_code).await.status, 204);
    assert_eq!(validate_as(&app, &t[1], &b2_id, &b2_code).await.status, 204);
}

#[actix_web::test]
async fn another_client_cannot_use_up_a_clients_quota_for_a_number() {
    let (app, t) = app_with_clients(&["app-a", "app-b"], |_| {}).await;
    let phone = "+34600000202";
    for _ in 0..5 {
        assert_eq!(send_as(&app, &t[1], phone).await.status, 200);
    }
    send_as(&app, &t[1], phone)
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.MAX_OTP_CODES_EXCEEDED");
    // A's budget for the number is its own.
    let (a_id, a_code) = issue_as(&app, &t[0], phone).await;
    assert_eq!(validate_as(&app, &t[0], &a_id, &a_code).await.status, 204);
}

#[actix_web::test]
async fn the_all_clients_cap_stops_a_flood_through_several_clients() {
    let (app, t) = app_with_clients(&["app-a", "app-b", "app-c"], |_| {}).await;
    let phone = "+34600000203";
    // Defaults: 5 per client, 10 per number across all clients, both in 10 minutes.
    for token in &t[..2] {
        for _ in 0..5 {
            assert_eq!(send_as(&app, token, phone).await.status, 200);
        }
    }
    let r = send_as(&app, &t[2], phone).await;
    r.assert_error(403, "ONE_TIME_PASSWORD_SMS.MAX_OTP_CODES_EXCEEDED");
    assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
    assert_eq!(app.sim.messages_for(phone).len(), 10);
    // Another number is not affected, and the cap's window slides like the per-client one.
    assert_eq!(send_as(&app, &t[2], "+34600000204").await.status, 200);
    app.clock.advance(Duration::from_secs(600));
    assert_eq!(send_as(&app, &t[2], phone).await.status, 200);
}

#[actix_web::test]
async fn the_all_clients_cap_is_configurable_and_binds_before_a_clients_own_quota() {
    let (app, t) = app_with_clients(&["app-a", "app-b"], |s| {
        s.otp.max_codes_per_number = 3;
        s.otp.max_codes_per_number_all_clients = Some(4);
        s.otp.max_codes_window_all_clients = Duration::from_secs(3600);
    })
    .await;
    let phone = "+34600000205";
    for _ in 0..3 {
        assert_eq!(send_as(&app, &t[0], phone).await.status, 200);
    }
    assert_eq!(send_as(&app, &t[1], phone).await.status, 200);
    // B has sent one of its three, but the number has had its four.
    send_as(&app, &t[1], phone)
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.MAX_OTP_CODES_EXCEEDED");
    // Past the per-client window, not yet past the all-clients one.
    app.clock.advance(Duration::from_secs(600));
    send_as(&app, &t[0], phone)
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.MAX_OTP_CODES_EXCEEDED");
    app.clock.advance(Duration::from_secs(3000));
    assert_eq!(send_as(&app, &t[0], phone).await.status, 200);
}

#[actix_web::test]
async fn a_504_keeps_the_quota_spent_because_the_sms_may_still_arrive() {
    let app = spawn_app_with(|s| {
        s.otp.max_codes_per_number = 2;
        s.smpp.simulator.response_delay = Duration::from_millis(600);
        s.smpp.session.submit_timeout = Duration::from_millis(250);
    })
    .await;
    let phone = "+34600000206";
    for _ in 0..2 {
        app.send_code(phone).await.assert_error(504, "TIMEOUT");
    }
    // Both may still be delivered: the number has had its two codes.
    app.send_code(phone)
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.MAX_OTP_CODES_EXCEEDED");
}

#[actix_web::test]
async fn a_full_store_answers_503_before_sending_and_every_acknowledged_code_validates() {
    const CAPACITY: usize = 100;
    let app = spawn_app_with(|s| s.store.max_challenges = CAPACITY as u64).await;
    let mut issued = Vec::new();
    for i in 0..CAPACITY {
        let phone = format!("+3461{i:07}");
        let (id, code) = app.issue(&phone).await;
        issued.push((phone, id, code));
    }
    let submits = app.sim.submit_count();
    let full = "+34629999999";
    app.send_code(full).await.assert_error(503, "UNAVAILABLE");
    assert_eq!(app.sim.submit_count(), submits, "an SMS went out for a 503");
    assert!(app.sim.messages_for(full).is_empty());
    for (phone, id, code) in &issued {
        let r = app.validate(id, code).await;
        assert_eq!(
            r.status,
            204,
            "{phone}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // Validated codes free their places; the refused send did not spend the number's quota.
    let (id, code) = app.issue(full).await;
    assert_eq!(app.validate(&id, &code).await.status, 204);
}
