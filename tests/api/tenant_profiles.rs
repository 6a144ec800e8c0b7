//! Tenant profiles (`[auth.clients.tenant]`) through HTTP: a client's allowed destinations and
//! templates, its sender id as the SMSC sees it, its code length and alphabet, its TTL and
//! attempts, its daily quota (also shared by two gateways on one Redis) and its WebOTP line.

use std::time::Duration;

use otp_gateway::config::{ClientEntry, Settings, StoreBackend, TenantSettings};
use otp_gateway::domain::Secret;
use otp_gateway::otp::Clock;
use otp_gateway::smsc_sim::SimBehaviour;
use otp_gateway::store::redis::testkit::RedisServer;
use serde_json::json;

use crate::helpers::*;

const SHOP_TEMPLATE: &str = "{{code}} is your Shop code";

/// `demo` (whose token the harness fetches) and `shop` with the given profile.
fn with_shop(tenant: TenantSettings) -> impl Fn(&mut Settings) + Clone {
    move |s: &mut Settings| {
        s.auth.clients = ["demo", "shop"]
            .iter()
            .map(|id| ClientEntry {
                id: (*id).into(),
                secret: format!("{id}-secret").into(),
                scopes: vec![SCOPE.into()],
                tenant: if *id == "shop" {
                    tenant.clone()
                } else {
                    TenantSettings::default()
                },
                ..Default::default()
            })
            .collect();
    }
}

/// An app with `shop`'s profile, and a token for `shop`.
async fn shop_app(tenant: TenantSettings) -> (TestApp, String) {
    let app = spawn_app_with(with_shop(tenant)).await;
    let token = app.fetch_token("shop", "shop-secret").await;
    (app, token)
}

async fn send_as(app: &TestApp, token: &str, phone: &str, message: &str) -> Reply {
    post_as(
        app,
        token,
        "/one-time-password-sms/v1/send-code",
        json!({"phoneNumber": phone, "message": message}),
    )
    .await
}

async fn validate_as(app: &TestApp, token: &str, id: &str, code: &str) -> Reply {
    post_as(
        app,
        token,
        "/one-time-password-sms/v1/validate-code",
        json!({"authenticationId": id, "code": code}),
    )
    .await
}

/// Sends `SHOP_TEMPLATE` as `shop`; the id and the SMS text the handset got.
async fn issue_as(app: &TestApp, token: &str, phone: &str) -> (String, String) {
    let r = send_as(app, token, phone, SHOP_TEMPLATE).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["authenticationId"].as_str().unwrap().to_string();
    let text = app.sim.messages_for(phone)[0].text.clone();
    (id, text)
}

fn first_word(text: &str) -> String {
    text.split_whitespace().next().unwrap().to_string()
}

#[actix_web::test]
async fn a_number_outside_the_clients_prefixes_is_403_phone_number_not_allowed() {
    let (app, shop) = shop_app(TenantSettings {
        allowed_prefixes: vec!["+3460".into()],
        ..Default::default()
    })
    .await;
    let r = send_as(&app, &shop, "+447700900123", SHOP_TEMPLATE).await;
    r.assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED");
    assert!(
        r.json()["message"].as_str().unwrap().contains("client"),
        "the message says it is this client's restriction: {}",
        r.json()
    );
    let r = send_as(&app, &shop, "+34700000001", SHOP_TEMPLATE).await;
    r.assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED");
    assert_eq!(app.sim.submit_count(), 0, "nothing reached the SMSC");
    assert_eq!(
        send_as(&app, &shop, "+34600000001", SHOP_TEMPLATE)
            .await
            .status,
        200
    );
    // Another client without a profile is not restricted by shop's.
    assert_eq!(app.send_code("+447700900123").await.status, 200);
}

#[actix_web::test]
async fn a_template_the_client_may_not_send_is_403_permission_denied() {
    let (app, shop) = shop_app(TenantSettings {
        templates: vec![
            SHOP_TEMPLATE.into(),
            "Shop: {{code}} is your login code*".into(),
        ],
        ..Default::default()
    })
    .await;
    let phishing = "Your bank account is locked, call +1 555 0100 and read them {{code}}";
    let r = send_as(&app, &shop, "+34600000002", phishing).await;
    r.assert_error(403, "PERMISSION_DENIED");
    assert!(
        r.json()["message"].as_str().unwrap().contains("template"),
        "{}",
        r.json()
    );
    assert!(
        r.header("www-authenticate").is_none(),
        "not a scope problem: no insufficient_scope challenge"
    );
    // The wildcard takes a suffix, but not a second code.
    let r = send_as(
        &app,
        &shop,
        "+34600000002",
        "Shop: {{code}} is your login code. Tell it to our agent: {{code}}",
    )
    .await;
    r.assert_error(403, "PERMISSION_DENIED");
    assert_eq!(app.sim.submit_count(), 0);
    for allowed in [
        SHOP_TEMPLATE,
        "Shop: {{code}} is your login code. Never share it.",
    ] {
        let r = send_as(&app, &shop, "+34600000002", allowed).await;
        assert_eq!(r.status, 200, "{allowed}");
    }
}

