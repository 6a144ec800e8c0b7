//! SMS-pumping protection (`[policy.pumping]`, issue 13 item 3): a destination prefix whose
//! codes are sent but not validated cools down, conversions keep it open, the cool-down ends
//! on the gateway's (virtual) clock, the admin API lifts and pins, and with Redis every replica
//! counts into and judges by the same figures.

use std::time::Duration;

use awc::http::Method;
use otp_gateway::config::{PumpingSettings, Settings, StoreBackend};
use otp_gateway::domain::Secret;
use otp_gateway::store::redis::testkit::RedisServer;
use serde_json::Value;

use crate::helpers::*;
use crate::log_capture;

const ADMIN_TOKEN: &str = "admin-token-for-the-pumping-tests";
const COOLDOWN: Duration = Duration::from_secs(600);

/// 4 sends in an hour with fewer than half validated trip a 5-digit prefix for 10 minutes.
fn pumping(s: &mut Settings) {
    s.policy.pumping = Some(PumpingSettings {
        window: Duration::from_secs(3600),
        min_sends: 4,
        min_conversion: 0.5,
        cooldown: COOLDOWN,
        prefix_digits: 5,
        prefixes: Vec::new(),
        pinned_prefixes: vec!["+34699".into()],
    });
    s.admin.token = Some(Secret::new(ADMIN_TOKEN));
}

/// The `n`-th number of a prefix (`+34612` → `+34612000001`…).
fn number(prefix: &str, n: u32) -> String {
    format!("{prefix}{n:06}")
}

async fn admin(app: &TestApp, method: Method, path: &str, token: Option<&str>) -> Reply {
    let mut req = app
        .client
        .request(method, format!("{}/admin/v1/pumping{path}", app.admin));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut res = req.send().await.unwrap();
    let body = res.body().await.unwrap().to_vec();
    Reply {
        status: res.status(),
        headers: res.headers().clone(),
        body,
    }
}

async fn status(app: &TestApp) -> Value {
    let r = admin(app, Method::GET, "", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, 200);
    r.json()
}

/// Sends to `count` fresh numbers of `prefix` (from the `first`-th), validating the first
/// `validate` of them; every send must be accepted.
async fn traffic(app: &TestApp, prefix: &str, first: u32, count: u32, validate: u32) {
    for i in 0..count {
        let phone = number(prefix, first + i);
        let (id, code) = app.issue(&phone).await;
        if i < validate {
            assert_eq!(app.validate(&id, &code).await.status, 204);
        }
    }
}

fn refused(r: &Reply) {
    r.assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED");
}

