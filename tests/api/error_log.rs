//! A 5xx answer logs its whole cause chain once, in the request's span (so with its
//! x-correlator), naming the SMPP route, and never with the number, the code or the token.

use std::io::Write;
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;

use crate::helpers::*;

/// Every line the `otp_gateway::api` target logs in this test binary (one global subscriber;
/// tests tell their lines apart by their own x-correlator).
static LOG: LazyLock<Arc<Mutex<Vec<u8>>>> = LazyLock::new(|| {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("otp_gateway::api=info")
        .with_ansi(false)
        .with_writer(Capture(Arc::clone(&buffer)))
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    buffer
});

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

fn lines_with(correlator: &str) -> Vec<String> {
    String::from_utf8_lossy(&LOG.lock().unwrap())
        .lines()
        .filter(|l| l.contains(correlator))
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
    LazyLock::force(&LOG);
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

    let all = String::from_utf8_lossy(&LOG.lock().unwrap()).to_string();
    for secret in ["+34600000801", "+34600000802", app.token.as_str()] {
        assert!(!all.contains(secret), "{secret} in the log");
    }
}
