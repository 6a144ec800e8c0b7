//! `[api]`: which CAMARA release the public API follows.

use serde::Deserialize;

use crate::api::version::CamaraVersion;

/// `[api]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// `"1.1.1"` (the default, the latest public release) or `"1.1.0"`: the `x-correlator`
    /// rule, `/openapi.json` and `/docs` follow it.
    pub camara_version: CamaraVersion,
}
