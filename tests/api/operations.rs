//! The token endpoint as a client uses it, the OpenAPI document, and the admin listener.

use awc::http::Method;

use otp_gateway::api::version::CamaraVersion;
use otp_gateway::config::ClientEntry;

use crate::helpers::*;

#[actix_web::test]
async fn quickstart_flow_token_send_read_sms_validate() {
    let app = spawn_app().await;
    // Token with client_secret_post this time (the helper used client_secret_basic).
    let mut res = app
        .client
        .post(format!("{}/oauth2/token", app.api))
        .content_type("application/x-www-form-urlencoded")
        .send_body("grant_type=client_credentials&scope=one-time-password-sms:send-validate&client_id=demo&client_secret=demo-secret")
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], SCOPE);
    let mut app = app;
    app.token = v["access_token"].as_str().unwrap().to_string();

    let r = app.send_code("+34600000301").await;
    assert_eq!(r.status, 200);
    let id = r.json()["authenticationId"].as_str().unwrap().to_string();
    let inbox = app
        .request(
            Method::GET,
            &format!(
                "{}/sandbox/v1/messages?phoneNumber=%2B34600000301",
                app.admin
            ),
        )
        .await;
    assert_eq!(inbox.status, 200);
    let list = inbox.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["phoneNumber"], "+34600000301");
    assert!(list[0]["receivedAt"].is_string());
    let text = list[0]["text"].as_str().unwrap();
    let code = text.split_whitespace().next().unwrap();
    // An unencoded '+' arrives as a space; the sandbox accepts it too.
    let raw_plus = app
        .request(
            Method::GET,
            &format!("{}/sandbox/v1/messages?phoneNumber=+34600000301", app.admin),
        )
        .await;
    assert_eq!(raw_plus.json(), list);
    assert_eq!(app.validate(&id, code).await.status, 204);
}

#[actix_web::test]
async fn wrong_client_secret_gets_no_token() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(format!("{}/oauth2/token", app.api))
        .basic_auth("demo", "wrong-secret")
        .content_type("application/x-www-form-urlencoded")
        .send_body("grant_type=client_credentials")
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[actix_web::test]
async fn discovery_and_jwks_are_served() {
    let app = spawn_app().await;
    let d = app
        .request(
            Method::GET,
            &format!("{}/.well-known/openid-configuration", app.api),
        )
        .await
        .json();
    assert_eq!(d["token_endpoint"], "http://127.0.0.1:8080/oauth2/token");
    let jwks = app
        .request(Method::GET, &format!("{}/oauth2/jwks", app.api))
        .await
        .json();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
}

#[actix_web::test]
async fn openapi_document_and_swagger_ui_are_served_for_the_configured_version() {
    for (version, expected) in [
        (CamaraVersion::V1_1_1, "1.1.1"),
        (CamaraVersion::V1_1_0, "1.1.0"),
    ] {
        let app = spawn_app_with(|s| s.api.camara_version = version).await;
        let doc = app
            .request(Method::GET, &format!("{}/openapi.json", app.api))
            .await;
        assert_eq!(doc.status, 200);
        let v = doc.json();
        assert_eq!(v["info"]["version"], expected);
        assert!(v["paths"]["/send-code"]["post"].is_object());
        // The page notes link the inbox on this instance's real admin port.
        let description = v["info"]["description"].as_str().unwrap();
        assert!(
            description.contains(&format!("{}/sandbox/v1/messages", app.admin)),
            "{description}"
        );
        let page = app
            .request(Method::GET, &format!("{}/docs/", app.api))
            .await;
        assert_eq!(page.status, 200);
        let html = String::from_utf8_lossy(&page.body).to_string();
        assert!(html.contains("swagger-ui-bundle.js"), "{html}");
        let init = app
            .request(
                Method::GET,
                &format!("{}/docs/swagger-initializer.js", app.api),
            )
            .await;
        let init = String::from_utf8_lossy(&init.body).to_string();
        assert!(init.contains("/openapi.json"), "{init}");
        assert!(
            init.contains("one-time-password-sms:send-validate"),
            "{init}"
        );
        assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");
        let css = app
            .request(Method::GET, &format!("{}/docs/swagger-ui.css", app.api))
            .await;
        assert_eq!(css.status, 200);
        assert_eq!(css.header("content-type").as_deref(), Some("text/css"));
        app.request(Method::GET, &format!("{}/docs/no-such-file.js", app.api))
            .await
            .assert_error(404, "NOT_FOUND");
        app.request(Method::POST, &format!("{}/docs/", app.api))
            .await
            .assert_error(405, "METHOD_NOT_ALLOWED");
    }
}

