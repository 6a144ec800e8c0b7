//! The one table from outcomes to CAMARA `ErrorInfo` answers. Every error the public listener
//! can produce (handler outcomes, auth failures and framework rejections) passes through
//! [`ApiError`], so the body shape, `Content-Type` and status/code pairs are decided here only.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::otp::{DeliveryError, OtpError};

/// CAMARA `ErrorInfo`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorInfo {
    /// HTTP status code.
    pub status: u16,
    /// Machine-readable error code.
    pub code: &'static str,
    /// Human-readable description.
    pub message: String,
}

/// Every error answer of the public API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the request does not match the schema; the text says what is wrong.
    InvalidArgument(String),
    /// 401: no bearer token was presented (RFC 6750 §3.1: no error code then).
    Unauthenticated,
    /// 401: the token presented is malformed, forged, expired, foreign or revoked; the same
    /// answer whatever check failed (the log says which).
    InvalidToken,
    /// 403: the token lacks the scope.
    PermissionDenied,
    /// 403: too many codes for the number.
    MaxOtpCodesExceeded,
    /// 403: the number cannot receive SMS.
    PhoneNumberNotAllowed,
    /// 403: SMS barring.
    PhoneNumberBlocked,
    /// 404: unknown resource (number outside the operator, unknown id, unknown path).
    NotFound,
    /// 405: method not allowed on an existing path.
    MethodNotAllowed,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 400: wrong code, attempts remain.
    InvalidOtp,
    /// 400: used, superseded or expired id.
    VerificationExpired,
    /// 400: attempts exhausted.
    VerificationFailed,
    /// 400: declared by the spec for validateCode; no field of this API has a range, so the
    /// gateway never answers it (kept so the documented table is complete).
    OutOfRange,
    /// 429: rate limit.
    TooManyRequests,
    /// 429: a business quota (per-client volume) is spent.
    QuotaExceeded,
    /// 500: a bug or an unexpected failure; details only in the log.
    Internal,
    /// 503: the SMS channel or the store cannot serve now.
    Unavailable,
    /// 504: the SMSC did not answer in time.
    Timeout,
    /// 409 (admin API only): the change conflicts with the resource's state; the text says how.
    Conflict(String),
    /// 403 PHONE_NUMBER_NOT_ALLOWED: outside the destinations of the client's tenant profile.
    DestinationNotAllowed,
    /// 403 PERMISSION_DENIED: a template the client's tenant profile does not allow (no
    /// scope challenge: the token is fine, the text is not).
    TemplateNotAllowed,
    /// 429 QUOTA_EXCEEDED: the client's `daily` or `monthly` quota is spent, with the seconds
    /// until it renews (`Retry-After`).
    QuotaSpent {
        /// `daily` or `monthly`.
        period: &'static str,
        /// Seconds until the next UTC day or month.
        retry_after_secs: u64,
    },
}

