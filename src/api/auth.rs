//! The bearer-token extractor. A handler states its scope in its signature
//! (`Authenticated<SendValidate>`), so it cannot compile without one. Checks run in the order
//! CAMARA implies: token (401), scope (403), the client's rate (429).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use actix_web::{web, FromRequest, HttpRequest};

use super::error::ApiError;
use crate::auth::{BearerValidator, Principal, Refusal, SEND_VALIDATE_SCOPE};
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
    pub principal: Arc<Principal>,
    _scope: PhantomData<S>,
}

/// What the `Authorization` header holds.
#[derive(Debug, PartialEq, Eq)]
enum Credential<'a> {
    /// No bearer credential at all (no header, another scheme, a blank token).
    Missing,
    /// A header that cannot be read as one bearer token: sent twice, not visible ASCII.
    Unusable,
    /// `Bearer <token>`.
    Bearer(&'a str),
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is matched
/// case-insensitively (RFC 9110 §11.1, so `bearer` works too); the header is trimmed first, so
/// a blank token, like any other scheme, is no credential. Two `Authorization` headers are
/// refused rather than one picked: intermediaries may not agree which one counts. A token in
/// the query string or the body is never read (RFC 6750 §2.2-2.3 are optional and leak tokens
/// into logs).
fn bearer_token(headers: &HeaderMap) -> Credential<'_> {
    let mut values = headers.get_all(AUTHORIZATION);
    let Some(value) = values.next() else {
        return Credential::Missing;
    };
    if values.next().is_some() {
        return Credential::Unusable;
    }
    let Ok(value) = value.to_str() else {
        return Credential::Unusable;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Credential::Missing;
    };
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Credential::Missing;
    }
    Credential::Bearer(token)
}

/// Token and scope: 401 for no or a bad token, 403 for a missing scope.
async fn authenticate<S: RequiredScope>(
    validator: Option<web::Data<BearerValidator>>,
    credential: Result<String, ApiError>,
) -> Result<Authenticated<S>, ApiError> {
    let validator = validator.ok_or(ApiError::Internal)?;
    let token = credential?;
    // Every token failure reads the same to the caller; the validator logs which check failed.
    let principal = validator
        .authorize(&token, S::SCOPE)
        .await
        .map_err(|r| match r {
            Refusal::InvalidToken => ApiError::InvalidToken,
            Refusal::InsufficientScope => ApiError::PermissionDenied,
        })?;
    Ok(Authenticated {
        principal,
        _scope: PhantomData,
    })
}

impl<S: RequiredScope + 'static> FromRequest for Authenticated<S> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let validator = req.app_data::<web::Data<BearerValidator>>().cloned();
        let credential = match bearer_token(req.headers()) {
            Credential::Bearer(t) => Ok(t.to_owned()),
            Credential::Missing => Err(ApiError::Unauthenticated),
            Credential::Unusable => {
                tracing::info!(target: "otp_gateway::auth", check = "malformed", "unusable Authorization header");
                Err(ApiError::InvalidToken)
            }
        };
        let limiter = req.app_data::<web::Data<ClientRateLimiter>>().cloned();
        Box::pin(async move {
            let authenticated = authenticate::<S>(validator, credential).await?;
            let Some(limiter) = limiter else {
                return Ok(authenticated);
            };
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

    use super::{bearer_token, Credential};

    #[test]
    fn bearer_token_extraction() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), Credential::Missing);
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer abc.def.ghi"),
        );
        assert_eq!(bearer_token(&headers), Credential::Bearer("abc.def.ghi"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer xyz"));
        assert_eq!(bearer_token(&headers), Credential::Bearer("xyz"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(bearer_token(&headers), Credential::Missing);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&headers), Credential::Missing);
    }

    #[test]
    fn two_authorization_headers_are_unusable_even_when_both_are_bearer() {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        assert_eq!(bearer_token(&headers), Credential::Unusable);
    }
}
