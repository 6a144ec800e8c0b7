//! The shutdown sequence seen from outside: readiness drops first, the API keeps answering
//! through `http.shutdown_grace`, then everything stops and `run_until_stopped` returns `Ok`.

use std::time::{Duration, Instant};

use awc::http::Method;

use crate::helpers::spawn_app_with;

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

#[actix_web::test]
async fn during_the_grace_readiness_is_503_draining_while_send_code_still_answers() {
    // A grace far longer than the test: everything below happens inside it.
    let app = spawn_app_with(|s| s.http.shutdown_grace = Duration::from_secs(600)).await;
    let ready_url = format!("{}/health/ready", app.admin);
    let before = app.request(Method::GET, &ready_url).await;
    assert_eq!(before.status, 200);
    assert_eq!(before.json()["checks"]["draining"], false);

    app.request_stop();
    // Readiness reads the token, which the stop cancels synchronously: no polling needed.
    let during = app.request(Method::GET, &ready_url).await;
    assert_eq!(during.status, 503);
    let body = during.json();
    assert_eq!(body["status"], "DOWN");
    assert_eq!(body["checks"]["draining"], true);

    // The API still serves during the grace, SMS included.
    let r = app.send_code("+34600000401").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(!app.last_code("+34600000401").is_empty());
    let fresh = app.fetch_token("demo", "demo-secret").await;
    assert!(!fresh.is_empty());
}

#[actix_web::test]
async fn after_the_grace_everything_stops_and_run_until_stopped_returns_ok() {
    let grace = Duration::from_millis(100);
    let mut app = spawn_app_with(|s| s.http.shutdown_grace = grace).await;
    assert_eq!(app.send_code("+34600000402").await.status, 200);
    let unbinds_before = app.sim.unbind_count();

    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(20), app.stop_and_wait())
        .await
        .expect("the shutdown finishes");
    assert!(ended.is_ok(), "run_until_stopped returned {ended:?}");
    assert!(started.elapsed() >= grace, "the grace was waited out");

    // The API and admin listeners are closed, the SMPP session was unbound, and the
    // simulator (stopped last) has no session left and no longer listens.
    assert!(std::net::TcpStream::connect(addr(&app.api)).is_err());
    assert!(std::net::TcpStream::connect(addr(&app.admin)).is_err());
    assert!(app.sim.unbind_count() > unbinds_before);
    assert_eq!(app.sim.active_sessions(), 0);
    assert!(std::net::TcpStream::connect(app.sim.local_addr()).is_err());
}
