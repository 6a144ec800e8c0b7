//! Sandbox clients (issue 13 item 4): with a real SMSC configured (the project's SMPP simulator
//! started by the test as a separate SMSC on its own port), a sandbox client's SMS never reach
//! it but the client's own inbox, which it reads with its own token on the API listener; magic
//! numbers answer sandbox clients a fixed code (hashed, single use, attempts-limited like any
//! code) or a CAMARA error, and production clients get normal treatment.

use awc::http::Method;
use otp_gateway::config::{ClientEntry, RouteEntry, Settings};
use otp_gateway::domain::PhoneNumber;
use otp_gateway::sandbox::{MagicError, MagicNumber};
use otp_gateway::smsc_sim::{SimSettings, SmscHandle};
use serde_json::{json, Value};

use crate::helpers::*;

pub const FIXED: &str = "+34699000001";
pub const FIXED_CODE: &str = "424242";

/// One magic number per error, and the answer each must give.
pub const ERRORS: [(&str, MagicError, u16, &str); 6] = [
    ("+34699000010", MagicError::NotFound, 404, "NOT_FOUND"),
    (
        "+34699000011",
        MagicError::PhoneNumberNotAllowed,
        403,
        "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED",
    ),
    (
        "+34699000012",
        MagicError::PhoneNumberBlocked,
        403,
        "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED",
    ),
    (
        "+34699000013",
        MagicError::MaxOtpCodesExceeded,
        403,
        "ONE_TIME_PASSWORD_SMS.MAX_OTP_CODES_EXCEEDED",
    ),
    ("+34699000014", MagicError::Unavailable, 503, "UNAVAILABLE"),
    ("+34699000015", MagicError::Timeout, 504, "TIMEOUT"),
];

pub fn client(id: &str, sandbox: bool) -> ClientEntry {
    ClientEntry {
        id: id.into(),
        secret: format!("{id}-secret").into(),
        scopes: vec![SCOPE.into()],
        sandbox,
        ..Default::default()
    }
}

/// `demo` (a production client, the harness's token), sandbox clients `sb-a` and `sb-b`, the
/// magic numbers, and a real SMSC route.
pub fn sandbox_settings(sim: &SmscHandle) -> impl FnOnce(&mut Settings) {
    let url = format!("smpp://otpgw:secret@127.0.0.1:{}", sim.local_addr().port());
    move |s: &mut Settings| {
        s.smpp.routes = vec![RouteEntry::new("real", url.parse().unwrap(), &[], 1)];
        s.auth.clients = vec![
            client("demo", false),
            client("sb-a", true),
            client("sb-b", true),
        ];
        let mut numbers = vec![MagicNumber {
            number: PhoneNumber::parse(FIXED).unwrap(),
            code: Some(FIXED_CODE.into()),
            error: None,
        }];
        numbers.extend(ERRORS.iter().map(|(n, e, _, _)| MagicNumber {
            number: PhoneNumber::parse(n).unwrap(),
            code: None,
            error: Some(*e),
        }));
        s.sandbox.numbers = numbers;
    }
}

pub async fn real_smsc() -> SmscHandle {
    otp_gateway::smsc_sim::start(SimSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        system_id: "otpgw".into(),
        password: "secret".into(),
        receipt_delay: std::time::Duration::from_millis(10),
        print_messages: false,
        inbox_capacity: 100,
        faults: Default::default(),
    })
    .await
    .unwrap()
}

/// The app, bound to the separate SMSC, and tokens of `sb-a` and `sb-b`.
async fn sandbox_app() -> (TestApp, SmscHandle, String, String) {
    let sim = real_smsc().await;
    let app = spawn_app_routed(sandbox_settings(&sim), sim.clone()).await;
    for _ in 0..200 {
        if sim.active_sessions() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        sim.active_sessions(),
        1,
        "the gateway binds to the real SMSC"
    );
    let a = app.fetch_token("sb-a", "sb-a-secret").await;
    let b = app.fetch_token("sb-b", "sb-b-secret").await;
    (app, sim, a, b)
}

/// POST to the CAMARA operation `op` with `token`.
pub async fn post_op(app: &TestApp, token: &str, op: &str, body: &Value) -> Reply {
    post_as(app, token, &format!("/one-time-password-sms/v1/{op}"), body).await
}

pub async fn send_as(app: &TestApp, token: &str, phone: &str) -> Reply {
    post_op(
        app,
        token,
        "send-code",
        &json!({"phoneNumber": phone, "message": MESSAGE}),
    )
    .await
}

pub async fn validate_as(app: &TestApp, token: &str, id: &str, code: &str) -> Reply {
    post_op(
        app,
        token,
        "validate-code",
        &json!({"authenticationId": id, "code": code}),
    )
    .await
}

async fn inbox(app: &TestApp, token: Option<&str>, query: &str) -> Reply {
    let mut req = app
        .client
        .request(Method::GET, format!("{}/sandbox/v1/inbox{query}", app.api));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut res = req.send().await.unwrap();
    Reply {
        status: res.status(),
        headers: res.headers().clone(),
        body: res.body().await.unwrap().to_vec(),
    }
}

fn id_of(r: &Reply) -> String {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["authenticationId"].as_str().unwrap().to_owned()
}