#[actix_web::test]
async fn a_prefix_cools_down_after_enough_unconverted_sends_and_not_before() {
    log_capture::start();
    let app = spawn_app_with(pumping).await;
    // Three sends, none validated: below the volume that is judged.
    traffic(&app, "+34612", 1, 3, 0).await;
    // The fourth is still judged on three; after it the window holds 4 sent, 1 validated.
    traffic(&app, "+34612", 4, 1, 1).await;
    let r = app.send_code(&number("+34612", 5)).await;
    refused(&r);
    refused(&app.send_code(&number("+34612", 1)).await);
    assert!(app.sim.messages_for(&number("+34612", 5)).is_empty());
    // Other prefixes, and a pinned one, are untouched.
    assert_eq!(app.send_code(&number("+34613", 1)).await.status, 200);
    traffic(&app, "+34699", 1, 5, 0).await;

    assert_eq!(metric(&app, "otp_sms_pumping_blocked_total").await, 2.0);
    assert_eq!(metric(&app, "otp_sms_pumping_trips_total").await, 1.0);
    assert_eq!(metric(&app, "otp_sms_pumping_cooling_prefixes").await, 1.0);
    let s = status(&app).await;
    assert_eq!(s["coolingDown"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["coolingDown"][0]["prefix"], "+34612");
    assert_eq!(s["coolingDown"][0]["sent"], 4);
    assert_eq!(s["coolingDown"][0]["validated"], 1);
    assert_eq!(s["pinned"][0]["prefix"], "+34699");
    assert_eq!(s["pinned"][0]["source"], "config");

    let log = log_capture::text();
    let line = log
        .lines()
        .find(|l| l.contains("destination prefix cools down") && l.contains("+34612"))
        .unwrap_or_else(|| panic!("no decision line: {log}"));
    assert!(
        line.contains("sent=4") && line.contains("validated=1"),
        "{line}"
    );
    assert!(
        !log.contains(&number("+34612", 5)),
        "no full number in the log"
    );
}

#[actix_web::test]
async fn validated_codes_keep_a_prefix_open() {
    let app = spawn_app_with(pumping).await;
    // Exactly half validated is not below the threshold.
    traffic(&app, "+34620", 1, 6, 3).await;
    traffic(&app, "+34620", 7, 6, 6).await;
    assert_eq!(app.send_code(&number("+34620", 20)).await.status, 200);
    assert_eq!(metric(&app, "otp_sms_pumping_trips_total").await, 0.0);
    // A wrong code is no conversion.
    for i in 30..34 {
        let (id, code) = app.issue(&number("+34621", i)).await;
        app.validate(&id, &wrong_code(&code))
            .await
            .assert_error(400, "ONE_TIME_PASSWORD_SMS.INVALID_OTP");
    }
    refused(&app.send_code(&number("+34621", 40)).await);
}

#[actix_web::test]
async fn the_cool_down_ends_and_the_prefix_starts_with_an_empty_window() {
    let app = spawn_app_with(pumping).await;
    traffic(&app, "+34630", 1, 4, 0).await;
    refused(&app.send_code(&number("+34630", 5)).await);
    app.clock.advance(COOLDOWN - Duration::from_secs(1));
    refused(&app.send_code(&number("+34630", 5)).await);
    app.clock.advance(Duration::from_secs(2));
    // The window restarted: three more unconverted sends are below the judged volume again.
    traffic(&app, "+34630", 5, 4, 0).await;
    refused(&app.send_code(&number("+34630", 9)).await);
}

#[actix_web::test]
async fn the_admin_api_lists_lifts_and_pins_behind_the_admin_credential() {
    let app = spawn_app_with(pumping).await;
    assert_eq!(admin(&app, Method::GET, "", None).await.status, 401);
    assert_eq!(
        admin(
            &app,
            Method::DELETE,
            "/cooldowns/+34640",
            Some("wrong-token-0123456789")
        )
        .await
        .status,
        401
    );
    traffic(&app, "+34640", 1, 4, 0).await;
    refused(&app.send_code(&number("+34640", 5)).await);

    let r = admin(&app, Method::DELETE, "/cooldowns/+34640", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, 204);
    assert!(status(&app).await["coolingDown"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(app.send_code(&number("+34640", 5)).await.status, 200);
    admin(&app, Method::DELETE, "/cooldowns/+34640", Some(ADMIN_TOKEN))
        .await
        .assert_error(404, "NOT_FOUND");
    admin(&app, Method::DELETE, "/cooldowns/34640", Some(ADMIN_TOKEN))
        .await
        .assert_error(400, "INVALID_ARGUMENT");

    // A pinned prefix is never judged, however poor its conversion.
    let r = admin(&app, Method::PUT, "/pinned/+34641", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        admin(&app, Method::PUT, "/pinned/+34641", Some(ADMIN_TOKEN))
            .await
            .status,
        200
    );
    traffic(&app, "+34641", 1, 8, 0).await;
    let pinned = status(&app).await["pinned"].clone();
    assert!(
        pinned
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["prefix"] == "+34641" && p["source"] == "admin"),
        "{pinned}"
    );
    assert_eq!(
        admin(&app, Method::DELETE, "/pinned/+34641", Some(ADMIN_TOKEN))
            .await
            .status,
        204
    );
    // Unpinned, the same figures trip it (the window kept counting).
    refused(&app.send_code(&number("+34641", 9)).await);
    // Pinning ends a cool-down in progress.
    assert_eq!(
        admin(&app, Method::PUT, "/pinned/+34641", Some(ADMIN_TOKEN))
            .await
            .status,
        201
    );
    assert_eq!(app.send_code(&number("+34641", 9)).await.status, 200);
    admin(&app, Method::DELETE, "/pinned/+34699", Some(ADMIN_TOKEN))
        .await
        .assert_error(409, "CONFLICT");
}

#[actix_web::test]
async fn without_pumping_settings_the_admin_routes_answer_404() {
    let app = spawn_app().await;
    app.request(Method::GET, &format!("{}/admin/v1/pumping", app.admin))
        .await
        .assert_error(404, "NOT_FOUND");
}

#[actix_web::test]
async fn replicas_on_one_redis_share_the_counters_the_cool_down_and_its_lifting() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let setup = move |s: &mut Settings| {
        pumping(s);
        s.store.backend = StoreBackend::Redis;
        s.store.redis_url = Some(Secret::new(url.as_str()));
        s.store.redis_timeout = Duration::from_secs(2);
    };
    let a = spawn_app_with(setup.clone()).await;
    let b = spawn_app_with(setup).await;
    // Two codes sent by A and validated on B count as conversions: 4 sent, 2 validated.
    for i in 1..=2 {
        let (id, code) = a.issue(&number("+34650", i)).await;
        assert_eq!(b.validate(&id, &code).await.status, 204);
    }
    traffic(&b, "+34650", 3, 2, 0).await;
    // Judged on 4 sent, 2 validated: still open. Then 5 sent, 2 validated trips it.
    assert_eq!(a.send_code(&number("+34650", 5)).await.status, 200);
    refused(&b.send_code(&number("+34650", 6)).await);
    refused(&a.send_code(&number("+34650", 6)).await);
    let s = status(&a).await;
    assert_eq!(s["coolingDown"][0]["prefix"], "+34650", "{s}");
    assert_eq!(s["coolingDown"][0]["sent"], 5);
    assert_eq!(s["coolingDown"][0]["validated"], 2);

    // Lifted on B, open on A; pinned on A, pinned on B.
    assert_eq!(
        admin(&b, Method::DELETE, "/cooldowns/+34650", Some(ADMIN_TOKEN))
            .await
            .status,
        204
    );
    assert_eq!(a.send_code(&number("+34650", 6)).await.status, 200);
    assert_eq!(
        admin(&a, Method::PUT, "/pinned/+34650", Some(ADMIN_TOKEN))
            .await
            .status,
        201
    );
    traffic(&b, "+34650", 10, 6, 0).await;
    assert!(status(&b).await["pinned"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["prefix"] == "+34650"));
}
