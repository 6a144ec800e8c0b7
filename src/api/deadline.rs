//! A deadline on reading request bodies (`http.request_timeout`), on both listeners.
//!
//! actix-web bounds the request head (`client_request_timeout`) but not the body: a token
//! request announcing `Content-Length: 100` and sending nothing, or a body sent one byte a
//! second, held a connection and a handler for minutes. [`bound_body`] swaps the request's
//! payload for one that fails once the deadline passes and, when that happened, answers 408
//! and closes the connection, whatever the handler made of the failed read.
//!
//! It lives with the token endpoint, whose unauthenticated body reads were the first
//! exposure, but applies to every route it wraps. The 408 has the shape of the endpoint:
//! RFC 6749 JSON under `/oauth2/`, a CAMARA `ErrorInfo` elsewhere (CAMARA defines no code for
//! 408; `TIMEOUT`, its code for a timeout, is used).

use std::cell::Cell;
use std::future::Future as _;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage as _, HttpResponse};
use futures::Stream;
use serde_json::json;

use super::error::ErrorInfo;

/// A payload that fails with `TimedOut` once its deadline passes.
struct DeadlinePayload {
    inner: Payload,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Set when the deadline cut the read short; read by [`bound_body`] afterwards.
    expired: Rc<Cell<bool>>,
    finished: bool,
}

impl Stream for DeadlinePayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        // The deadline first: a body that keeps trickling must not outrun it.
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.finished = true;
            this.expired.set(true);
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request body not received within http.request_timeout",
            )))));
        }
        let next = Pin::new(&mut this.inner).poll_next(cx);
        if matches!(next, Poll::Ready(None)) {
            this.finished = true;
        }
        next
    }
}

/// Middleware (for `actix_web::middleware::from_fn` through a closure that supplies
/// `timeout`): the request's body must be read within `timeout` of the request reaching the
/// application; past it the read fails, and the answer is 408 with `Connection: close`.
pub async fn bound_body(
    timeout: Duration,
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let expired = Rc::new(Cell::new(false));
    let payload = DeadlinePayload {
        inner: req.take_payload(),
        deadline: Box::pin(tokio::time::sleep(timeout)),
        expired: Rc::clone(&expired),
        finished: false,
    };
    req.set_payload(Payload::Stream {
        payload: Box::pin(payload),
    });
    let token_endpoint = req.path().starts_with("/oauth2/");
    let res = next.call(req).await?;
    if !expired.get() {
        return Ok(res.map_into_boxed_body());
    }
    tracing::info!(
        route = %res.request().match_pattern().unwrap_or_else(|| "unmatched".into()),
        "request body not received within http.request_timeout"
    );
    Ok(res.into_response(timed_out(token_endpoint)))
}

/// The 408 answer, in the error shape of the endpoint; the connection is closed since the
/// rest of the body may still be on its way.
fn timed_out(token_endpoint: bool) -> HttpResponse {
    let mut builder = HttpResponse::build(StatusCode::REQUEST_TIMEOUT);
    builder.force_close().insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ));
    let body = if token_endpoint {
        // Like every answer of the token endpoint (RFC 6749 §5.1).
        builder.insert_header((header::CACHE_CONTROL, "no-store"));
        json!({
            "error": "invalid_request",
            "error_description": "the request body was not received within the request timeout",
        })
    } else {
        let info = ErrorInfo {
            status: StatusCode::REQUEST_TIMEOUT.as_u16(),
            code: "TIMEOUT",
            message: "The request body was not received within the request timeout.".to_owned(),
        };
        serde_json::to_value(info).unwrap_or_default()
    };
    builder.body(body.to_string())
}
