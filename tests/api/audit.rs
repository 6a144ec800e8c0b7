//! Audit events (issue 13 item 6): after a known sequence of sends and validations, the
//! `audit.file` JSON-lines file holds exactly one event per outcome, with client, masked
//! number, outcome, policy decision, route and correlator, and never a code, a token or a full
//! number.

use serde_json::Value;

use crate::helpers::*;
use crate::sandbox::{client, send_as};

async fn events(path: &std::path::Path, expected: usize) -> (String, Vec<Value>) {
    // The writer appends in the background; wait until every event has landed.
    let mut text = String::new();
    for _ in 0..200 {
        text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let events = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (text, events)
}

#[actix_web::test]
async fn the_audit_file_holds_one_event_per_outcome_and_no_code_token_or_number() {
    let dir = std::env::temp_dir().join(format!("otpgw-audit-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&path);
    let file = path.clone();
    let app = spawn_app_with(move |s| {
        s.auth.clients = vec![client("demo", false), client("sb", true)];
        s.audit.file = Some(file);
    })
    .await;
    let sandbox = app.fetch_token("sb", "sb-secret").await;

    let (id, code) = app.issue("+34600000901").await;
    app.send_code(BARRED)
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED");
    app.send_code(OTHER_OPERATOR)
        .await
        .assert_error(404, "NOT_FOUND");
    let wrong = wrong_code(&code);
    app.validate(&id, &wrong)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.INVALID_OTP");
    assert_eq!(app.validate(&id, &code).await.status, 204);
    app.validate(&id, &code)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED");
    assert_eq!(send_as(&app, &sandbox, "+34600000902").await.status, 200);

    let (text, events) = events(&path, 7).await;
    let summary: Vec<(String, String, String, String)> = events
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("-").to_owned();
            (s("event"), s("clientId"), s("outcome"), s("policy"))
        })
        .collect();
    let row = |a: &str, b: &str, c: &str, d: &str| (a.into(), b.into(), c.into(), d.into());
    assert_eq!(
        summary,
        vec![
            row("send", "demo", "sent", "allowed"),
            row("send", "demo", "refused", "blocked"),
            row("send", "demo", "refused", "not_operator_number"),
            row("validate", "demo", "invalid_code", "-"),
            row("validate", "demo", "valid", "-"),
            row("validate", "demo", "expired", "-"),
            row("send", "sb", "sent", "allowed"),
        ],
        "{text}"
    );
    assert_eq!(events[0]["phoneNumber"], "+346******01");
    assert_eq!(events[0]["authenticationId"], id.as_str());
    assert_eq!(events[0]["route"], "default");
    assert_eq!(events[0]["sandbox"], false);
    assert_eq!(events[6]["route"], "sandbox");
    assert_eq!(events[6]["sandbox"], true);
    for e in &events {
        assert_eq!(e["correlator"], CORRELATOR, "{e}");
    }
    // The writer kept up: the drop counter is exported, at zero.
    let metrics = app
        .request(awc::http::Method::GET, &format!("{}/metrics", app.admin))
        .await;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        metrics.contains("\notp_sms_audit_events_dropped_total 0\n"),
        "{metrics}"
    );
    for secret in [
        code.as_str(),
        wrong.as_str(),
        app.token.as_str(),
        sandbox.as_str(),
        "34600000901",
        "34600000902",
        &BARRED[1..],
        &OTHER_OPERATOR[1..],
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} leaked into the audit file"
        );
    }
}
