//! The binary as a user runs it: embedded defaults, the banner, the quickstart flow, the logs
//! (a code may appear only in the simulator's handset lines), clean exit on SIGTERM, and
//! configuration errors that name their key.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_otp-gateway");

/// Every line the child writes to stdout or stderr, as it comes (both are piped).
fn output_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel::<String>();
    let streams: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    for stream in streams {
        let tx = tx.clone();
        std::thread::spawn(move || {
            BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
                .for_each(|l| drop(tx.send(l)))
        });
    }
    rx
}

fn find(lines: &[String], prefix: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        l.trim_start()
            .strip_prefix(prefix)
            .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
    })
}

#[actix_web::test]
async fn serve_with_embedded_defaults_runs_the_quickstart_and_never_logs_the_code() {
    let mut child = Command::new(BIN)
        .env("OTPGW_HTTP__LISTEN", "127.0.0.1:0")
        .env("OTPGW_ADMIN__LISTEN", "127.0.0.1:0")
        .env("OTPGW_HTTP__SHUTDOWN_GRACE", "0s")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = output_lines(&mut child);

    let mut lines: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !lines.iter().any(|l| l.contains("validate-code")) && std::time::Instant::now() < deadline
    {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
    }
    let api = find(&lines, "API").expect("banner names the API");
    let admin = find(&lines, "admin").expect("banner names the admin listener");
    let api_root = api
        .trim_end_matches("/one-time-password-sms/v1")
        .to_string();
    let admin_root = admin.trim_end_matches("/metrics").to_string();
    assert!(lines.iter().any(|l| l.contains("demo / demo-secret")));
    assert!(lines.iter().any(|l| l.contains("curl")));

    let client = awc::Client::default();
    let mut r = client
        .post(format!("{api_root}/oauth2/token"))
        .basic_auth("demo", "demo-secret")
        .content_type("application/x-www-form-urlencoded")
        .send_body("grant_type=client_credentials&scope=one-time-password-sms:send-validate")
        .await
        .unwrap();
    let token: Value = serde_json::from_slice(&r.body().await.unwrap()).unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let mut r = client
        .post(format!("{api}/send-code"))
        .bearer_auth(&token)
        .send_json(&json!({"phoneNumber": "+34600000001", "message": "{{code}} is your code"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id: Value = serde_json::from_slice(&r.body().await.unwrap()).unwrap();
    let id = id["authenticationId"].as_str().unwrap().to_string();
    let mut r = client
        .get(format!(
            "{admin_root}/sandbox/v1/messages?phoneNumber=%2B34600000001"
        ))
        .send()
        .await
        .unwrap();
    let inbox: Value = serde_json::from_slice(&r.body().await.unwrap()).unwrap();
    let code = inbox[0]["text"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let r = client
        .post(format!("{api}/validate-code"))
        .bearer_auth(&token)
        .send_json(&json!({"authenticationId": id, "code": code}))
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
        lines.push(l);
    }
    assert!(exit.success(), "exit status {exit:?}");
    let handset: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("smsc_sim::handset"))
        .collect();
    assert!(
        handset.iter().any(|l| l.contains(&code)),
        "the simulator prints the SMS"
    );
    for l in lines.iter().filter(|l| !l.contains("smsc_sim::handset")) {
        assert!(!l.contains(&code), "code leaked into: {l}");
        assert!(!l.contains(&token), "token leaked into: {l}");
        if !l.contains("curl") && !l.contains("smsc_sim") {
            assert!(!l.contains("+34600000001"), "full number in: {l}");
        }
    }
}

#[test]
fn invalid_configuration_stops_with_a_message_naming_the_key() {
    let out = Command::new(BIN)
        .env("OTPGW_OTP__CODE_LENGTH", "3")
        .env("OTPGW_HTTP__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("otp.code_length"));
    let out = Command::new(BIN)
        .args(["serve", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .env("OTPGW_NO_SUCH__KEY", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["smsc-sim", "--help"],
        vec!["openapi", "--help"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
}

#[test]
fn smsc_sim_fault_flags_are_documented_and_checked() {
    let out = Command::new(BIN)
        .args(["smsc-sim", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    for flag in [
        "--throttle-tps",
        "--error-rate",
        "--prefix-errors",
        "--disconnect-after",
        "--response-delay",
        "--receipt-states",
        "--message-ids",
        "--receipts-before-response",
    ] {
        assert!(help.contains(flag), "{flag} missing from help");
    }
    let out = Command::new(BIN)
        .args([
            "smsc-sim",
            "--listen",
            "127.0.0.1:0",
            "--prefix-errors",
            "+34",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--prefix-errors"));
}

#[test]
fn sigterm_drains_for_the_grace_then_exits_0() {
    let grace = Duration::from_millis(200);
    let mut child = Command::new(BIN)
        .env("OTPGW_HTTP__LISTEN", "127.0.0.1:0")
        .env("OTPGW_ADMIN__LISTEN", "127.0.0.1:0")
        .env("OTPGW_HTTP__SHUTDOWN_GRACE", "200ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = output_lines(&mut child);
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !lines.iter().any(|l: &String| l.contains("is up")) {
        assert!(std::time::Instant::now() < deadline, "no banner: {lines:?}");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
    }

    let signalled = std::time::Instant::now();
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let limit = grace + Duration::from_secs(5);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if signalled.elapsed() > limit {
            child.kill().ok();
            panic!("still running {limit:?} after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = signalled.elapsed();
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        lines.push(l);
    }
    assert!(exit.success(), "exit status {exit:?}: {lines:?}");
    assert!(took >= grace, "exited after {took:?}, before the grace");
    assert!(
        lines.iter().any(|l| l.contains("draining")),
        "the drain is logged: {lines:?}"
    );
}

/// A gateway binary started for one test, its output collected from both streams.
struct Gateway {
    child: std::process::Child,
    rx: mpsc::Receiver<String>,
    lines: Vec<String>,
    api: String,
    admin: String,
}

impl Gateway {
    /// Starts the binary with loopback listeners plus `env`, and waits for the whole banner.
    fn start(env: &[(&str, &str)]) -> Gateway {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("RUST_LOG")
            .env("OTPGW_HTTP__LISTEN", "127.0.0.1:0")
            .env("OTPGW_ADMIN__LISTEN", "127.0.0.1:0")
            .env("OTPGW_HTTP__SHUTDOWN_GRACE", "0s");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let rx = output_lines(&mut child);
        let mut lines: Vec<String> = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // The banner ends with an empty line.
        loop {
            let up = lines.iter().position(|l| l.contains("is up"));
            if up.is_some_and(|i| lines[i..].iter().any(|l| l.is_empty())) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no banner: {lines:?}");
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                lines.push(l);
            }
        }
        let api = find(&lines, "API").expect("banner names the API");
        let admin = find(&lines, "admin").expect("banner names the admin listener");
        Gateway {
            child,
            rx,
            api: api
                .trim_end_matches("/one-time-password-sms/v1")
                .to_string(),
            admin: admin.trim_end_matches("/metrics").to_string(),
            lines,
        }
    }

    /// Token, send-code with `message`, and the code read back from the sandbox inbox.
    async fn send(&self, message: &str) -> (String, String) {
        let (code, token, _) = self.send_correlated(message, None).await;
        (code, token)
    }

    /// As [`Gateway::send`], with an `x-correlator` when given; also returns the
    /// authenticationId.
    async fn send_correlated(
        &self,
        message: &str,
        correlator: Option<&str>,
    ) -> (String, String, String) {
        let client = awc::Client::default();
        let mut r = client
            .post(format!("{}/oauth2/token", self.api))
            .basic_auth("demo", "demo-secret")
            .content_type("application/x-www-form-urlencoded")
            .send_body("grant_type=client_credentials&scope=one-time-password-sms:send-validate")
            .await
            .unwrap();
        let token: Value = serde_json::from_slice(&r.body().await.unwrap()).unwrap();
        let token = token["access_token"].as_str().unwrap().to_string();
        let mut req = client
            .post(format!("{}/one-time-password-sms/v1/send-code", self.api))
            .bearer_auth(&token);
        if let Some(c) = correlator {
            req = req.insert_header(("x-correlator", c));
        }
        let mut r = req
            .send_json(&json!({"phoneNumber": "+34600000002", "message": message}))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let sent: Value = serde_json::from_slice(&r.body().await.unwrap()).unwrap();
        let id = sent["authenticationId"].as_str().unwrap().to_string();
        let mut r = client
            .get(format!(
                "{}/sandbox/v1/messages?phoneNumber=%2B34600000002",
                self.admin
            ))
            .send()
            .await
            .unwrap();
        let inbox: Value = serde_json::from_slice(&r.body().await.unwrap()).unwrap();
        let code = inbox[0]["text"]
            .as_str()
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        (code, token, id)
    }

    /// SIGTERM, wait for the exit, and every line written.
    fn stop(mut self) -> Vec<String> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        while let Ok(l) = self.rx.recv_timeout(Duration::from_millis(300)) {
            self.lines.push(l);
        }
        assert!(exit.success(), "exit status {exit:?}");
        self.lines
    }
}

/// Item 6: the SMPP library's PDU dumps (debug and trace, whose `short_message` holds the
/// code) never reach the output, whatever filter names a `rusmpp` sub-target.
#[actix_web::test]
async fn no_log_filter_lets_the_smpp_library_print_a_code() {
    let cases: &[&[(&str, &str)]] = &[
        &[("RUST_LOG", "rusmpp::codec=debug")],
        &[(
            "RUST_LOG",
            "info,rusmpp::codec::decode=trace,rusmpp::codec::encode=trace",
        )],
        &[("RUST_LOG", "rusmppc::connection=trace,rusmpp=trace")],
        &[("RUST_LOG", "trace")],
        &[
            (
                "OTPGW_LOG__LEVEL",
                "info,rusmpp::codec::decode=debug,rusmpp::codec::encode=debug",
            ),
            ("OTPGW_LOG__FORMAT", "json"),
        ],
        &[("OTPGW_LOG__LEVEL", "info,rusmpp::codec=debug")],
        &[
            ("RUST_LOG", "[{command}]=debug,rusmpp::codec=trace"),
            ("OTPGW_LOG__FORMAT", "json"),
        ],
    ];
    for env in cases {
        let gw = Gateway::start(env);
        let (code, token) = gw.send("{{code}} is your code").await;
        let lines = gw.stop();
        for l in lines.iter().filter(|l| !l.contains("smsc_sim::handset")) {
            assert!(!l.contains(&code), "{env:?}: code leaked into: {l}");
            assert!(!l.contains(&token), "{env:?}: token leaked into: {l}");
            assert!(!l.contains("rusmpp::codec"), "{env:?}: PDU dump: {l}");
        }
    }
}

/// Item 8: client text with a newline (or other control characters) cannot forge a log line;
/// the handset line shows it escaped, in text and in JSON.
#[actix_web::test]
async fn a_template_with_a_newline_cannot_forge_a_log_line() {
    let forged = "2030-01-01T00:00:00.000000Z ERROR otp_gateway::otp: FORGED LINE";
    let message = format!("{{{{code}}}} is your code\n{forged}\r\u{1b}[2J\u{7}");
    for format in ["text", "json"] {
        let gw = Gateway::start(&[("OTPGW_LOG__FORMAT", format)]);
        let (code, _) = gw.send(&message).await;
        let lines = gw.stop();
        let handset: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("smsc_sim::handset"))
            .collect();
        assert!(
            handset
                .iter()
                .any(|l| l.contains(&code) && l.contains("FORGED LINE")),
            "{format}: the handset line shows the whole text: {lines:?}"
        );
        for l in &lines {
            assert!(
                !l.contains("FORGED LINE") || l.contains("smsc_sim::handset"),
                "{format}: forged line: {l}"
            );
            assert!(
                !l.chars().any(|c| c.is_control()),
                "{format}: raw control character in: {l:?}"
            );
        }
    }
}

/// Item 7: the embedded simulator's inbox shows every code, so it is never served on a
/// non-loopback admin listener unless `sandbox.expose` says so.
#[test]
fn the_sandbox_on_a_public_admin_listener_needs_an_explicit_opt_in() {
    let mut child = Command::new(BIN)
        .env_remove("RUST_LOG")
        .env("OTPGW_HTTP__LISTEN", "127.0.0.1:0")
        .env("OTPGW_ADMIN__LISTEN", "0.0.0.0:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A gateway that starts anyway would serve forever: give it a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("the gateway started with the sandbox on 0.0.0.0");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["sandbox.expose", "admin.listen", "smpp.url"] {
        assert!(err.contains(key), "{key} not named: {err}");
    }
}

/// Issue 10 item 6: in JSON, the line of a sent code carries the x-correlator, the client id,
/// the route and the masked number (from its spans and fields), and no line of the gateway
/// carries the code, the token, the client secret or the full number, even at `debug`.
#[actix_web::test]
async fn json_logs_carry_correlator_client_route_and_masked_number_and_nothing_secret() {
    let gw = Gateway::start(&[("OTPGW_LOG__FORMAT", "json"), ("OTPGW_LOG__LEVEL", "debug")]);
    let (code, token, id) = gw
        .send_correlated("{{code}} is your code", Some("log-fields-7"))
        .await;
    let client = awc::Client::default();
    let api = format!("{}/one-time-password-sms/v1", gw.api);
    let wrong: String = code
        .chars()
        .map(|c| if c == '1' { '2' } else { '1' })
        .collect();
    for attempt in [wrong.as_str(), code.as_str()] {
        client
            .post(format!("{api}/validate-code"))
            .bearer_auth(&token)
            .insert_header(("x-correlator", "log-fields-8"))
            .send_json(&json!({"authenticationId": id, "code": attempt}))
            .await
            .unwrap();
    }
    let lines = gw.stop();

    let events: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let sent = events
        .iter()
        .find(|e| e["fields"]["message"] == "code sent")
        .unwrap_or_else(|| panic!("no `code sent` line: {lines:?}"));
    let spans = sent["spans"].as_array().expect("the span list");
    let field = |name: &str| spans.iter().find_map(|s| s[name].as_str());
    assert_eq!(field("correlator"), Some("log-fields-7"), "{sent}");
    assert_eq!(field("client_id"), Some("demo"), "{sent}");
    assert_eq!(field("phone"), Some("+346******02"), "{sent}");
    assert!(
        sent["fields"]["route"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{sent}"
    );
    assert!(
        events.iter().any(|e| e["spans"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["correlator"] == "log-fields-8"))),
        "validate-code lines carry their correlator"
    );
    // The simulated handset (the sandbox's phone) shows its message; the gateway shows nothing.
    // (The start-up banner, not a log line, offers the demo client's secret on purpose.)
    for l in lines.iter().filter(|l| !l.contains("smsc_sim::handset")) {
        for secret in [&code, &wrong, &token, "34600000002"] {
            assert!(!l.contains(secret), "{secret:?} leaked into: {l}");
        }
        let logged = serde_json::from_str::<Value>(l).is_ok();
        assert!(!(logged && l.contains("demo-secret")), "secret logged: {l}");
    }
}

#[actix_web::test]
async fn the_camara_version_is_chosen_by_environment_and_shown_in_the_banner() {
    let gw = Gateway::start(&[("OTPGW_API__CAMARA_VERSION", "1.1.0")]);
    assert!(
        gw.lines.iter().any(|l| l.contains("(CAMARA 1.1.0;")),
        "{:?}",
        gw.lines
    );
    let mut res = awc::Client::default()
        .get(format!("{}/openapi.json", gw.api))
        .send()
        .await
        .unwrap();
    let doc: Value = serde_json::from_slice(&res.body().limit(1 << 20).await.unwrap()).unwrap();
    assert_eq!(doc["info"]["version"], "1.1.0");
    gw.stop();

    let out = Command::new(BIN)
        .env("OTPGW_API__CAMARA_VERSION", "2.0.0")
        .env("OTPGW_HTTP__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("api.camara_version"));
}

#[test]
fn the_openapi_subcommand_prints_either_version() {
    for version in ["1.1.0", "1.1.1"] {
        let out = Command::new(BIN)
            .args(["openapi", "--camara-version", version])
            .output()
            .unwrap();
        assert!(out.status.success());
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["info"]["version"], version);
    }
    let out = Command::new(BIN)
        .args(["openapi", "--camara-version", "1.2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
