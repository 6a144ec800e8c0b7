//! `POST /admin/v1/policy/reload`: re-reads the barring file now, without waiting for the
//! watcher's next look at its modification time.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AdminState;
use crate::api::error::ApiError;

/// Re-reads `policy.blocked_numbers_file` now: 200 with the numbers it bars; 409 when no file
/// is configured or the file does not parse (the previous list then stays in force; the
/// message names the line, never its content).
#[utoipa::path(
    post,
    path = "/admin/v1/policy/reload",
    tag = "Policy",
    responses(
        (status = 200, description = "The file's list is in force", content_type = "application/json",
            example = json!({"blockedNumbersFile": 1200})),
        (status = 401, description = "No or a wrong admin credential", body = crate::api::error::ErrorInfo),
        (status = 409, description = "No barring file, or it does not parse", body = crate::api::error::ErrorInfo),
    ),
    security(("admin" = []))
)]
pub async fn reload(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    match state.barring.reload_now() {
        Ok(Some(count)) => Ok(HttpResponse::Ok().json(json!({"blockedNumbersFile": count}))),
        Ok(None) => Err(ApiError::Conflict(
            "No policy.blocked_numbers_file is configured.".into(),
        )),
        Err(e) => {
            tracing::error!(target: "otp_gateway::admin", error = %e, "barring file not reloaded; the previous list stays in force");
            Err(ApiError::Conflict(format!(
                "The barring file was not applied, the previous list stays in force: {e}"
            )))
        }
    }
}
