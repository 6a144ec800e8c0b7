//! Late acceptance: the SMSC acknowledges a submit_sm after the gateway answered 504. The
//! message must not stay with the SMSC: it is cancelled (cancel_sm), and the admin lookup of
//! the authenticationId says so.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use awc::http::Method;
use otp_gateway::smsc_sim::SimFaults;

use crate::helpers::spawn_app_with;

/// The authenticationIds of every "SMS not accepted" line so far.
fn failed_ids() -> Vec<String> {
    let log = crate::log_capture::text();
    log.match_indices("SMS not accepted id=")
        .filter_map(|(at, m)| log.get(at + m.len()..at + m.len() + 36))
        .map(str::to_owned)
        .collect()
}

async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

#[actix_web::test]
async fn a_send_code_answered_504_whose_sms_is_accepted_late_ends_cancelled() {
    crate::log_capture::start();
    let app = spawn_app_with(|s| {
        s.smpp.session.submit_timeout = Duration::from_millis(400);
        // The simulator "delivers" (sends the receipt) only after 10s: time to cancel.
        s.smpp.embedded_receipt_delay = Duration::from_secs(10);
        s.smpp.simulator = SimFaults {
            late_submits: 1,
            late_delay: Duration::from_millis(900),
            ..SimFaults::default()
        };
    })
    .await;
    let phone = "+34600777001";
    app.send_code(phone).await.assert_error(504, "TIMEOUT");
    assert_eq!(app.sim.accepted().len(), 1, "the SMSC took it, late");
    assert!(
        eventually(Duration::from_secs(3), || app.sim.cancelled().len() == 1).await,
        "never cancelled"
    );
    assert!(
        app.sim.messages_for(phone).is_empty(),
        "the handset never shows it"
    );

    // The admin lookup of the id the 504 was about shows the cancelled segment.
    let mut found = None;
    for id in failed_ids() {
        let r = app
            .request(
                Method::GET,
                &format!("{}/admin/v1/authentications/{id}", app.admin),
            )
            .await;
        if r.status == 200 {
            found = Some(r.json());
        }
    }
    let report = found.expect("the 504's authenticationId has a delivery report");
    assert_eq!(report["state"], "cancelled", "{report}");
    assert_eq!(report["segments"][0]["state"], "cancelled");
    assert_eq!(
        report["segments"][0]["messageId"],
        app.sim.cancelled()[0].message_id
    );
    assert_eq!(report["phoneNumber"], "+346******01");
    let metrics = app
        .request(Method::GET, &format!("{}/metrics", app.admin))
        .await;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        metrics.contains(r#"otp_sms_smpp_cancel_total{result="cancelled",route="default"} 1"#),
        "{metrics}"
    );
}

/// Concurrent sends against an SMSC that throttles and answers slowly: many end 503 or 504,
/// but no SMS the SMSC accepted without a 200 stays with it uncancelled.
#[actix_web::test]
async fn a_throttled_burst_leaves_no_accepted_sms_without_a_200() {
    const SENDS: usize = 300;
    let app = spawn_app_with(|s| {
        s.smpp.session.binds = 2;
        s.smpp.session.submit_timeout = Duration::from_millis(600);
        s.smpp.session.response_timeout = Duration::from_millis(250);
        s.smpp.embedded_receipt_delay = Duration::from_secs(30);
        s.smpp.simulator = SimFaults {
            throttle_tps: 40,
            response_delay: Duration::from_millis(40),
            // A few answers come after the gateway gave up.
            late_submits: 20,
            late_delay: Duration::from_millis(700),
            ..SimFaults::default()
        };
    })
    .await;
    let phones: Vec<String> = (0..SENDS).map(|i| format!("+3460{i:07}")).collect();
    let replies = futures::future::join_all(phones.iter().map(|p| app.send_code(p))).await;
    let ok: HashSet<&str> = phones
        .iter()
        .zip(&replies)
        .filter(|(_, r)| r.status == 200)
        .map(|(p, _)| p.as_str())
        .collect();
    let count = |status: u16| replies.iter().filter(|r| r.status == status).count();
    // Late answers and their cancels settle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let accepted = app.sim.accepted();
    let cancelled: HashSet<String> = app
        .sim
        .cancelled()
        .into_iter()
        .map(|c| c.message_id)
        .collect();
    let without_200: Vec<_> = accepted
        .iter()
        .filter(|a| !ok.contains(a.phone_number.as_str()))
        .collect();
    let left_behind = without_200
        .iter()
        .filter(|a| !cancelled.contains(&a.message_id))
        .count();
    let still_shown = phones
        .iter()
        .filter(|p| !ok.contains(p.as_str()))
        .map(|p| app.sim.messages_for(p).len())
        .sum::<usize>();
    println!(
        "burst of {SENDS}: 200={} 503={} 504={} accepted={} accepted_without_200={} cancelled={} accepted_without_200_not_cancelled={left_behind}",
        count(200),
        count(503),
        count(504),
        accepted.len(),
        without_200.len(),
        cancelled.len(),
    );
    if std::env::var("TEST_LOG").is_ok() {
        let log = crate::log_capture::text();
        for l in log.lines().take(100000) {
            println!("{l}");
        }
    }
    assert_eq!(count(200) + count(503) + count(504), SENDS);
    assert_eq!(left_behind, 0);
    assert_eq!(still_shown, 0);
}
