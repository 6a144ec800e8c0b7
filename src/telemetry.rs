//! Logging set-up: text for people, JSON for collectors, one filter directive, and two rules
//! no directive can turn off:
//!
//! - the SMPP library (`rusmpp`, `rusmppc` and every sub-target such as `rusmpp::codec::decode`)
//!   logs whole PDUs, so the message text and its code, below INFO: those events are dropped
//!   by a filter composed with the configured one, not by a directive the configured one could
//!   out-specify;
//! - text lines escape control characters in every field, so client text (a message template,
//!   a header value) cannot end a line and forge the next one. JSON lines are escaped by JSON.

use std::borrow::Cow;
use std::fmt::Write as _;

use tracing::{Level, Metadata};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Installs the global subscriber once; later calls are no-ops (tests build many apps).
pub fn init(format: &str, level: &str) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = filter.and(filter_fn(allowed));
    // Colours only on a terminal, so redirected logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let layer = tracing_subscriber::fmt::layer().with_ansi(ansi);
    let _ = if format == "json" {
        tracing_subscriber::registry()
            .with(layer.json().with_filter(filter))
            .try_init()
    } else {
        tracing_subscriber::registry()
            .with(
                layer
                    .fmt_fields(EscapingFields::default())
                    .with_filter(filter),
            )
            .try_init()
    };
}

/// False for the SMPP library's events below INFO, whatever their sub-target: they carry
/// whole PDUs (`short_message`, so the code).
pub fn allowed(meta: &Metadata<'_>) -> bool {
    !(meta.target().starts_with("rusmpp") && *meta.level() > Level::INFO)
}

/// `s` with every control character (newline, carriage return, escape, …) written as its Rust
/// escape (`\n`, `\u{1b}`), so text from a client stays on its log line; other characters,
/// non-ASCII included, are kept.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            // escape_debug turns every control character into a printable escape.
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The default text field formatter, with [`escape_control`] applied to its output: field
/// values written with `%` (Display) and the message itself are not escaped by
/// `tracing-subscriber`.
#[derive(Debug, Default)]
pub struct EscapingFields(DefaultFields);

impl<'w> FormatFields<'w> for EscapingFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut buf = String::new();
        self.0.format_fields(Writer::new(&mut buf), fields)?;
        writer.write_str(&escape_control(&buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            escape_control("123456 is your código"),
            "123456 is your código"
        );
        assert_eq!(
            escape_control("a\nERROR b\r\u{1b}[2J\t\u{7}\u{85}"),
            "a\\nERROR b\\r\\u{1b}[2J\\t\\u{7}\\u{85}"
        );
    }
}
