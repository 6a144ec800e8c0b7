//! Wiring shared by `main` and the tests: [`Application::build`] binds both listeners (port 0
//! allowed), starts the SMSC session (and the embedded simulator when configured), and
//! [`Application::run_until_stopped`] serves until a signal or [`StopHandle::stop`] arrives,
//! then shuts down in the order [`crate::shutdown`] owns: report not-ready, wait the grace,
//! stop accepting and drain, unbind, stop the admin listener and the simulator.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::admin::{self, AdminState};
use crate::api::deadline;
use crate::api::openapi::{docs_config, served_document_json, PageNotes, ServedDocument};
use crate::api::{self, ApiState};
use crate::audit::Audit;
use crate::auth::external::ExternalIssuer;
use crate::auth::{
    AttemptLimits, AuthMethod, BearerValidator, ClientKeys, ClientSecret, IssuerSettings,
    RegisteredClient, TokenIssuer,
};
use crate::config::{Config, EmbeddedSmsc, StoreConfig};
use crate::delivery_state::RedisDeliveryState;
use crate::metrics::Metrics;
use crate::otp::{Clock, OtpRules, OtpService, SmsSender, SystemClock};
use crate::policy::{ClientRateLimiter, NumberPolicy, TenantQuotas, Tenants};
use crate::sandbox::Sandbox;
use crate::shutdown::{Services, Shutdown};
use crate::smpp::{RouteSettings, SharedDeliveryState, SmppRouter};
use crate::smsc_sim::{SimSettings, SmscHandle};
use crate::store::{MemoryStore, RedisSettings, RedisStore, SendQuota, SendQuotas, Store};
use crate::usage::Usage;

/// Things tests may replace.
pub struct BuildOptions {
    /// The clock the OTP rules read (virtual time in tests).
    pub clock: Arc<dyn Clock>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            clock: Arc::new(SystemClock),
        }
    }
}

/// A built, not yet running, gateway.
pub struct Application {
    api: Server,
    admin: Server,
    api_addr: SocketAddr,
    admin_addr: SocketAddr,
    issuer: Arc<TokenIssuer>,
    smpp: SmppRouter,
    simulator: Option<SmscHandle>,
    shutdown: Shutdown,
}

/// Stops a running [`Application`] (kept here so callers' imports stay put).
pub use crate::shutdown::StopHandle;

