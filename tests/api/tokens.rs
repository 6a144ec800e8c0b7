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
