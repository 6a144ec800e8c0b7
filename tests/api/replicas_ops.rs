//! Replicas on Redis under operations (issue 10): the per-client rate limit shared by two
//! replicas, a Cluster master killed under load, a replica stopped (as SIGTERM would) under
//! load, and the store metrics both backends export. Real `redis-server` processes.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use awc::http::Method;
use otp_gateway::config::{ClientEntry, Settings, StoreBackend};
use otp_gateway::domain::Secret;
use otp_gateway::store::redis::testkit::{RedisCluster, RedisServer};
use serde_json::json;

use crate::helpers::*;

fn on_redis(url: Option<String>, cluster: Vec<String>) -> impl Fn(&mut Settings) + Clone {
    move |s: &mut Settings| {
        s.store.backend = StoreBackend::Redis;
        s.store.redis_url = url.clone().map(Secret::new);
        s.store.redis_cluster_urls = cluster.iter().map(|u| Secret::new(u.as_str())).collect();
        s.store.redis_timeout = Duration::from_secs(2);
    }
}

/// A distinct number per call, so the per-number quotas never interfere with the load.
fn number(worker: usize, i: usize) -> String {
    format!("+3461{worker:02}{i:05}")
}

/// send-code without panicking on a transport error: `None` when no answer came.
async fn try_send(app: &TestApp, phone: &str) -> Option<Reply> {
    let body = json!({"phoneNumber": phone, "message": MESSAGE}).to_string();
    let mut res = app
        .client
        .post(format!("{}/one-time-password-sms/v1/send-code", app.api))
        .insert_header(("Authorization", format!("Bearer {}", app.token)))
        .insert_header(("Content-Type", "application/json"))
        .send_body(body)
        .await
        .ok()?;
    let body = res.body().await.ok()?.to_vec();
    Some(Reply {
        status: res.status(),
        headers: res.headers().clone(),
        body,
    })
}

