//! The admin listener's protection (issue 8 item 7), its id lookup's accepted forms and the
//! request metrics of rejections the API answers before any handler (item 14).

use awc::http::Method;
use otp_gateway::config::ClientEntry;
use otp_gateway::domain::Secret;

use crate::helpers::*;

const ADMIN_TOKEN: &str = "admin-token-for-the-tests-0123456789";

fn client(id: &str, secret: &str, scope: &str) -> ClientEntry {
    ClientEntry {
        id: id.into(),
        secret: Secret::new(secret),
        scopes: vec![scope.into()],
        token_ttl: None,
        rate_limit: None,
        ..Default::default()
    }
}

/// A GET with an optional `Authorization` header.
async fn get(app: &TestApp, url: &str, auth: Option<&str>) -> Reply {
    let mut req = app.client.get(url);
    if let Some(a) = auth {
        req = req.insert_header(("Authorization", a));
    }
    let mut res = req.send().await.unwrap();
    let body = res.body().await.unwrap().to_vec();
    Reply {
        status: res.status(),
        headers: res.headers().clone(),
        body,
    }
}

#[actix_web::test]
async fn a_non_loopback_admin_listener_serves_inbox_and_admin_only_with_a_credential() {
    let app = spawn_app_with(|s| {
        s.admin.listen = "0.0.0.0:0".parse().unwrap();
        s.admin.token = Some(Secret::new(ADMIN_TOKEN));
        s.sandbox.expose = true;
        s.auth.clients = vec![
            client("demo", "demo-secret", SCOPE),
            client("ops", "ops-secret-123", "otp-gateway:admin"),
        ];
    })
    .await;
    let (id, code) = app.issue("+34600000901").await;
    let admin = app.admin.replace("0.0.0.0", "127.0.0.1");
    let inbox = format!("{admin}/sandbox/v1/messages");
    let lookup = format!("{admin}/admin/v1/authentications/{id}");
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let demo = format!("Bearer {}", app.token);
    let ops = format!(
        "Bearer {}",
        app.fetch_token_for("ops", "ops-secret-123", "otp-gateway:admin")
            .await
    );

    for url in [
        inbox.clone(),
        format!("{inbox}?phoneNumber=%2B34600000901"),
        lookup.clone(),
        // The router decodes %73 to 's': the guard sits on the route, not on the raw path.
        format!("{admin}/%73andbox/v1/messages"),
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Basic b3BzOm9wcy1zZWNyZXQtMTIz"),
            Some(&format!("Bearer {ADMIN_TOKEN}x")),
        ] {
            let r = get(&app, &url, auth).await;
            r.assert_error(401, "UNAUTHENTICATED");
            assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
            assert!(!String::from_utf8_lossy(&r.body).contains(&code));
        }
        // A valid API token without the admin scope.
        get(&app, &url, Some(&demo))
            .await
            .assert_error(403, "PERMISSION_DENIED");
    }
    for auth in [&bearer, &ops] {
        let r = get(&app, &inbox, Some(auth)).await;
        assert_eq!(r.status, 200);
        assert!(String::from_utf8_lossy(&r.body).contains(&code));
        let r = get(&app, &lookup, Some(auth)).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    // Probes and scrapers need nothing.
    for path in ["/metrics", "/health/live", "/health/ready"] {
        let r = get(&app, &format!("{admin}{path}"), None).await;
        assert_eq!(r.status, 200, "{path}");
    }
}

#[actix_web::test]
async fn an_admin_token_on_loopback_is_required_too() {
    let app = spawn_app_with(|s| s.admin.token = Some(Secret::new(ADMIN_TOKEN))).await;
    let inbox = format!("{}/sandbox/v1/messages", app.admin);
    get(&app, &inbox, None)
        .await
        .assert_error(401, "UNAUTHENTICATED");
    let r = get(&app, &inbox, Some(&format!("bearer {ADMIN_TOKEN}"))).await;
    assert_eq!(r.status, 200);
}

#[actix_web::test]
async fn the_admin_lookup_accepts_the_id_forms_validate_code_accepts() {
    let app = spawn_app().await;
    let (id, _) = app.issue("+34600000902").await;
    for form in [id.clone(), id.to_uppercase()] {
        let r = app
            .request(
                Method::GET,
                &format!("{}/admin/v1/authentications/{form}", app.admin),
            )
            .await;
        assert_eq!(r.status, 200, "{form}");
        assert_eq!(r.json()["authenticationId"], id.as_str());
    }
    // validate-code refuses these, so the lookup does too.
    for form in [
        id.replace('-', ""),
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
    ] {
        let r = app
            .request(
                Method::GET,
                &format!("{}/admin/v1/authentications/{form}", app.admin),
            )
            .await;
        assert_eq!(r.status, 404, "{form}");
    }
}

#[actix_web::test]
async fn an_invalid_x_correlator_is_counted_in_the_request_metrics() {
    let app = spawn_app().await;
    let r = app
        .post_raw(
            "/one-time-password-sms/v1/send-code",
            &[
                ("x-correlator", "not_valid!"),
                ("Content-Type", "application/json"),
            ],
            Some("{}"),
        )
        .await;
    r.assert_error(400, "INVALID_ARGUMENT");
    let m = app
        .request(Method::GET, &format!("{}/metrics", app.admin))
        .await;
    let text = String::from_utf8_lossy(&m.body).to_string();
    let needle = "otp_sms_http_requests_total{method=\"POST\",route=\"/one-time-password-sms/v1/send-code\",status=\"400\"} 1";
    assert!(text.contains(needle), "missing {needle} in\n{text}");
}