impl Application {
    /// Builds with the system clock.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with(config, BuildOptions::default()).await
    }

    /// Builds with injected collaborators.
    pub async fn build_with(config: Config, opts: BuildOptions) -> anyhow::Result<Application> {
        let metrics = Metrics::new().context("creating metrics")?;
        let shutdown = Shutdown::new(config.http.shutdown_grace);
        let issuer = Arc::new(token_issuer(&config)?);

        let mut routes = config.smpp.routes.clone();
        let simulator = match &config.smpp.embedded {
            None => None,
            Some(embedded) => {
                let sim = start_embedded(&shutdown, embedded, &mut routes)
                    .await
                    .context("starting the embedded SMSC simulator")?;
                Some(sim)
            }
        };
        let otp_settings = &config.otp;
        // Per-number state lives as long as the longest window or code lifetime needs it.
        let state_ttl = otp_settings
            .max_codes_window
            .max(otp_settings.max_codes_window_all_clients)
            .max(crate::config::longest_ttl(
                &config.auth.clients,
                otp_settings,
            ));
        let store = match &config.store {
            StoreConfig::Memory { max_challenges } => Store::Memory(
                MemoryStore::new(*max_challenges, state_ttl).with_metrics(metrics.store.clone()),
            ),
            StoreConfig::Redis {
                target,
                prefix,
                timeout,
                wait_replicas,
                tls,
            } => Store::Redis(
                RedisStore::new(
                    RedisSettings {
                        target: target.clone(),
                        prefix: prefix.clone(),
                        timeout: *timeout,
                        state_ttl,
                        wait_replicas: *wait_replicas,
                        tls: tls.clone(),
                    },
                    config.hash_key.key.expose_value(),
                )
                .with_metrics(metrics.store.clone()),
            ),
        };
        // With Redis, the delivery state of each SMS lives there too, so a receipt that reaches
        // another replica's SMPP session updates the report this one created.
        let delivery_state: Option<Arc<dyn SharedDeliveryState>> = match &store {
            Store::Redis(redis) => Some(Arc::new(RedisDeliveryState::new(redis.handle()))),
            Store::Memory(_) => None,
        };
        let smpp = SmppRouter::start_shared(routes, &metrics.smpp, shutdown.root(), delivery_state);
        if simulator.is_some() && !smpp.wait_bound(Duration::from_secs(5)).await {
            anyhow::bail!("could not bind to the embedded SMSC simulator");
        }
        // With Redis the request rate limit is shared by every replica, over the store's
        // connection; with memory each process keeps its own buckets.
        let mut limiter = ClientRateLimiter::new(
            config
                .auth
                .clients
                .iter()
                .filter_map(|c| c.rate_limit.map(|r| (c.id.clone(), r))),
        );
        if let Store::Redis(redis) = &store {
            limiter = limiter.shared(redis.clone());
        }
        let rules = OtpRules {
            code_length: otp_settings.code_length,
            ttl: otp_settings.ttl,
            max_attempts: otp_settings.max_attempts,
            quotas: SendQuotas {
                per_client: SendQuota {
                    max: otp_settings.max_codes_per_number,
                    window: otp_settings.max_codes_window,
                },
                all_clients: SendQuota {
                    max: otp_settings.all_clients_cap(),
                    window: otp_settings.max_codes_window_all_clients,
                },
            },
            id_retention: otp_settings.id_retention,
        };
        let sender: Arc<dyn SmsSender> = Arc::new(smpp.clone());
        let policy = NumberPolicy::new(&config.policy)
            .map_err(|e| anyhow::anyhow!("policy.blocked_numbers_file: {e}"))?;
        if let Store::Redis(redis) = &store {
            policy.barring().share(redis.handle());
        }
        tokio::spawn(Arc::clone(policy.barring()).watch(
            config.policy.blocked_numbers_reload,
            shutdown.root().clone(),
        ));
        let barring = Arc::clone(policy.barring());
        // Tenant profiles by client id; with Redis their quotas are counted there, for all.
        let tenants = Tenants::new(&config.auth.clients, otp_settings);
        let mut quotas = TenantQuotas::new(tenants.with_quota());
        if let Store::Redis(redis) = &store {
            quotas = quotas.shared(redis.clone());
        }
        let guards = crate::policy::Guards::build(
            &config.policy,
            crate::config::longest_ttl(&config.auth.clients, otp_settings),
            Arc::clone(&opts.clock),
            &metrics,
            match &store {
                Store::Redis(redis) => Some(redis),
                Store::Memory(_) => None,
            },
        )
        .map_err(anyhow::Error::msg)?;
        let pumping = web::Data::new(guards.pumping.clone());
        let (sandbox, usage, audit) = reports(&config, &store, &metrics, &shutdown)?;
        let receipts = smpp.clone();
        usage.check_receipts(
            Arc::new(move |tag| {
                let smpp = receipts.clone();
                Box::pin(async move {
                    let state = smpp.lookup_state(&tag).await.map_err(|e| e.to_string())?;
                    Ok(state.map(|s| s.label()))
                })
            }),
            config.usage.receipt_check_delay(config.otp.ttl),
            config.usage.receipt_checks_max,
        );
        let otp = Arc::new(
            OtpService::new(
                store,
                sender,
                policy,
                rules,
                config.hash_key.key.expose_value(),
                opts.clock,
                metrics.clone(),
            )
            .with_tenants(tenants, quotas)
            .with_guards(guards)
            .with_sandbox(Arc::new(Arc::clone(&sandbox)))
            .with_reports(usage.clone(), audit),
        );

        let api_state = web::Data::new(ApiState {
            otp: Arc::clone(&otp),
            max_body_bytes: config.http.max_body_bytes,
        });
        let bearer = bearer_validator(&config, &issuer, &metrics)?;
        // An IdP down now is not fatal: readiness stays false until its keys load, retried in
        // the background (see crate::auth::external::jwks).
        bearer.start(shutdown.root());
        let validator = web::Data::new(bearer.clone());
        let embedded = config.auth.embedded;
        let limiter = web::Data::new(limiter);
        let sandbox = web::Data::new(sandbox);
        let issuer_data = web::Data::from(Arc::clone(&issuer));
        // Bound before the API so the page can link to the sandbox inbox's real port.
        let admin_listener = TcpListener::bind(config.admin.listen)
            .with_context(|| format!("binding admin.listen {}", config.admin.listen))?;
        let admin_addr = admin_listener.local_addr()?;
        let notes = PageNotes {
            demo_client: config.auth.demo_client,
            sandbox_inbox: simulator.as_ref().map(|_| {
                format!("http://{admin_addr}/sandbox/v1/messages?phoneNumber=%2B34600000001")
            }),
            inbox_needs_credential: config.admin.credential_required(),
        };
        let camara_version = config.api.camara_version;
        let served_document = web::Data::new(ServedDocument(served_document_json(
            &config.auth.issuer,
            camara_version,
            &notes,
        )));
        let docs_config = web::Data::new(docs_config(config.auth.demo_client));
        let metrics_data = web::Data::new(metrics.clone());
        let listener = TcpListener::bind(config.http.listen)
            .with_context(|| format!("binding http.listen {}", config.http.listen))?;
        let api_addr = listener.local_addr()?;
        // Bodies must arrive within http.request_timeout (the head too: client_request_timeout
        // below); innermost, so the 408 it may answer is still observed and correlated.
        let request_timeout = config.http.request_timeout;
        let api = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(move |req, next| {
                    deadline::bound_body(request_timeout, req, next)
                }))
                .wrap(from_fn(api::observe))
                .wrap(from_fn(move |req, next| {
                    api::correlator::correlate(camara_version, req, next)
                }))
                .app_data(api_state.clone())
                .app_data(validator.clone())
                .app_data(limiter.clone())
                .app_data(issuer_data.clone())
                .app_data(served_document.clone())
                .app_data(docs_config.clone())
                .app_data(metrics_data.clone())
                .app_data(sandbox.clone())
                .configure(api::configure)
                .configure(crate::sandbox::http::configure)
                .configure(|cfg| {
                    // auth.embedded = false: no token endpoint, JWKS or discovery document.
                    if embedded {
                        crate::auth::configure(cfg);
                    }
                })
                .default_service(web::to(api::not_found))
        })
        .client_request_timeout(request_timeout)
        .max_connections(config.http.max_connections)
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(10)
        .run();

        let admin_state = web::Data::new(AdminState {
            otp,
            smpp: smpp.clone(),
            metrics,
            simulator: simulator.clone(),
            draining: shutdown.draining(),
            barring,
            identity_providers: bearer,
            usage,
        });
        let admin_guard = web::Data::new(admin::AdminGuard::new(
            config.admin.credential_required(),
            config.admin.token.clone(),
            issuer.validator(),
        ));
        let admin = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(move |req, next| {
                    deadline::bound_body(request_timeout, req, next)
                }))
                .app_data(admin_state.clone())
                .app_data(admin_guard.clone())
                .app_data(pumping.clone())
                .configure(admin::configure)
                .default_service(web::to(api::not_found))
        })
        .workers(1)
        .client_request_timeout(request_timeout)
        .max_connections(config.http.max_connections)
        .listen(admin_listener)?
        .disable_signals()
        .shutdown_timeout(5)
        .run();

        Ok(Application {
            api,
            admin,
            api_addr,
            admin_addr,
            issuer,
            smpp,
            simulator,
            shutdown,
        })
    }

    /// Address of the public API.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The embedded token issuer (tests mint tokens with it).
    pub fn issuer(&self) -> Arc<TokenIssuer> {
        Arc::clone(&self.issuer)
    }

    /// The embedded simulator, when the gateway runs with `smpp.url = "embedded"`.
    pub fn simulator(&self) -> Option<SmscHandle> {
        self.simulator.clone()
    }

    /// A handle that stops the application.
    pub fn stop_handle(&self) -> StopHandle {
        self.shutdown.stop_handle()
    }

    /// Serves until SIGINT/SIGTERM or [`StopHandle::stop`], then shuts down in order
    /// (see [`crate::shutdown`]); `Ok` once everything has stopped.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.shutdown
            .run(Services {
                api: self.api,
                admin: self.admin,
                smpp: self.smpp,
                simulator: self.simulator,
            })
            .await
    }
}

