//! Token and client-secret hardening over real HTTP: one spelling per token (low-s ECDSA),
//! tokens of removed clients, slow request bodies, floods of bad client secrets.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::helpers::*;

/// Order n of the P-256 group, big-endian.
const P256_N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

/// n − s on 32-byte big-endian integers (s < n).
fn n_minus(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = (d + 256 * borrow) as u8;
    }
    out
}

/// s > n / 2 ⇔ n − s < s.
fn is_high(s: &[u8]) -> bool {
    n_minus(s).as_slice() < s
}

/// `token` and the same token with s replaced by n − s, high-s one second.
fn low_and_high(token: &str) -> (String, String) {
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let high = is_high(&signature[32..]);
    let negated = n_minus(&signature[32..]);
    signature[32..].copy_from_slice(&negated);
    let other = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&signature));
    if high {
        (other, token.to_owned())
    } else {
        (token.to_owned(), other)
    }
}

#[actix_web::test]
async fn a_token_whose_signature_has_a_high_s_is_unauthenticated() {
    let mut app = spawn_app().await;
    let issued = app.token.clone();
    let (low, high) = low_and_high(&issued);
    assert_eq!(low, issued, "the gateway issued a high-s signature");
    app.token = high;
    app.send_code("+34600000901")
        .await
        .assert_error(401, "UNAUTHENTICATED");
    app.token = low;
    assert_eq!(app.send_code("+34600000901").await.status, 200);
}

fn client(id: &str, secret: &str, scopes: &[&str]) -> otp_gateway::config::ClientEntry {
    otp_gateway::config::ClientEntry {
        id: id.into(),
        secret: secret.into(),
        scopes: scopes.iter().map(|s| (*s).into()).collect(),
        token_ttl: None,
        rate_limit: None,
        ..Default::default()
    }
}

/// A fresh signing key file, as `otp-gateway signing-key` writes it.
fn shared_key_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("otpgw-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("signing.pem");
    let der = otp_gateway::auth::jwt::generate_pkcs8().unwrap();
    std::fs::write(&key, otp_gateway::auth::jwt::pkcs8_pem(&der)).unwrap();
    key
}

/// The gateway restarted with the same signing key but a changed client list: a token of a
/// client no longer configured is 401, one of a client that lost the scope is 403, the others
/// keep working.
#[actix_web::test]
async fn tokens_of_removed_clients_or_removed_scopes_stop_working_after_a_restart() {
    let key = shared_key_file("removed-clients");
    let before = spawn_app_with(|s| {
        s.auth.signing_key_file = Some(key.clone());
        s.auth.clients = vec![
            client("demo", "demo-secret", &[SCOPE]),
            client("gone-app", "gone-secret", &[SCOPE]),
            client("narrowed-app", "narrowed-secret", &[SCOPE, "other"]),
        ];
    })
    .await;
    let gone = before.fetch_token("gone-app", "gone-secret").await;
    let narrowed = before.fetch_token("narrowed-app", "narrowed-secret").await;
    let mut after = spawn_app_with(|s| {
        s.auth.signing_key_file = Some(key.clone());
        s.auth.clients = vec![
            client("demo", "demo-secret", &[SCOPE]),
            client("narrowed-app", "narrowed-secret", &["other"]),
        ];
    })
    .await;
    after.token = gone;
    after
        .send_code("+34600000911")
        .await
        .assert_error(401, "UNAUTHENTICATED");
    after
        .validate("00000000-0000-8000-8000-000000000000", "123456")
        .await
        .assert_error(401, "UNAUTHENTICATED");
    after.token = narrowed;
    after
        .send_code("+34600000912")
        .await
        .assert_error(403, "PERMISSION_DENIED");
    after.token = before.token.clone();
    assert_eq!(after.send_code("+34600000913").await.status, 200);
    assert_eq!(after.sim.submit_count(), 1);
}

