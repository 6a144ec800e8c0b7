//! `GET /sandbox/v1/inbox` on the API listener: a sandbox client reads the messages it sent,
//! with the same token it sends them with. It lives on the API listener, not the admin one,
//! because app developers hold client tokens and reach the API, while the admin listener is
//! the operator's (behind the admin credential) and its `/sandbox/v1/messages` shows the
//! embedded simulator's whole inbox. The inbox is keyed by the token's client id, so no query
//! can name another client's; a client that is not a sandbox client gets 404.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::Sandbox;
use crate::api::auth::{Authenticated, SendValidate};
use crate::api::error::ApiError;
use crate::domain::PhoneNumber;

/// Path of the client inbox on the API listener.
pub const INBOX_PATH: &str = "/sandbox/v1/inbox";

/// Registers the client inbox (the API listener's `App` must hold `web::Data<Sandbox>`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(INBOX_PATH, web::get().to(inbox));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InboxQuery {
    phone_number: Option<String>,
}

/// The caller's messages, newest first, optionally only those to `phoneNumber`.
#[tracing::instrument(name = "sandbox_inbox", skip_all, fields(client_id = %caller.principal.client_id))]
async fn inbox(
    caller: Authenticated<SendValidate>,
    req: HttpRequest,
    sandbox: web::Data<Arc<Sandbox>>,
) -> Result<HttpResponse, ApiError> {
    let client_id = &caller.principal.client_id;
    if !sandbox.is_sandbox(client_id) {
        return Err(ApiError::NotFound);
    }
    // Read here rather than by an extractor, so a malformed query is a CAMARA 400 too.
    let query = web::Query::<InboxQuery>::from_query(req.query_string())
        .map_err(|_| ApiError::InvalidArgument("the query string is malformed".into()))?;
    let phone = match &query.phone_number {
        // A '+' left unencoded in a query string arrives as a space; accept both spellings.
        Some(p) => {
            let p = match p.strip_prefix(' ') {
                Some(rest) => format!("+{rest}"),
                None => p.clone(),
            };
            Some(
                PhoneNumber::parse(p.trim())
                    .map_err(|_| ApiError::InvalidArgument("phoneNumber must be E.164".into()))?,
            )
        }
        None => None,
    };
    Ok(HttpResponse::Ok().json(sandbox.messages(client_id, phone.as_ref())))
}
