//! `x-correlator`: checked against the configured CAMARA release's pattern (see
//! [`CamaraVersion::correlator_ok`]), echoed on every response (errors too), generated when
//! absent, and attached to the request span so log lines can be joined.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};
use tracing::Instrument;

use super::error::ApiError;
use super::version::CamaraVersion;
use crate::metrics::Metrics;

/// The header name (lower case: header names are case-insensitive).
pub const X_CORRELATOR: HeaderName = HeaderName::from_static("x-correlator");

/// The correlator of the current request, stored in its extensions.
#[derive(Clone, Debug)]
pub struct Correlator(pub String);

/// A correlator for a request that brought none: a version-4-shaped UUID, unique rather than
/// secret (it only joins log lines), so it needs no system random call per request (a
/// `getrandom` syscall was about 1 % of validate-code's CPU): one random 128-bit start per
/// process, then a counter spread over the bits by an odd multiplier (a bijection, so no two
/// requests of a process share one, and replicas start far apart).
fn fresh() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static START: OnceLock<u128> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| uuid::Uuid::new_v4().as_u128());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let spread = u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    let bytes = start.wrapping_add(spread).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Middleware: validates (by `version`'s pattern), echoes or generates the correlator.
pub async fn correlate(
    version: CamaraVersion,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let presented = match req.headers().get(&X_CORRELATOR).map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(v)) if version.correlator_ok(v) => {
            Ok(Some(v.to_string()).filter(|v| !v.is_empty()))
        }
        Some(_) => Err(()),
    };
    let correlator = match &presented {
        Ok(Some(v)) => v.clone(),
        Ok(None) | Err(()) => fresh(),
    };
    let value = HeaderValue::from_str(&correlator).ok();
    if presented.is_err() {
        // Not echoed: an invalid value is not ours to repeat. A fresh one is sent instead.
        let err = ApiError::InvalidArgument(format!(
            "x-correlator must match {}",
            version.correlator_pattern()
        ));
        let mut res = req.into_response(err.error_response());
        // This answer never reaches the metrics middleware inside us: count it here.
        if let Some(m) = res.request().app_data::<web::Data<Metrics>>() {
            super::record(
                m,
                res.request(),
                res.request().method(),
                res.status(),
                started,
            );
        }
        if let Some(v) = value {
            res.headers_mut().insert(X_CORRELATOR, v);
        }
        return Ok(res);
    }
    req.extensions_mut().insert(Correlator(correlator.clone()));
    let span = tracing::info_span!("request", correlator = %correlator);
    let handled = crate::audit::with_correlator(correlator, next.call(req).instrument(span));
    let mut res = handled.await?.map_into_boxed_body();
    if let Some(v) = value {
        res.headers_mut().insert(X_CORRELATOR, v);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::fresh;

    #[test]
    fn generated_correlators_are_distinct_version_4_uuids() {
        let all: std::collections::HashSet<String> = (0..10_000).map(|_| fresh()).collect();
        assert_eq!(all.len(), 10_000);
        for c in all.iter().take(100) {
            let u = uuid::Uuid::parse_str(c).expect("a UUID");
            assert_eq!(u.get_version_num(), 4, "{c}");
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{c}");
        }
    }
}
