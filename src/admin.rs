//! The admin listener: liveness, readiness, Prometheus metrics, the delivery state of an
//! authenticationId's SMS (masked number, never the code) and, when the embedded simulator
//! plays the SMSC, the sandbox inbox that lets testers read the code they were sent, and the
//! barred numbers (`/admin/v1/blocked-numbers/{phoneNumber}`: look up, bar, lift), the policy
//! reload (`admin/policy.rs`), the usage report per client and day (`admin/usage.rs`) and the
//! admin API's own OpenAPI document at `/admin/openapi.json` (`admin/openapi.rs`).
//!
//! `/admin/*` and `/sandbox/*` sit behind [`require_credential`] whenever
//! [`AdminSettings::credential_required`](crate::config::AdminSettings::credential_required):
//! `admin.token` as a bearer token (compared in constant time), or an access token of the
//! embedded issuer carrying [`ADMIN_SCOPE`]. The guard wraps the routes' scopes, so it applies
//! to whatever path the router matches (percent-encoded spellings included). `/metrics` and
//! `/health/*` stay open for scrapers and probes.

mod openapi;
mod policy;
mod pumping;
mod usage;

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpResponse, ResponseError};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::api::error::ApiError;
use crate::auth::TokenValidator;
use crate::domain::{PhoneNumber, Secret};
use crate::metrics::Metrics;
use crate::otp::OtpService;
use crate::policy::{BarSource, Barring};
use crate::smpp::{DeliveryReport, SmppRouter};
use crate::smsc_sim::SmscHandle;

/// What the admin handlers read.
pub struct AdminState {
    /// For readiness.
    pub otp: Arc<OtpService>,
    /// For the bind gauge.
    pub smpp: SmppRouter,
    /// Metrics to render.
    pub metrics: Metrics,
    /// Present only with the embedded simulator.
    pub simulator: Option<SmscHandle>,
    /// Cancelled when shutdown begins, so load balancers stop sending traffic before we stop
    /// serving.
    pub draining: CancellationToken,
    /// The barred numbers the number policy checks.
    pub barring: Arc<Barring>,
    /// For readiness: every external identity provider's keys loaded.
    pub identity_providers: crate::auth::BearerValidator,
    /// The usage counters the usage report reads.
    pub usage: crate::usage::Usage,
}

pub use crate::auth::ADMIN_SCOPE;

/// Who may call `/admin/*` and `/sandbox/*`.
pub struct AdminGuard {
    required: bool,
    token: Option<Secret>,
    validator: TokenValidator,
}

impl AdminGuard {
    /// `required` false lets every caller in (a loopback listener without `admin.token`).
    pub fn new(required: bool, token: Option<Secret>, validator: TokenValidator) -> AdminGuard {
        AdminGuard {
            required,
            token,
            validator,
        }
    }

    /// Ok for the admin token or an access token with [`ADMIN_SCOPE`]; 401 for no or a wrong
    /// credential, 403 for a valid token without the scope.
    fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if !self.required {
            return Ok(());
        }
        let presented = bearer(headers).ok_or(ApiError::Unauthenticated)?;
        if let Some(token) = &self.token {
            // Digests first, so the comparison takes the same time whatever the lengths.
            let a = ring::digest::digest(&ring::digest::SHA256, presented.as_bytes());
            let b = ring::digest::digest(&ring::digest::SHA256, token.expose().as_bytes());
            if bool::from(a.as_ref().ct_eq(b.as_ref())) {
                return Ok(());
            }
        }
        match self.validator.validate(presented) {
            Ok(p) if p.has_scope(ADMIN_SCOPE) => Ok(()),
            Ok(_) => Err(ApiError::PermissionDenied),
            Err(_) => Err(ApiError::Unauthenticated),
        }
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 9110 §11.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Middleware on the `/admin` and `/sandbox` scopes: answers 401/403 (CAMARA JSON, with
/// `WWW-Authenticate`) unless [`AdminGuard`] lets the caller in. Fails closed when the guard
/// is not registered.
pub async fn require_credential(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let verdict = match req.app_data::<web::Data<AdminGuard>>() {
        Some(guard) => guard.check(req.headers()),
        None => Err(ApiError::Internal),
    };
    match verdict {
        Ok(()) => Ok(next.call(req).await?.map_into_boxed_body()),
        Err(e) => {
            tracing::info!(target: "otp_gateway::admin", status = e.status_code().as_u16(), "admin request refused");
            let mut res = e.error_response();
            if matches!(e, ApiError::PermissionDenied) {
                // The API's 403 names the API scope; here the admin scope is missing.
                res.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer error=\"insufficient_scope\", scope=\"otp-gateway:admin\"",
                    ),
                );
            }
            Ok(req.into_response(res))
        }
    }
}

