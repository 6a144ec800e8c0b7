//! HTTP endpoints of the authorisation server: the token endpoint
//! (RFC 6749 §4.4 client-credentials grant), the JWKS and the discovery
//! document.
//!
//! Every outcome of the token endpoint, including malformed input, is a JSON
//! body in the RFC 6749 §5 shape; nothing falls through to actix's plain-text
//! error responses.

use std::collections::HashMap;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use serde_json::json;

use crate::auth::assertion::JWT_BEARER;
use crate::auth::{ClientAuth, IssuedToken, TokenError, TokenIssuer};

/// Largest accepted token-request body; real requests are a few hundred bytes.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// Challenge sent with every 401 (RFC 9110 §11.6.1 requires one).
const BASIC_CHALLENGE: &str = "Basic realm=\"otp-gateway\"";
/// Cache policy of the public metadata documents.
const METADATA_CACHE_CONTROL: &str = "public, max-age=300";

/// Base64 for `Authorization: Basic`, tolerant about padding because client
/// libraries differ on it.
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Registers `POST /oauth2/token`, `GET /.well-known/openid-configuration`
/// and `GET /oauth2/jwks`. The handlers read `web::Data<TokenIssuer>`, which
/// the caller registers with `App::app_data`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/oauth2/token")
            .route(web::post().to(token))
            .default_service(web::to(token_method_not_allowed)),
    )
    .service(web::resource("/.well-known/openid-configuration").route(web::get().to(discovery)))
    .service(web::resource("/oauth2/jwks").route(web::get().to(jwks)));
}

/// How the client authenticated.
struct Credentials {
    id: String,
    secret: String,
}

async fn token(req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let Some(issuer) = issuer_of(&req) else {
        return missing_issuer();
    };
    let (auth, scope) = match parse_token_request(&req, payload).await {
        Ok(parsed) => parsed,
        Err(err) => return token_error(&err),
    };
    // PBKDF2 (tens of milliseconds) and RSA verification: issue_bounded keeps them off the
    // async workers, on a bounded pool, within the failure budgets.
    match issuer.into_inner().issue_bounded(auth, scope).await {
        Ok(issued) => token_success(&issued),
        Err(err) => token_error(&err),
    }
}

/// Validates the request shape and extracts the client authentication and the
/// scope (whose absence the issuer refuses).
async fn parse_token_request(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(ClientAuth, Option<String>), TokenError> {
    if !is_form_content_type(req) {
        return Err(TokenError::InvalidRequest(
            "content type must be application/x-www-form-urlencoded",
        ));
    }
    let body = match payload.to_bytes_limited(MAX_BODY_BYTES).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => return Err(TokenError::InvalidRequest("request body could not be read")),
        Err(_) => return Err(TokenError::InvalidRequest("request body too large")),
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| TokenError::InvalidRequest("request body is not valid form data"))?;
    let mut form: HashMap<String, String> = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        // RFC 6749 §3.1: a parameter without a value counts as omitted.
        if value.is_empty() {
            continue;
        }
        // RFC 6749 §3.1: parameters must not be repeated.
        if form.insert(name, value).is_some() {
            return Err(TokenError::InvalidRequest("a parameter is repeated"));
        }
    }

    match form.get("grant_type").map(String::as_str) {
        None => return Err(TokenError::InvalidRequest("grant_type is required")),
        Some("client_credentials") => {}
        Some(_) => return Err(TokenError::UnsupportedGrantType),
    }

    let form_id = form.remove("client_id");
    let form_secret = form.remove("client_secret");
    let assertion_type = form.remove("client_assertion_type");
    let assertion = form.remove("client_assertion");
    if assertion_type.is_some() || assertion.is_some() {
        // RFC 6749 §2.3: one authentication method per request.
        if form_secret.is_some() || req.headers().contains_key(header::AUTHORIZATION) {
            return Err(TokenError::InvalidRequest(
                "use only one client authentication method",
            ));
        }
        let (Some(assertion_type), Some(assertion)) = (assertion_type, assertion) else {
            return Err(TokenError::InvalidRequest(
                "client_assertion and client_assertion_type go together",
            ));
        };
        if assertion_type != JWT_BEARER {
            tracing::info!("token request with an unsupported client_assertion_type");
            return Err(TokenError::InvalidClient);
        }
        let auth = ClientAuth::Assertion {
            assertion,
            client_id: form_id,
        };
        return Ok((auth, form.remove("scope")));
    }
    let credentials = match req.headers().get(header::AUTHORIZATION) {
        Some(value) => {
            let basic = parse_basic(value).ok_or(TokenError::InvalidClient)?;
            // RFC 6749 §2.3: one authentication method per request. A body
            // client_id alone is tolerated when it names the same client.
            if form_secret.is_some() {
                return Err(TokenError::InvalidRequest(
                    "use only one client authentication method",
                ));
            }
            if form_id.as_ref().is_some_and(|id| *id != basic.id) {
                return Err(TokenError::InvalidRequest(
                    "client_id does not match the Authorization header",
                ));
            }
            basic
        }
        None => match (form_id, form_secret) {
            (Some(id), Some(secret)) => Credentials { id, secret },
            _ => return Err(TokenError::InvalidClient),
        },
    };
    let auth = ClientAuth::Secret {
        id: credentials.id,
        secret: credentials.secret,
    };
    Ok((auth, form.remove("scope")))
}

