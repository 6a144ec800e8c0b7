//! The SMSC crashes and comes back while send-code traffic runs: every 200 corresponds to
//! exactly one message the SMSC acknowledged, every failure is an honest CAMARA 503/504, no
//! request outlives its deadline, and the sessions bind again within the back-off bound.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::http::Method;
use otp_gateway::smsc_sim::{self, SimSettings};

use crate::helpers::{spawn_app_with, TestApp};

const SUBMIT_TIMEOUT: Duration = Duration::from_millis(800);
const RECONNECT_MAX: Duration = Duration::from_millis(300);
/// HTTP, JSON and token checks on top of the SMPP deadline.
const HTTP_SLACK: Duration = Duration::from_millis(400);

struct Outcome {
    phone: String,
    status: u16,
    code: Option<String>,
    took: Duration,
}

async fn load(app: Rc<TestApp>, worker: usize, until: Instant, out: Rc<RefCell<Vec<Outcome>>>) {
    let mut i = 0;
    while Instant::now() < until {
        let phone = format!("+3460{worker:02}{i:05}");
        i += 1;
        let started = Instant::now();
        let r = app.send_code(&phone).await;
        let took = started.elapsed();
        let code = (r.status != 200).then(|| r.json()["code"].as_str().unwrap_or("").to_owned());
        out.borrow_mut().push(Outcome {
            phone,
            status: r.status.as_u16(),
            code,
            took,
        });
    }
}

async fn ready(app: &TestApp) -> bool {
    app.request(Method::GET, &format!("{}/health/ready", app.admin))
        .await
        .status
        == 200
}

#[actix_web::test]
async fn smsc_killed_and_restarted_under_send_code_load() {
    let app = Rc::new(
        spawn_app_with(|s| {
            s.smpp.session.binds = 2;
            s.smpp.session.submit_timeout = SUBMIT_TIMEOUT;
            s.smpp.session.response_timeout = Duration::from_millis(300);
            s.smpp.session.reconnect_min = Duration::from_millis(50);
            s.smpp.session.reconnect_max = RECONNECT_MAX;
            s.otp.max_codes_per_number = 100;
        })
        .await,
    );
    let first = app.sim.clone();
    let sim_settings: SimSettings = first.settings();
    let outcomes = Rc::new(RefCell::new(Vec::new()));
    let until = Instant::now() + Duration::from_millis(2500);
    let workers: Vec<_> = (0..8)
        .map(|w| actix_web::rt::spawn(load(Rc::clone(&app), w, until, Rc::clone(&outcomes))))
        .collect();

    // Crash: every session drops without unbind, and nothing listens any more.
    tokio::time::sleep(Duration::from_millis(600)).await;
    first.disconnect_all();
    first.stop().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!ready(&app).await, "still ready with the SMSC down");

    // The SMSC returns on the same address.
    let second = smsc_sim::start(SimSettings {
        listen: first.local_addr(),
        ..sim_settings
    })
    .await
    .unwrap();
    let back = Instant::now();
    while !ready(&app).await {
        assert!(
            back.elapsed() < RECONNECT_MAX + Duration::from_millis(500),
            "not bound again within the back-off bound"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rebound = back.elapsed();

    for w in workers {
        w.await.unwrap();
    }
    // Every worker has finished: take the results out of the shared cell.
    let outcomes = outcomes.take();
    let ok = outcomes.iter().filter(|o| o.status == 200).count();
    let failed = outcomes.len() - ok;
    assert!(
        ok > 20 && failed > 0,
        "ok {ok}, failed {failed}: the load did not span the outage"
    );
    for o in outcomes.iter() {
        assert!(
            o.took <= SUBMIT_TIMEOUT + HTTP_SLACK,
            "{} took {:?}, past its deadline",
            o.phone,
            o.took
        );
        let delivered = first.messages_for(&o.phone).len() + second.messages_for(&o.phone).len();
        match (o.status, o.code.as_deref()) {
            (200, _) => assert_eq!(
                delivered, 1,
                "{}: a 200 must be one acknowledged SMS",
                o.phone
            ),
            (503, Some("UNAVAILABLE")) => {
                assert_eq!(delivered, 0, "{}: 503 but delivered", o.phone)
            }
            // The SMSC may have taken a message whose answer never came.
            (504, Some("TIMEOUT")) => assert!(delivered <= 1),
            (status, code) => panic!("{}: unexpected {status} {code:?}", o.phone),
        }
    }
    // Every 200 was acknowledged; beyond those, only a 504 (outcome unknown) may have been.
    let acked = first.submit_count() + second.submit_count();
    let ok = u64::try_from(ok).unwrap();
    let unknown = u64::try_from(outcomes.iter().filter(|o| o.status == 504).count()).unwrap();
    assert!(
        (ok..=ok + unknown).contains(&acked),
        "acknowledged submits {acked}: expected between {ok} (the 200s) and {} (with every 504)",
        ok + unknown
    );
    println!(
        "chaos: {} requests, {ok} ok, {failed} failed, rebound after {rebound:?}",
        outcomes.len()
    );
    second.stop().await;
}
