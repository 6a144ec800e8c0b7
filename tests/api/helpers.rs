#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use awc::http::StatusCode;
use otp_gateway::auth::TokenIssuer;
use otp_gateway::config::Settings;
use otp_gateway::otp::ManualClock;
use otp_gateway::smsc_sim::SmscHandle;
use otp_gateway::startup::{Application, BuildOptions, StopHandle};
use serde_json::{json, Value};

pub const SCOPE: &str = "one-time-password-sms:send-validate";
pub const MESSAGE: &str = "{{code}} is your short code to authenticate with Cool App via SMS";
pub const CORRELATOR: &str = "b4333c46-49c0-4f62-80d7-f0ef930f1c46";
/// Numbers the test policy classifies (see `test_settings`).
pub const CANNOT_RECEIVE_SMS: &str = "+34800000001";
pub const LANDLINE: &str = "+34910000001";
pub const BARRED: &str = "+34611111111";
pub const OTHER_OPERATOR: &str = "+4915112345678";

pub struct TestApp {
    pub api: String,
    pub admin: String,
    pub issuer: Arc<TokenIssuer>,
    pub sim: SmscHandle,
    pub clock: ManualClock,
    pub token: String,
    pub client: awc::Client,
    stop: StopHandle,
    /// `run_until_stopped`, so a test can see how it ends.
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    /// The CAMARA error checks every error scenario makes: status in body, code, a message,
    /// JSON content type.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/json")
        );
        let body = self.json();
        assert_eq!(body["status"], status);
        assert_eq!(body["code"], code);
        assert!(
            body["message"].as_str().is_some_and(|m| m.len() > 10),
            "{body}"
        );
    }
}

pub fn test_settings() -> Settings {
    let mut s = Settings::default();
    s.http.listen = "127.0.0.1:0".parse().unwrap();
    s.admin.listen = "127.0.0.1:0".parse().unwrap();
    s.otp.hash_key = Some("integration-test-key-integration-test-key".into());
    s.smpp.embedded_receipt_delay = Duration::from_millis(20);
    s.smpp.session.submit_timeout = Duration::from_secs(2);
    // Tests that care about the drain set their own grace.
    s.http.shutdown_grace = Duration::ZERO;
    s.policy.operator_prefixes = vec!["+34".into(), "+44".into()];
    s.policy.not_allowed_prefixes = vec!["+348".into(), "+349".into()];
    s.policy.blocked_numbers = vec![otp_gateway::domain::PhoneNumber::parse(BARRED).unwrap()];
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(customise, None).await
}

/// For `[[smpp.routes]]` setups, which start no embedded simulator: `sim` is one the test runs.
pub async fn spawn_app_routed(customise: impl FnOnce(&mut Settings), sim: SmscHandle) -> TestApp {
    spawn(customise, Some(sim)).await
}