impl ApiError {
    /// Status, CAMARA code and default message. No `_` arm: a new variant forces a decision.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::InvalidArgument(_) => (
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "Client specified an invalid argument, request body or query param.",
            ),
            ApiError::Unauthenticated | ApiError::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request not authenticated due to missing, invalid, or expired credentials.",
            ),
            ApiError::PermissionDenied => (
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "Client does not have sufficient permissions to perform this action.",
            ),
            ApiError::MaxOtpCodesExceeded => (
                StatusCode::FORBIDDEN,
                "ONE_TIME_PASSWORD_SMS.MAX_OTP_CODES_EXCEEDED",
                "Too many OTPs have been requested for this MSISDN. Try later.",
            ),
            ApiError::PhoneNumberNotAllowed => (
                StatusCode::FORBIDDEN,
                "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED",
                "Phone_number can't receive an SMS due to business reasons in the operator.",
            ),
            ApiError::PhoneNumberBlocked => (
                StatusCode::FORBIDDEN,
                "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED",
                "Phone_number is blocked to receive SMS due to any blocking business reason in the operator.",
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The specified resource is not found.",
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "The requested method is not allowed/supported on the target resource.",
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "The server refuses to accept the request because the payload format is in an unsupported format.",
            ),
            ApiError::InvalidOtp => (
                StatusCode::BAD_REQUEST,
                "ONE_TIME_PASSWORD_SMS.INVALID_OTP",
                "The provided OTP is not valid for this authenticationId.",
            ),
            ApiError::VerificationExpired => (
                StatusCode::BAD_REQUEST,
                "ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED",
                "The authenticationId is no longer valid.",
            ),
            ApiError::VerificationFailed => (
                StatusCode::BAD_REQUEST,
                "ONE_TIME_PASSWORD_SMS.VERIFICATION_FAILED",
                "The maximum number of attempts for this authenticationId was exceeded without providing a valid OTP.",
            ),
            ApiError::OutOfRange => (
                StatusCode::BAD_REQUEST,
                "OUT_OF_RANGE",
                "Client specified an invalid range.",
            ),
            ApiError::QuotaExceeded => (
                StatusCode::TOO_MANY_REQUESTS,
                "QUOTA_EXCEEDED",
                "Out of resource quota.",
            ),
            ApiError::TooManyRequests => (
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_REQUESTS",
                "Rate limit reached.",
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Unknown server error. Typically a server bug.",
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "Service Unavailable.",
            ),
            ApiError::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "TIMEOUT",
                "Request timeout exceeded.",
            ),
            ApiError::Conflict(_) => (
                StatusCode::CONFLICT,
                "CONFLICT",
                "The request conflicts with the current state of the resource.",
            ),
            ApiError::DestinationNotAllowed => (
                StatusCode::FORBIDDEN,
                "ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED",
                "This client is not allowed to send codes to this phone number's country or range.",
            ),
            ApiError::TemplateNotAllowed => (
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "This client is not allowed to send this message text; use one of the templates the operator allows for it.",
            ),
            ApiError::QuotaSpent { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "QUOTA_EXCEEDED",
                "Out of resource quota.",
            ),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorInfo {
        let (status, code, message) = self.parts();
        let message = match self {
            ApiError::InvalidArgument(detail) if !detail.is_empty() => {
                format!("Client specified an invalid argument: {detail}.")
            }
            ApiError::Conflict(detail) if !detail.is_empty() => detail.clone(),
            ApiError::QuotaSpent { period, .. } => format!(
                "Out of resource quota: this client's {period} quota of codes is spent; it renews at the start of the next {} (UTC).",
                if *period == "monthly" { "month" } else { "day" }
            ),
            _ => message.to_string(),
        };
        ErrorInfo {
            status: status.as_u16(),
            code,
            message,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (status, code, _) = self.parts();
        write!(f, "{} {}", status.as_u16(), code)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
        match self {
            ApiError::Unauthenticated => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::InvalidToken => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""));
            }
            ApiError::PermissionDenied => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    "Bearer error=\"insufficient_scope\", scope=\"one-time-password-sms:send-validate\"",
                ));
            }
            ApiError::MethodNotAllowed => {
                res.insert_header((header::ALLOW, "POST"));
            }
            ApiError::TooManyRequests => {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::QuotaSpent {
                retry_after_secs, ..
            } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            _ => {}
        }
        let body = serde_json::to_string(&self.body()).unwrap_or_else(|_| {
            r#"{"status":500,"code":"INTERNAL","message":"Unknown server error."}"#.into()
        });
        res.body(body)
    }
}

