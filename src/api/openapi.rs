//! The OpenAPI document, generated from the handlers' annotations plus the error table, so the
//! documented errors are exactly the ones [`ApiError`] renders. The checked-in copy in
//! `code-api-definitions/` is compared with this output and with the CAMARA YAML by tests.

use actix_web::{web, HttpResponse};
use serde_json::json;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Ref, Type};
use utoipa::openapi::security::{OpenIdConnect, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::{OpenApi as Document, RefOr, Required};
use utoipa::OpenApi;

use super::error::{ApiError, ErrorInfo};
use super::otp::{SendCodeBody, SendCodeResponse, ValidateCodeBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "One Time Password SMS",
        version = "1.1.0",
        description = "otp-gateway's implementation of the CAMARA One Time Password SMS API: send a code by SMS to a phone number, then check it.",
        license(name = "Apache 2.0", url = "https://www.apache.org/licenses/LICENSE-2.0.html")
    ),
    paths(super::otp::send_code, super::otp::validate_code),
    components(schemas(SendCodeBody, SendCodeResponse, ValidateCodeBody, ErrorInfo)),
    tags((name = "OTP Management", description = "Send and validate one-time passwords"))
)]
struct ApiDoc;

/// Errors each operation documents, grouped by status, as the CAMARA v1.1.0 contract lists them.
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

fn correlator_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^[a-zA-Z0-9-]{0,55}$"))
}

fn correlator_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(correlator_schema())
        .description(Some("Correlation id for the different services"))
        .build()
}

fn error_response(description: &str, errors: &[ApiError]) -> utoipa::openapi::Response {
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
        .header("x-correlator", correlator_header())
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(schema))
                .examples_from_iter(examples)
                .build(),
        )
        .build()
}

/// The document; `issuer` fills the OpenID Connect discovery URL.
pub fn document(issuer: &str) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.servers = Some(vec![Server::new(super::BASE_PATH)]);
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "openId",
        SecurityScheme::OpenIdConnect(OpenIdConnect::new(format!(
            "{issuer}/.well-known/openid-configuration"
        ))),
    );
    for item in doc.paths.paths.values_mut() {
        if let Some(op) = item.post.as_mut() {
            let name = op.operation_id.clone().unwrap_or_default();
            op.parameters = Some(vec![ParameterBuilder::new()
                .name("x-correlator")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some("Correlation id for the different services"))
                .schema(Some(correlator_schema()))
                .build()]);
            for (status, description, errors) in documented_errors(&name) {
                op.responses.responses.insert(
                    status.to_string(),
                    RefOr::T(error_response(description, &errors)),
                );
            }
        }
    }
    doc
}

/// The document as pretty JSON with a trailing newline (the checked-in form).
pub fn document_json(issuer: &str) -> String {
    let mut s = document(issuer).to_pretty_json().unwrap_or_default();
    s.push('\n');
    s
}

/// `GET /openapi.json`.
pub async fn serve_json(issuer: web::Data<Issuer>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json(&issuer.0))
}

/// The issuer URL, shared with the OpenAPI handler.
pub struct Issuer(pub String);

/// `GET /docs`: a self-contained page that renders `/openapi.json` (no external assets).
pub async fn serve_docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(DOCS_PAGE)
}

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>otp-gateway API</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
pre{background:#f4f4f4;padding:.6rem;overflow:auto}h2{border-bottom:1px solid #ccc}
code{background:#eee;padding:0 .2rem}.st{font-weight:bold}</style></head>
<body><h1 id="title">otp-gateway</h1><p id="desc"></p><div id="ops"></div>
<p>Raw document: <a href="/openapi.json">/openapi.json</a></p>
<script>
fetch('/openapi.json').then(r=>r.json()).then(d=>{
 const esc=s=>String(s).replace(/[&<>]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;'}[c]));
 document.getElementById('title').textContent=d.info.title+' '+d.info.version;
 document.getElementById('desc').textContent=d.info.description||'';
 const base=(d.servers&&d.servers[0].url)||'';let html='';
 for(const [path,item] of Object.entries(d.paths)){for(const [m,op] of Object.entries(item)){
  html+='<h2>'+m.toUpperCase()+' <code>'+esc(base+path)+'</code></h2><p>'+esc(op.summary||op.description||'')+'</p>';
  const rb=op.requestBody&&op.requestBody.content['application/json'];
  if(rb){const ref=rb.schema.$ref.split('/').pop();html+='<h3>Body: '+ref+'</h3><pre>'+esc(JSON.stringify(d.components.schemas[ref],null,2))+'</pre>';}
  html+='<h3>Responses</h3><ul>';
  for(const [st,r] of Object.entries(op.responses)){
   const ex=r.content&&r.content['application/json']&&r.content['application/json'].examples;
   const codes=ex?Object.values(ex).map(e=>e.value.code).join(', '):'';
   html+='<li><span class="st">'+st+'</span> '+esc(r.description)+(codes?' — <code>'+esc(codes)+'</code>':'')+'</li>';}
  html+='</ul>';}}
 document.getElementById('ops').innerHTML=html;});
</script></body></html>
"#;
