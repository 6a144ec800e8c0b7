//! The admin API's own OpenAPI document, served at `/admin/openapi.json` on the admin
//! listener (behind the admin credential, like the API it describes). It is kept apart from
//! the CAMARA document (`crate::api::openapi`), which must match the official contract and
//! nothing else.

use actix_web::HttpResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "otp-gateway admin API",
        description = "Operator API on the admin listener: delivery state of an authenticationId, barred numbers, policy reload, usage reports per client and UTC day, and the embedded simulator's inbox. Every path needs `admin.token` or an access token with scope `otp-gateway:admin` whenever the listener is not loopback or a token is configured.",
        license(name = "Apache 2.0", url = "https://www.apache.org/licenses/LICENSE-2.0.html")
    ),
    paths(
        super::authentication,
        super::barring_counts,
        super::barring_lookup,
        super::bar,
        super::lift,
        super::policy::reload,
        super::usage::report,
        super::messages,
    ),
    components(schemas(
        crate::api::error::ErrorInfo,
        super::usage::UsageReport,
        crate::usage::UsageRow,
        crate::usage::Counts
    )),
    modifiers(&AdminSecurity),
    tags(
        (name = "Delivery", description = "What became of the SMS of an authenticationId"),
        (name = "Policy", description = "Barred numbers and the barring file"),
        (name = "Usage", description = "Usage per client and day, for billing"),
        (name = "Sandbox", description = "The embedded SMSC simulator's inbox")
    )
)]
struct AdminDoc;

struct AdminSecurity;

impl Modify for AdminSecurity {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The admin API's document.
pub fn document() -> utoipa::openapi::OpenApi {
    AdminDoc::openapi()
}

/// `GET /admin/openapi.json`.
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(document())
}
