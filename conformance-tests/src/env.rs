//! The environment file (TOML): where the system under test lives, how to get its tokens, which
//! phone numbers play which role, the CAMARA `config_var`s, and how to read a sent code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Base URL, e.g. `http://127.0.0.1:8080` (the features' resources are appended).
    pub api_root: String,
    /// The OAS document the schema checks use (YAML or JSON). Relative to the environment file.
    #[serde(default)]
    pub oas: Option<PathBuf>,
    /// Tokens.
    pub auth: AuthConfig,
    /// Phone numbers by role.
    pub numbers: Numbers,
    /// `config_var` values of the test definitions.
    #[serde(default)]
    pub config_vars: ConfigVars,
    /// How to read the code that was sent.
    pub inbox: InboxConfig,
    /// Per-request timeout.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How to adapt feature files written as collections (Commonalities), by file name.
    #[serde(default)]
    pub features: BTreeMap<String, crate::plan::FeaturePlan>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// How to obtain one kind of token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "kind")]
pub enum TokenSource {
    /// A token given as is.
    Static {
        /// The bearer token.
        token: String,
    },
    /// OAuth2 client credentials (RFC 6749 §4.4) against `token_url`.
    ClientCredentials {
        /// Token endpoint.
        token_url: String,
        /// `client_id`.
        client_id: String,
        /// `client_secret` (for `basic` and `post`).
        #[serde(default)]
        client_secret: Option<String>,
        /// `basic` (client_secret_basic), `post` (client_secret_post) or `private_key_jwt`.
        #[serde(default = "default_method")]
        method: String,
        /// PKCS#8 (DER or PEM) P-256 key for `private_key_jwt` (ES256), relative to the
        /// environment file.
        #[serde(default)]
        private_key_file: Option<PathBuf>,
        /// `kid` header of the client assertion.
        #[serde(default)]
        key_id: Option<String>,
        /// Space-separated scopes to request; none requests the client's default.
        #[serde(default)]
        scope: Option<String>,
    },
}

fn default_method() -> String {
    "basic".into()
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// A token carrying the API's scope.
    pub valid: TokenSource,
    /// A token of the same implementation without the scope (403 scenarios).
    #[serde(default)]
    pub without_scope: Option<TokenSource>,
    /// A token that is, or will become, expired.
    #[serde(default)]
    pub expired: Option<ExpiredToken>,
    /// A token of a second client (cross-client scenarios).
    #[serde(default)]
    pub other_client: Option<TokenSource>,
    /// Further clients that feature files name (`a valid access token of client "NAME"`).
    #[serde(default)]
    pub named: BTreeMap<String, TokenSource>,
}

impl AuthConfig {
    /// Resolves every `private_key_file` against the environment file's folder.
    fn resolve_paths(&mut self, base: &Path) {
        let sources = std::iter::once(&mut self.valid)
            .chain(self.without_scope.as_mut())
            .chain(self.other_client.as_mut())
            .chain(self.expired.as_mut().map(|e| &mut e.source))
            .chain(self.named.values_mut());
        for source in sources {
            if let TokenSource::ClientCredentials {
                private_key_file: Some(path),
                ..
            } = source
            {
                *path = base.join(&*path);
            }
        }
    }
}

/// An expired token: a static one, or one obtained at start that the runner waits out.
/// (`deny_unknown_fields` does not combine with `flatten`; the inner source checks its keys.)
#[derive(Debug, Clone, Deserialize)]
pub struct ExpiredToken {
    /// Where the token comes from.
    #[serde(flatten)]
    pub source: TokenSource,
    /// Extra time after the token's `expires_in` before it is used (the server's clock leeway).
    #[serde(default, with = "humantime_serde::option")]
    pub wait_after_expiry: Option<Duration>,
}

/// `[numbers]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Numbers {
    /// Numbers that receive SMS. Each scenario takes the next one, so per-number limits of the
    /// implementation do not leak from one scenario into the next.
    pub can_receive_sms: Vec<String>,
    /// A number that cannot receive SMS.
    #[serde(default)]
    pub cannot_receive_sms: Option<String>,
    /// A landline.
    #[serde(default)]
    pub landline: Option<String>,
    /// A number with an active SMS barring.
    #[serde(default)]
    pub barred: Option<String>,
    /// A number of another operator.
    #[serde(default)]
    pub other_operator: Option<String>,
    /// A number that complies with the schema but identifies no subscription (Commonalities
    /// C02.02).
    #[serde(default)]
    pub not_found: Option<String>,
    /// A valid number for which the service is not applicable (Commonalities C02.05).
    #[serde(default)]
    pub service_not_applicable: Option<String>,
}

/// `[config_vars]`: the variables the test definitions name.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ConfigVars {
    /// `message`: the template sent by default.
    pub message: String,
    /// `max_lenght` (sic, as the v1.1.0 files spell it): the longest message accepted.
    pub max_lenght: usize,
    /// `max_try`: with M allowed attempts, the M-th wrong code answers VERIFICATION_FAILED.
    pub max_try: u32,
    /// `max_send`: the files send `max_send - 1` codes and expect the next to fail, so for an
    /// implementation accepting L codes per window set `max_send = L + 1`.
    pub max_send: u32,
    /// How long to wait for "the time elapsed since the send-code exceed the allowed time".
    #[serde(with = "humantime_serde")]
    pub expiry_wait: Duration,
    /// Any other variable a feature file names.
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

impl Default for ConfigVars {
    fn default() -> Self {
        ConfigVars {
            message: "{{code}} is your verification code".into(),
            max_lenght: 160,
            max_try: 3,
            max_send: 6,
            expiry_wait: Duration::from_secs(310),
            other: BTreeMap::new(),
        }
    }
}

/// `[inbox]`: where the runner reads "the value received in the SMS".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "kind")]
pub enum InboxConfig {
    /// GET a URL (`{phoneNumber}` is replaced, URL-encoded) answering a JSON array of
    /// `{"phoneNumber", "text"}`, newest first (otp-gateway's `/sandbox/v1/messages`).
    Http {
        /// URL template.
        url: String,
    },
    /// Scan a text file (an SMSC log) for the newest line naming the number.
    File {
        /// The file.
        path: PathBuf,
    },
    /// Ask on standard input.
    Prompt,
}

/// Why an environment file was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// Unreadable file.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML for this shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Environment {
    /// Loads and checks a file; relative paths inside it are resolved against its folder.
    pub fn load(path: &Path) -> Result<Environment, EnvError> {
        let text = std::fs::read_to_string(path).map_err(|source| EnvError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base).map_err(|message| EnvError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text; `base` resolves relative paths.
    pub fn from_toml(text: &str, base: &Path) -> Result<Environment, String> {
        let mut env: Environment = toml::from_str(text).map_err(|e| e.to_string())?;
        if env.numbers.can_receive_sms.is_empty() {
            return Err("numbers.can_receive_sms needs at least one number".into());
        }
        env.api_root = env.api_root.trim_end_matches('/').to_string();
        if let Some(oas) = &env.oas {
            env.oas = Some(base.join(oas));
        }
        if let InboxConfig::File { path } = &mut env.inbox {
            *path = base.join(&*path);
        }
        env.auth.resolve_paths(base);
        Ok(env)
    }
}