/// The sandbox clients, the usage counters (shared through Redis with that store, flushed in
/// the background) and the audit sink.
fn reports(
    config: &Config,
    store: &Store,
    metrics: &Metrics,
    shutdown: &Shutdown,
) -> anyhow::Result<(Arc<Sandbox>, Usage, Audit)> {
    let sandbox = Arc::new(Sandbox::new(
        config
            .auth
            .clients
            .iter()
            .filter(|c| c.sandbox)
            .map(|c| c.id.clone()),
        &config.sandbox.numbers,
        config.sandbox.inbox_capacity,
    ));
    let retention = config.usage.retention;
    let usage = match store {
        Store::Redis(redis) => Usage::shared(redis.handle(), retention),
        Store::Memory(_) => Usage::in_process(retention),
    };
    tokio::spawn(
        usage
            .clone()
            .flush_every(config.usage.flush_interval, shutdown.root().clone()),
    );
    let audit = match &config.audit.file {
        Some(path) => Audit::to_file(path, config.audit.buffer, metrics)
            .with_context(|| format!("audit.file {}", path.display()))?,
        None => Audit::log_only(),
    };
    Ok((sandbox, usage, audit))
}

/// The API's bearer-token check: the embedded issuer (unless `auth.embedded = false`) and
/// every `[[auth.issuers]]` entry.
fn bearer_validator(
    config: &Config,
    issuer: &TokenIssuer,
    metrics: &Metrics,
) -> anyhow::Result<BearerValidator> {
    let auth = &config.auth;
    let external = auth
        .issuers
        .iter()
        .map(|c| ExternalIssuer::new(c.clone(), metrics.auth.clone()))
        .collect::<Result<Vec<_>, String>>()
        .map_err(anyhow::Error::msg)?;
    Ok(BearerValidator::new(
        auth.embedded.then(|| issuer.validator()),
        auth.issuer.clone(),
        external,
        auth.clients.iter().map(|c| c.id.clone()),
        metrics.auth.clone(),
    ))
}

