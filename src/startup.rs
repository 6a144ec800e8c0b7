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
use crate::api::{self, openapi::Issuer, ApiState};
use crate::auth::{ClientSecret, IssuerSettings, RegisteredClient, TokenIssuer};
use crate::config::{RouteSpec, SmscTarget, Validated};
use crate::metrics::Metrics;
use crate::otp::{Clock, OtpRules, OtpService, SmsSender, SystemClock};
use crate::policy::{ClientRateLimiter, NumberPolicy};
use crate::shutdown::{Services, Shutdown};
use crate::smpp::{Route, SmppClient, SmppRouter, SmppSettings};
use crate::smsc_sim::{SimSettings, SmscHandle};
use crate::store::{MemoryStore, SendQuota, Store};

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
    pub async fn build(settings: Validated) -> anyhow::Result<Application> {
        Self::build_with(settings, BuildOptions::default()).await
    }

    /// Builds with injected collaborators.
    pub async fn build_with(
        settings: Validated,
        opts: BuildOptions,
    ) -> anyhow::Result<Application> {
        let raw = &settings.raw;
        let metrics = Metrics::new().context("creating metrics")?;
        let shutdown = Shutdown::new(raw.http.shutdown_grace);

        let clients = raw
            .auth
            .clients
            .iter()
            .map(|c| {
                Ok(RegisteredClient {
                    id: c.id.clone(),
                    secret: ClientSecret::parse(&c.secret)
                        .map_err(|e| anyhow::anyhow!("auth.clients[{}].secret: {e}", c.id))?,
                    scopes: c.scopes.clone(),
                    token_ttl: c.token_ttl,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let issuer = Arc::new(
            TokenIssuer::new(IssuerSettings {
                issuer: raw.auth.issuer.clone(),
                audience: raw.auth.audience.clone(),
                token_ttl: raw.auth.token_ttl,
                clients,
                signing_key: settings.signing_key.clone(),
            })
            .context("creating the token issuer")?,
        );

        let (simulator, smpp) = if settings.routes.is_empty() {
            let (simulator, smpp_settings) = match &settings.smsc {
                SmscTarget::Embedded => {
                    let password = embedded_password();
                    let sim = shutdown
                        .start_simulator(SimSettings {
                            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                            system_id: "otpgw".into(),
                            password: password.clone(),
                            receipt_delay: raw.smpp.embedded_receipt_delay,
                            print_messages: true,
                            inbox_capacity: 10_000,
                            faults: settings.embedded_faults.clone(),
                        })
                        .await
                        .context("starting the embedded SMSC simulator")?;
                    let addr = sim.local_addr();
                    let target = SmscTarget::Remote {
                        host: addr.ip().to_string(),
                        port: addr.port(),
                        system_id: "otpgw".into(),
                        password,
                        tls: false,
                    };
                    (Some(sim), smpp_settings(&settings, &target))
                }
                remote @ SmscTarget::Remote { .. } => (None, smpp_settings(&settings, remote)),
            };
            let client = SmppClient::start_with_metrics(smpp_settings, Some(metrics.smpp.clone()));
            (simulator, SmppRouter::single(DEFAULT_ROUTE, client))
        } else {
            let routes = settings
                .routes
                .iter()
                .map(|r| Route {
                    name: r.name.clone(),
                    prefixes: r.prefixes.clone(),
                    priority: r.priority,
                    client: SmppClient::start_with_metrics(
                        route_settings(&settings, r),
                        Some(metrics.smpp.clone()),
                    ),
                })
                .collect();
            (None, SmppRouter::new(routes))
        };
        if simulator.is_some() && !smpp.wait_bound(Duration::from_secs(5)).await {
            anyhow::bail!("could not bind to the embedded SMSC simulator");
        }

        let store = Store::Memory(MemoryStore::new(
            raw.store.max_challenges,
            raw.otp.max_codes_window.max(raw.otp.ttl),
        ));
        let rules = OtpRules {
            code_length: raw.otp.code_length,
            ttl: raw.otp.ttl,
            max_attempts: raw.otp.max_attempts,
            quota: SendQuota {
                max: raw.otp.max_codes_per_number,
                window: raw.otp.max_codes_window,
            },
            id_retention: raw.otp.id_retention,
        };
        let sender: Arc<dyn SmsSender> = Arc::new(smpp.clone());
        let otp = Arc::new(OtpService::new(
            store,
            sender,
            NumberPolicy::new(&raw.policy),
            rules,
            &settings.hash_key,
            opts.clock,
            metrics.clone(),
        ));

        let api_state = web::Data::new(ApiState {
            otp: Arc::clone(&otp),
            max_body_bytes: raw.http.max_body_bytes,
        });
        let validator = web::Data::new(issuer.validator());
        let limiter = web::Data::new(ClientRateLimiter::new(
            raw.auth
                .clients
                .iter()
                .filter_map(|c| c.rate_limit.map(|r| (c.id.clone(), r))),
        ));
        let issuer_data = web::Data::from(Arc::clone(&issuer));
        let issuer_url = web::Data::new(Issuer(raw.auth.issuer.clone()));
        let metrics_data = web::Data::new(metrics.clone());
        let listener = TcpListener::bind(settings.http_listen)
            .with_context(|| format!("binding http.listen {}", settings.http_listen))?;
        let api_addr = listener.local_addr()?;
        let api = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(api::observe))
                .wrap(from_fn(api::correlator::correlate))
                .app_data(api_state.clone())
                .app_data(validator.clone())
                .app_data(limiter.clone())
                .app_data(issuer_data.clone())
                .app_data(issuer_url.clone())
                .app_data(metrics_data.clone())
                .configure(api::configure)
                .configure(crate::auth::configure)
                .default_service(web::to(api::not_found))
        })
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
        });
        let admin_listener = TcpListener::bind(settings.admin_listen)
            .with_context(|| format!("binding admin.listen {}", settings.admin_listen))?;
        let admin_addr = admin_listener.local_addr()?;
        let admin = HttpServer::new(move || {
            App::new()
                .app_data(admin_state.clone())
                .configure(admin::configure)
                .default_service(web::to(api::not_found))
        })
        .workers(1)
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

