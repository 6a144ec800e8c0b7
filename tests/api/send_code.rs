//! sendCode: every scenario of the official OTPValidation-send-code v1.1.0 file, plus the
//! cases it leaves out.

use serde_json::json;

use crate::helpers::*;

const PATH: &str = "/one-time-password-sms/v1/send-code";

/// @OTPvalidationAPI_01_send_code_success_scenario
#[actix_web::test]
async fn send_code_returns_200_with_an_authentication_id_after_the_smsc_accepted_the_sms() {
    let app = spawn_app().await;
    let r = app.send_code("+34600000001").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
    let body = r.json();
    let id = body["authenticationId"].as_str().unwrap();
    assert!(id.len() <= 36 && uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert_eq!(body.as_object().unwrap().len(), 1);
    let sms = app.sim.messages_for("+34600000001");
    assert_eq!(sms.len(), 1);
    let code = app.last_code("+34600000001");
    assert_eq!(code.len(), 6);
    assert_eq!(sms[0].text, MESSAGE.replace("{{code}}", &code));
    assert_eq!(app.sim.submit_count(), 1);
}

/// @OTPvalidationAPI_02_send_code_success_scenario_without_x-correlator
#[actix_web::test]
async fn send_code_without_x_correlator_succeeds_and_gets_a_generated_one() {
    let app = spawn_app().await;
    let auth = format!("Bearer {}", app.token);
    let body = json!({"phoneNumber": "+34600000002", "message": MESSAGE}).to_string();
    let r = app
        .post_raw(
            PATH,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(r.json()["authenticationId"].is_string());
    let generated = r.header("x-correlator").unwrap();
    assert!(uuid::Uuid::parse_str(&generated).is_ok());
}

/// @OTPvalidationAPI_400.1_send_code_no_request_body
#[actix_web::test]
async fn send_code_without_body_is_invalid_argument() {
    let app = spawn_app().await;
    let auth = format!("Bearer {}", app.token);
    let r = app
        .post_raw(
            PATH,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
                ("x-correlator", CORRELATOR),
            ],
            None,
        )
        .await;
    r.assert_error(400, "INVALID_ARGUMENT");
    assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
}

/// @OTPvalidationAPI_400.2_send_code_empty_request_body
#[actix_web::test]
async fn send_code_with_empty_object_is_invalid_argument() {
    let app = spawn_app().await;
    let r = app.post(PATH, &json!({})).await;
    r.assert_error(400, "INVALID_ARGUMENT");
    assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
}

/// @OTPvalidationAPI_400.4_send_code_incorrect_phone_number_request_body
#[actix_web::test]
async fn send_code_with_a_number_outside_the_pattern_is_invalid_argument() {
    let app = spawn_app().await;
    for bad in [
        "3301",
        "+0123456",
        "+1234",
        "+1234567890123456",
        "+34 600 000 001",
    ] {
        let r = app
            .post(PATH, &json!({"phoneNumber": bad, "message": MESSAGE}))
            .await;
        r.assert_error(400, "INVALID_ARGUMENT");
    }
    assert_eq!(app.sim.submit_count(), 0);
}

/// @OTPvalidationAPI_400.5_send_code_missing_message
#[actix_web::test]
async fn send_code_without_message_is_invalid_argument() {
    let app = spawn_app().await;
    for body in [
        json!({"phoneNumber": "+34600000003"}),
        json!({"phoneNumber": "+34600000003", "message": null}),
        json!({"phoneNumber": "+34600000003", "message": ""}),
        json!({"phoneNumber": "+34600000003", "message": 42}),
        json!({"message": MESSAGE}),
        json!({"phoneNumber": 34600000003u64, "message": MESSAGE}),
    ] {
        app.post(PATH, &body)
            .await
            .assert_error(400, "INVALID_ARGUMENT");
    }
}

/// @OTPvalidationAPI_400.6_send_code_missing_code_request_body
#[actix_web::test]
async fn send_code_with_a_message_lacking_the_placeholder_is_invalid_argument() {
    let app = spawn_app().await;
    let r = app
        .post(
            PATH,
            &json!({"phoneNumber": "+34600000004", "message": "message without code"}),
        )
        .await;
    r.assert_error(400, "INVALID_ARGUMENT");
    assert!(r.json()["message"].as_str().unwrap().contains("{{code}}"));
}

/// @OTPvalidationAPI_400.7_send_code_message_too_long
#[actix_web::test]
async fn send_code_with_a_message_over_160_characters_is_invalid_argument() {
    let app = spawn_app().await;
    let long = format!("{}{{{{code}}}}", "x".repeat(153));
    assert_eq!(long.chars().count(), 161);
    app.post(
        PATH,
        &json!({"phoneNumber": "+34600000005", "message": long}),
    )
    .await
    .assert_error(400, "INVALID_ARGUMENT");
    let exact = format!("{}{{{{code}}}}", "x".repeat(152));
    let r = app
        .post(
            PATH,
            &json!({"phoneNumber": "+34600000005", "message": exact}),
        )
        .await;
    assert_eq!(r.status, 200);
}

/// @OTPvalidationAPI_401.1_send_code_no_authorization_header
#[actix_web::test]
async fn send_code_without_authorization_is_unauthenticated() {
    let app = spawn_app().await;
    let body = json!({"phoneNumber": "+34600000006", "message": MESSAGE}).to_string();
    let r = app
        .post_raw(
            PATH,
            &[
                ("Content-Type", "application/json"),
                ("x-correlator", CORRELATOR),
            ],
            Some(&body),
        )
        .await;
    r.assert_error(401, "UNAUTHENTICATED");
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
    assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
}

/// @OTPvalidationAPI_401.2_send_code_expired_access_token
#[actix_web::test]
async fn send_code_with_an_expired_token_is_unauthenticated() {
    let mut app = spawn_app().await;
    app.token = app.token_with(app.claims(SCOPE, -30));
    let r = app.send_code("+34600000007").await;
    r.assert_error(401, "UNAUTHENTICATED");
    assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
}

/// @OTPvalidationAPI_401.3_send_code_invalid_access_token
#[actix_web::test]
async fn send_code_with_an_invalid_token_is_unauthenticated() {
    let mut app = spawn_app().await;
    let good = app.token.clone();
    let (head, rest) = good.split_once('.').unwrap();
    let forged_claims = format!("{head}.{}", rest.replacen('e', "f", 1));
    for token in ["not-a-jwt", "a.b.c", forged_claims.as_str(), ""] {
        app.token = token.to_string();
        app.send_code("+34600000008")
            .await
            .assert_error(401, "UNAUTHENTICATED");
    }
    // alg "none" and HS256 are refused whatever the payload says.
    let payload = good.split('.').nth(1).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for alg in ["none", "HS256", "RS256"] {
        let header = b64.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        app.token = format!("{header}.{payload}.");
        app.send_code("+34600000008")
            .await
            .assert_error(401, "UNAUTHENTICATED");
    }
    // Right key, wrong issuer or audience.
    let mut claims = app.claims(SCOPE, 600);
    claims["iss"] = json!("https://evil.example");
    app.token = app.token_with(claims);
    app.send_code("+34600000008")
        .await
        .assert_error(401, "UNAUTHENTICATED");
    let mut claims = app.claims(SCOPE, 600);
    claims["aud"] = json!("another-api");
    app.token = app.token_with(claims);
    app.send_code("+34600000008")
        .await
        .assert_error(401, "UNAUTHENTICATED");
    // A token from another issuer instance (another key).
    let other = spawn_app().await;
    app.token = other.token.clone();
    app.send_code("+34600000008")
        .await
        .assert_error(401, "UNAUTHENTICATED");
    assert_eq!(app.sim.submit_count(), 0);
}

#[actix_web::test]
async fn send_code_with_a_token_lacking_the_scope_is_permission_denied() {
    let mut app = spawn_app().await;
    app.token = app.token_with(app.claims("openid other:scope", 600));
    let r = app.send_code("+34600000009").await;
    r.assert_error(403, "PERMISSION_DENIED");
    assert_eq!(app.sim.submit_count(), 0);
}

/// @OTPvalidationAPI_03_send_code_max_otp_code
#[actix_web::test]
async fn send_code_beyond_the_per_number_quota_is_max_otp_codes_exceeded() {
    let app = spawn_app().await;
    for _ in 0..5 {
        assert_eq!(app.send_code("+34600000010").await.status, 200);
    }
    let r = app.send_code("+34600000010").await;
    r.assert_error(403, "ONE_TIME_PASSWORD_SMS.MAX_OTP_CODES_EXCEEDED");
    assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
    assert_eq!(app.sim.messages_for("+34600000010").len(), 5);
    assert_eq!(app.send_code("+34600000011").await.status, 200);
    app.clock.advance(std::time::Duration::from_secs(600));
    assert_eq!(app.send_code("+34600000010").await.status, 200);
}

/// @OTPvalidationAPI_04_send_code_phone_number_not_allowed
#[actix_web::test]
async fn send_code_to_a_number_that_cannot_receive_sms_is_not_allowed() {
    let app = spawn_app().await;
    app.send_code(CANNOT_RECEIVE_SMS)
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED");
    assert_eq!(app.sim.submit_count(), 0);
}

/// @OTPvalidationAPI_05_send_code_phone_number_not_allowed_3
#[actix_web::test]
async fn send_code_to_a_landline_is_not_allowed() {
    let app = spawn_app().await;
    app.send_code(LANDLINE)
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED");
}

/// @OTPvalidationAPI_06_send_code_phone_number_blocked
#[actix_web::test]
async fn send_code_to_a_barred_number_is_blocked() {
    let app = spawn_app().await;
    app.send_code(BARRED)
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED");
    assert_eq!(app.sim.submit_count(), 0);
}

/// @OTPvalidationAPI_404.1_send_code_phone_number_not_belong_to_operator
#[actix_web::test]
async fn send_code_to_another_operators_number_is_not_found() {
    let app = spawn_app().await;
    let r = app.send_code(OTHER_OPERATOR).await;
    r.assert_error(404, "NOT_FOUND");
    assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
}

#[actix_web::test]
async fn send_code_ignores_unknown_properties() {
    let app = spawn_app().await;
    let r = app
        .post(
            PATH,
            &json!({"phoneNumber": "+34600000012", "message": MESSAGE, "extra": {"x": 1}}),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[actix_web::test]
async fn unicode_and_long_templates_arrive_intact_through_ucs2_and_concatenation() {
    let app = spawn_app().await;
    let greek = "Ο κωδικός σας είναι {{code}} — μην τον μοιραστείτε 🙂";
    let r = app
        .post(
            PATH,
            &json!({"phoneNumber": "+34600000013", "message": greek}),
        )
        .await;
    assert_eq!(r.status, 200);
    let text = &app.sim.messages_for("+34600000013")[0].text;
    assert!(
        text.starts_with("Ο κωδικός σας είναι ") && text.ends_with("🙂"),
        "{text}"
    );
    // 139 template characters, but 167 septets once rendered (each € is an escape pair): 2 segments.
    let tail = format!("{}{}", "a".repeat(100), "€".repeat(30));
    let long = format!("{{{{code}}}} {tail}");
    let r = app
        .post(
            PATH,
            &json!({"phoneNumber": "+34600000014", "message": long}),
        )
        .await;
    assert_eq!(r.status, 200);
    let text = &app.sim.messages_for("+34600000014")[0].text;
    assert!(text.ends_with(&tail), "{text}");
    assert!(app.sim.submit_count() >= 3);
}

#[actix_web::test]
async fn smsc_rejection_is_503_and_leaves_nothing_behind() {
    let app = spawn_app().await;
    app.sim
        .set_behaviour(otp_gateway::smsc_sim::SimBehaviour::Reject {
            command_status: 0x08,
        });
    for _ in 0..6 {
        let r = app.send_code("+34600000015").await;
        r.assert_error(503, "UNAVAILABLE");
        assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
    }
    app.sim
        .set_behaviour(otp_gateway::smsc_sim::SimBehaviour::Accept);
    // The failed sends did not use up the number's quota.
    for _ in 0..5 {
        assert_eq!(app.send_code("+34600000015").await.status, 200);
    }
}

#[actix_web::test]
async fn smsc_destination_rejection_is_phone_number_not_allowed() {
    let app = spawn_app().await;
    app.sim
        .set_behaviour(otp_gateway::smsc_sim::SimBehaviour::Reject {
            command_status: 0x0B,
        });
    app.send_code("+34600000016")
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED");
}

#[actix_web::test]
async fn silent_smsc_is_504_within_the_deadline() {
    let app =
        spawn_app_with(|s| s.smpp.session.submit_timeout = std::time::Duration::from_millis(400))
            .await;
    app.sim
        .set_behaviour(otp_gateway::smsc_sim::SimBehaviour::Ignore);
    let started = std::time::Instant::now();
    let r = app.send_code("+34600000017").await;
    r.assert_error(504, "TIMEOUT");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn stopped_smsc_is_503_not_a_hang_and_the_session_comes_back() {
    let app = spawn_app_with(|s| {
        s.smpp.session.reconnect_min = std::time::Duration::from_millis(50);
        s.smpp.session.reconnect_max = std::time::Duration::from_millis(200);
    })
    .await;
    app.sim.disconnect_all();
    // Right after the drop: a 200 if it re-bound already, an honest 503 when no session was
    // there (then the SMSC has nothing), or a 504 when the drop caught the submit in flight
    // (the outcome is unknown, so at most one SMS).
    let r = app.send_code("+34600000018").await;
    let delivered = app.sim.messages_for("+34600000018").len();
    match r.status.as_u16() {
        200 => assert_eq!(delivered, 1),
        503 => assert_eq!(delivered, 0),
        504 => assert!(delivered <= 1),
        other => panic!("unexpected {other}"),
    }
    let mut ok = false;
    for _ in 0..40 {
        if app.send_code("+34600000019").await.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "the gateway did not re-bind");
}

#[actix_web::test]
async fn a_client_over_its_rate_limit_gets_429_with_retry_after() {
    let app = spawn_app_with(|s| {
        s.auth.clients = vec![otp_gateway::config::ClientEntry {
            id: "demo".into(),
            secret: "demo-secret".into(),
            scopes: vec![SCOPE.into()],
            token_ttl: None,
            rate_limit: Some(3),
            ..Default::default()
        }]
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = app.send_code(&format!("+3460000003{i}")).await;
        if r.status == 429 {
            r.assert_error(429, "TOO_MANY_REQUESTS");
            assert_eq!(r.header("retry-after").as_deref(), Some("1"));
            assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
        }
        statuses.push(r.status.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 3,
        "{statuses:?}"
    );
    // Only accepted requests reached the SMSC.
    let ok = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert_eq!(app.sim.submit_count(), ok);
}

#[actix_web::test]
async fn operator_statuses_follow_smpp_status_map() {
    let app = spawn_app_with(|s| {
        s.smpp.simulator.prefix_errors = "+3469=0x0400,+3468=0x0401,+3467=0x0402".parse().unwrap();
        use otp_gateway::smpp::StatusAction;
        s.smpp
            .session
            .status_map
            .insert(0x0400, StatusAction::Blocked);
        s.smpp
            .session
            .status_map
            .insert(1025, StatusAction::NotAllowed);
    })
    .await;
    app.send_code("+34690000001")
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED");
    app.send_code("+34680000001")
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED");
    // An unmapped operator status is a service problem, not the number's.
    app.send_code("+34670000001")
        .await
        .assert_error(503, "UNAVAILABLE");
    assert_eq!(app.send_code("+34600000020").await.status, 200);
}

#[actix_web::test]
async fn smsc_throttling_past_the_deadline_is_503() {
    let app = spawn_app_with(|s| {
        s.smpp.simulator.throttle_tps = 1;
        s.smpp.session.submit_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    assert_eq!(app.send_code("+34600000021").await.status, 200);
    let started = std::time::Instant::now();
    app.send_code("+34600000022")
        .await
        .assert_error(503, "UNAVAILABLE");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}
