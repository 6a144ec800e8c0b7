//! `GET /admin/v1/usage`: usage per client and UTC day, as JSON or CSV (for billing).

use std::collections::HashMap;

use actix_web::http::header::{ACCEPT, CONTENT_DISPOSITION};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::AdminState;
use crate::api::error::ApiError;
use crate::usage::{self, UsageRow, MAX_REPORT_DAYS};

/// The query `GET /admin/v1/usage` reads (documentation; the handler reads the raw query so
/// that any mistake is a CAMARA-shaped 400).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct UsageQuery {
    /// First UTC day, `YYYY-MM-DD` (default: `to`).
    from: Option<String>,
    /// Last UTC day, `YYYY-MM-DD` (default: today); at most 400 days after `from`.
    to: Option<String>,
    /// Only this client.
    #[param(rename = "clientId")]
    client_id: Option<String>,
    /// `csv` for CSV (as `Accept: text/csv`), `json` (default) for JSON.
    format: Option<String>,
}

/// A usage report.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// First day covered.
    from: String,
    /// Last day covered.
    to: String,
    /// One row per client and day with any count, by day then client.
    rows: Vec<UsageRow>,
}

fn day_param(query: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    query
        .get(name)
        .map(|d| {
            usage::parse_day(d.trim()).ok_or_else(|| {
                ApiError::InvalidArgument(format!("{name} must be a UTC day as YYYY-MM-DD"))
            })
        })
        .transpose()
}

/// Usage per client and UTC day: codes sent, segments, validated, failed, expired, locked,
/// and receipts by delivery state.
#[utoipa::path(
    get,
    path = "/admin/v1/usage",
    tag = "Usage",
    params(UsageQuery),
    responses(
        (status = 200, description = "The report", content(
            (UsageReport = "application/json"),
            (String = "text/csv", example = "day,clientId,codesSent,segments,validated,failed,expired,locked,receiptsDelivered,…\r\n2026-12-01,app,3,3,2,1,0,0,3,…\r\n"),
        )),
        (status = 400, description = "A bad day or range", body = crate::api::error::ErrorInfo),
        (status = 401, description = "No or a wrong admin credential", body = crate::api::error::ErrorInfo),
        (status = 503, description = "Redis cannot answer", body = crate::api::error::ErrorInfo),
    ),
    security(("admin" = []))
)]
pub async fn report(
    state: web::Data<AdminState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // Read here rather than by an extractor, so a malformed query is a CAMARA 400 too.
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|_| ApiError::InvalidArgument("the query string is malformed".into()))?;
    let to = day_param(&query, "to")?.unwrap_or_else(usage::today);
    let from = day_param(&query, "from")?.unwrap_or(to);
    if from > to {
        return Err(ApiError::InvalidArgument(
            "from must not be after to".into(),
        ));
    }
    if to - from >= MAX_REPORT_DAYS {
        return Err(ApiError::InvalidArgument(format!(
            "a report covers at most {MAX_REPORT_DAYS} days"
        )));
    }
    let csv = match query.get("format").map(String::as_str) {
        Some("csv") => true,
        Some("json") => false,
        Some(_) => {
            return Err(ApiError::InvalidArgument(
                "format must be json or csv".into(),
            ))
        }
        None => req
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.to_ascii_lowercase().contains("text/csv")),
    };
    let mut rows = state.usage.report(from, to).await.map_err(|e| {
        tracing::warn!(target: "otp_gateway::admin", error = %e, "usage counters could not be read");
        ApiError::Unavailable
    })?;
    if let Some(client) = query.get("clientId") {
        rows.retain(|r| &r.client_id == client);
    }
    let (from, to) = (usage::format_day(from), usage::format_day(to));
    if csv {
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"usage-{from}-{to}.csv\""),
            ))
            .body(usage::to_csv(&rows)));
    }
    Ok(HttpResponse::Ok().json(UsageReport { from, to, rows }))
}
