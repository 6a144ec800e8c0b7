//! Delivery receipts across replicas (issue 10, item 4): two gateways on one Redis and one
//! shared SMSC simulator with one `system_id`. Gateway A binds a transmitter only; B binds a
//! transmitter and a receiver, so the simulator (which routes a transmitter's receipts to a
//! receiver of the same `system_id`, as SMSCs do) delivers the receipts of A's submits on B's
//! session. B applies them to the state A filed in Redis, and A's admin lookup shows it.

use std::time::Duration;

use awc::http::Method;
use otp_gateway::config::{RouteEntry, Settings, StoreBackend};
use otp_gateway::domain::Secret;
use otp_gateway::smpp::BindMode;
use otp_gateway::smsc_sim::{self, SimSettings, SmscHandle};
use otp_gateway::store::redis::testkit::RedisServer;
use serde_json::Value;

use crate::helpers::*;

async fn shared_sim() -> SmscHandle {
    smsc_sim::start(SimSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        system_id: "otpgw".into(),
        password: "secret".into(),
        receipt_delay: Duration::from_millis(10),
        print_messages: false,
        inbox_capacity: 100,
        faults: Default::default(),
    })
    .await
    .unwrap()
}

fn replica(redis: String, sim: &SmscHandle, receiver: bool) -> impl FnOnce(&mut Settings) {
    let url = format!("smpp://otpgw:secret@127.0.0.1:{}", sim.local_addr().port());
    move |s: &mut Settings| {
        s.store.backend = StoreBackend::Redis;
        s.store.redis_url = Some(Secret::new(redis));
        s.store.redis_timeout = Duration::from_secs(2);
        s.smpp.session.bind_mode = BindMode::Transmitter;
        s.smpp.session.receiver_bind = receiver;
        s.smpp.routes = vec![RouteEntry::new("default", url.parse().unwrap(), &[], 1)];
    }
}

async fn lookup(app: &TestApp, id: &str) -> (u16, Value) {
    let r = app
        .request(
            Method::GET,
            &format!("{}/admin/v1/authentications/{id}", app.admin),
        )
        .await;
    let body = if r.status == 200 {
        r.json()
    } else {
        Value::Null
    };
    (r.status.as_u16(), body)
}

async fn metrics(app: &TestApp) -> String {
    let m = app
        .request(Method::GET, &format!("{}/metrics", app.admin))
        .await;
    String::from_utf8_lossy(&m.body).into_owned()
}

/// Polls the admin lookup on `app` until the message reads `delivered`.
async fn delivered_on(app: &TestApp, id: &str) -> Value {
    let mut last = (0, Value::Null);
    for _ in 0..100 {
        last = lookup(app, id).await;
        if last.1["state"] == "delivered" {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("never delivered on this replica: {last:?}");
}

#[actix_web::test]
async fn a_receipt_that_arrives_on_b_updates_the_state_a_created() {
    let redis = RedisServer::start().unwrap();
    let sim = shared_sim().await;
    let a = spawn_app_routed(replica(redis.url(), &sim, false), sim.clone()).await;
    let b = spawn_app_routed(replica(redis.url(), &sim, true), sim.clone()).await;
    // A's transmitter, B's transmitter and B's receiver.
    let mut bound = false;
    for _ in 0..200 {
        if sim.active_sessions() == 3 {
            bound = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(bound, "three sessions bind");
    // The receiver registers on its bind_resp, just after it connects.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let phone = "+34600001001";
    let r = a.send_code(phone).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["authenticationId"].as_str().unwrap().to_owned();
    let report = delivered_on(&a, &id).await;
    assert_eq!(report["authenticationId"], id.as_str());
    assert_eq!(report["phoneNumber"], "+346******01");
    assert_eq!(report["route"], "default");
    assert_eq!(report["segments"][0]["state"], "delivered");
    assert_eq!(
        report["segments"][0]["messageId"],
        sim.accepted()[0].message_id
    );
    assert!(report["segments"][0]["receiptAt"].is_string());
    // The state is one: B reads the same report.
    assert_eq!(delivered_on(&b, &id).await, report);

    // B's session took the receipt and B counted it; A, with no receiver, received none.
    let delivered = r#"otp_sms_smpp_receipts_total{state="delivered"} 1"#;
    assert!(metrics(&b).await.contains(delivered));
    assert!(!metrics(&a).await.contains(delivered));

    // A message B submits is readable on A as well.
    let id = b.issue("+34600001002").await.0;
    delivered_on(&a, &id).await;
    // Unknown ids stay 404 with the shared state.
    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_eq!(lookup(&a, unknown).await.0, 404);
}
