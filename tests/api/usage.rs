//! The admin API of issue 13 item 5: usage per client and UTC day as JSON and CSV after a known
//! sequence of sends and validations (in-process with the memory store; shared by two gateways
//! on one real `redis-server`), the policy reload, and the admin OpenAPI document.

use awc::http::Method;
use otp_gateway::config::{Settings, StoreBackend};
use otp_gateway::domain::Secret;
use otp_gateway::store::redis::testkit::RedisServer;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::sandbox::{client, send_as};

const ADMIN_TOKEN: &str = "usage-test-admin-token-0123456789";

fn two_clients(s: &mut Settings) {
    s.auth.clients = vec![client("demo", false), client("other", false)];
    s.admin.token = Some(Secret::new(ADMIN_TOKEN));
}

async fn admin_get(app: &TestApp, path: &str, accept: Option<&str>) -> Reply {
    let mut req = app
        .client
        .request(Method::GET, format!("{}{path}", app.admin))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(a) = accept {
        req = req.insert_header(("Accept", a));
    }
    let mut res = req.send().await.unwrap();
    Reply {
        status: res.status(),
        headers: res.headers().clone(),
        body: res.body().await.unwrap().to_vec(),
    }
}

fn today(app: &TestApp) -> String {
    use otp_gateway::otp::Clock;
    otp_gateway::usage::format_day(app.clock.now_ms() / 86_400_000)
}

/// demo: two codes; one validated, then presented again (expired); the other wrong three
/// times (two failed, one locked). other: one code.
async fn known_sequence(app: &TestApp, other: &str, phones: [&str; 3]) {
    let (first, first_code) = app.issue(phones[0]).await;
    let (second, second_code) = app.issue(phones[1]).await;
    assert_eq!(app.validate(&first, &first_code).await.status, 204);
    app.validate(&first, &first_code)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED");
    let wrong = wrong_code(&second_code);
    for expected in ["INVALID_OTP", "INVALID_OTP", "VERIFICATION_FAILED"] {
        app.validate(&second, &wrong)
            .await
            .assert_error(400, &format!("ONE_TIME_PASSWORD_SMS.{expected}"));
    }
    assert_eq!(send_as(app, other, phones[2]).await.status, 200);
}

const RECEIPT_COLUMNS: &str = "receiptsDelivered,receiptsUndeliverable,receiptsExpired,receiptsRejected,receiptsDeleted,receiptsUnknown,receiptsPending,receiptsMissing";

/// A row with the given send/validation counts and no receipt checked yet.
fn row(day: &str, client: &str, counts: [u64; 6]) -> Value {
    let mut row = json!({"day": day, "clientId": client});
    let names = [
        "codesSent",
        "segments",
        "validated",
        "failed",
        "expired",
        "locked",
    ];
    for (name, n) in names.iter().zip(counts) {
        row[name] = json!(n);
    }
    for name in RECEIPT_COLUMNS.split(',') {
        row[name] = json!(0);
    }
    row
}

fn expected_rows(day: &str) -> Value {
    json!([
        row(day, "demo", [2, 2, 1, 2, 1, 1]),
        row(day, "other", [1, 1, 0, 0, 0, 0]),
    ])
}

