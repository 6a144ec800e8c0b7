//! The `otp-gateway` command: `serve` (the default) and `smsc-sim`, plus two helpers for
//! operators (`openapi`, `hash-secret`).

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use otp_gateway::api::version::CamaraVersion;
use otp_gateway::config::{Config, LogFormat, Settings, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET};
use otp_gateway::startup::Application;
use otp_gateway::{admin, api, auth, smsc_sim, telemetry};

// mimalloc instead of glibc's malloc for the binary: malloc/free were 12-20 % of the
// gateway's CPU and glibc's fragmented heap held memory a live code no longer used
// (docs/PERFORMANCE.md, "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "otp-gateway",
    version,
    about = "CAMARA One Time Password SMS gateway over SMPP"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default; with no --config, embedded defaults are used).
    Serve {
        /// TOML configuration file; may be given more than once, a later file overriding the
        /// keys of an earlier one; every key can be overridden by OTPGW_<SECTION>__<KEY>.
        #[arg(long, short)]
        config: Vec<PathBuf>,
    },
    /// Run the SMPP 3.4 SMSC simulator on its own; it prints every SMS it receives.
    SmscSim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:2775")]
        listen: SocketAddr,
        /// system_id clients must bind with.
        #[arg(long, default_value = "otpgw")]
        system_id: String,
        /// Password clients must bind with.
        #[arg(long, default_value = "secret")]
        password: String,
        /// Delay before the delivery receipt (e.g. 200ms, 2s).
        #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
        receipt_delay: Duration,
        #[command(flatten)]
        faults: smsc_sim::SimFaults,
    },
    /// Print the OpenAPI document this build serves (the CAMARA contract, without the
    /// page notes a running instance adds to `info.description`).
    Openapi {
        /// Issuer URL used in the security scheme.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        issuer: String,
        /// CAMARA release: 1.1.1 or 1.1.0.
        #[arg(long, default_value = "1.1.1", value_parser = parse_camara_version)]
        camara_version: CamaraVersion,
    },
    /// Read a client secret on stdin and print its hashed form for `[[auth.clients]] secret`.
    HashSecret,
    /// Print a new P-256 token signing key (PKCS#8 PEM) for `auth.signing_key_file`.
    SigningKey,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve { config: Vec::new() }) {
        Command::Serve { config } => serve(config),
        Command::SmscSim {
            listen,
            system_id,
            password,
            receipt_delay,
            faults,
        } => simulator(listen, system_id, password, receipt_delay, faults),
        Command::Openapi {
            issuer,
            camara_version,
        } => {
            print!(
                "{}",
                api::openapi::document_json(issuer.trim_end_matches('/'), camara_version)
            );
            Ok(())
        }
        Command::HashSecret => hash_secret(),
        Command::SigningKey => auth::jwt::generate_pkcs8()
            .map(|der| print!("{}", auth::jwt::pkcs8_pem(&der)))
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn parse_camara_version(s: &str) -> Result<CamaraVersion, String> {
    CamaraVersion::parse(s).ok_or_else(|| format!("{s:?} is not 1.1.0 or 1.1.1"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn serve(config: Vec<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load_all(config.iter().map(PathBuf::as_path))?.validate()?;
    let format = match settings.log.format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    telemetry::init(format, &settings.log.level);
    if settings.hash_key.generated {
        tracing::warn!(
            "otp.hash_key is not set: a random key is used, so codes and ids issued before a restart (or by another replica) will not validate"
        );
    }
    // Config validation refused this unless sandbox.expose = true; say it loudly anyway.
    if settings.smpp.embedded.is_some() && !settings.admin.listen.ip().is_loopback() {
        tracing::warn!(
            "sandbox.expose = true: the embedded SMSC simulator's sandbox inbox (which shows every code) is served on the non-loopback admin listener {}, behind admin.token or scope {}",
            settings.admin.listen,
            admin::ADMIN_SCOPE
        );
    }
    runtime()?.block_on(async move {
        // The signal handlers are registered inside build (see `shutdown`), so a SIGTERM sent
        // right after the banner drains instead of killing the process.
        let app = Application::build(settings.clone()).await?;
        print_banner(&settings, &app);
        app.run_until_stopped().await
    })
}

fn print_banner(settings: &Config, app: &Application) {
    let api = format!("http://{}", app.api_addr());
    let admin = format!("http://{}", app.admin_addr());
    println!("otp-gateway {} is up", env!("CARGO_PKG_VERSION"));
    println!("  API      {api}{}", api::BASE_PATH);
    println!(
        "  docs     {api}/docs/  (CAMARA {}; OpenAPI: {api}/openapi.json)",
        settings.api.camara_version
    );
    println!("  tokens   {api}/oauth2/token  (discovery: {api}/.well-known/openid-configuration)");
    println!("  admin    {admin}/metrics  {admin}/health/ready");
    // The inbox call as the guard wants it; the token itself is never printed.
    let inbox_auth = if settings.admin.credential_required() {
        println!(
            "  admin    /admin/* and /sandbox/* need Authorization: Bearer <admin.token> (or a token with scope {})",
            admin::ADMIN_SCOPE
        );
        " -H \"Authorization: Bearer $ADMIN_TOKEN\""
    } else {
        ""
    };
    match app.simulator() {
        Some(sim) => {
            println!(
                "  SMSC     embedded simulator on {} (every SMS it receives is printed below)",
                sim.local_addr()
            );
            println!(
                "  sandbox  curl -s{inbox_auth} '{admin}/sandbox/v1/messages?phoneNumber=%2B34600000001'"
            );
        }
        None => {
            for r in &settings.smpp.routes {
                println!(
                    "  SMSC     route {} {} prefixes {:?}",
                    r.name,
                    r.smsc.display_url(),
                    r.prefixes
                );
            }
        }
    }
    if settings.auth.demo_client {
        println!(
            "  client   {DEMO_CLIENT_ID} / {DEMO_CLIENT_SECRET}  (demo client, offered only because no client is configured and the API listens on loopback)"
        );
        println!();
        println!("Try it:");
        println!(
            "  TOKEN=$(curl -s -u {DEMO_CLIENT_ID}:{DEMO_CLIENT_SECRET} -d grant_type=client_credentials -d scope=one-time-password-sms:send-validate {api}/oauth2/token | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')"
        );
        println!(
            "  curl -s {api}{}/send-code -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{{\"phoneNumber\":\"+34600000001\",\"message\":\"{{{{code}}}} is your code\"}}'",
            api::BASE_PATH
        );
        println!("  curl -s{inbox_auth} '{admin}/sandbox/v1/messages?phoneNumber=%2B34600000001'");
        println!(
            "  curl -i {api}{}/validate-code -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{{\"authenticationId\":\"<authenticationId>\",\"code\":\"<code>\"}}'",
            api::BASE_PATH
        );
    }
    println!();
}

fn simulator(
    listen: SocketAddr,
    system_id: String,
    password: String,
    receipt_delay: Duration,
    faults: smsc_sim::SimFaults,
) -> anyhow::Result<()> {
    telemetry::init("text", "info");
    runtime()?.block_on(async move {
        let sim = smsc_sim::start(smsc_sim::SimSettings {
            listen,
            system_id: system_id.clone(),
            password,
            receipt_delay,
            print_messages: true,
            inbox_capacity: 10_000,
            faults,
        })
        .await?;
        println!(
            "SMSC simulator listening on smpp://{system_id}:***@{} (Ctrl-C to stop)",
            sim.local_addr()
        );
        otp_gateway::shutdown::signal().await;
        sim.stop().await;
        Ok(())
    })
}

fn hash_secret() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let secret = line.trim_end_matches(['\r', '\n']);
    if secret.len() < 8 {
        anyhow::bail!("a client secret needs at least 8 characters");
    }
    println!("{}", auth::ClientSecret::hash(secret, 100_000)?);
    Ok(())
}
