//! Rejections that happen before a handler runs still speak CAMARA `ErrorInfo`.

use awc::http::Method;
use serde_json::json;

use otp_gateway::api::version::CamaraVersion;

use crate::helpers::*;

const SEND: &str = "/one-time-password-sms/v1/send-code";

#[actix_web::test]
async fn unknown_paths_are_camara_404() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/one-time-password-sms/v1",
        "/one-time-password-sms/v2/send-code",
        "/x/../y",
    ] {
        let r = app
            .request(Method::GET, &format!("{}{}", app.api, path))
            .await;
        r.assert_error(404, "NOT_FOUND");
    }
    let r = app
        .post("/one-time-password-sms/v1/send-codes", &json!({}))
        .await;
    r.assert_error(404, "NOT_FOUND");
    assert_eq!(r.header("x-correlator").as_deref(), Some(CORRELATOR));
}

#[actix_web::test]
async fn other_methods_are_camara_405_with_allow() {
    let app = spawn_app().await;
    for m in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        for path in [SEND, "/one-time-password-sms/v1/validate-code"] {
            let r = app
                .request(m.clone(), &format!("{}{}", app.api, path))
                .await;
            r.assert_error(405, "METHOD_NOT_ALLOWED");
            assert_eq!(r.header("allow").as_deref(), Some("POST"));
        }
    }
}

#[actix_web::test]
async fn non_json_bodies_are_camara_415() {
    let app = spawn_app().await;
    let auth = format!("Bearer {}", app.token);
    let body = json!({"phoneNumber": "+34600000201", "message": MESSAGE}).to_string();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
    ] {
        let r = app
            .post_raw(
                SEND,
                &[("Authorization", &auth), ("Content-Type", ct)],
                Some(&body),
            )
            .await;
        r.assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    }
    let r = app
        .post_raw(SEND, &[("Authorization", &auth)], Some(&body))
        .await;
    r.assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    let r = app
        .post_raw(
            SEND,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json; charset=utf-8"),
            ],
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[actix_web::test]
async fn malformed_and_oversized_bodies_are_invalid_argument() {
    let app = spawn_app().await;
    let auth = format!("Bearer {}", app.token);
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let huge = format!(
        r#"{{"phoneNumber":"+34600000202","message":"{{{{code}}}}","pad":"{}"}}"#,
        "x".repeat(40_000)
    );
    for body in [
        "{",
        "null",
        "[]",
        "\"text\"",
        "42",
        "{\"phoneNumber\":}",
        "\u{0}",
        huge.as_str(),
    ] {
        let r = app.post_raw(SEND, &headers, Some(body)).await;
        r.assert_error(400, "INVALID_ARGUMENT");
    }
    assert_eq!(app.sim.submit_count(), 0);
}

async fn send_with_correlator(app: &TestApp, correlator: &str) -> Reply {
    let auth = format!("Bearer {}", app.token);
    let body = json!({"phoneNumber": "+34600000203", "message": MESSAGE}).to_string();
    app.post_raw(
        SEND,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
            ("x-correlator", correlator),
        ],
        Some(&body),
    )
    .await
}

#[actix_web::test]
async fn invalid_x_correlator_is_400_and_not_echoed() {
    let app = spawn_app().await;
    let long = "a".repeat(257);
    for bad in ["has space", "comma,separated", "back\\slash", long.as_str()] {
        let r = send_with_correlator(&app, bad).await;
        r.assert_error(400, "INVALID_ARGUMENT");
        assert_ne!(r.header("x-correlator").as_deref(), Some(bad));
    }
    assert_eq!(app.sim.submit_count(), 0);
}

#[actix_web::test]
async fn the_x_correlator_rule_follows_the_configured_camara_version() {
    // v1.1.1 (the default) widened the pattern; v1.1.0 keeps letters, digits and '-' up to 55.
    let v111 = spawn_app().await;
    let long = "a".repeat(256);
    for good in [
        "app:login/42",
        "under_score",
        "semi;colon.<x>{y}",
        long.as_str(),
    ] {
        let r = send_with_correlator(&v111, good).await;
        assert_eq!(r.status, 200, "{good}");
        assert_eq!(r.header("x-correlator").as_deref(), Some(good));
    }
    let v110 = spawn_app_with(|s| s.api.camara_version = CamaraVersion::V1_1_0).await;
    for bad in ["app:login/42", "under_score", &"a".repeat(56)] {
        let r = send_with_correlator(&v110, bad).await;
        r.assert_error(400, "INVALID_ARGUMENT");
        assert!(r.json()["message"].as_str().unwrap().contains("{0,55}"));
    }
    let r = send_with_correlator(&v110, "b4333c46-49c0-4f62-80d7-f0ef930f1c46").await;
    assert_eq!(r.status, 200);
    assert_eq!(v110.sim.submit_count(), 1);
}

#[actix_web::test]
async fn responses_carry_no_server_or_other_forbidden_headers() {
    let app = spawn_app().await;
    let ok = app.send_code("+34600000204").await;
    let err = app.post(SEND, &json!({})).await;
    let missing = app.request(Method::GET, &format!("{}/nope", app.api)).await;
    for r in [ok, err, missing] {
        for h in [
            "server",
            "x-powered-by",
            "x-frame-options",
            "x-ua-compatible",
            "expires",
            "pragma",
        ] {
            assert!(r.header(h).is_none(), "{h} present");
        }
    }
}
