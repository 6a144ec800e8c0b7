//! `/admin/v1/pumping`: the SMS-pumping protection's state and its overrides (behind the admin
//! guard, like every `/admin` route). `GET` lists the prefixes cooling down with the figures
//! that tripped them, and the pinned prefixes; `DELETE cooldowns/{prefix}` lifts a cool-down;
//! `PUT`/`DELETE pinned/{prefix}` pins a prefix as always allowed, or removes the pin. 404 when
//! `[policy.pumping]` is not configured.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::api::error::ApiError;
use crate::policy::pumping::PumpingGuard;

type Pumping = web::Data<Option<Arc<PumpingGuard>>>;

/// Registers the routes under the `/admin` scope.
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/pumping", web::get().to(status))
        .route("/v1/pumping/cooldowns/{prefix}", web::delete().to(lift))
        .route("/v1/pumping/pinned/{prefix}", web::put().to(pin))
        .route("/v1/pumping/pinned/{prefix}", web::delete().to(unpin));
}

fn guard(p: &Pumping) -> Result<&PumpingGuard, ApiError> {
    p.as_ref().as_deref().ok_or(ApiError::NotFound)
}

fn path_prefix(path: web::Path<String>) -> Result<String, ApiError> {
    let p = path.into_inner();
    let p = p.trim();
    if crate::de::is_prefix(p) && p.len() <= 9 {
        Ok(p.to_owned())
    } else {
        Err(ApiError::InvalidArgument(
            "prefix must be `+` and 1 to 8 digits".into(),
        ))
    }
}

fn unavailable(e: crate::store::StoreError) -> ApiError {
    tracing::warn!(target: "otp_gateway::admin", error = %e, "the shared pumping state could not be read or written");
    ApiError::Unavailable
}

fn rfc3339(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

async fn status(p: Pumping) -> Result<HttpResponse, ApiError> {
    let (cooling, pinned) = guard(&p)?.status().await.map_err(unavailable)?;
    let cooling: Vec<_> = cooling
        .into_iter()
        .map(|c| {
            json!({
                "prefix": c.prefix,
                "sent": c.sent,
                "validated": c.validated,
                "conversion": if c.sent == 0 { 1.0 } else { c.validated as f64 / c.sent as f64 },
                "until": rfc3339(c.until_ms),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"coolingDown": cooling, "pinned": pinned})))
}

/// 204 when the prefix was cooling down, 404 when it was not.
async fn lift(p: Pumping, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let g = guard(&p)?;
    let prefix = path_prefix(path)?;
    if g.lift(&prefix).await.map_err(unavailable)? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}

/// 201 when pinned now, 200 when it already was; a cool-down in progress ends.
async fn pin(p: Pumping, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let g = guard(&p)?;
    let prefix = path_prefix(path)?;
    let added = g.pin(&prefix).await.map_err(unavailable)?;
    let body = json!({"prefix": prefix, "pinned": true});
    Ok(if added && !g.pinned_by_config(&prefix) {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

/// 204 when an admin pin was removed; 404 when there was none; 409 for a configured pin.
async fn unpin(p: Pumping, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let g = guard(&p)?;
    let prefix = path_prefix(path)?;
    if g.unpin(&prefix).await.map_err(unavailable)? {
        return Ok(HttpResponse::NoContent().finish());
    }
    if g.pinned_by_config(&prefix) {
        return Err(ApiError::Conflict(
            "The prefix is pinned by policy.pumping.pinned_prefixes; unpin it in the configuration."
                .into(),
        ));
    }
    Err(ApiError::NotFound)
}
