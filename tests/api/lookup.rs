//! The number lookup hook (`[policy.lookup]`, issue 13 item 1). No real HLR or
//! number-portability service can run here, so each test starts a stand-in on 127.0.0.1: a
//! small actix-web server speaking the documented contract (POST `{"phoneNumber"}` →
//! `{"result"}`), answering by the number's last two digits, counting the calls per number and
//! able to hold an answer back until the test releases it.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use otp_gateway::config::{LookupFailure, LookupSettings, Settings};
use otp_gateway::domain::Secret;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::helpers::*;
use crate::log_capture;

const TOKEN: &str = "hlr-stand-in-token";
const SERVE: &str = "+34600001001";
const NOT_ALLOWED: &str = "+34600001002";
const BLOCKED: &str = "+34600001003";
/// Ported out: served by another operator although in this one's ranges.
const PORTED_OUT: &str = "+34600001004";
/// Answered only once the test releases the gate (or never).
const HELD: &str = "+34600001005";
/// Answered with something that is not the contract.
const GARBLED: &str = "+34600001006";

#[derive(Clone)]
struct StandIn {
    calls: Arc<Mutex<HashMap<String, usize>>>,
    /// `Authorization` and `X-API-Key` headers received.
    credentials: Arc<Mutex<Vec<String>>>,
    gate: Arc<Semaphore>,
    url: String,
}

impl StandIn {
    fn calls(&self, phone: &str) -> usize {
        self.calls.lock().unwrap().get(phone).copied().unwrap_or(0)
    }

    fn release(&self) {
        self.gate.add_permits(1000);
    }

    async fn until_called(&self, phone: &str) {
        for _ in 0..200 {
            if self.calls(phone) > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the stand-in never received {phone}");
    }
}

async fn answer(req: HttpRequest, body: web::Json<Value>, s: web::Data<StandIn>) -> HttpResponse {
    let phone = body["phoneNumber"].as_str().unwrap_or_default().to_owned();
    *s.calls.lock().unwrap().entry(phone.clone()).or_default() += 1;
    for name in ["authorization", "x-api-key"] {
        if let Some(value) = req.headers().get(name) {
            s.credentials
                .lock()
                .unwrap()
                .push(format!("{name}: {}", value.to_str().unwrap()));
        }
    }
    let result = match &phone[phone.len() - 2..] {
        "02" => "not_allowed",
        "03" => "blocked",
        "04" => "other_operator",
        "05" => {
            let _permit = s.gate.acquire().await.unwrap();
            "serve"
        }
        "06" => return HttpResponse::Ok().body("<html>maintenance</html>"),
        _ => "serve",
    };
    HttpResponse::Ok().json(json!({"result": result, "network": "stand-in"}))
}

fn start_stand_in() -> StandIn {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let state = StandIn {
        calls: Arc::default(),
        credentials: Arc::default(),
        gate: Arc::new(Semaphore::new(0)),
        url: format!("http://{}/lookup", listener.local_addr().unwrap()),
    };
    let data = web::Data::new(state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/lookup", web::post().to(answer))
    })
    .workers(2)
    .listen(listener)
    .unwrap()
    .disable_signals()
    .run();
    actix_web::rt::spawn(server);
    state
}

fn with_lookup(
    url: &str,
    on_failure: LookupFailure,
    timeout: Duration,
) -> impl FnOnce(&mut Settings) + '_ {
    move |s: &mut Settings| {
        s.policy.lookup = Some(LookupSettings {
            url: url.to_owned(),
            timeout,
            cache_ttl: Duration::from_secs(3600),
            negative_cache_ttl: Duration::from_secs(300),
            cache_entries: 1000,
            max_concurrency: 4,
            on_failure,
            credential: Some(Secret::new(TOKEN)),
            credential_header: None,
        });
    }
}

#[actix_web::test]
async fn each_lookup_result_gives_its_camara_answer_and_is_asked_once_per_number() {
    let hlr = start_stand_in();
    let app = spawn_app_with(with_lookup(
        &hlr.url,
        LookupFailure::Closed,
        Duration::from_secs(5),
    ))
    .await;
    for _ in 0..2 {
        assert_eq!(app.send_code(SERVE).await.status, 200);
        app.send_code(NOT_ALLOWED)
            .await
            .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED");
        app.send_code(BLOCKED)
            .await
            .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED");
        app.send_code(PORTED_OUT)
            .await
            .assert_error(404, "NOT_FOUND");
    }
    for phone in [SERVE, NOT_ALLOWED, BLOCKED, PORTED_OUT] {
        assert_eq!(hlr.calls(phone), 1, "{phone}: the second answer is cached");
    }
    assert!(app.sim.messages_for(NOT_ALLOWED).is_empty());
    assert!(hlr
        .credentials
        .lock()
        .unwrap()
        .iter()
        .all(|c| c == &format!("authorization: Bearer {TOKEN}")));
    assert_eq!(hlr.credentials.lock().unwrap().len(), 4);
    // The static lists answer first: the lookup service is not asked about them.
    app.send_code(CANNOT_RECEIVE_SMS)
        .await
        .assert_error(403, "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED");
    app.send_code(OTHER_OPERATOR)
        .await
        .assert_error(404, "NOT_FOUND");
    assert_eq!(hlr.calls(CANNOT_RECEIVE_SMS), 0);
    assert_eq!(hlr.calls(OTHER_OPERATOR), 0);
    assert_eq!(metric(&app, "otp_sms_lookup_cache_hits_total").await, 4.0);
    assert_eq!(
        metric(&app, "otp_sms_lookup_total{result=\"blocked\"}").await,
        2.0
    );
    assert_eq!(
        metric(&app, "otp_sms_lookup_total{result=\"serve\"}").await,
        2.0
    );
}

