//! The public HTTP surface: routes, the CAMARA error table, `x-correlator`, bearer auth,
//! request metrics, the OpenAPI document and its Swagger UI page.

pub mod auth;
pub mod body;
pub mod correlator;
pub mod deadline;
pub mod error;
pub mod openapi;
pub mod otp;
pub mod version;

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::metrics::Metrics;
use crate::otp::OtpService;
use error::ApiError;

/// The CAMARA base path.
pub const BASE_PATH: &str = "/one-time-password-sms/v1";

/// What the handlers share.
pub struct ApiState {
    /// The OTP rules.
    pub otp: Arc<OtpService>,
    /// Largest accepted body.
    pub max_body_bytes: usize,
}

/// Registers the CAMARA routes, the OpenAPI document and the JSON fallbacks.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(BASE_PATH)
            .service(
                web::resource("/send-code")
                    .route(web::post().to(otp::send_code))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/validate-code")
                    .route(web::post().to(otp::validate_code))
                    .default_service(web::to(method_not_allowed)),
            ),
    )
    .service(
        web::resource("/openapi.json")
            .route(web::get().to(openapi::serve_json))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/docs")
            .route(web::get().to(openapi::redirect_docs))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/docs/{file:.*}")
            .route(web::get().to(openapi::serve_docs))
            .default_service(web::to(method_not_allowed)),
    );
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// Fallback for every path no route matches.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// Middleware: requests by route pattern and status, latency by route. Unmatched paths share
/// one label so a scanner cannot blow up the series count.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = req.method().clone();
    let res = next.call(req).await?;
    if let Some(m) = metrics {
        record(&m, res.request(), &method, res.status(), started);
    }
    Ok(res)
}

/// Counts one answered request: by route pattern (unmatched paths share one label so a
/// scanner cannot blow up the series count), method and status, and its latency. Also called
/// by middleware that answers before [`observe`] sees the request (the `x-correlator` check).
pub(crate) fn record(
    m: &Metrics,
    req: &actix_web::HttpRequest,
    method: &actix_web::http::Method,
    status: actix_web::http::StatusCode,
    started: Instant,
) {
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = match method.as_str() {
        "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS" => method.as_str(),
        _ => "other",
    };
    m.http_requests
        .with_label_values(&[route.as_str(), method, status.as_str()])
        .inc();
    m.http_duration
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
}