/// The embedded token issuer and its clients.
fn token_issuer(config: &Config) -> anyhow::Result<TokenIssuer> {
    let auth = &config.auth;
    let clients = auth
        .clients
        .iter()
        .map(|c| {
            let secret = (!c.secret.is_empty())
                .then(|| ClientSecret::parse(c.secret.expose()))
                .transpose()
                .map_err(|e| anyhow::anyhow!("auth.clients[{}].secret: {e}", c.id))?;
            Ok(RegisteredClient {
                id: c.id.clone(),
                secret,
                auth_method: c.auth_method.unwrap_or(AuthMethod::ClientSecret),
                keys: client_keys(c, auth)?,
                scopes: c.scopes.clone(),
                token_ttl: c.token_ttl,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    TokenIssuer::new(IssuerSettings {
        issuer: auth.issuer.clone(),
        audience: auth.audience.clone(),
        token_ttl: auth.token_ttl,
        clients,
        signing_keys: auth
            .signing_keys
            .iter()
            .map(|k| k.expose_value().clone())
            .collect(),
    })
    .map(|issuer| {
        issuer.with_attempt_limits(AttemptLimits {
            per_client_per_minute: auth.failed_attempts_per_client,
            total_per_minute: auth.failed_attempts_total,
        })
    })
    .context("creating the token issuer")
}

/// A client's `private_key_jwt` keys: inline (a `jwks_file` was read into `jwks` by the
/// config validation) or its `jwks_uri`.
fn client_keys(
    c: &crate::config::ClientEntry,
    auth: &crate::config::AuthConfig,
) -> anyhow::Result<Option<ClientKeys>> {
    if let Some(jwks) = &c.jwks {
        return ClientKeys::from_json(jwks)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("auth.clients[{}].jwks: {e}", c.id));
    }
    Ok(c.jwks_uri.as_ref().map(|uri| {
        if uri.starts_with("http://") {
            tracing::warn!(client_id = %c.id, uri = %uri, "client jwks_uri is plain HTTP: its keys can be forged in transit");
        }
        ClientKeys::remote(
            uri.clone(),
            auth.client_jwks_max_age,
            auth.client_jwks_min_refresh,
        )
    }))
}

/// Starts the simulator on a free loopback port and points the route at it: its port is only
/// known once it listens.
async fn start_embedded(
    shutdown: &Shutdown,
    embedded: &EmbeddedSmsc,
    routes: &mut [RouteSettings],
) -> std::io::Result<SmscHandle> {
    let Some(route) = routes.first_mut() else {
        return Err(std::io::Error::other(
            "the embedded simulator needs its route",
        ));
    };
    let sim = shutdown
        .start_simulator(SimSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            system_id: route.smsc.system_id.clone(),
            password: route.smsc.password.expose().to_owned(),
            receipt_delay: embedded.receipt_delay,
            print_messages: true,
            inbox_capacity: 10_000,
            faults: embedded.faults.clone(),
        })
        .await?;
    route.smsc.port = sim.local_addr().port();
    Ok(sim)
}