/// Whether the media type (parameters such as charset aside) is form data.
fn is_form_content_type(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Parses `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749
/// §2.3.1). `None` for any other scheme or a malformed value.
fn parse_basic(value: &HeaderValue) -> Option<Credentials> {
    let (scheme, encoded) = value.to_str().ok()?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASIC_BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let id = form_decode(id)?;
    let secret = form_decode(secret)?;
    (!id.is_empty()).then_some(Credentials { id, secret })
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a
/// space, `%XX` a byte; a `%` not followed by two hex digits is kept as is
/// (the same leniency as browsers and the `url` crate). `None` if the result
/// is not UTF-8.
fn form_decode(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|d| d.into_owned())
}

fn token_success(issued: &IssuedToken) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "access_token": issued.access_token.expose(),
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": issued.scope,
        }))
}

fn token_error(err: &TokenError) -> HttpResponse {
    if let TokenError::Server(cause) = err {
        tracing::error!(error = %cause, "token issuance failed");
    }
    let mut response = error_json(err.status(), err.error_code(), &err.to_string());
    if let TokenError::TooManyAttempts { retry_after } = err {
        // Whole seconds, rounded up, never 0 (RFC 9110 §10.2.3).
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        if let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    if err.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(BASIC_CHALLENGE),
        );
    }
    response
}

/// RFC 6749 §5.2 error body; never cached (§5.1 applies the same rule).
fn error_json(status: StatusCode, code: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "error": code, "error_description": description }))
}

async fn token_method_not_allowed() -> HttpResponse {
    let mut response = error_json(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "the token endpoint only accepts POST",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

async fn discovery(req: HttpRequest) -> HttpResponse {
    match issuer_of(&req) {
        Some(issuer) => metadata(issuer.discovery_document()),
        None => missing_issuer(),
    }
}

async fn jwks(req: HttpRequest) -> HttpResponse {
    match issuer_of(&req) {
        Some(issuer) => metadata(issuer.jwks()),
        None => missing_issuer(),
    }
}

fn metadata(document: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, METADATA_CACHE_CONTROL))
        .json(document)
}

/// The issuer is looked up by hand rather than extracted so that a wiring
/// mistake yields a JSON error instead of actix's plain-text 500.
fn issuer_of(req: &HttpRequest) -> Option<web::Data<TokenIssuer>> {
    req.app_data::<web::Data<TokenIssuer>>().cloned()
}

fn missing_issuer() -> HttpResponse {
    tracing::error!("TokenIssuer is not registered as app data");
    error_json(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "authorisation server not configured",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use actix_web::dev::ServiceResponse;
    use actix_web::{test, App};
    use base64::engine::general_purpose::STANDARD;
    use serde_json::Value;

    use super::*;
    use crate::auth::{ClientSecret, IssuerSettings, RegisteredClient, SEND_VALIDATE_SCOPE};

    const FORM: &str = "application/x-www-form-urlencoded";
    /// The grant alone, for requests that name their own scope.
    const GRANT_ONLY: &str = "grant_type=client_credentials";
    const GRANT: &str = "grant_type=client_credentials&scope=one-time-password-sms%3Asend-validate";

    fn issuer() -> web::Data<TokenIssuer> {
        let settings = IssuerSettings {
            signing_keys: Vec::new(),
            issuer: "http://127.0.0.1:8080".to_owned(),
            audience: "otp-gateway".to_owned(),
            token_ttl: Duration::from_secs(600),
            clients: vec![
                RegisteredClient {
                    token_ttl: None,
                    id: "app one".to_owned(),
                    auth_method: crate::auth::AuthMethod::ClientSecret,
                    keys: None,
                    secret: Some(ClientSecret::parse("p@ss:word+1").unwrap()),
                    scopes: vec![SEND_VALIDATE_SCOPE.to_owned()],
                },
                RegisteredClient {
                    token_ttl: None,
                    id: "hashed".to_owned(),
                    auth_method: crate::auth::AuthMethod::ClientSecret,
                    keys: None,
                    secret: Some(
                        ClientSecret::parse(&ClientSecret::hash("h-secret", 1_000).unwrap())
                            .unwrap(),
                    ),
                    scopes: vec![SEND_VALIDATE_SCOPE.to_owned(), "other".to_owned()],
                },
            ],
        };
        web::Data::new(TokenIssuer::new(settings).unwrap())
    }

    /// `Authorization: Basic` value for already url-encoded id and secret.
    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    async fn call(issuer: &web::Data<TokenIssuer>, req: test::TestRequest) -> ServiceResponse {
        let app = test::init_service(
            App::new()
                .app_data(web::Data::clone(issuer))
                .configure(configure),
        )
        .await;
        test::call_service(&app, req.to_request()).await
    }

    fn post_form(body: &str) -> test::TestRequest {
        test::TestRequest::post()
            .uri("/oauth2/token")
            .insert_header((header::CONTENT_TYPE, FORM))
            .set_payload(body.to_owned())
    }

    fn header_of(resp: &ServiceResponse, name: header::HeaderName) -> Option<&str> {
        resp.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// Checks the RFC 6749 §5.2 error shape and returns the `error` code.
    async fn expect_error(resp: ServiceResponse, status: StatusCode, code: &str) {
        assert_eq!(resp.status(), status);
        assert_eq!(
            header_of(&resp, header::CONTENT_TYPE),
            Some("application/json")
        );
        assert_eq!(header_of(&resp, header::CACHE_CONTROL), Some("no-store"));
        assert!(resp.headers().get(header::PRAGMA).is_none());
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(
                header_of(&resp, header::WWW_AUTHENTICATE),
                Some(BASIC_CHALLENGE)
            );
        }
        let body: Value = test::read_body_json(resp).await;
        assert_eq!(body["error"], code, "{body}");
        assert!(body["error_description"].is_string());
    }

    async fn expect_token(issuer: &web::Data<TokenIssuer>, resp: ServiceResponse) -> Value {
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header_of(&resp, header::CACHE_CONTROL), Some("no-store"));
        assert!(resp.headers().get(header::PRAGMA).is_none());
        assert_eq!(
            header_of(&resp, header::CONTENT_TYPE),
            Some("application/json")
        );
        let body: Value = test::read_body_json(resp).await;
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 600);
        let principal = issuer
            .validator()
            .validate(body["access_token"].as_str().unwrap())
            .unwrap();
        assert_eq!(principal.scopes.join(" "), body["scope"].as_str().unwrap());
        body
    }

    #[actix_web::test]
    async fn client_secret_basic_ok() {
        let issuer = issuer();
        // Id and secret are url-encoded inside the Basic credentials.
        let req = post_form(GRANT)
            .insert_header((header::AUTHORIZATION, basic("app+one", "p%40ss%3Aword%2B1")));
        let body = expect_token(&issuer, call(&issuer, req).await).await;
        assert_eq!(body["scope"], SEND_VALIDATE_SCOPE);
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(
            issuer.validator().validate(token).unwrap().client_id,
            "app one"
        );
    }

    #[actix_web::test]
    async fn client_secret_basic_hashed_with_scope_and_charset() {
        let issuer = issuer();
        let req = test::TestRequest::post()
            .uri("/oauth2/token")
            .insert_header((
                header::CONTENT_TYPE,
                "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
            ))
            .insert_header((header::AUTHORIZATION, basic("hashed", "h-secret")))
            .set_payload("grant_type=client_credentials&scope=other");
        let body = expect_token(&issuer, call(&issuer, req).await).await;
        assert_eq!(body["scope"], "other");
    }

    #[actix_web::test]
    async fn client_secret_post_ok() {
        let issuer = issuer();
        let req = post_form(&format!(
            "{GRANT_ONLY}&client_id=hashed&client_secret=h-secret&scope={}",
            SEND_VALIDATE_SCOPE.replace(':', "%3A")
        ));
        let body = expect_token(&issuer, call(&issuer, req).await).await;
        assert_eq!(body["scope"], SEND_VALIDATE_SCOPE);
    }

    #[actix_web::test]
    async fn basic_with_matching_body_client_id_ok() {
        let issuer = issuer();
        let req = post_form(&format!("{GRANT}&client_id=hashed"))
            .insert_header((header::AUTHORIZATION, basic("hashed", "h-secret")));
        expect_token(&issuer, call(&issuer, req).await).await;
    }

    #[actix_web::test]
    async fn wrong_secret_is_invalid_client() {
        let issuer = issuer();
        let req = post_form(GRANT).insert_header((header::AUTHORIZATION, basic("hashed", "nope")));
        expect_error(
            call(&issuer, req).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        )
        .await;
        let req = post_form(&format!("{GRANT}&client_id=hashed&client_secret=nope"));
        expect_error(
            call(&issuer, req).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        )
        .await;
    }

    #[actix_web::test]
    async fn unknown_client_is_invalid_client() {
        let issuer = issuer();
        let req =
            post_form(GRANT).insert_header((header::AUTHORIZATION, basic("ghost", "h-secret")));
        expect_error(
            call(&issuer, req).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        )
        .await;
        let req = post_form(&format!("{GRANT}&client_id=ghost&client_secret=x"));
        expect_error(
            call(&issuer, req).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        )
        .await;
    }

    #[actix_web::test]
    async fn missing_or_malformed_credentials_are_invalid_client() {
        let issuer = issuer();
        for req in [
            post_form(GRANT),
            post_form(&format!("{GRANT}&client_id=hashed")),
            post_form(&format!("{GRANT}&client_secret=h-secret")),
            post_form(GRANT).insert_header((header::AUTHORIZATION, "Basic !!!not-base64")),
            post_form(GRANT).insert_header((header::AUTHORIZATION, "Basic aGFzaGVk")),
            post_form(GRANT).insert_header((header::AUTHORIZATION, "Bearer abc")),
            post_form(GRANT).insert_header((header::AUTHORIZATION, "Basic")),
            post_form(GRANT).insert_header((header::AUTHORIZATION, basic("", "x"))),
        ] {
            expect_error(
                call(&issuer, req).await,
                StatusCode::UNAUTHORIZED,
                "invalid_client",
            )
            .await;
        }
    }

    #[actix_web::test]
    async fn a_request_without_scope_is_invalid_scope() {
        let issuer = issuer();
        for body in [GRANT_ONLY.to_owned(), format!("{GRANT_ONLY}&scope=")] {
            let req = post_form(&body)
                .insert_header((header::AUTHORIZATION, basic("hashed", "h-secret")));
            expect_error(
                call(&issuer, req).await,
                StatusCode::BAD_REQUEST,
                "invalid_scope",
            )
            .await;
        }
    }

    #[actix_web::test]
    async fn client_assertion_parameters_are_checked_before_the_assertion() {
        let issuer = issuer();
        let jwt_type = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
        // Half of the pair.
        for body in [
            format!("{GRANT}&client_assertion=a.b.c"),
            format!("{GRANT}&client_assertion_type={jwt_type}"),
        ] {
            expect_error(
                call(&issuer, post_form(&body)).await,
                StatusCode::BAD_REQUEST,
                "invalid_request",
            )
            .await;
        }
        // Two methods at once.
        let both = post_form(&format!(
            "{GRANT}&client_assertion_type={jwt_type}&client_assertion=a.b.c"
        ))
        .insert_header((header::AUTHORIZATION, basic("hashed", "h-secret")));
        expect_error(
            call(&issuer, both).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
        // Another assertion type, and a garbage assertion: client authentication failures.
        for body in [
            format!("{GRANT}&client_assertion_type=urn%3Aexample%3Asaml&client_assertion=a.b.c"),
            format!("{GRANT}&client_assertion_type={jwt_type}&client_assertion=a.b.c"),
        ] {
            expect_error(
                call(&issuer, post_form(&body)).await,
                StatusCode::UNAUTHORIZED,
                "invalid_client",
            )
            .await;
        }
    }

    #[actix_web::test]
    async fn missing_grant_type_is_invalid_request() {
        let issuer = issuer();
        for body in ["", "client_id=hashed&client_secret=h-secret", "grant_type="] {
            let req = post_form(body);
            expect_error(
                call(&issuer, req).await,
                StatusCode::BAD_REQUEST,
                "invalid_request",
            )
            .await;
        }
    }

    #[actix_web::test]
    async fn password_grant_is_unsupported() {
        let issuer = issuer();
        let req = post_form("grant_type=password&username=a&password=b")
            .insert_header((header::AUTHORIZATION, basic("hashed", "h-secret")));
        expect_error(
            call(&issuer, req).await,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        )
        .await;
    }

    #[actix_web::test]
    async fn scope_not_granted_is_invalid_scope() {
        let issuer = issuer();
        let req = post_form(&format!("{GRANT_ONLY}&scope=other"))
            .insert_header((header::AUTHORIZATION, basic("app+one", "p%40ss%3Aword%2B1")));
        expect_error(
            call(&issuer, req).await,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        )
        .await;
    }

    #[actix_web::test]
    async fn wrong_content_type_is_invalid_request() {
        let issuer = issuer();
        let json_req = test::TestRequest::post()
            .uri("/oauth2/token")
            .insert_header((header::AUTHORIZATION, basic("hashed", "h-secret")))
            .set_json(serde_json::json!({"grant_type": "client_credentials"}));
        expect_error(
            call(&issuer, json_req).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
        let no_type = test::TestRequest::post()
            .uri("/oauth2/token")
            .insert_header((header::AUTHORIZATION, basic("hashed", "h-secret")))
            .set_payload(GRANT);
        expect_error(
            call(&issuer, no_type).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }

    #[actix_web::test]
    async fn both_auth_methods_are_invalid_request() {
        let issuer = issuer();
        let req = post_form(&format!("{GRANT}&client_id=hashed&client_secret=h-secret"))
            .insert_header((header::AUTHORIZATION, basic("hashed", "h-secret")));
        expect_error(
            call(&issuer, req).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
        let req = post_form(&format!("{GRANT}&client_id=other"))
            .insert_header((header::AUTHORIZATION, basic("hashed", "h-secret")));
        expect_error(
            call(&issuer, req).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }

    #[actix_web::test]
    async fn malformed_bodies_are_invalid_request() {
        let issuer = issuer();
        let repeated = post_form(&format!("{GRANT}&{GRANT}"))
            .insert_header((header::AUTHORIZATION, basic("hashed", "h-secret")));
        expect_error(
            call(&issuer, repeated).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
        let not_utf8 = test::TestRequest::post()
            .uri("/oauth2/token")
            .insert_header((header::CONTENT_TYPE, FORM))
            .set_payload(vec![0xff, 0xfe, b'=', 0xff]);
        expect_error(
            call(&issuer, not_utf8).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
        let too_big = post_form(&format!("{GRANT}&pad={}", "x".repeat(MAX_BODY_BYTES)));
        expect_error(
            call(&issuer, too_big).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }

    #[actix_web::test]
    async fn get_on_token_endpoint_is_405_json() {
        let issuer = issuer();
        let req = test::TestRequest::get().uri("/oauth2/token");
        let resp = call(&issuer, req).await;
        assert_eq!(header_of(&resp, header::ALLOW), Some("POST"));
        expect_error(resp, StatusCode::METHOD_NOT_ALLOWED, "invalid_request").await;
    }

    #[actix_web::test]
    async fn discovery_document_served() {
        let issuer = issuer();
        let req = test::TestRequest::get().uri("/.well-known/openid-configuration");
        let resp = call(&issuer, req).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            header_of(&resp, header::CACHE_CONTROL),
            Some(METADATA_CACHE_CONTROL)
        );
        assert_eq!(
            header_of(&resp, header::CONTENT_TYPE),
            Some("application/json")
        );
        let doc: Value = test::read_body_json(resp).await;
        assert_eq!(doc["issuer"], "http://127.0.0.1:8080");
        assert_eq!(doc["token_endpoint"], "http://127.0.0.1:8080/oauth2/token");
        assert_eq!(doc["jwks_uri"], "http://127.0.0.1:8080/oauth2/jwks");
        assert_eq!(
            doc["grant_types_supported"],
            serde_json::json!(["client_credentials"])
        );
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            serde_json::json!(["client_secret_basic", "client_secret_post"])
        );
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            serde_json::json!(["ES256"])
        );
        assert_eq!(
            doc["response_types_supported"],
            serde_json::json!(["token"])
        );
        assert_eq!(
            doc["scopes_supported"],
            serde_json::json!([SEND_VALIDATE_SCOPE, "other"])
        );
    }

    #[actix_web::test]
    async fn jwks_served() {
        let issuer = issuer();
        let resp = call(&issuer, test::TestRequest::get().uri("/oauth2/jwks")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            header_of(&resp, header::CACHE_CONTROL),
            Some(METADATA_CACHE_CONTROL)
        );
        let jwks: Value = test::read_body_json(resp).await;
        assert_eq!(jwks, issuer.jwks());
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert_eq!(key["alg"], "ES256");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], issuer.kid());
        assert_eq!(key["x"].as_str().unwrap().len(), 43);
        assert_eq!(key["y"].as_str().unwrap().len(), 43);
    }

    #[actix_web::test]
    async fn missing_app_data_is_json_500() {
        let app = test::init_service(App::new().configure(configure)).await;
        let resp = test::call_service(
            &app,
            test::TestRequest::get().uri("/oauth2/jwks").to_request(),
        )
        .await;
        expect_error(resp, StatusCode::INTERNAL_SERVER_ERROR, "server_error").await;
    }

    #[actix_web::test]
    async fn form_decoding() {
        assert_eq!(form_decode("a+b%20c").as_deref(), Some("a b c"));
        assert_eq!(form_decode("%41%3a%3A").as_deref(), Some("A::"));
        assert_eq!(form_decode("100%").as_deref(), Some("100%"));
        assert_eq!(form_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(form_decode("%+1").as_deref(), Some("% 1"));
        assert_eq!(form_decode("%C3%A9").as_deref(), Some("\u{e9}"));
        assert_eq!(form_decode("%FF"), None);
    }
}