#[actix_web::test]
async fn two_replicas_on_one_redis_share_a_clients_rate_limit() {
    let redis = RedisServer::start().unwrap();
    let setup = {
        let redis_setup = on_redis(Some(redis.url()), Vec::new());
        move |s: &mut Settings| {
            redis_setup(s);
            s.auth.clients = vec![ClientEntry {
                id: "demo".into(),
                secret: "demo-secret".into(),
                scopes: vec![SCOPE.into()],
                token_ttl: None,
                rate_limit: Some(4),
                ..Default::default()
            }];
        }
    };
    let a = spawn_app_with(setup.clone()).await;
    let b = spawn_app_with(setup).await;
    // Each replica's own bucket would allow 4 (8 together); the shared one allows 4, and at
    // most one more refilled while the requests ran.
    let mut ok = 0;
    let mut throttled = 0;
    for i in 0..8 {
        let app = if i % 2 == 0 { &a } else { &b };
        let r = app.send_code(&format!("+3460000095{i}")).await;
        match r.status.as_u16() {
            200 => ok += 1,
            429 => {
                r.assert_error(429, "TOO_MANY_REQUESTS");
                assert_eq!(r.header("retry-after").as_deref(), Some("1"));
                throttled += 1;
            }
            s => panic!("unexpected {s}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    assert!((4..=5).contains(&ok), "{ok} allowed, {throttled} throttled");
    assert_eq!(a.sim.submit_count() + b.sim.submit_count(), ok);
    // After a second the bucket is full again, on either replica.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(b.send_code("+34600000960").await.status, 200);
}

/// What the load saw for one code.
#[derive(Default)]
struct Tally {
    sends_ok: usize,
    sends_503: usize,
    validated: usize,
    validates_503: usize,
    /// Issued codes whose validation has not answered yet (503 so far).
    owed: Vec<(String, String)>,
    /// Answered 204 and then something other than VERIFICATION_EXPIRED: a second use.
    twice: usize,
    /// A 200 whose right code was then refused, with no 503 on it first.
    lost: Vec<String>,
    /// A right code refused as expired after a 503 on validating it: the answer of a
    /// validation that did run was lost with the master (allowed, counted).
    answer_lost: usize,
    last_error: Option<Instant>,
    first_error: Option<Instant>,
}

/// Validates `code` on `app`: true when it answered (204 or a refusal), false on 503.
async fn validate_once(
    app: &TestApp,
    other: &TestApp,
    id: &str,
    code: &str,
    retried: bool,
    t: &RefCell<Tally>,
) -> bool {
    let r = app.validate(id, code).await;
    match r.status.as_u16() {
        204 => {
            t.borrow_mut().validated += 1;
            // Single use, on the other replica too.
            let again = other.validate(id, code).await;
            if again.status != 400
                || again.json()["code"] != "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED"
            {
                // A 503 here proves nothing either way; anything else is a second use.
                if again.status != 503 {
                    t.borrow_mut().twice += 1;
                }
            }
            true
        }
        503 => {
            let mut t = t.borrow_mut();
            t.validates_503 += 1;
            let now = Instant::now();
            t.first_error.get_or_insert(now);
            t.last_error = Some(now);
            false
        }
        400 if retried && r.json()["code"] == "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED" => {
            t.borrow_mut().answer_lost += 1;
            true
        }
        s => {
            t.borrow_mut()
                .lost
                .push(format!("{s} {}", String::from_utf8_lossy(&r.body)));
            true
        }
    }
}

#[actix_web::test]
async fn a_cluster_master_killed_under_load_costs_503s_until_its_replica_takes_over() {
    let mut cluster = RedisCluster::start(3, 1).unwrap();
    let setup = {
        let redis_setup = on_redis(None, cluster.urls());
        move |s: &mut Settings| {
            redis_setup(s);
            s.store.redis_timeout = Duration::from_millis(1000);
            // An acknowledged code must survive the master: the replica holds it first.
            s.store.redis_wait_replicas = 1;
        }
    };
    let a = spawn_app_with(setup.clone()).await;
    let b = spawn_app_with(setup).await;
    let tally = RefCell::new(Tally::default());
    let killed_at: RefCell<Option<Instant>> = RefCell::new(None);
    let deadline = Instant::now() + Duration::from_secs(45);
    // Enough quiet time after the last 503 to call service resumed.
    let quiet = Duration::from_secs(2);

    let done = || {
        let t = tally.borrow();
        match (*killed_at.borrow(), t.last_error) {
            _ if Instant::now() > deadline => true,
            (Some(_), Some(last)) => last.elapsed() > quiet,
            _ => false,
        }
    };
    let worker = |w: usize| {
        let (a, b, tally, done) = (&a, &b, &tally, &done);
        async move {
            let mut i = 0;
            while !done() {
                i += 1;
                let phone = number(w, i);
                // Alternate which replica sends and which validates.
                let (send_on, check_on) = if i % 2 == 0 { (a, b) } else { (b, a) };
                let r = send_on.send_code(&phone).await;
                match r.status.as_u16() {
                    200 => {
                        let id = r.json()["authenticationId"].as_str().unwrap().to_string();
                        let code = send_on.last_code(&phone);
                        tally.borrow_mut().sends_ok += 1;
                        if !validate_once(check_on, send_on, &id, &code, false, tally).await {
                            tally.borrow_mut().owed.push((id, code));
                        }
                    }
                    503 => {
                        let mut t = tally.borrow_mut();
                        t.sends_503 += 1;
                        let now = Instant::now();
                        t.first_error.get_or_insert(now);
                        t.last_error = Some(now);
                    }
                    s => panic!(
                        "send-code answered {s}: {}",
                        String::from_utf8_lossy(&r.body)
                    ),
                }
            }
        }
    };
    let killer = async {
        let started = Instant::now();
        while tally.borrow().sends_ok < 40 && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        {
            let t = tally.borrow();
            println!(
                "before the kill: {} sends in {:?}",
                t.sends_ok,
                started.elapsed()
            );
            assert!(t.sends_ok >= 40, "the load runs before the kill");
            assert!(
                t.first_error.is_none(),
                "no error before the kill: {} sends 503",
                t.sends_503
            );
        }
        // nodes[0] is a master (`redis-cli` lists masters first).
        cluster.nodes[0].kill();
        *killed_at.borrow_mut() = Some(Instant::now());
        // Its replica is promoted after cluster-node-timeout, but has no replica of its own
        // for `WAIT 1` until the old master, restarted as an orchestrator would, rejoins as
        // one: that shard's sends and validations answer 503 until then.
        tokio::time::sleep(Duration::from_secs(3)).await;
        cluster.nodes[0].restart().unwrap();
        println!(
            "restarted the killed master after {:?}",
            killed_at.borrow().unwrap().elapsed()
        );
    };
    futures::join!(killer, async {
        futures::future::join_all((0..4).map(worker)).await;
    });

    // Codes whose validation met the outage still validate, exactly once, now.
    let owed = std::mem::take(&mut tally.borrow_mut().owed);
    for (id, code) in &owed {
        assert!(
            validate_once(&a, &b, id, code, true, &tally).await,
            "an owed code still gets 503 after the fail-over"
        );
    }

    let t = tally.borrow();
    let killed_at = killed_at.borrow().unwrap();
    let outage = t.last_error.map(|l| l.duration_since(killed_at));
    println!(
        "fail-over: sends ok {} / 503 {}, validations 204 {} / 503 {}, answers lost {}, \
         outage (kill to last 503) {:?}, first 503 after {:?}",
        t.sends_ok,
        t.sends_503,
        t.validated,
        t.validates_503,
        t.answer_lost,
        outage,
        t.first_error.map(|f| f.duration_since(killed_at)),
    );
    assert!(
        Instant::now() < deadline,
        "service did not resume within the bound"
    );
    assert!(
        t.sends_503 + t.validates_503 > 0,
        "the killed master's slots were hit"
    );
    assert!(outage.unwrap() < Duration::from_secs(15), "{outage:?}");
    assert_eq!(t.twice, 0, "a code validated twice");
    assert!(t.lost.is_empty(), "acknowledged codes lost: {:?}", t.lost);
    assert_eq!(
        t.validated + t.answer_lost,
        t.sends_ok,
        "every issued code was used once"
    );
}

#[actix_web::test]
async fn a_replica_stopped_under_load_answers_everything_it_accepted_and_its_codes_validate_on_the_other(
) {
    let redis = RedisServer::start().unwrap();
    let setup = on_redis(Some(redis.url()), Vec::new());
    let grace = Duration::from_millis(800);
    let mut a = spawn_app_with({
        let setup = setup.clone();
        move |s: &mut Settings| {
            setup(s);
            s.http.shutdown_grace = grace;
        }
    })
    .await;
    let b = spawn_app_with(setup).await;
    let ready_url = format!("{}/health/ready", a.admin);
    assert_eq!(a.request(Method::GET, &ready_url).await.status, 200);

    let issued = RefCell::new(Vec::<(String, String)>::new());
    let stop_at: RefCell<Option<Instant>> = RefCell::new(None);
    let refused_after: RefCell<Vec<Duration>> = RefCell::new(Vec::new());
    let worker = |w: usize| {
        let (a, issued, stop_at, refused_after) = (&a, &issued, &stop_at, &refused_after);
        async move {
            for i in 0.. {
                let phone = number(40 + w, i);
                match try_send(a, &phone).await {
                    Some(r) => {
                        // Whatever A accepted, before or during the drain, it answered in full.
                        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                        let id = r.json()["authenticationId"].as_str().unwrap().to_string();
                        issued.borrow_mut().push((id, a.last_code(&phone)));
                    }
                    None => {
                        // No answer: A no longer takes connections (a load balancer sends
                        // the request to B). Only ever after the stop.
                        let stopped = stop_at
                            .borrow()
                            .expect("no transport error before the stop");
                        refused_after.borrow_mut().push(stopped.elapsed());
                        return;
                    }
                }
            }
        }
    };
    let stopper = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!issued.borrow().is_empty(), "load runs before the stop");
        a.request_stop();
        *stop_at.borrow_mut() = Some(Instant::now());
        // Readiness drops first, while the API still serves.
        let r = a.request(Method::GET, &ready_url).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.json()["checks"]["draining"], true);
    };
    futures::join!(stopper, futures::future::join_all((0..4).map(worker)));
    let ended = tokio::time::timeout(Duration::from_secs(20), a.stop_and_wait())
        .await
        .expect("A stops");
    assert!(ended.is_ok(), "{ended:?}");

    let issued = issued.into_inner();
    let refused_after = refused_after.into_inner();
    println!(
        "rolling restart: A answered {} sends; it stopped \
         taking connections {:?} after the stop",
        issued.len(),
        refused_after.iter().min()
    );
    assert_eq!(refused_after.len(), 4, "every worker ran until A closed");
    assert!(
        refused_after.iter().all(|d| *d >= grace),
        "A kept serving through the grace: {refused_after:?}"
    );
    // Every code A issued, the last ones included, validates on B.
    for (id, code) in &issued {
        assert_eq!(b.validate(id, code).await.status, 204);
    }
}