/// Registers the admin routes; `/admin` and `/sandbox` behind [`require_credential`].
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics))
        .service(
            web::scope("/admin")
                .wrap(from_fn(require_credential))
                .route(
                    "/v1/authentications/{authentication_id}",
                    web::get().to(authentication),
                )
                .route("/v1/blocked-numbers", web::get().to(barring_counts))
                .route(
                    "/v1/blocked-numbers/{phone_number}",
                    web::get().to(barring_lookup),
                )
                .route("/v1/blocked-numbers/{phone_number}", web::put().to(bar))
                .route("/v1/blocked-numbers/{phone_number}", web::delete().to(lift))
                .configure(pumping::configure)
                .route("/v1/policy/reload", web::post().to(policy::reload))
                .route("/v1/usage", web::get().to(usage::report))
                .route("/openapi.json", web::get().to(openapi::serve))
                .default_service(web::to(crate::api::not_found)),
        )
        .service(
            web::scope("/sandbox")
                .wrap(from_fn(require_credential))
                .route("/v1/messages", web::get().to(messages))
                .default_service(web::to(crate::api::not_found)),
        );
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "UP"}))
}

async fn ready(state: web::Data<AdminState>) -> HttpResponse {
    let store_ok = state.otp.store_ready().await;
    let bound = state.smpp.is_bound();
    let draining = state.draining.is_cancelled();
    let idp = state.identity_providers.is_ready();
    let up = store_ok && bound && !draining && idp;
    let body = json!({
        "status": if up { "UP" } else { "DOWN" },
        "checks": {"store": store_ok, "smpp_bound": bound, "draining": draining, "identity_providers": idp}
    });
    if up {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    state
        .metrics
        .smpp_bound
        .set(i64::from(state.smpp.is_bound()));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// The SMPP delivery report under the name the API gave the message.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationDelivery {
    authentication_id: String,
    #[serde(flatten)]
    report: DeliveryReport,
}

/// Delivery state of the SMS sent for an authenticationId, while its challenge lives. The
/// SMPP layer knows the message by an opaque tag; the gateway tags with the authenticationId.
#[utoipa::path(
    get,
    path = "/admin/v1/authentications/{authentication_id}",
    tag = "Delivery",
    params(("authentication_id" = String, Path, description = "The authenticationId send-code returned")),
    responses(
        (status = 200, description = "Masked number, route, aggregate and per-segment state", content_type = "application/json"),
        (status = 401, description = "No or a wrong admin credential", body = crate::api::error::ErrorInfo),
        (status = 404, description = "Unknown, or its challenge is gone", body = crate::api::error::ErrorInfo),
        (status = 503, description = "Redis cannot answer", body = crate::api::error::ErrorInfo),
    ),
    security(("admin" = []))
)]
async fn authentication(
    state: web::Data<AdminState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // The forms validate-code accepts (a 36-character hyphenated UUID, any case), under the
    // name the SMPP layer tagged the message with: the lower-case hyphenated form.
    let authentication_id = canonical_id(&path.into_inner()).ok_or(ApiError::NotFound)?;
    // With a shared backend the report may live in Redis; a Redis that cannot answer is a
    // 503, not a 404 that would claim the message unknown.
    let report = match state.smpp.lookup_report(&authentication_id).await {
        Ok(Some(report)) => report,
        Ok(None) => return Err(ApiError::NotFound),
        Err(e) => {
            tracing::warn!(target: "otp_gateway::admin", error = %e, "the delivery state could not be read");
            return Err(ApiError::Unavailable);
        }
    };
    Ok(HttpResponse::Ok().json(AuthenticationDelivery {
        authentication_id,
        report,
    }))
}

/// A barred-number answer: the number the caller named, and what bars it.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct BarringState {
    phone_number: String,
    blocked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<BarSource>,
}

fn barring_state(state: &AdminState, phone: &PhoneNumber) -> BarringState {
    let source = state.barring.source(phone);
    BarringState {
        phone_number: phone.as_e164().to_owned(),
        blocked: source.is_some(),
        source,
    }
}

fn path_number(path: web::Path<String>) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(path.into_inner().trim()).map_err(|_| {
        ApiError::InvalidArgument("phoneNumber must be E.164: `+` and 5 to 15 digits".into())
    })
}

/// How many numbers each source bars.
#[utoipa::path(
    get,
    path = "/admin/v1/blocked-numbers",
    tag = "Policy",
    responses(
        (status = 200, description = "Numbers barred by each source", content_type = "application/json",
            example = json!({"config": 1, "file": 1200, "admin": 3})),
        (status = 401, description = "No or a wrong admin credential", body = crate::api::error::ErrorInfo),
    ),
    security(("admin" = []))
)]
async fn barring_counts(state: web::Data<AdminState>) -> HttpResponse {
    let (config, file, admin) = state.barring.counts();
    HttpResponse::Ok().json(json!({"config": config, "file": file, "admin": admin}))
}