#[actix_web::test]
async fn an_alphanumeric_code_is_delivered_and_validates_in_either_case() {
    let (app, shop) = shop_app(TenantSettings {
        code_length: Some(8),
        code_alphabet: Some(otp_gateway::otp::CodeAlphabet::Alphanumeric),
        ..Default::default()
    })
    .await;
    let (id, text) = issue_as(&app, &shop, "+34600000003").await;
    let code = first_word(&text);
    assert_eq!(code.len(), 8, "{text}");
    assert!(
        code.bytes()
            .all(|b| b"23456789ABCDEFGHJKMNPQRSTUVWXYZ".contains(&b)),
        "{code}"
    );
    let wrong: String = code
        .chars()
        .map(|c| if c == '2' { '3' } else { '2' })
        .collect();
    validate_as(&app, &shop, &id, &wrong)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.INVALID_OTP");
    assert_eq!(
        validate_as(&app, &shop, &id, &code.to_ascii_lowercase())
            .await
            .status,
        204
    );
    // The default client still gets six digits.
    let (_, demo_code) = app.issue("+34600000004").await;
    assert!(demo_code.len() == 6 && demo_code.bytes().all(|b| b.is_ascii_digit()));
}

#[actix_web::test]
async fn the_tenant_ttl_and_max_attempts_replace_the_otp_rules() {
    // [otp] has ttl 300s and max_attempts 3; shop has 60s and 5.
    let (app, shop) = shop_app(TenantSettings {
        ttl: Some(Duration::from_secs(60)),
        max_attempts: Some(5),
        ..Default::default()
    })
    .await;
    let (id, text) = issue_as(&app, &shop, "+34600000005").await;
    let code = first_word(&text);
    for _ in 0..4 {
        validate_as(&app, &shop, &id, &wrong_code(&code))
            .await
            .assert_error(400, "ONE_TIME_PASSWORD_SMS.INVALID_OTP");
    }
    validate_as(&app, &shop, &id, &wrong_code(&code))
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_FAILED");

    let (id, text) = issue_as(&app, &shop, "+34600000006").await;
    app.clock.advance(Duration::from_secs(61));
    validate_as(&app, &shop, &id, &first_word(&text))
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED");
    // The [otp] rules still hold for a client without a profile.
    let (id, code) = app.issue("+34600000007").await;
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(app.validate(&id, &code).await.status, 204);
}

/// Seconds from the app's clock to the next 00:00 UTC.
fn to_midnight(app: &TestApp) -> u64 {
    let now = app.clock.now_ms();
    (now / 86_400_000 + 1) * 86_400_000 - now
}

