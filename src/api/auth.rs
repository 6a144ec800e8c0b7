//! The bearer-token extractor. A handler states its scope in its signature
//! (`Authenticated<SendValidate>`), so it cannot compile without one. Checks run in the order
//! CAMARA implies: token (401), scope (403), the client's rate (429).

use std::future::{ready, Ready};
use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use super::error::ApiError;
use crate::auth::{Principal, TokenValidator, SEND_VALIDATE_SCOPE};
use crate::policy::ClientRateLimiter;

/// A scope a handler requires.
pub trait RequiredScope {
    /// The OAuth2 scope string.
    const SCOPE: &'static str;
}

/// `one-time-password-sms:send-validate`, the only scope of the API.
pub struct SendValidate;

impl RequiredScope for SendValidate {
    const SCOPE: &'static str = SEND_VALIDATE_SCOPE;
}

/// A caller whose token verified and carries scope `S`.
pub struct Authenticated<S: RequiredScope> {
    /// Who is calling.
    pub principal: Principal,
    _scope: PhantomData<S>,
}

fn authenticate<S: RequiredScope>(req: &HttpRequest) -> Result<Authenticated<S>, ApiError> {
    let validator = req
        .app_data::<web::Data<TokenValidator>>()
        .ok_or(ApiError::Internal)?;
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthenticated)?;
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or(ApiError::Unauthenticated)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthenticated);
    }
    // Every failure reads the same to the caller; the reason is only logged.
    let principal = validator.validate(token.trim()).map_err(|e| {
        tracing::info!(target: "otp_gateway::auth", reason = %e, "token rejected");
        ApiError::Unauthenticated
    })?;
    if !principal.has_scope(S::SCOPE) {
        return Err(ApiError::PermissionDenied);
    }
    if let Some(limiter) = req.app_data::<web::Data<ClientRateLimiter>>() {
        if !limiter.allow(&principal.client_id) {
            return Err(ApiError::TooManyRequests);
        }
    }
    Ok(Authenticated {
        principal,
        _scope: PhantomData,
    })
}

impl<S: RequiredScope> FromRequest for Authenticated<S> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}