async fn swagger_initializer(app: &TestApp) -> String {
    let init = app
        .request(
            Method::GET,
            &format!("{}/docs/swagger-initializer.js", app.api),
        )
        .await;
    String::from_utf8_lossy(&init.body).to_string()
}

#[actix_web::test]
async fn the_page_prefills_the_demo_client_and_never_a_configured_one() {
    let demo = spawn_app().await;
    let init = swagger_initializer(&demo).await;
    assert!(init.contains("\"clientId\": \"demo\""), "{init}");
    assert!(init.contains("\"clientSecret\": \"demo-secret\""), "{init}");

    // A configured client, even one named like the demo, is never prefilled: its secret is
    // the operator's.
    let configured = spawn_app_with(|s| {
        s.auth.clients = vec![ClientEntry {
            id: "demo".into(),
            secret: "demo-secret".into(),
            scopes: vec!["one-time-password-sms:send-validate".into()],
            token_ttl: None,
            rate_limit: None,
            ..Default::default()
        }];
    })
    .await;
    let init = swagger_initializer(&configured).await;
    assert!(!init.contains("clientId"), "{init}");
    assert!(!init.contains("clientSecret"), "{init}");
}

#[actix_web::test]
async fn health_and_metrics_report_the_gateway_state() {
    let app = spawn_app().await;
    let live = app
        .request(Method::GET, &format!("{}/health/live", app.admin))
        .await;
    assert_eq!(live.status, 200);
    let ready = app
        .request(Method::GET, &format!("{}/health/ready", app.admin))
        .await;
    assert_eq!(
        ready.status,
        200,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
    assert_eq!(ready.json()["checks"]["smpp_bound"], true);

    let (id, code) = app.issue("+34600000302").await;
    app.validate(&id, &wrong_code(&code)).await;
    app.validate(&id, &code).await;
    let m = app
        .request(Method::GET, &format!("{}/metrics", app.admin))
        .await;
    let text = String::from_utf8_lossy(&m.body).to_string();
    for needle in [
        "otp_sms_codes_sent_total 1",
        "otp_sms_smpp_bound 1",
        "otp_sms_validations_total{outcome=\"valid\"} 1",
        "otp_sms_validations_total{outcome=\"invalid_code\"} 1",
        "otp_sms_smpp_submit_duration_seconds_count 1",
        "otp_sms_http_requests_total{method=\"POST\",route=\"/one-time-password-sms/v1/send-code\",status=\"200\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(!text.contains("+34600000302"));

    app.sim.stop().await;
    let mut down = false;
    for _ in 0..50 {
        let ready = app
            .request(Method::GET, &format!("{}/health/ready", app.admin))
            .await;
        if ready.status == 503 {
            down = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(down, "readiness did not notice the SMSC going away");
}

#[actix_web::test]
async fn admin_shows_the_delivery_state_of_an_authentication_id_without_the_code() {
    let app = spawn_app_with(|s| {
        // Receipts that overtake their response, with decimal ids in the text only.
        let sim = &mut s.smpp.simulator;
        sim.message_ids = otp_gateway::smsc_sim::MessageIdFormat::HexRespDecimalReceipt;
        sim.receipt_before_response = true;
        sim.receipt_tlvs = false;
    })
    .await;
    let (id, code) = app.issue("+34600000303").await;
    let url = format!("{}/admin/v1/authentications/{id}", app.admin);
    let mut report = serde_json::Value::Null;
    for _ in 0..50 {
        let r = app.request(Method::GET, &url).await;
        assert_eq!(r.status, 200);
        report = r.json();
        if report["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(report["state"], "delivered", "{report}");
    assert_eq!(report["authenticationId"], id.as_str());
    assert_eq!(report["phoneNumber"], "+346******03");
    assert_eq!(report["segments"].as_array().unwrap().len(), 1);
    assert!(report["submittedAt"].is_string());
    let body = report.to_string();
    assert!(!body.contains(&code), "the code leaked: {body}");
    assert!(!body.contains("+34600000303"));

    let m = app
        .request(Method::GET, &format!("{}/metrics", app.admin))
        .await;
    let text = String::from_utf8_lossy(&m.body).to_string();
    for needle in [
        "otp_sms_smpp_receipts_total{state=\"delivered\"} 1",
        "otp_sms_smpp_receipt_latency_seconds_count 1",
        "otp_sms_smpp_submit_latency_seconds_count{route=\"default\"} 1",
        "otp_sms_smpp_binds{route=\"default\",state=\"up\"} 1",
        "otp_sms_smpp_submit_results_total{command_status=\"0x00000000\",route=\"default\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    let unknown = app
        .request(
            Method::GET,
            &format!("{}/admin/v1/authentications/nope", app.admin),
        )
        .await;
    assert_eq!(unknown.status, 404);
}

async fn route_sim() -> otp_gateway::smsc_sim::SmscHandle {
    otp_gateway::smsc_sim::start(otp_gateway::smsc_sim::SimSettings {
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

fn route(
    name: &str,
    sim: &otp_gateway::smsc_sim::SmscHandle,
    prefixes: &[&str],
    priority: u32,
) -> otp_gateway::config::RouteEntry {
    let url = format!("smpp://otpgw:secret@127.0.0.1:{}", sim.local_addr().port());
    otp_gateway::config::RouteEntry::new(name, url.parse().unwrap(), prefixes, priority)
}

#[actix_web::test]
async fn routes_pick_the_smsc_by_prefix_and_fail_over_when_one_is_down() {
    let (a, b) = (route_sim().await, route_sim().await);
    let (ra, rb) = (
        route("spain", &a, &["+3460"], 1),
        route("fallback", &b, &[], 2),
    );
    let app = spawn_app_routed(
        |s| {
            s.smpp.routes = vec![rb, ra];
            s.smpp.session.reconnect_min = std::time::Duration::from_millis(50);
            s.smpp.session.reconnect_max = std::time::Duration::from_millis(200);
        },
        a.clone(),
    )
    .await;
    let mut bound = false;
    for _ in 0..100 {
        if a.active_sessions() == 1 && b.active_sessions() == 1 {
            bound = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(bound, "both routes bind");
    let r = app.send_code("+34600000401").await;
    assert_eq!(r.status, 200);
    let id = r.json()["authenticationId"].as_str().unwrap().to_owned();
    assert_eq!(a.messages_for("+34600000401").len(), 1);
    assert_eq!(app.send_code("+447700900401").await.status, 200);
    assert_eq!(b.messages_for("+447700900401").len(), 1);
    let report = app
        .request(
            Method::GET,
            &format!("{}/admin/v1/authentications/{id}", app.admin),
        )
        .await
        .json();
    assert_eq!(report["route"], "spain");

    // Spain's SMSC goes away: its numbers fail over to the fallback route.
    a.stop().await;
    let mut moved = false;
    for _ in 0..50 {
        if app.send_code("+34600000402").await.status == 200 {
            moved = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(moved, "no failover");
    assert_eq!(b.messages_for("+34600000402").len(), 1);
    let m = app
        .request(Method::GET, &format!("{}/metrics", app.admin))
        .await;
    let text = String::from_utf8_lossy(&m.body).to_string();
    for needle in [
        "otp_sms_smpp_binds{route=\"fallback\",state=\"up\"} 1",
        "otp_sms_smpp_binds{route=\"spain\",state=\"down\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    b.stop().await;
}

#[actix_web::test]
async fn replicas_sharing_a_signing_key_accept_each_others_tokens() {
    let dir = std::env::temp_dir().join(format!("otpgw-replicas-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("signing.pem");
    let der = otp_gateway::auth::jwt::generate_pkcs8().unwrap();
    std::fs::write(&key, otp_gateway::auth::jwt::pkcs8_pem(&der)).unwrap();
    let a = spawn_app_with(|s| s.auth.signing_key_file = Some(key.clone())).await;
    let mut b = spawn_app_with(|s| s.auth.signing_key_file = Some(key.clone())).await;
    let unrelated = spawn_app().await;
    b.token = a.token.clone();
    assert_eq!(b.send_code("+34600000401").await.status, 200);
    b.token = unrelated.token.clone();
    b.send_code("+34600000402")
        .await
        .assert_error(401, "UNAUTHENTICATED");
}
