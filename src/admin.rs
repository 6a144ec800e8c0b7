//! The admin listener: liveness, readiness, Prometheus metrics, the delivery state of an
//! authenticationId's SMS (masked number, never the code) and, when the embedded simulator
//! plays the SMSC, the sandbox inbox that lets testers read the code they were sent.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::error::ApiError;
use crate::metrics::Metrics;
use crate::otp::OtpService;
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
}

/// Registers the admin routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics))
        .route(
            "/admin/v1/authentications/{authentication_id}",
            web::get().to(authentication),
        )
        .route("/sandbox/v1/messages", web::get().to(messages));
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "UP"}))
}

async fn ready(state: web::Data<AdminState>) -> HttpResponse {
    let store_ok = state.otp.store_ready().await;
    let bound = state.smpp.is_bound();
    let draining = state.draining.is_cancelled();
    let up = store_ok && bound && !draining;
    let body = json!({
        "status": if up { "UP" } else { "DOWN" },
        "checks": {"store": store_ok, "smpp_bound": bound, "draining": draining}
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
async fn authentication(
    state: web::Data<AdminState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let authentication_id = path.into_inner();
    let report = state
        .smpp
        .delivery_report(&authentication_id)
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(AuthenticationDelivery {
        authentication_id,
        report,
    }))
}

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
