//! The OpenAPI document, generated from the handlers' annotations plus the error table, so the
//! documented errors are exactly the ones [`ApiError`] renders, for the configured
//! [`CamaraVersion`]. The checked-in copies in `code-api-definitions/` are compared with this
//! output and with the official CAMARA YAML of each version by tests.
//!
//! `/openapi.json` serves the contract document plus, in `info.description` only, how to try
//! the API from `/docs` on this instance (see [`PageNotes`]); the page itself is Swagger UI,
//! embedded in the binary (see [`docs_config`]).

use actix_web::{web, HttpResponse};
use serde_json::json;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Ref, Schema, Type};
use utoipa::openapi::security::{OpenIdConnect, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::{OpenApi as Document, RefOr, Required};
use utoipa::OpenApi;

use super::error::{ApiError, ErrorInfo};
use super::otp::{SendCodeBody, SendCodeResponse, ValidateCodeBody};
use super::version::CamaraVersion;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "One Time Password SMS",
        version = "1.1.1",
        description = "otp-gateway's implementation of the CAMARA One Time Password SMS API: send a code by SMS to a phone number, then check it.",
        license(name = "Apache 2.0", url = "https://www.apache.org/licenses/LICENSE-2.0.html")
    ),
    paths(super::otp::send_code, super::otp::validate_code),
    components(schemas(SendCodeBody, SendCodeResponse, ValidateCodeBody, ErrorInfo)),
    tags((name = "OTP Management", description = "Send and validate one-time passwords"))
)]
struct ApiDoc;

/// Errors each operation documents, grouped by status, as the CAMARA v1.1 contract lists them
/// (the same in v1.1.0 and v1.1.1).
fn documented_errors(operation: &str) -> Vec<(&'static str, &'static str, Vec<ApiError>)> {
    let common_tail = || {
        vec![
            ("401", "Unauthorized", vec![ApiError::Unauthenticated]),
            ("404", "Not found", vec![ApiError::NotFound]),
            (
                "429",
                "Too Many Requests",
                vec![ApiError::QuotaExceeded, ApiError::TooManyRequests],
            ),
        ]
    };
    let mut errors = match operation {
        "sendCode" => vec![
            (
                "400",
                "Bad Request",
                vec![ApiError::InvalidArgument(String::new())],
            ),
            (
                "403",
                "Forbidden",
                vec![
                    ApiError::PermissionDenied,
                    ApiError::MaxOtpCodesExceeded,
                    ApiError::PhoneNumberNotAllowed,
                    ApiError::PhoneNumberBlocked,
                ],
            ),
        ],
        _ => vec![
            (
                "400",
                "Bad Request",
                vec![
                    ApiError::InvalidArgument(String::new()),
                    ApiError::OutOfRange,
                    ApiError::VerificationFailed,
                    ApiError::VerificationExpired,
                    ApiError::InvalidOtp,
                ],
            ),
            ("403", "Forbidden", vec![ApiError::PermissionDenied]),
        ],
    };
    errors.extend(common_tail());
    errors
}

/// The example both releases give for `x-correlator`.
const CORRELATOR_EXAMPLE: &str = "b4333c46-49c0-4f62-80d7-f0ef930f1c46";

/// The `x-correlator` schema: inline in v1.1.0, `#/components/schemas/XCorrelator` from v1.1.1
/// on, as each release's YAML has it.
fn correlator_schema(version: CamaraVersion) -> RefOr<Schema> {
    match version {
        CamaraVersion::V1_1_0 => RefOr::T(correlator_object(version).into()),
        CamaraVersion::V1_1_1 => RefOr::Ref(Ref::from_schema_name("XCorrelator")),
    }
}

fn correlator_object(version: CamaraVersion) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(version.correlator_pattern()))
        .examples([CORRELATOR_EXAMPLE])
}

fn correlator_header(version: CamaraVersion) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(correlator_schema(version))
        .description(Some("Correlation id for the different services"))
        .build()
}

fn error_response(
    version: CamaraVersion,
    description: &str,
    errors: &[ApiError],
) -> utoipa::openapi::Response {
    let status = errors.first().map(|e| e.parts().0.as_u16()).unwrap_or(500);
    let narrowed = ObjectBuilder::new()
        .property(
            "status",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .enum_values(Some([status])),
        )
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(errors.iter().map(|e| e.parts().1))),
        );
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("ErrorInfo"))
        .item(narrowed);
    let examples = errors.iter().map(|e| {
        let body = e.body();
        let name = format!("{}_{}", status, body.code.replace('.', "_"));
        (
            name,
            ExampleBuilder::new()
                .value(Some(
                    json!({"status": body.status, "code": body.code, "message": body.message}),
                ))
                .build(),
        )
    });
    ResponseBuilder::new()
        .description(description)
        .header("x-correlator", correlator_header(version))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(schema))
                .examples_from_iter(examples)
                .build(),
        )
        .build()
}