/// Name of the single route built from `smpp.url`.
const DEFAULT_ROUTE: &str = "default";

/// Session settings for `smpp.url` (or the embedded simulator).
fn smpp_settings(settings: &Validated, target: &SmscTarget) -> SmppSettings {
    let s = &settings.raw.smpp;
    let (host, port, system_id, password, tls) = match target {
        SmscTarget::Remote {
            host,
            port,
            system_id,
            password,
            tls,
        } => (
            host.clone(),
            *port,
            system_id.clone(),
            password.clone(),
            *tls,
        ),
        // Callers resolve the embedded simulator to its address first.
        SmscTarget::Embedded => (String::new(), 0, String::new(), String::new(), false),
    };
    SmppSettings {
        route: DEFAULT_ROUTE.into(),
        host,
        port,
        system_id,
        password,
        system_type: s.system_type.clone(),
        source_addr: s.source_addr.clone(),
        submit_timeout: s.submit_timeout,
        enquire_link_interval: s.enquire_link_interval,
        reconnect_min: s.reconnect_min,
        reconnect_max: s.reconnect_max,
        window: s.window,
        binds: s.binds,
        bind_mode: settings.smpp_bind_mode,
        receiver_bind: s.receiver_bind,
        max_tps: s.max_tps,
        response_timeout: s.response_timeout,
        status_map: settings.smpp_status_map.clone(),
        message_id_format: settings.smpp_message_id_format,
        // Delivery state lives as long as the challenge it belongs to.
        receipt_retention: settings.raw.otp.ttl,
        receipt_capacity: settings.raw.store.max_challenges,
        concatenation: settings.smpp_concatenation,
        tls,
        ca_file: settings.smpp_ca_file.clone(),
        source_ton_npi: None,
    }
}

/// Session settings for one `[[smpp.routes]]` entry; timers, status map and
/// bind mode are shared by every route.
fn route_settings(settings: &Validated, r: &RouteSpec) -> SmppSettings {
    SmppSettings {
        route: r.name.clone(),
        host: r.host.clone(),
        port: r.port,
        system_id: r.system_id.clone(),
        password: r.password.clone(),
        system_type: r.system_type.clone(),
        source_addr: r.source_addr.clone(),
        window: r.window,
        binds: r.binds,
        max_tps: r.max_tps,
        message_id_format: r.message_id_format,
        concatenation: r.concatenation,
        tls: r.tls,
        ca_file: r.ca_file.clone(),
        source_ton_npi: r.source_ton_npi,
        ..smpp_settings(settings, &SmscTarget::Embedded)
    }
}

/// The embedded simulator only listens on loopback, but still gets a fresh password per run.
fn embedded_password() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