#[actix_web::test]
async fn the_usage_report_counts_a_known_sequence_per_client_and_day_as_json_and_csv() {
    let app = spawn_app_with(two_clients).await;
    let other = app.fetch_token("other", "other-secret").await;
    known_sequence(
        &app,
        &other,
        ["+34600000801", "+34600000802", "+34600000803"],
    )
    .await;
    let day = today(&app);

    let r = admin_get(&app, &format!("/admin/v1/usage?from={day}&to={day}"), None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(body["from"], day.as_str());
    assert_eq!(body["rows"], expected_rows(&day));

    let header = format!(
        "day,clientId,codesSent,segments,validated,failed,expired,locked,{RECEIPT_COLUMNS}\r\n"
    );
    let csv = format!(
        "{header}{day},demo,2,2,1,2,1,1,0,0,0,0,0,0,0,0\r\n{day},other,1,1,0,0,0,0,0,0,0,0,0,0,0,0\r\n"
    );
    let by_accept = admin_get(&app, "/admin/v1/usage", Some("text/csv")).await;
    assert_eq!(
        by_accept.header("content-type").as_deref(),
        Some("text/csv; charset=utf-8")
    );
    assert_eq!(String::from_utf8_lossy(&by_accept.body), csv);
    let by_query = admin_get(&app, "/admin/v1/usage?format=csv&clientId=other", None).await;
    assert_eq!(
        String::from_utf8_lossy(&by_query.body),
        format!("{header}{day},other,1,1,0,0,0,0,0,0,0,0,0,0,0,0\r\n")
    );

    // Days without traffic report nothing; a day that does not exist is a 400.
    let empty = admin_get(&app, "/admin/v1/usage?from=2020-01-01&to=2020-01-31", None).await;
    assert_eq!(empty.json()["rows"], json!([]));
    admin_get(&app, "/admin/v1/usage?from=2026-02-30", None)
        .await
        .assert_error(400, "INVALID_ARGUMENT");
    admin_get(&app, "/admin/v1/usage?from=%FF", None)
        .await
        .assert_error(400, "INVALID_ARGUMENT");
    admin_get(&app, "/admin/v1/usage?from=2025-01-01&to=2026-12-31", None)
        .await
        .assert_error(400, "INVALID_ARGUMENT");
    // The admin guard protects it.
    let res = app
        .client
        .get(format!("{}/admin/v1/usage", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[actix_web::test]
async fn receipts_are_counted_by_delivery_state_for_the_client_that_sent_the_code() {
    let app = spawn_app_with(|s| {
        two_clients(s);
        s.auth.clients.push(client("sb", true));
        s.usage.flush_interval = std::time::Duration::from_millis(100);
        s.usage.receipt_check_after = std::time::Duration::from_millis(300);
    })
    .await;
    let other = app.fetch_token("other", "other-secret").await;
    let sandbox = app.fetch_token("sb", "sb-secret").await;
    app.issue("+34600000821").await;
    app.issue("+34600000822").await;
    assert_eq!(send_as(&app, &other, "+34600000823").await.status, 200);
    // A sandbox SMS has no receipt: it counts as sent, not in any receipt column.
    assert_eq!(send_as(&app, &sandbox, "+34600000824").await.status, 200);

    let day = today(&app);
    let path = format!("/admin/v1/usage?from={day}&to={day}");
    let delivered = |rows: &Value, client: &str| {
        rows.as_array()
            .and_then(|r| r.iter().find(|r| r["clientId"] == client))
            .map(|r| r["receiptsDelivered"].as_u64().unwrap())
    };
    let mut rows = Value::Null;
    for _ in 0..200 {
        rows = admin_get(&app, &path, None).await.json()["rows"].clone();
        if delivered(&rows, "demo") == Some(2) && delivered(&rows, "other") == Some(1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(delivered(&rows, "demo"), Some(2), "{rows}");
    assert_eq!(delivered(&rows, "other"), Some(1), "{rows}");
    let sb = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["clientId"] == "sb")
        .unwrap();
    assert_eq!(sb["codesSent"], 1);
    for name in RECEIPT_COLUMNS.split(',') {
        assert_eq!(sb[name], 0, "{name}: {sb}");
    }
    for r in rows.as_array().unwrap() {
        assert_eq!(r["receiptsPending"], 0, "{r}");
        assert_eq!(r["receiptsMissing"], 0, "{r}");
    }
}

#[actix_web::test]
async fn usage_is_shared_by_two_gateways_on_one_redis() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let setup = move |s: &mut Settings| {
        two_clients(s);
        s.store.backend = StoreBackend::Redis;
        s.store.redis_url = Some(Secret::new(url.as_str()));
        s.usage.flush_interval = std::time::Duration::from_millis(100);
    };
    let a = spawn_app_with(setup.clone()).await;
    let b = spawn_app_with(setup).await;
    // demo's traffic on A, other's on B.
    let other = b.fetch_token("other", "other-secret").await;
    let (first, first_code) = a.issue("+34600000811").await;
    let (second, second_code) = a.issue("+34600000812").await;
    assert_eq!(a.validate(&first, &first_code).await.status, 204);
    // Validations of A's codes on B count for demo too.
    b.validate(&first, &first_code)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED");
    let wrong = wrong_code(&second_code);
    for replica in [&b, &a, &b] {
        let r = replica.validate(&second, &wrong).await;
        assert_eq!(r.status, 400);
    }
    assert_eq!(send_as(&b, &other, "+34600000813").await.status, 200);

    let day = today(&a);
    let path = format!("/admin/v1/usage?from={day}&to={day}");
    // Each replica flushes in the background: wait until A's report holds B's counts too.
    let mut rows = Value::Null;
    for _ in 0..200 {
        rows = admin_get(&a, &path, None).await.json()["rows"].clone();
        if rows == expected_rows(&day) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(rows, expected_rows(&day), "A reports both replicas' counts");
    assert_eq!(
        admin_get(&b, &path, None).await.json()["rows"],
        expected_rows(&day),
        "B reports the same"
    );
}

#[actix_web::test]
async fn the_policy_reload_applies_the_barring_file_now_and_keeps_the_old_list_when_it_is_bad() {
    let dir = std::env::temp_dir().join(format!("otpgw-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("barred.txt");
    std::fs::write(&file, "+34622220001\n").unwrap();
    let path = file.clone();
    let app = spawn_app_with(move |s| {
        two_clients(s);
        s.policy.blocked_numbers_file = Some(path);
        // The watcher would not look again within the test.
        s.policy.blocked_numbers_reload = std::time::Duration::from_secs(3600);
    })
    .await;
    let reload = || async {
        let mut res = app
            .client
            .post(format!("{}/admin/v1/policy/reload", app.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        Reply {
            status: res.status(),
            headers: res.headers().clone(),
            body: res.body().await.unwrap().to_vec(),
        }
    };
    assert_eq!(app.send_code("+34622220002").await.status, 200);
    std::fs::write(&file, "+34622220001\n+34622220002\n").unwrap();
    let r = reload().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["blockedNumbersFile"], 2);
    app.send_code("+34622220002")
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED");

    std::fs::write(&file, "+34622220003\nnot a number\n").unwrap();
    let bad = reload().await;
    bad.assert_error(409, "CONFLICT");
    assert!(String::from_utf8_lossy(&bad.body).contains("line 2"));
    app.send_code("+34622220002")
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED");
}

#[actix_web::test]
async fn the_admin_api_has_its_own_openapi_document_apart_from_the_camara_one() {
    let app = spawn_app_with(two_clients).await;
    let doc = admin_get(&app, "/admin/openapi.json", None).await.json();
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for p in [
        "/admin/v1/authentications/{authentication_id}",
        "/admin/v1/blocked-numbers",
        "/admin/v1/blocked-numbers/{phone_number}",
        "/admin/v1/policy/reload",
        "/admin/v1/usage",
        "/sandbox/v1/messages",
    ] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    assert!(
        doc["paths"]["/admin/v1/usage"]["get"]["responses"]["200"]["content"]["text/csv"]
            .is_object()
    );
    let mut res = app
        .client
        .get(format!("{}/openapi.json", app.api))
        .send()
        .await
        .unwrap();
    let camara: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
    let camara_paths = camara["paths"].as_object().unwrap();
    assert!(camara_paths.keys().all(|p| !p.contains("admin")));
}

#[actix_web::test]
async fn undelivered_receipts_are_counted_under_their_state() {
    use otp_gateway::smsc_sim::faults::ReceiptMix;
    use otp_gateway::smsc_sim::ReceiptState;
    let app = spawn_app_with(|s| {
        two_clients(s);
        s.usage.flush_interval = std::time::Duration::from_millis(100);
        s.usage.receipt_check_after = std::time::Duration::from_millis(300);
        s.smpp.simulator.receipt_states = ReceiptMix::new(vec![(ReceiptState::Undeliverable, 1)]);
    })
    .await;
    app.issue("+34600000831").await;
    let day = today(&app);
    let path = format!("/admin/v1/usage?from={day}&to={day}&clientId=demo");
    let mut row = Value::Null;
    for _ in 0..200 {
        row = admin_get(&app, &path, None).await.json()["rows"][0].clone();
        if row["receiptsUndeliverable"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(row["receiptsUndeliverable"], 1, "{row}");
    assert_eq!(row["receiptsDelivered"], 0, "{row}");
}