#[actix_web::test]
async fn a_lookup_that_times_out_fails_open_with_a_warning_and_a_metric_and_is_not_cached() {
    log_capture::start();
    let hlr = start_stand_in();
    let app = spawn_app_with(with_lookup(
        &hlr.url,
        LookupFailure::Open,
        Duration::from_millis(300),
    ))
    .await;
    assert_eq!(
        app.send_code(HELD).await.status,
        200,
        "served as if `serve`"
    );
    assert_eq!(app.send_code(HELD).await.status, 200);
    assert_eq!(hlr.calls(HELD), 2, "a failure is never cached");
    assert_eq!(
        metric(
            &app,
            "otp_sms_lookup_failures_total{on_failure=\"open\",reason=\"timeout\"}"
        )
        .await,
        2.0
    );
    let log = log_capture::text();
    assert!(
        log.contains("number lookup failed; serving the number"),
        "{log}"
    );
    assert!(!log.contains(HELD), "the number is masked in the log");
    assert!(!log.contains(TOKEN), "the credential is never logged");
    assert!(log.contains("+346******05"), "{log}");
    hlr.release();
}

#[actix_web::test]
async fn a_failed_lookup_fails_closed_with_503_unavailable() {
    let hlr = start_stand_in();
    let app = spawn_app_with(with_lookup(
        &hlr.url,
        LookupFailure::Closed,
        Duration::from_millis(300),
    ))
    .await;
    app.send_code(HELD).await.assert_error(503, "UNAVAILABLE");
    app.send_code(GARBLED)
        .await
        .assert_error(503, "UNAVAILABLE");
    assert!(app.sim.messages_for(HELD).is_empty());
    assert_eq!(
        metric(
            &app,
            "otp_sms_lookup_failures_total{on_failure=\"closed\",reason=\"bad_answer\"}"
        )
        .await,
        1.0
    );
    // An unreachable service fails the same way.
    let dead = spawn_app_with(with_lookup(
        "http://127.0.0.1:9/lookup",
        LookupFailure::Closed,
        Duration::from_millis(300),
    ))
    .await;
    dead.send_code(SERVE).await.assert_error(503, "UNAVAILABLE");
    hlr.release();
}

#[actix_web::test]
async fn a_slow_lookup_holds_up_neither_other_numbers_nor_a_second_request_for_it() {
    let hlr = start_stand_in();
    let app = spawn_app_with(with_lookup(
        &hlr.url,
        LookupFailure::Closed,
        Duration::from_secs(20),
    ))
    .await;
    let held_done = Cell::new(0);
    let held = || async {
        let r = app.send_code(HELD).await;
        held_done.set(held_done.get() + 1);
        r
    };
    let (first, second, ()) = futures::join!(held(), held(), async {
        hlr.until_called(HELD).await;
        // Another number is answered while the held one still waits.
        assert_eq!(app.send_code(SERVE).await.status, 200);
        assert_eq!(held_done.get(), 0, "the held lookups are still waiting");
        // Give the second request for the held number time to join the first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        hlr.release();
    });
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 200);
    assert_eq!(
        hlr.calls(HELD),
        1,
        "concurrent lookups of one number share one call"
    );
}

#[actix_web::test]
async fn the_credential_can_travel_in_a_header_of_the_operators_choice() {
    let hlr = start_stand_in();
    let url = hlr.url.clone();
    let app = spawn_app_with(move |s| {
        with_lookup(&url, LookupFailure::Closed, Duration::from_secs(5))(s);
        let lookup = s.policy.lookup.as_mut().unwrap();
        lookup.credential_header = Some("X-API-Key".into());
    })
    .await;
    assert_eq!(app.send_code(SERVE).await.status, 200);
    assert_eq!(
        *hlr.credentials.lock().unwrap(),
        [format!("x-api-key: {TOKEN}")]
    );
}