impl From<OtpError> for ApiError {
    fn from(e: OtpError) -> ApiError {
        let answer = match &e {
            OtpError::NotOperatorNumber | OtpError::UnknownId => ApiError::NotFound,
            OtpError::PhoneNotAllowed | OtpError::PumpingCooldown => {
                ApiError::PhoneNumberNotAllowed
            }
            OtpError::PhoneBlocked => ApiError::PhoneNumberBlocked,
            OtpError::TooManyCodes => ApiError::MaxOtpCodesExceeded,
            OtpError::Expired => ApiError::VerificationExpired,
            OtpError::InvalidCode => ApiError::InvalidOtp,
            OtpError::Locked => ApiError::VerificationFailed,
            OtpError::Delivery(DeliveryError::Unavailable(_)) => ApiError::Unavailable,
            OtpError::Delivery(DeliveryError::OutcomeUnknown(_)) => ApiError::Timeout,
            OtpError::Delivery(DeliveryError::DestinationRejected(_)) => {
                ApiError::PhoneNumberNotAllowed
            }
            OtpError::Delivery(DeliveryError::DestinationBlocked(_)) => {
                ApiError::PhoneNumberBlocked
            }
            OtpError::Store(_) | OtpError::Lookup(_) => ApiError::Unavailable,
            OtpError::Random => ApiError::Internal,
            OtpError::DestinationNotAllowed => ApiError::DestinationNotAllowed,
            OtpError::TemplateNotAllowed => ApiError::TemplateNotAllowed,
            OtpError::QuotaExceeded {
                period,
                retry_after_secs,
            } => ApiError::QuotaSpent {
                period,
                retry_after_secs: *retry_after_secs,
            },
        };
        if answer.parts().0.is_server_error() {
            log_cause_chain(&e, &answer);
        }
        answer
    }
}