#[actix_web::test]
async fn a_spent_daily_quota_is_429_quota_exceeded_with_retry_after_until_utc_midnight() {
    let (app, shop) = shop_app(TenantSettings {
        daily_quota: Some(2),
        ..Default::default()
    })
    .await;
    // Sends the SMSC refused (it holds nothing) are given back.
    app.sim.set_behaviour(SimBehaviour::Reject {
        command_status: 0x08,
    });
    for i in 0..3 {
        send_as(&app, &shop, &format!("+3460000001{i}"), SHOP_TEMPLATE)
            .await
            .assert_error(503, "UNAVAILABLE");
    }
    app.sim.set_behaviour(SimBehaviour::Accept);
    for i in 0..2 {
        let r = send_as(&app, &shop, &format!("+3460000002{i}"), SHOP_TEMPLATE).await;
        assert_eq!(r.status, 200);
    }
    let r = send_as(&app, &shop, "+34600000029", SHOP_TEMPLATE).await;
    r.assert_error(429, "QUOTA_EXCEEDED");
    assert!(r.json()["message"].as_str().unwrap().contains("daily"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    let expected = to_midnight(&app).div_ceil(1000);
    assert!(
        (1..=86_400).contains(&retry) && retry.abs_diff(expected) <= 1,
        "{retry} vs {expected}"
    );
    // Other clients are not affected; the next UTC day has a fresh quota.
    assert_eq!(app.send_code("+34600000030").await.status, 200);
    app.clock
        .advance(Duration::from_millis(to_midnight(&app) + 1000));
    assert_eq!(
        send_as(&app, &shop, "+34600000031", SHOP_TEMPLATE)
            .await
            .status,
        200
    );
}

#[actix_web::test]
async fn two_gateways_on_one_redis_count_one_daily_quota() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let shop = with_shop(TenantSettings {
        daily_quota: Some(3),
        ..Default::default()
    });
    let setup = move |s: &mut Settings| {
        shop(s);
        s.store.backend = StoreBackend::Redis;
        s.store.redis_url = Some(Secret::new(url.as_str()));
        s.store.redis_timeout = Duration::from_secs(2);
    };
    let a = spawn_app_with(setup.clone()).await;
    let b = spawn_app_with(setup).await;
    let (ta, tb) = (
        a.fetch_token("shop", "shop-secret").await,
        b.fetch_token("shop", "shop-secret").await,
    );
    for (i, (app, token)) in [(&a, &ta), (&b, &tb), (&a, &ta)].into_iter().enumerate() {
        let r = send_as(app, token, &format!("+3460000004{i}"), SHOP_TEMPLATE).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    // Apart, each gateway would allow 3; together they allow 3.
    let r = send_as(&b, &tb, "+34600000049", SHOP_TEMPLATE).await;
    r.assert_error(429, "QUOTA_EXCEEDED");
    assert!(r.header("retry-after").is_some());
    send_as(&a, &ta, "+34600000049", SHOP_TEMPLATE)
        .await
        .assert_error(429, "QUOTA_EXCEEDED");
}

#[actix_web::test]
async fn the_clients_sender_id_reaches_the_smsc_with_its_ton() {
    let (app, shop) = shop_app(TenantSettings {
        sender_id: Some("ShopApp".into()),
        ..Default::default()
    })
    .await;
    issue_as(&app, &shop, "+34600000050").await;
    assert_eq!(
        app.sim.messages_for("+34600000050")[0].source,
        ("ShopApp".to_string(), 5),
        "alphanumeric: TON 5"
    );
    app.issue("+34600000051").await;
    assert_eq!(
        app.sim.messages_for("+34600000051")[0].source,
        ("OTPGateway".to_string(), 5),
        "a client without a sender id keeps the route's"
    );

    let (app, shop) = shop_app(TenantSettings {
        sender_id: Some("+447700900123".into()),
        ..Default::default()
    })
    .await;
    issue_as(&app, &shop, "+34600000052").await;
    assert_eq!(
        app.sim.messages_for("+34600000052")[0].source,
        ("447700900123".to_string(), 1),
        "an E.164 number: TON 1 (international), sent without +"
    );
}

#[actix_web::test]
async fn the_webotp_line_is_the_last_line_of_the_delivered_sms() {
    let (app, shop) = shop_app(TenantSettings {
        webotp_origin: Some("login.shop.example".into()),
        ..Default::default()
    })
    .await;
    let (id, text) = issue_as(&app, &shop, "+34600000060").await;
    let code = first_word(&text);
    assert_eq!(
        text,
        format!("{code} is your Shop code\n@login.shop.example #{code}")
    );
    assert_eq!(validate_as(&app, &shop, &id, &code).await.status, 204);
    let (_, demo_code) = app.issue("+34600000061").await;
    assert!(!app.sim.messages_for("+34600000061")[0]
        .text
        .contains(&format!("#{demo_code}")));
}

#[actix_web::test]
async fn a_client_over_its_rate_gets_429_too_many_requests_with_retry_after() {
    let app = spawn_app_with(|s| {
        with_shop(TenantSettings {
            daily_quota: Some(100),
            ..Default::default()
        })(s);
        s.auth.clients[1].rate_limit = Some(2);
    })
    .await;
    let shop = app.fetch_token("shop", "shop-secret").await;
    let mut throttled = None;
    for i in 0..6 {
        let r = send_as(&app, &shop, &format!("+3460000007{i}"), SHOP_TEMPLATE).await;
        if r.status == 429 {
            throttled = Some(r);
            break;
        }
    }
    let r = throttled.expect("a 429 within 6 sends at 2 per second");
    r.assert_error(429, "TOO_MANY_REQUESTS");
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
}