fn numbers(inbox: &Reply) -> Vec<String> {
    assert_eq!(
        inbox.status,
        200,
        "{}",
        String::from_utf8_lossy(&inbox.body)
    );
    inbox
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["phoneNumber"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn a_sandbox_client_never_reaches_the_configured_smsc_and_reads_only_its_own_inbox() {
    let (app, sim, a, b) = sandbox_app().await;
    let a_id = id_of(&send_as(&app, &a, "+34600000701").await);
    id_of(&send_as(&app, &b, "+34600000702").await);
    id_of(&send_as(&app, &a, FIXED).await);
    // The production client's SMS does reach the SMSC: the route is real and bound.
    id_of(&app.send_code("+34600000703").await);

    let at_smsc: Vec<_> = sim.messages().into_iter().map(|m| m.phone_number).collect();
    assert_eq!(
        at_smsc,
        ["+34600000703"],
        "only the production SMS reached the SMSC"
    );

    let mut a_numbers = numbers(&inbox(&app, Some(&a), "").await);
    a_numbers.sort();
    assert_eq!(a_numbers, ["+34600000701", FIXED]);
    assert_eq!(numbers(&inbox(&app, Some(&b), "").await), ["+34600000702"]);
    inbox(&app, Some(&a), "?phoneNumber=%FF")
        .await
        .assert_error(400, "INVALID_ARGUMENT");
    inbox(&app, Some(&a), "?phoneNumber=12")
        .await
        .assert_error(400, "INVALID_ARGUMENT");
    // Naming another client's number shows nothing of it.
    assert!(numbers(&inbox(&app, Some(&a), "?phoneNumber=%2B34600000702").await).is_empty());
    // A production client has no sandbox inbox; without a token there is none to show.
    inbox(&app, Some(&app.token), "")
        .await
        .assert_error(404, "NOT_FOUND");
    inbox(&app, None, "")
        .await
        .assert_error(401, "UNAUTHENTICATED");

    // The code in the inbox is the code: it validates for its client.
    let listed = inbox(&app, Some(&a), "?phoneNumber=%2B34600000701")
        .await
        .json();
    assert_eq!(listed[0]["authenticationId"], a_id.as_str());
    let code = listed[0]["text"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(validate_as(&app, &a, &a_id, &code).await.status, 204);
}

#[actix_web::test]
async fn a_magic_number_gives_a_sandbox_client_its_fixed_code_once_and_a_production_client_normal_treatment(
) {
    let (app, sim, a, _) = sandbox_app().await;
    // Hashed and checked like any code: a wrong one spends an attempt, the right one validates
    // once, then the id is used.
    let id = id_of(&send_as(&app, &a, FIXED).await);
    validate_as(&app, &a, &id, "000000")
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.INVALID_OTP");
    assert_eq!(validate_as(&app, &a, &id, FIXED_CODE).await.status, 204);
    validate_as(&app, &a, &id, FIXED_CODE)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED");

    // Attempts-limited: after three wrong answers the fixed code no longer opens it.
    let id = id_of(&send_as(&app, &a, FIXED).await);
    for _ in 0..2 {
        validate_as(&app, &a, &id, "000000")
            .await
            .assert_error(400, "ONE_TIME_PASSWORD_SMS.INVALID_OTP");
    }
    validate_as(&app, &a, &id, "000000")
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_FAILED");
    validate_as(&app, &a, &id, FIXED_CODE)
        .await
        .assert_error(400, "ONE_TIME_PASSWORD_SMS.VERIFICATION_FAILED");
    assert!(sim.messages().is_empty(), "nothing reached the SMSC");

    // A production client sending to the magic numbers gets normal treatment: its SMS go to
    // the SMSC with a generated code, and an error number is just a number.
    let id = id_of(&app.send_code(FIXED).await);
    let code = app.last_code(FIXED);
    assert_eq!(app.validate(&id, &code).await.status, 204);
    let (blocked, ..) = ERRORS[2];
    id_of(&app.send_code(blocked).await);
    assert_eq!(sim.messages_for(blocked).len(), 1);
}

#[actix_web::test]
async fn each_magic_error_number_answers_its_camara_error_to_a_sandbox_client() {
    let (app, sim, a, _) = sandbox_app().await;
    for (number, _, status, code) in ERRORS {
        send_as(&app, &a, number).await.assert_error(status, code);
    }
    assert!(numbers(&inbox(&app, Some(&a), "").await).is_empty());
    assert!(sim.messages().is_empty());
}

#[actix_web::test]
async fn the_example_sandbox_configuration_loads_and_validates() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sandbox.toml");
    let mut settings = Settings::load(Some(&path)).unwrap();
    assert_eq!(
        settings.audit.file.as_deref(),
        Some(std::path::Path::new("/var/log/otp-gateway/audit.jsonl"))
    );
    // Validation opens the audit file; point it somewhere this machine can write.
    settings.audit.file = Some(std::env::temp_dir().join("otpgw-example-audit.jsonl"));
    let config = settings.validate().unwrap();
    let sandboxed: Vec<_> = config
        .auth
        .clients
        .iter()
        .map(|c| (c.id.as_str(), c.sandbox))
        .collect();
    assert_eq!(sandboxed, [("cool-app", false), ("cool-app-sandbox", true)]);
    assert_eq!(config.sandbox.numbers.len(), 1 + ERRORS.len());
    assert_eq!(config.usage.retention.as_secs(), 400 * 86_400);
}
