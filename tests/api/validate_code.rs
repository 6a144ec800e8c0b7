//! validateCode: every scenario of the official OTPValidation-validate-code v1.1.0 file, plus
//! the cases it leaves out.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

const PATH: &str = "/one-time-password-sms/v1/validate-code";

/// @OTPvalidationAPI_01_validate_code_sucess_scenario
#[actix_web::test]
async fn validate_code_with_the_code_from_the_sms_is_204() {
    let app = spawn_app().await;
    let (id, code) = app.issue("+34600000101").await;
    let r = app.validate(&id, &code).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert!(r.header("content-type").is_none());
    assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
}

/// @OTPvalidationAPI_02_validate_code_sucess_scenario_without_x-correlator
#[actix_web::test]
async fn validate_code_without_x_correlator_is_204() {
    let app = spawn_app().await;
    let (id, code) = app.issue("+34600000102").await;
    let auth = format!("Bearer {}", app.token);
    let body = json!({"authenticationId": id, "code": code}).to_string();
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
    assert_eq!(r.status, 204);
}

/// @OTPvalidationAPI_400.1_validate_code_no_request_body
#[actix_web::test]
async fn validate_code_without_body_is_invalid_argument() {
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

/// @OTPvalidationAPI_400.2_validate_code_empty_request_body
#[actix_web::test]
async fn validate_code_with_empty_object_is_invalid_argument() {
    let app = spawn_app().await;
    app.post(PATH, &json!({}))
        .await
        .assert_error(400, "INVALID_ARGUMENT");
}

/// @OTPvalidationAPI_400.3_validate_code_missing_authenticationId
#[actix_web::test]
async fn validate_code_without_authentication_id_is_invalid_argument() {
    let app = spawn_app().await;
    for body in [
        json!({"code": "AJY3"}),
        json!({"authenticationId": null, "code": "AJY3"}),
        json!({"authenticationId": "", "code": "AJY3"}),
        json!({"authenticationId": 12, "code": "AJY3"}),
        json!({"authenticationId": "a".repeat(37), "code": "AJY3"}),
    ] {
        app.post(PATH, &body)
            .await
            .assert_error(400, "INVALID_ARGUMENT");
    }
}

/// @OTPvalidationAPI_400.3_validate_code_missing_code
#[actix_web::test]
async fn validate_code_without_code_is_invalid_argument() {
    let app = spawn_app().await;
    let (id, code) = app.issue("+34600000103").await;
    for body in [
        json!({"authenticationId": id}),
        json!({"authenticationId": id, "code": null}),
        json!({"authenticationId": id, "code": ""}),
        json!({"authenticationId": id, "code": 123456}),
    ] {
        app.post(PATH, &body)
            .await
            .assert_error(400, "INVALID_ARGUMENT");
    }
    // Schema errors spend no attempt.
    assert_eq!(app.validate(&id, &code).await.status, 204);
}

/// @OTPvalidationAPI_400.4_validate_code_exceed_code_max_length
#[actix_web::test]
async fn validate_code_with_a_code_over_10_characters_is_invalid_argument() {
    let app = spawn_app().await;
    let (id, _) = app.issue("+34600000104").await;
    app.validate(&id, "thisCodeExceedsTenCharacters")
        .await
        .assert_error(400, "INVALID_ARGUMENT");
}

/// @OTPvalidationAPI_400.5_validate_code_invalid_otp_scenario
#[actix_web::test]
async fn validate_code_with_a_wrong_code_is_invalid_otp() {
    let app = spawn_app().await;
    let (id, code) = app.issue("+34600000105").await;
    let r = app.validate(&id, &wrong_code(&code)).await;
    r.assert_error(400, "ONE_TIME_PASSWORD_SMS.INVALID_OTP");
    assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
    // Alphanumeric codes are well-formed too; they are just wrong.
    app.validate(&id, "AJY3")
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.INVALID_OTP");
}

/// @OTPvalidationAPI_400.6_validate_code_verification_expired_scenario_1
#[actix_web::test]
async fn validate_code_after_the_ttl_is_verification_expired() {
    let app = spawn_app().await;
    let (id, code) = app.issue("+34600000106").await;
    app.clock.advance(Duration::from_secs(300));
    app.validate(&id, &code)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED");
}

/// @OTPvalidationAPI_400.7_validate_code_verification_expired_scenario_2
#[actix_web::test]
async fn validate_code_for_a_superseded_id_is_verification_expired() {
    let app = spawn_app().await;
    let (first_id, first_code) = app.issue("+34600000107").await;
    let (second_id, second_code) = app.issue("+34600000107").await;
    let (third_id, third_code) = app.issue("+34600000107").await;
    for (id, code) in [(&first_id, &first_code), (&second_id, &second_code)] {
        app.validate(id, code)
            .await
            .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED");
    }
    assert_eq!(app.validate(&third_id, &third_code).await.status, 204);
}

/// @OTPvalidationAPI_400.8_validate_code_verification_expired_scenario_3
#[actix_web::test]
async fn validate_code_for_a_used_id_is_verification_expired() {
    let app = spawn_app().await;
    let (id, code) = app.issue("+34600000108").await;
    assert_eq!(app.validate(&id, &code).await.status, 204);
    app.validate(&id, &code)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED");
}

/// @OTPvalidationAPI_400.9_validate_code_verification_failed_scenario
#[actix_web::test]
async fn validate_code_at_the_max_th_wrong_attempt_is_verification_failed_and_stays_locked() {
    let app = spawn_app().await;
    let (id, code) = app.issue("+34600000109").await;
    for _ in 0..2 {
        app.validate(&id, &wrong_code(&code))
            .await
            .assert_error(400, "ONE_TIME_PASSWORD_SMS.INVALID_OTP");
    }
    app.validate(&id, &wrong_code(&code))
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_FAILED");
    app.validate(&id, &code)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_FAILED");
    app.clock.advance(Duration::from_secs(301));
    app.validate(&id, &code)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED");
}

/// @OTPvalidationAPI_401.1_validate_code_no_authorization_header
#[actix_web::test]
async fn validate_code_without_authorization_is_unauthenticated() {
    let app = spawn_app().await;
    let (id, code) = app.issue("+34600000110").await;
    let body = json!({"authenticationId": id, "code": code}).to_string();
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
    assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
    assert_eq!(app.validate(&id, &code).await.status, 204);
}

/// @OTPvalidationAPI_401.2_validate_code_expired_access_token
#[actix_web::test]
async fn validate_code_with_an_expired_token_is_unauthenticated() {
    let mut app = spawn_app().await;
    let (id, code) = app.issue("+34600000111").await;
    app.token = app.token_with(app.claims(SCOPE, -30));
    app.validate(&id, &code)
        .await
        .assert_error(401, "UNAUTHENTICATED");
}

/// @OTPvalidationAPI_401.3_validate_code_invalid_access_token
#[actix_web::test]
async fn validate_code_with_an_invalid_token_is_unauthenticated() {
    let mut app = spawn_app().await;
    let (id, code) = app.issue("+34600000112").await;
    let good = app.token.clone();
    app.token = format!("{}x", good);
    app.validate(&id, &code)
        .await
        .assert_error(401, "UNAUTHENTICATED");
    app.token = good;
    assert_eq!(app.validate(&id, &code).await.status, 204);
}

#[actix_web::test]
async fn validate_code_with_a_token_lacking_the_scope_is_permission_denied() {
    let mut app = spawn_app().await;
    let (id, code) = app.issue("+34600000113").await;
    app.token = app.token_with(app.claims("", 600));
    app.validate(&id, &code)
        .await
        .assert_error(403, "PERMISSION_DENIED");
}

/// @OTPvalidationAPI_404_validate_code_resource_not_found
#[actix_web::test]
async fn validate_code_for_an_unknown_id_is_not_found() {
    let app = spawn_app().await;
    for id in [
        "ea0840f3-3663-4149-bd10-c7c6b8912105",
        "unknown",
        "00000000-0000-8000-8000-000000000000",
    ] {
        let r = app.validate(id, "123456").await;
        r.assert_error(404, "NOT_FOUND");
        assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
    }
}

#[actix_web::test]
async fn another_clients_id_is_not_found_and_spends_no_attempt() {
    let app = spawn_app_with(|s| {
        s.auth.clients = vec![
            otp_gateway::config::ClientEntry {
                id: "demo".into(),
                secret: "demo-secret".into(),
                scopes: vec![SCOPE.into()],
                token_ttl: None,
                rate_limit: None,
                ..Default::default()
            },
            otp_gateway::config::ClientEntry {
                id: "other-app".into(),
                secret: "other-secret".into(),
                scopes: vec![SCOPE.into()],
                token_ttl: None,
                rate_limit: None,
                ..Default::default()
            },
        ]
    })
    .await;
    let (id, code) = app.issue("+34600000114").await;
    let other = app.fetch_token("other-app", "other-secret").await;
    let auth = format!("Bearer {other}");
    let body = json!({"authenticationId": id, "code": code}).to_string();
    for _ in 0..4 {
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
        r.assert_error(404, "NOT_FOUND");
    }
    assert_eq!(app.validate(&id, &code).await.status, 204);
}

#[actix_web::test]
async fn ids_past_retention_are_not_found() {
    let app = spawn_app_with(|s| s.otp.id_retention = Duration::from_secs(3600)).await;
    let (id, code) = app.issue("+34600000115").await;
    app.clock.advance(Duration::from_secs(1800));
    app.validate(&id, &code)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED");
    app.clock.advance(Duration::from_secs(1801));
    app.validate(&id, &code)
        .await
        .assert_error(404, "NOT_FOUND");
}

#[actix_web::test]
async fn concurrent_right_answers_get_exactly_one_204() {
    let app = spawn_app().await;
    let (id, code) = app.issue("+34600000116").await;
    let attempts = (0..8).map(|_| app.validate(&id, &code));
    let replies = futures::future::join_all(attempts).await;
    let ok = replies.iter().filter(|r| r.status == 204).count();
    assert_eq!(ok, 1);
    for r in replies.iter().filter(|r| r.status != 204) {
        r.assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED");
    }
}