/// The contract document of `version`; `issuer` fills the OpenID Connect discovery URL.
pub fn document(issuer: &str, version: CamaraVersion) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = version.as_str().to_owned();
    doc.info.extensions = Some(
        ExtensionsBuilder::new()
            .add("x-camara-commonalities", version.commonalities())
            .build(),
    );
    doc.servers = Some(vec![Server::new(super::BASE_PATH)]);
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "openId",
        SecurityScheme::OpenIdConnect(OpenIdConnect::new(format!(
            "{issuer}/.well-known/openid-configuration"
        ))),
    );
    if version == CamaraVersion::V1_1_1 {
        components
            .schemas
            .insert("XCorrelator".into(), correlator_object(version).into());
    }
    for item in doc.paths.paths.values_mut() {
        if let Some(op) = item.post.as_mut() {
            let name = op.operation_id.clone().unwrap_or_default();
            op.parameters = Some(vec![ParameterBuilder::new()
                .name("x-correlator")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some("Correlation id for the different services"))
                .schema(Some(correlator_schema(version)))
                .build()]);
            for (status, response) in op.responses.responses.iter_mut() {
                if let (true, RefOr::T(ok)) = (status.starts_with('2'), response) {
                    ok.headers
                        .insert("x-correlator".into(), correlator_header(version));
                }
            }
            for (status, description, errors) in documented_errors(&name) {
                op.responses.responses.insert(
                    status.to_string(),
                    RefOr::T(error_response(version, description, &errors)),
                );
            }
        }
    }
    doc
}

/// The contract document as pretty JSON with a trailing newline (the checked-in form).
pub fn document_json(issuer: &str, version: CamaraVersion) -> String {
    let mut s = document(issuer, version)
        .to_pretty_json()
        .unwrap_or_default();
    s.push('\n');
    s
}

/// What this instance adds to the served document's `info.description` so an app developer
/// can run the whole flow from `/docs`.
#[derive(Debug, Clone, Default)]
pub struct PageNotes {
    /// The demo client is registered (its id and secret are prefilled in the page).
    pub demo_client: bool,
    /// URL of the embedded simulator's sandbox inbox, when it plays the SMSC.
    pub sandbox_inbox: Option<String>,
    /// The inbox needs a bearer credential (`admin.token` or the admin scope).
    pub inbox_needs_credential: bool,
}

impl PageNotes {
    fn markdown(&self) -> String {
        let mut s = String::from(
            "\n\n## Try it from this page\n\n\
             1. **Authorize**: OAuth2 client credentials at the token endpoint of the \
             OpenID Connect discovery document (with the embedded issuer, this gateway's \
             `/oauth2/token`), with the scope `one-time-password-sms:send-validate`.",
        );
        if self.demo_client {
            s.push_str(
                " The demo client `demo` / `demo-secret` is filled in: press *Authorize*, then *Close*.",
            );
        }
        s.push_str(
            "\n2. **POST /send-code**: *Try it out*, put your test number in `phoneNumber`, \
             *Execute*; note the `authenticationId` of the answer.",
        );
        match &self.sandbox_inbox {
            Some(url) => {
                s.push_str(&format!(
                    "\n3. **Read the SMS** in the sandbox inbox of the embedded SMSC simulator: \
                     [{url}]({url}) (replace the number; `%2B` is the `+`)."
                ));
                if self.inbox_needs_credential {
                    s.push_str(
                        " It needs `Authorization: Bearer <admin.token>` on this deployment.",
                    );
                }
            }
            None => s.push_str("\n3. **Read the SMS** on the phone."),
        }
        s.push_str(
            "\n4. **POST /validate-code**: *Try it out* with the `authenticationId` and the \
             code; the answer is `204` when the code is right.",
        );
        s
    }
}

/// The document `/openapi.json` serves: the contract plus the page notes in
/// `info.description` (no other difference).
pub fn served_document_json(issuer: &str, version: CamaraVersion, notes: &PageNotes) -> String {
    let mut doc = document(issuer, version);
    let description = doc.info.description.get_or_insert_with(String::new);
    description.push_str(&notes.markdown());
    doc.to_json().unwrap_or_default()
}

/// The pre-rendered `/openapi.json` body.
pub struct ServedDocument(pub String);

/// `GET /openapi.json`.
pub async fn serve_json(doc: web::Data<ServedDocument>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}

/// The Swagger UI settings of `/docs`: it loads `/openapi.json`, never fetches anything
/// beyond this origin (no online validator), and prefills the OAuth2 client-credentials
/// dialog with the API scope and, only when the demo client is registered, its id and secret
/// (public values printed by the start-up banner; never a configured client's).
pub fn docs_config(demo_client: bool) -> utoipa_swagger_ui::Config<'static> {
    let mut oauth = utoipa_swagger_ui::oauth::Config::new()
        .app_name("otp-gateway")
        .scopes(vec![crate::auth::SEND_VALIDATE_SCOPE.to_owned()]);
    if demo_client {
        oauth = oauth
            .client_id(crate::config::DEMO_CLIENT_ID)
            .client_secret(crate::config::DEMO_CLIENT_SECRET);
    }
    utoipa_swagger_ui::Config::with_oauth_config(["/openapi.json"], oauth)
        .validator_url("none")
        .display_request_duration(true)
        .deep_linking(true)
}

/// `GET /docs/{file}`: Swagger UI's files, from the binary.
pub async fn serve_docs(
    path: web::Path<String>,
    config: web::Data<utoipa_swagger_ui::Config<'static>>,
) -> Result<HttpResponse, ApiError> {
    match utoipa_swagger_ui::serve(&path.into_inner(), config.into_inner()) {
        Ok(Some(file)) => Ok(HttpResponse::Ok()
            .content_type(file.content_type)
            .body(file.bytes.into_owned())),
        Ok(None) => Err(ApiError::NotFound),
        Err(_) => Err(ApiError::Internal),
    }
}

/// `GET /docs`: Swagger UI loads its files relative to `/docs/`.
pub async fn redirect_docs() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}
