//! The two CAMARA operations. Each handler extracts, converts to domain types, makes one
//! service call and maps the outcome; nothing else.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{Authenticated, SendValidate};
use super::body::JsonObject;
use super::error::ApiError;
use super::ApiState;
use crate::domain::{CodeAttempt, MessageTemplate, PhoneNumber};

// Documents the body only: `send_code` reads it with `JsonObject`, so every rejection is a
// CAMARA error naming the field.
/// The number to send the code to and the SMS text around it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SendCodeBody {
    /// The number to send the SMS to, in E.164 format with a leading '+'.
    #[schema(pattern = r"^\+[1-9][0-9]{4,14}$", example = "+346661113334")]
    #[schema(rename = "phoneNumber")]
    phone_number: String,
    /// The SMS text; the `{{code}}` label is replaced by the code (at most 160 characters).
    #[schema(
        pattern = r".*\{\{code\}\}.*",
        max_length = 160,
        example = "{{code}} is your short code to authenticate with Cool App via SMS"
    )]
    message: String,
}

/// The id to present, with the code, to validate-code.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendCodeResponse {
    /// Id of this verification; present it with the code to validate-code.
    #[schema(max_length = 36, example = "ea0840f3-3663-4149-bd10-c7c6b8912105")]
    pub authentication_id: String,
}

// Documents the body only, like `SendCodeBody`.
/// The authenticationId of a send-code answer and the code its SMS carried.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ValidateCodeBody {
    /// The id returned by sendCode.
    #[schema(max_length = 36, example = "ea0840f3-3663-4149-bd10-c7c6b8912105")]
    #[schema(rename = "authenticationId")]
    authentication_id: String,
    /// The code received by SMS.
    #[schema(max_length = 10, example = "AJY3")]
    code: String,
}

/// Sends an SMS with the message, its `{{code}}` replaced by a fresh code, to the number.
#[utoipa::path(
    post,
    path = "/send-code",
    operation_id = "sendCode",
    tag = "OTP Management",
    request_body(content = SendCodeBody, content_type = "application/json"),
    responses((status = 200, description = "The SMS was accepted by the SMSC", body = SendCodeResponse,
        headers(("x-correlator" = String, description = "Echo of the request correlator")))),
    security(("openId" = ["one-time-password-sms:send-validate"]))
)]
pub async fn send_code(
    caller: Authenticated<SendValidate>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body = JsonObject::read(&req, payload, state.max_body_bytes).await?;
    let phone =
        PhoneNumber::parse(body.string("phoneNumber")?).map_err(ApiError::InvalidArgument)?;
    let template =
        MessageTemplate::parse(body.string("message")?).map_err(ApiError::InvalidArgument)?;
    let id = state
        .otp
        .send_code(&caller.principal.client_id, &phone, &template)
        .await?;
    Ok(HttpResponse::Ok().json(SendCodeResponse {
        authentication_id: id.to_string(),
    }))
}

/// Checks the code received by SMS for an authenticationId.
#[utoipa::path(
    post,
    path = "/validate-code",
    operation_id = "validateCode",
    tag = "OTP Management",
    request_body(content = ValidateCodeBody, content_type = "application/json"),
    responses((status = 204, description = "The OTP was successfully validated",
        headers(("x-correlator" = String, description = "Echo of the request correlator")))),
    security(("openId" = ["one-time-password-sms:send-validate"]))
)]
pub async fn validate_code(
    caller: Authenticated<SendValidate>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body = JsonObject::read(&req, payload, state.max_body_bytes).await?;
    let id = body.string("authenticationId")?;
    if id.chars().count() > 36 {
        return Err(ApiError::InvalidArgument(
            "authenticationId must be at most 36 characters".into(),
        ));
    }
    let code = CodeAttempt::parse(body.string("code")?).map_err(ApiError::InvalidArgument)?;
    state
        .otp
        .validate_code(&caller.principal.client_id, id, &code)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
