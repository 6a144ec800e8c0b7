//! Logging set-up: text for people, JSON for collectors, one filter directive.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops (tests build many apps).
pub fn init(format: &str, level: &str) {
    let mut filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The SMPP library logs whole PDUs (message text, so the code) at debug level. Those
    // targets are capped whatever the configured level, so no setting can leak a code.
    for cap in ["rusmpp=info", "rusmppc=info"] {
        if let Ok(d) = cap.parse() {
            filter = filter.add_directive(d);
        }
    }
    // Colours only on a terminal, so redirected logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