/// Whether a number is barred, and by what.
#[utoipa::path(
    get,
    path = "/admin/v1/blocked-numbers/{phone_number}",
    tag = "Policy",
    params(("phone_number" = String, Path, description = "E.164 number, `+` percent-encoded")),
    responses(
        (status = 200, description = "Whether and by what the number is barred", content_type = "application/json",
            example = json!({"phoneNumber": "+34611111111", "blocked": true, "source": "file"})),
        (status = 400, description = "Not an E.164 number", body = crate::api::error::ErrorInfo),
        (status = 401, description = "No or a wrong admin credential", body = crate::api::error::ErrorInfo),
    ),
    security(("admin" = []))
)]
async fn barring_lookup(
    state: web::Data<AdminState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let phone = path_number(path)?;
    Ok(HttpResponse::Ok().json(barring_state(&state, &phone)))
}

/// Bars a number: 201 when the admin list gains it, 200 when it already barred it.
#[utoipa::path(
    put,
    path = "/admin/v1/blocked-numbers/{phone_number}",
    tag = "Policy",
    params(("phone_number" = String, Path, description = "E.164 number, `+` percent-encoded")),
    responses(
        (status = 201, description = "The admin list gained the number", content_type = "application/json"),
        (status = 200, description = "The admin list already had it", content_type = "application/json"),
        (status = 400, description = "Not an E.164 number", body = crate::api::error::ErrorInfo),
        (status = 401, description = "No or a wrong admin credential", body = crate::api::error::ErrorInfo),
        (status = 503, description = "Redis cannot answer", body = crate::api::error::ErrorInfo),
    ),
    security(("admin" = []))
)]
async fn bar(
    state: web::Data<AdminState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let phone = path_number(path)?;
    let added = state.barring.add(&phone).await.map_err(|e| {
        tracing::warn!(target: "otp_gateway::admin", error = %e, "the shared barring list could not be written");
        ApiError::Unavailable
    })?;
    let body = barring_state(&state, &phone);
    Ok(if added {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

/// Lifts an admin barring: 204; 404 when nothing bars the number; 409 when the configuration
/// or the barring file does (lift it there, or it would come back at the next reload).
#[utoipa::path(
    delete,
    path = "/admin/v1/blocked-numbers/{phone_number}",
    tag = "Policy",
    params(("phone_number" = String, Path, description = "E.164 number, `+` percent-encoded")),
    responses(
        (status = 204, description = "The admin barring is lifted"),
        (status = 400, description = "Not an E.164 number", body = crate::api::error::ErrorInfo),
        (status = 401, description = "No or a wrong admin credential", body = crate::api::error::ErrorInfo),
        (status = 404, description = "Nothing bars the number", body = crate::api::error::ErrorInfo),
        (status = 409, description = "The configuration or the barring file bars it", body = crate::api::error::ErrorInfo),
        (status = 503, description = "Redis cannot answer", body = crate::api::error::ErrorInfo),
    ),
    security(("admin" = []))
)]
async fn lift(
    state: web::Data<AdminState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let phone = path_number(path)?;
    let removed = state.barring.remove(&phone).await.map_err(|e| {
        tracing::warn!(target: "otp_gateway::admin", error = %e, "the shared barring list could not be written");
        ApiError::Unavailable
    })?;
    if removed {
        return Ok(HttpResponse::NoContent().finish());
    }
    match state.barring.source(&phone) {
        None => Err(ApiError::NotFound),
        Some(BarSource::Config) => Err(ApiError::Conflict(
            "The number is barred by policy.blocked_numbers; lift it in the configuration.".into(),
        )),
        Some(BarSource::File | BarSource::Admin) => Err(ApiError::Conflict(
            "The number is barred by policy.blocked_numbers_file; lift it in the file.".into(),
        )),
    }
}

/// The lower-case hyphenated form of a 36-character UUID, the only length
/// [`AuthenticationId::verify`](crate::domain::AuthenticationId::verify) accepts.
fn canonical_id(s: &str) -> Option<String> {
    if s.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(s)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// The embedded simulator's inbox (every SMS it received), newest first.
#[utoipa::path(
    get,
    path = "/sandbox/v1/messages",
    tag = "Sandbox",
    params(("phoneNumber" = Option<String>, Query, description = "Only messages to this number")),
    responses(
        (status = 200, description = "Messages, newest first", content_type = "application/json"),
        (status = 401, description = "No or a wrong admin credential", body = crate::api::error::ErrorInfo),
        (status = 404, description = "No embedded simulator plays the SMSC", body = crate::api::error::ErrorInfo),
    ),
    security(("admin" = []))
)]
async fn messages(
    state: web::Data<AdminState>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let sim = state.simulator.as_ref().ok_or(ApiError::NotFound)?;
    let list = match query.get("phoneNumber") {
        // A '+' left unencoded in a query string arrives as a space; accept both spellings.
        Some(p) => match p.strip_prefix(' ') {
            Some(rest) => sim.messages_for(&format!("+{rest}")),
            None => sim.messages_for(p),
        },
        None => sim.messages(),
    };
    Ok(HttpResponse::Ok().json(list))
}