/// Milliseconds of one send-code and one validate-code (the right code) with the app's token.
async fn timed_round(app: &TestApp, phone: &str) -> (f64, f64) {
    let started = std::time::Instant::now();
    let (id, code) = app.issue(phone).await;
    let sent = started.elapsed().as_secs_f64() * 1e3;
    let started = std::time::Instant::now();
    let r = app.validate(&id, &code).await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    (sent, started.elapsed().as_secs_f64() * 1e3)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A flood of token requests with wrong secrets (for a real client id and for made-up ones)
/// gets 429s with `Retry-After` and an RFC 6749 body, and valid API calls made with an
/// already-issued token are answered in their usual time while it runs.
#[actix_web::test]
async fn a_flood_of_bad_client_secrets_gets_429_and_leaves_the_api_responsive() {
    let app = spawn_app_with(|s| {
        s.auth.failed_attempts_per_client = 5;
        s.auth.failed_attempts_total = 20;
    })
    .await;
    let mut baseline = (Vec::new(), Vec::new());
    for i in 0..8 {
        let (s, v) = timed_round(&app, &format!("+3460000092{i}")).await;
        baseline.0.push(s);
        baseline.1.push(v);
    }

    let flood_started = std::time::Instant::now();
    let stop = std::rc::Rc::new(std::cell::Cell::new(false));
    let mut flooders = Vec::new();
    for n in 0..12 {
        let stop = std::rc::Rc::clone(&stop);
        let client = app.client.clone();
        let url = format!("{}/oauth2/token", app.api);
        flooders.push(actix_web::rt::spawn(async move {
            let mut statuses = Vec::new();
            let mut i = 0u32;
            while !stop.get() {
                i += 1;
                // Half the flood guesses the demo client's secret, half sprays unknown ids.
                let id = if n % 2 == 0 {
                    "demo".to_owned()
                } else {
                    format!("ghost-{n}-{i}")
                };
                let Ok(mut res) = client
                    .post(&url)
                    .basic_auth(&id, "wrong-secret")
                    .content_type("application/x-www-form-urlencoded")
                    .send_body("grant_type=client_credentials")
                    .await
                else {
                    continue;
                };
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let body: serde_json::Value =
                    serde_json::from_slice(&res.body().await.unwrap_or_default())
                        .unwrap_or_default();
                let status = res.status().as_u16();
                statuses.push((status, retry_after, body));
                if status == 429 {
                    // An attacker would not wait; this only keeps the test from measuring how
                    // fast two workers turn away a hot loop of requests.
                    actix_web::rt::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
            statuses
        }));
    }
    // Valid calls all through the flood, for long enough that its failure budget (20 checks of
    // a 100000-iteration secret, about 4 s of one core in a debug build) is spent meanwhile.
    let mut flooded = (Vec::new(), Vec::new());
    let started = std::time::Instant::now();
    let mut i = 0;
    while started.elapsed() < std::time::Duration::from_secs(5) {
        let (s, v) = timed_round(&app, &format!("+3461{i:07}")).await;
        flooded.0.push(s);
        flooded.1.push(v);
        i += 1;
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.set(true);
    let mut answers = Vec::new();
    for f in flooders {
        answers.extend(f.await.unwrap());
    }

    let limited: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    let unauthorised = answers.iter().filter(|(s, _, _)| *s == 401).count();
    eprintln!(
        "flood: {} answers, {} × 401, {} × 429; {} rounds; send-code median {:.1} ms → {:.1} ms (max {:.1}), \
         validate-code median {:.1} ms → {:.1} ms (max {:.1})",
        answers.len(),
        unauthorised,
        limited.len(),
        flooded.0.len(),
        median(baseline.0.clone()),
        median(flooded.0.clone()),
        flooded.0.iter().copied().fold(0.0, f64::max),
        median(baseline.1.clone()),
        median(flooded.1.clone()),
        flooded.1.iter().copied().fold(0.0, f64::max),
    );
    assert!(answers.iter().all(|(s, _, _)| *s == 401 || *s == 429));
    // The budget is 20 failures a minute (burst 20, then one every 3 s): the rest of the flood
    // was refused unchecked.
    let budget = 20 + flood_started.elapsed().as_secs() as usize / 3 + 1;
    assert!(unauthorised <= budget, "{unauthorised} secrets checked");
    assert!(limited.len() > unauthorised, "{} × 429", limited.len());
    for (_, retry_after, body) in &limited {
        assert!(retry_after.is_some_and(|s| (1..=60).contains(&s)));
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        assert!(body["error_description"].is_string());
    }
    // Valid calls stay in their usual range (generous factors: the machine is shared).
    for (base, under) in [(&baseline.0, &flooded.0), (&baseline.1, &flooded.1)] {
        let (base, under_median) = (median(base.clone()), median(under.clone()));
        assert!(
            under_median <= base * 3.0 + 25.0,
            "median {under_median:.1} ms under the flood, {base:.1} ms before"
        );
    }
}

/// What a raw HTTP/1.1 exchange ended with: the bytes received until the server closed, or
/// `None` when it still had not closed after `wait`.
async fn raw_exchange(
    addr: &str,
    head: String,
    body: &'static [u8],
    byte_every: std::time::Duration,
    wait: std::time::Duration,
) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = addr.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(head.as_bytes()).await.unwrap();
    // The body trickles in the background, one byte at a time, until the server hangs up.
    let writer = actix_web::rt::spawn(async move {
        for byte in body {
            actix_web::rt::time::sleep(byte_every).await;
            if write.write_all(std::slice::from_ref(byte)).await.is_err() {
                return;
            }
        }
        // Then hold the connection open without sending more.
        actix_web::rt::time::sleep(std::time::Duration::from_secs(60)).await;
        drop(write);
    });
    let mut received = Vec::new();
    let outcome = tokio::time::timeout(wait, read.read_to_end(&mut received)).await;
    writer.abort();
    match outcome {
        Ok(_) => Some(received),
        Err(_) => None,
    }
}

/// The status and JSON body of a raw response, if it is one.
fn parse_response(raw: &[u8]) -> Option<(u16, serde_json::Value)> {
    let text = String::from_utf8_lossy(raw);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, serde_json::from_str(body).unwrap_or_default()))
}

/// A token request announcing 100 bytes and sending none, and an API request whose body
/// trickles in, are cut off within `http.request_timeout`: 408 with the endpoint's error
/// shape and the connection closed. The same for a request head that never ends, on both
/// listeners.
#[actix_web::test]
async fn slow_or_missing_request_bodies_are_cut_off_after_the_request_timeout() {
    let app = spawn_app_with(|s| s.http.request_timeout = std::time::Duration::from_secs(1)).await;
    let bound = std::time::Duration::from_secs(4);
    let never = std::time::Duration::from_secs(3600);

    let started = std::time::Instant::now();
    let head = "POST /oauth2/token HTTP/1.1\r\nHost: gw\r\n\
                Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n";
    let raw = raw_exchange(&app.api, head.to_owned(), b"", never, bound)
        .await
        .expect("the token request stayed open");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    let (status, body) = parse_response(&raw).expect("a response before the close");
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(body["error"], "invalid_request", "{body}");

    let json = br#"{"phoneNumber":"+34600000951","message":"{{code}} is your code"}"#;
    let head = format!(
        "POST /one-time-password-sms/v1/send-code HTTP/1.1\r\nHost: gw\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         x-correlator: {CORRELATOR}\r\nContent-Length: {}\r\n\r\n",
        app.token,
        json.len()
    );
    let raw = raw_exchange(
        &app.api,
        head,
        json,
        std::time::Duration::from_millis(200),
        bound,
    )
    .await
    .expect("the trickling API request stayed open");
    let (status, body) = parse_response(&raw).expect("a response before the close");
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(body["status"], 408, "{body}");
    assert!(
        body["code"].is_string() && body["message"].is_string(),
        "{body}"
    );
    assert!(String::from_utf8_lossy(&raw).contains(CORRELATOR));
    assert_eq!(app.sim.submit_count(), 0);

    // A head that never ends, on either listener: closed (actix answers 408) in time.
    for addr in [&app.api, &app.admin] {
        let raw = raw_exchange(
            addr,
            "GET /health/live HTTP/1.1\r\nHost: gw\r\nX-Slow: ".to_owned(),
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            std::time::Duration::from_millis(200),
            bound,
        )
        .await;
        assert!(raw.is_some(), "a slow head on {addr} stayed open");
    }
    // A body the handler never reads (the admin listener's probes) does not hold it either.
    let head = "POST /health/live HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n";
    let raw = raw_exchange(&app.admin, head.to_owned(), b"", never, bound).await;
    assert!(raw.is_some(), "the admin request stayed open");
}
