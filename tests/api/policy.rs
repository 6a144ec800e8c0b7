//! Barred numbers from a file the gateway re-reads and from the admin API (issue 13 item 1).

use std::time::Duration;

use awc::http::Method;
use otp_gateway::domain::PhoneNumber;

use crate::helpers::*;

/// Polls the admin lookup (not send-code, whose answers would spend the number's quota) until
/// it says `blocked`; the file watcher ticks every second.
async fn until_barring(app: &TestApp, phone: &str, blocked: bool) {
    let url = format!("{}/admin/v1/blocked-numbers/{phone}", app.admin);
    for _ in 0..50 {
        if app.request(Method::GET, &url).await.json()["blocked"] == blocked {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{phone} never became blocked={blocked}");
}

#[actix_web::test]
async fn the_barring_file_is_reloaded_and_a_broken_version_keeps_the_previous_list() {
    let dir = std::env::temp_dir().join(format!("otpgw-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("barred.txt");
    std::fs::write(&file, "# export of the barring system\n+34600000801\n").unwrap();
    let path = file.clone();
    let app = spawn_app_with(move |s| {
        s.policy.blocked_numbers_file = Some(path);
        s.policy.blocked_numbers_reload = Duration::from_secs(1);
    })
    .await;
    app.send_code("+34600000801")
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED");
    assert_eq!(app.send_code("+34600000802").await.status, 200);

    std::fs::write(&file, "+34600000803\n+34600000804\n").unwrap();
    until_barring(&app, "+34600000803", true).await;
    app.send_code("+34600000803")
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED");
    assert_eq!(app.send_code("+34600000801").await.status, 200, "lifted");

    // A version that does not parse is ignored as a whole.
    std::fs::write(&file, "+34600000801\nnot a number\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.send_code("+34600000804")
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED");
    assert_eq!(app.send_code("+34600000805").await.status, 200);
    assert_ne!(
        app.send_code("+34600000801").await.status.as_u16(),
        403,
        "the broken version's numbers are not applied"
    );
}

#[actix_web::test]
async fn the_admin_api_bars_and_lifts_numbers() {
    let app = spawn_app_with(|s| {
        s.policy.blocked_numbers = vec![PhoneNumber::parse("+34600000899").unwrap()];
    })
    .await;
    let url = |n: &str| format!("{}/admin/v1/blocked-numbers/{n}", app.admin);
    let number = "+34600000811";

    let r = app.request(Method::PUT, &url(number)).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["source"], "admin");
    assert_eq!(app.request(Method::PUT, &url(number)).await.status, 200);
    app.send_code(number)
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED");
    let r = app.request(Method::GET, &url("%2B34600000811")).await;
    assert_eq!(r.json()["blocked"], true);
    let counts = app
        .request(
            Method::GET,
            &format!("{}/admin/v1/blocked-numbers", app.admin),
        )
        .await
        .json();
    assert_eq!(
        (counts["config"].clone(), counts["admin"].clone()),
        (1.into(), 1.into())
    );

    assert_eq!(app.request(Method::DELETE, &url(number)).await.status, 204);
    assert_eq!(app.send_code(number).await.status, 200);
    app.request(Method::DELETE, &url(number))
        .await
        .assert_error(404, "NOT_FOUND");
    app.request(Method::DELETE, &url("+34600000899"))
        .await
        .assert_error(409, "CONFLICT");
    app.request(Method::PUT, &url("0034600000811"))
        .await
        .assert_error(400, "INVALID_ARGUMENT");
    let r = app.request(Method::GET, &url("+34600000812")).await;
    assert_eq!(
        (r.status.as_u16(), r.json()["blocked"].clone()),
        (200, false.into())
    );
}