#[actix_web::test]
async fn store_metrics_cover_both_backends() {
    let redis = RedisServer::start().unwrap();
    for app in [
        spawn_app().await,
        spawn_app_with(on_redis(Some(redis.url()), Vec::new())).await,
    ] {
        let (id, code) = app.issue("+34600000970").await;
        assert_eq!(app.validate(&id, &code).await.status, 204);
        let text = String::from_utf8(
            app.request(Method::GET, &format!("{}/metrics", app.admin))
                .await
                .body,
        )
        .unwrap();
        for op in ["insert", "activate", "attempt"] {
            let line = format!("otp_sms_store_operation_seconds_count{{op=\"{op}\"}} 1");
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
    }
    // With Redis down the failures are counted by operation and kind.
    let mut redis = redis;
    let app = spawn_app_with(on_redis(Some(redis.url()), Vec::new())).await;
    redis.kill();
    app.send_code("+34600000971")
        .await
        .assert_error(503, "UNAVAILABLE");
    let text = String::from_utf8(
        app.request(Method::GET, &format!("{}/metrics", app.admin))
            .await
            .body,
    )
    .unwrap();
    assert!(
        text.contains("otp_sms_store_errors_total{kind=\"unavailable\",op=\"insert\"} 1"),
        "{text}"
    );
}
