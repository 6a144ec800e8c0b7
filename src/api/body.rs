//! Request bodies are read and checked here rather than by actix's `Json` extractor, so that
//! every rejection (no body, wrong media type, oversized, malformed, `null`, wrong type, empty
//! string) becomes a CAMARA error with a message saying which field is wrong.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures::StreamExt;
use serde_json::{Map, Value};

use super::error::ApiError;

/// A JSON object body.
pub struct JsonObject(Map<String, Value>);

impl JsonObject {
    /// Reads at most `limit` bytes and parses a JSON object. Unknown properties are kept and
    /// ignored by callers (v1.1.0 declares no `additionalProperties: false`).
    pub async fn read(
        req: &HttpRequest,
        mut payload: web::Payload,
        limit: usize,
    ) -> Result<JsonObject, ApiError> {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|_| ApiError::InvalidArgument("unreadable request body".into()))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::InvalidArgument(format!(
                    "request body larger than {limit} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::InvalidArgument("request body is missing".into()));
        }
        if !is_json(req) {
            return Err(ApiError::UnsupportedMediaType);
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::InvalidArgument(
                "request body must be a JSON object".into(),
            )),
            Err(_) => Err(ApiError::InvalidArgument(
                "request body is not valid JSON".into(),
            )),
        }
    }

    /// A required, non-empty string property.
    pub fn string(&self, name: &str) -> Result<&str, ApiError> {
        match self.0.get(name) {
            None => Err(ApiError::InvalidArgument(format!("{name} is required"))),
            Some(Value::Null) => Err(ApiError::InvalidArgument(format!(
                "{name} must not be null"
            ))),
            Some(Value::String(s)) if s.is_empty() => Err(ApiError::InvalidArgument(format!(
                "{name} must not be empty"
            ))),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(ApiError::InvalidArgument(format!(
                "{name} must be a string"
            ))),
        }
    }
}

fn is_json(req: &HttpRequest) -> bool {
    let Some(ct) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}