/// The one place a 5xx's cause is logged: the whole `source()` chain, once, inside the request
/// span (which carries the x-correlator). Every error in the chain is written to hold no code,
/// token or full number; the client only ever sees the generic CAMARA message.
fn log_cause_chain(e: &(dyn std::error::Error + 'static), answer: &ApiError) {
    let mut chain = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    let code = answer.parts().1;
    tracing::error!(target: "otp_gateway::api", code, error.cause_chain = %chain, "request failed");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn json(e: &ApiError) -> (u16, String) {
        let res = e.error_response();
        assert_eq!(
            res.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        let status = res.status().as_u16();
        let bytes = res.into_body().try_into_bytes().unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[test]
    fn every_error_renders_its_exact_camara_json() {
        let table = [
            (
                ApiError::InvalidArgument(String::new()),
                400,
                r#"{"status":400,"code":"INVALID_ARGUMENT","message":"Client specified an invalid argument, request body or query param."}"#,
            ),
            (
                ApiError::InvalidArgument("phoneNumber is missing".into()),
                400,
                r#"{"status":400,"code":"INVALID_ARGUMENT","message":"Client specified an invalid argument: phoneNumber is missing."}"#,
            ),
            (
                ApiError::Unauthenticated,
                401,
                r#"{"status":401,"code":"UNAUTHENTICATED","message":"Request not authenticated due to missing, invalid, or expired credentials."}"#,
            ),
            (
                ApiError::InvalidToken,
                401,
                r#"{"status":401,"code":"UNAUTHENTICATED","message":"Request not authenticated due to missing, invalid, or expired credentials."}"#,
            ),
            (
                ApiError::PermissionDenied,
                403,
                r#"{"status":403,"code":"PERMISSION_DENIED","message":"Client does not have sufficient permissions to perform this action."}"#,
            ),
            (
                ApiError::MaxOtpCodesExceeded,
                403,
                r#"{"status":403,"code":"ONE_TIME_PASSWORD_SMS.MAX_OTP_CODES_EXCEEDED","message":"Too many OTPs have been requested for this MSISDN. Try later."}"#,
            ),
            (
                ApiError::PhoneNumberNotAllowed,
                403,
                r#"{"status":403,"code":"ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED","message":"Phone_number can't receive an SMS due to business reasons in the operator."}"#,
            ),
            (
                ApiError::PhoneNumberBlocked,
                403,
                r#"{"status":403,"code":"ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_BLOCKED","message":"Phone_number is blocked to receive SMS due to any blocking business reason in the operator."}"#,
            ),
            (
                ApiError::NotFound,
                404,
                r#"{"status":404,"code":"NOT_FOUND","message":"The specified resource is not found."}"#,
            ),
            (
                ApiError::MethodNotAllowed,
                405,
                r#"{"status":405,"code":"METHOD_NOT_ALLOWED","message":"The requested method is not allowed/supported on the target resource."}"#,
            ),
            (
                ApiError::UnsupportedMediaType,
                415,
                r#"{"status":415,"code":"UNSUPPORTED_MEDIA_TYPE","message":"The server refuses to accept the request because the payload format is in an unsupported format."}"#,
            ),
            (
                ApiError::InvalidOtp,
                400,
                r#"{"status":400,"code":"ONE_TIME_PASSWORD_SMS.INVALID_OTP","message":"The provided OTP is not valid for this authenticationId."}"#,
            ),
            (
                ApiError::VerificationExpired,
                400,
                r#"{"status":400,"code":"ONE_TIME_PASSWORD_SMS.VERIFICATION_EXPIRED","message":"The authenticationId is no longer valid."}"#,
            ),
            (
                ApiError::VerificationFailed,
                400,
                r#"{"status":400,"code":"ONE_TIME_PASSWORD_SMS.VERIFICATION_FAILED","message":"The maximum number of attempts for this authenticationId was exceeded without providing a valid OTP."}"#,
            ),
            (
                ApiError::OutOfRange,
                400,
                r#"{"status":400,"code":"OUT_OF_RANGE","message":"Client specified an invalid range."}"#,
            ),
            (
                ApiError::QuotaExceeded,
                429,
                r#"{"status":429,"code":"QUOTA_EXCEEDED","message":"Out of resource quota."}"#,
            ),
            (
                ApiError::TooManyRequests,
                429,
                r#"{"status":429,"code":"TOO_MANY_REQUESTS","message":"Rate limit reached."}"#,
            ),
            (
                ApiError::Internal,
                500,
                r#"{"status":500,"code":"INTERNAL","message":"Unknown server error. Typically a server bug."}"#,
            ),
            (
                ApiError::Unavailable,
                503,
                r#"{"status":503,"code":"UNAVAILABLE","message":"Service Unavailable."}"#,
            ),
            (
                ApiError::Timeout,
                504,
                r#"{"status":504,"code":"TIMEOUT","message":"Request timeout exceeded."}"#,
            ),
            (
                ApiError::DestinationNotAllowed,
                403,
                r#"{"status":403,"code":"ONE_TIME_PASSWORD_SMS.PHONE_NUMBER_NOT_ALLOWED","message":"This client is not allowed to send codes to this phone number's country or range."}"#,
            ),
            (
                ApiError::TemplateNotAllowed,
                403,
                r#"{"status":403,"code":"PERMISSION_DENIED","message":"This client is not allowed to send this message text; use one of the templates the operator allows for it."}"#,
            ),
            (
                ApiError::QuotaSpent {
                    period: "daily",
                    retry_after_secs: 3600,
                },
                429,
                r#"{"status":429,"code":"QUOTA_EXCEEDED","message":"Out of resource quota: this client's daily quota of codes is spent; it renews at the start of the next day (UTC)."}"#,
            ),
        ];
        for (err, status, body) in table {
            assert_eq!(json(&err), (status, body.to_string()), "{err:?}");
        }
    }

    #[test]
    fn auth_errors_carry_www_authenticate_and_405_carries_allow() {
        let r = ApiError::Unauthenticated.error_response();
        assert_eq!(r.headers().get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
        let r = ApiError::InvalidToken.error_response();
        assert_eq!(
            r.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer error=\"invalid_token\""
        );
        let r = ApiError::PermissionDenied.error_response();
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_some());
        let r = ApiError::MethodNotAllowed.error_response();
        assert_eq!(r.headers().get(header::ALLOW).unwrap(), "POST");
        let r = ApiError::TemplateNotAllowed.error_response();
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
        let r = ApiError::QuotaSpent {
            period: "monthly",
            retry_after_secs: 42,
        }
        .error_response();
        assert_eq!(r.headers().get(header::RETRY_AFTER).unwrap(), "42");
    }
}