async fn spawn(customise: impl FnOnce(&mut Settings), fallback: Option<SmscHandle>) -> TestApp {
    let mut settings = test_settings();
    customise(&mut settings);
    let validated = settings.validate().unwrap();
    let clock = ManualClock::new();
    let app = Application::build_with(
        validated,
        BuildOptions {
            clock: Arc::new(clock.clone()),
        },
    )
    .await
    .unwrap();
    let api = format!("http://{}", app.api_addr());
    let admin = format!("http://{}", app.admin_addr());
    let issuer = app.issuer();
    let sim = app.simulator().or(fallback).unwrap();
    let stop = app.stop_handle();
    let running = Some(tokio::spawn(app.run_until_stopped()));
    let mut t = TestApp {
        api,
        admin,
        issuer,
        sim,
        clock,
        token: String::new(),
        client: awc::Client::builder()
            .timeout(Duration::from_secs(20))
            .disable_redirects()
            .finish(),
        stop,
        running,
    };
    t.token = t.fetch_token("demo", "demo-secret").await;
    t
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

impl TestApp {
    /// Requests the shutdown, as SIGTERM would.
    pub fn request_stop(&self) {
        self.stop.stop();
    }

    /// Requests the shutdown and returns what `run_until_stopped` returned.
    pub async fn stop_and_wait(&mut self) -> anyhow::Result<()> {
        self.stop.stop();
        let running = self.running.take().expect("the app was running");
        running.await?
    }

    pub async fn fetch_token(&self, id: &str, secret: &str) -> String {
        self.fetch_token_for(id, secret, SCOPE).await
    }

    /// A token of another scope (the token request must name one).
    pub async fn fetch_token_for(&self, id: &str, secret: &str, scope: &str) -> String {
        let mut res = self
            .client
            .post(format!("{}/oauth2/token", self.api))
            .basic_auth(id, secret)
            .content_type("application/x-www-form-urlencoded")
            .send_body(format!("grant_type=client_credentials&scope={scope}"))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    /// A token signed by the gateway's key with chosen claims.
    pub fn token_with(&self, claims: Value) -> String {
        self.issuer.sign(&claims).unwrap()
    }

    pub fn claims(&self, scope: &str, exp_offset: i64) -> Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        json!({
            "iss": self.issuer.issuer(), "aud": self.issuer.audience(), "sub": "demo",
            "client_id": "demo", "iat": now - 60, "nbf": now - 60, "exp": now + exp_offset,
            "jti": uuid::Uuid::new_v4().to_string(), "scope": scope,
        })
    }

    /// POST with full control over headers and body.
    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        // A pooled connection the server closed while idle (keep-alive) fails as `Connect`
        // before any byte of the request left: sending again is what a real client does, and
        // cannot count a request twice.
        for attempt in 0.. {
            let mut req = self.client.post(format!("{}{}", self.api, path));
            for (k, v) in headers {
                req = req.insert_header((*k, *v));
            }
            let res = match body {
                Some(b) => req.send_body(b.to_string()).await,
                None => req.send().await,
            };
            match res {
                Err(awc::error::SendRequestError::Connect(e)) if attempt < 2 => {
                    eprintln!("connect failed ({e}); sending again");
                }
                res => return Self::reply(res.unwrap()).await,
            }
        }
        unreachable!("the loop returns")
    }

    pub async fn request(&self, method: awc::http::Method, url: &str) -> Reply {
        let res = self.client.request(method, url).send().await.unwrap();
        Self::reply(res).await
    }

    async fn reply<S>(mut res: awc::ClientResponse<S>) -> Reply
    where
        S: futures::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
    {
        let body = res.body().limit(1 << 20).await.unwrap().to_vec();
        Reply {
            status: res.status(),
            headers: res.headers().clone(),
            body,
        }
    }

    /// POST a JSON value with a valid token and a correlator.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        post_as(self, &self.token, path, body).await
    }

    pub async fn send_code(&self, phone: &str) -> Reply {
        self.post(
            "/one-time-password-sms/v1/send-code",
            &json!({"phoneNumber": phone, "message": MESSAGE}),
        )
        .await
    }

    pub async fn validate(&self, id: &str, code: &str) -> Reply {
        self.post(
            "/one-time-password-sms/v1/validate-code",
            &json!({"authenticationId": id, "code": code}),
        )
        .await
    }

    /// Sends a code and reads it back from the simulator, as the handset would.
    pub async fn issue(&self, phone: &str) -> (String, String) {
        let r = self.send_code(phone).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let id = r.json()["authenticationId"].as_str().unwrap().to_string();
        (id, self.last_code(phone))
    }

    pub fn last_code(&self, phone: &str) -> String {
        let sms = self.sim.messages_for(phone);
        let text = &sms.first().expect("an SMS for the number").text;
        text.split_whitespace().next().unwrap().to_string()
    }
}

pub fn wrong_code(code: &str) -> String {
    code.chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect()
}

/// POST a JSON value with `token` (another client's, say) and a correlator.
pub async fn post_as(
    app: &TestApp,
    token: &str,
    path: &str,
    body: impl std::borrow::Borrow<Value>,
) -> Reply {
    let auth = format!("Bearer {token}");
    app.post_raw(
        path,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
            ("x-correlator", CORRELATOR),
        ],
        Some(&body.borrow().to_string()),
    )
    .await
}

/// The value of one series on the admin listener's `/metrics` (0 when it is absent).
pub async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = String::from_utf8(
        app.request(awc::http::Method::GET, &format!("{}/metrics", app.admin))
            .await
            .body,
    )
    .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
