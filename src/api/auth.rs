//! The bearer-token extractor. A handler states its scope in its signature
//! (`Authenticated<SendValidate>`), so it cannot compile without one. Checks run in the order
//! CAMARA implies: token (401), scope (403), the client's rate (429).

use std::future::{ready, Future};
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
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

/// The token of an `Authorization: Bearer <token>` header. The scheme is matched
/// case-insensitively (RFC 9110 §11.1); the header is trimmed first, so a missing or blank
/// token, like any other scheme, yields `None`.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim())
}

/// Token and scope: everything but the rate, which may need a round trip (a shared bucket).
fn authenticate<S: RequiredScope>(req: &HttpRequest) -> Result<Authenticated<S>, ApiError> {
    let validator = req
        .app_data::<web::Data<TokenValidator>>()
        .ok_or(ApiError::Internal)?;
    let token = bearer_token(req.headers()).ok_or(ApiError::Unauthenticated)?;
    // Every failure reads the same to the caller; the reason is only logged.
    let principal = validator.validate(token).map_err(|e| {
        tracing::info!(target: "otp_gateway::auth", reason = %e, "token rejected");
        ApiError::Unauthenticated
    })?;
    // The token's scope counts only while the client still holds it in the configuration.
    if !validator.permits(&principal, S::SCOPE) {
        return Err(ApiError::PermissionDenied);
    }
    Ok(Authenticated {
        principal,
        _scope: PhantomData,
    })
}

impl<S: RequiredScope + 'static> FromRequest for Authenticated<S> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let authenticated = match authenticate::<S>(req) {
            Ok(a) => a,
            Err(e) => return Box::pin(ready(Err(e))),
        };
        let Some(limiter) = req.app_data::<web::Data<ClientRateLimiter>>().cloned() else {
            return Box::pin(ready(Ok(authenticated)));
        };
        Box::pin(async move {
            if limiter.allow(&authenticated.principal.client_id).await {
                Ok(authenticated)
            } else {
                Err(ApiError::TooManyRequests)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderMap, HeaderValue, AUTHORIZATION};

    use super::bearer_token;

    #[test]
    fn bearer_token_extraction() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer abc.def.ghi"),
        );
        assert_eq!(bearer_token(&headers), Some("abc.def.ghi"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer xyz"));
        assert_eq!(bearer_token(&headers), Some("xyz"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(bearer_token(&headers), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&headers), None);
    }
}
