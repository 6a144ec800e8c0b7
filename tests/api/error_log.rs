//! A 5xx answer logs its whole cause chain once, in the request's span (so with its
//! x-correlator), naming the SMPP route, and never with the number, the code or the token.

use serde_json::json;

use crate::helpers::*;
use crate::log_capture;

/// The cause-chain lines of the request with this correlator.
fn lines_with(correlator: &str) -> Vec<String> {
    log_capture::text()
        .lines()
        .filter(|l| l.contains(correlator) && l.contains("request failed"))
        .map(str::to_owned)
        .collect()
}

async fn send_with(app: &TestApp, correlator: &str, phone: &str) -> Reply {
    let auth = format!("Bearer {}", app.token);
    app.post_raw(
        "/one-time-password-sms/v1/send-code",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
            ("x-correlator", correlator),
        ],
        Some(&json!({"phoneNumber": phone, "message": MESSAGE}).to_string()),
    )
    .await
}

#[actix_web::test]
async fn a_5xx_logs_its_cause_chain_once_with_the_correlator_and_the_route() {
    log_capture::start();
    let app =
        spawn_app_with(|s| s.smpp.session.submit_timeout = std::time::Duration::from_millis(300))
            .await;

    app.sim
        .set_behaviour(otp_gateway::smsc_sim::SimBehaviour::Reject {
            command_status: 0x45,
        });
    let refused = "cause-chain-503";
    send_with(&app, refused, "+34600000801")
        .await
        .assert_error(503, "UNAVAILABLE");
    let lines = lines_with(refused);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    for part in [
        "request failed",
        "UNAVAILABLE",
        "could not take the message",
        "SMPP route default",
        "command_status 0x00000045",
    ] {
        assert!(line.contains(part), "{part:?} missing in {line}");
    }

    app.sim
        .set_behaviour(otp_gateway::smsc_sim::SimBehaviour::Ignore);
    let silent = "cause-chain-504";
    send_with(&app, silent, "+34600000802")
        .await
        .assert_error(504, "TIMEOUT");
    let lines = lines_with(silent);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("may hold the message"), "{}", lines[0]);
    assert!(lines[0].contains("SMPP route default"), "{}", lines[0]);

    let all = log_capture::text();
    for secret in ["+34600000801", "+34600000802", app.token.as_str()] {
        assert!(!all.contains(secret), "{secret} in the log");
    }
}
