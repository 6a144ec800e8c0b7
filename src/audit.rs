//! Audit events: one per send-code and one per validate-code outcome, saying who (client),
//! to whom (the masked number), what came of it (outcome, policy decision, route) and under
//! which `x-correlator`. Never a code, a token or a full number.
//!
//! Every event is a log line (`code sent`, `code not sent`, `code checked`, target
//! `otp_gateway::otp`, inside the request's spans); with `audit.file` it is also appended to a
//! JSON-lines file by a writer thread fed through a bounded queue: a request only enqueues, so
//! a slow or stuck disk never holds it, and an event that finds the queue full is dropped and
//! counted (`otp_sms_audit_events_dropped_total`) rather than waited for.

use std::fs::OpenOptions;
use std::future::Future;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::SystemTime;

use prometheus::IntCounter;
use serde::Serialize;

use crate::metrics::Metrics;

const TARGET: &str = "otp_gateway::otp";

tokio::task_local! {
    static CORRELATOR: String;
}

/// Runs `f` with `correlator` as the request's correlator for the events it records (the
/// API's correlator middleware wraps each request with it).
pub async fn with_correlator<F: Future>(correlator: String, f: F) -> F::Output {
    CORRELATOR.scope(correlator, f).await
}

fn current_correlator() -> Option<String> {
    CORRELATOR.try_with(Clone::clone).ok()
}

/// Which operation an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A send-code request.
    Send,
    /// A validate-code request.
    Validate,
}

/// One audit event, as written to the file (camelCase keys, after the time `at` and before
/// the `correlator`, which the file line adds: the log line has both from its context).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// `send` or `validate`.
    pub event: EventKind,
    /// The calling client.
    pub client_id: String,
    /// The destination, masked (send events only: validate-code names no number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// The authenticationId issued (send) or presented (validate), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication_id: Option<String>,
    /// What came of it: `sent` or why not; `valid`, `invalid_code`, `expired`, `locked`,
    /// `unknown_id` or `error`.
    pub outcome: &'static str,
    /// The number policy's decision (send events only): `allowed`, `not_operator_number`,
    /// `not_allowed`, `blocked`, `max_codes`, or `sandbox_number` for a magic number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<&'static str>,
    /// The route (SMSC) that took the SMS, `sandbox` for a sandbox client's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// True for a sandbox client's request.
    pub sandbox: bool,
}

/// A line of the file: the event, when and under which correlator.
#[derive(Serialize)]
struct Line<'a> {
    /// RFC 3339 UTC time the event was recorded.
    at: String,
    #[serde(flatten)]
    event: &'a AuditEvent,
    /// The request's `x-correlator`.
    #[serde(skip_serializing_if = "Option::is_none")]
    correlator: Option<String>,
}

impl AuditEvent {
    /// An event of `kind` for `client_id`.
    pub fn new(kind: EventKind, client_id: &str, outcome: &'static str) -> AuditEvent {
        AuditEvent {
            event: kind,
            client_id: client_id.to_owned(),
            phone_number: None,
            authentication_id: None,
            outcome,
            policy: None,
            route: None,
            sandbox: false,
        }
    }
}

/// Where events go: the log always, and the JSON-lines file when configured.
#[derive(Clone, Default)]
pub struct Audit {
    /// The writer's queue and the counter of events it had no room for.
    file: Option<(SyncSender<String>, IntCounter)>,
}

impl Audit {
    /// Events to the log only.
    pub fn log_only() -> Audit {
        Audit::default()
    }

    /// Events to the log and appended to `path` (created when missing) by a writer thread
    /// that holds at most `buffer` waiting events; the thread ends, having flushed, once every
    /// clone of the returned [`Audit`] is dropped.
    pub fn to_file(path: &Path, buffer: usize, metrics: &Metrics) -> std::io::Result<Audit> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let dropped = IntCounter::new(
            "otp_sms_audit_events_dropped_total",
            "Audit events not written because the file writer's queue was full",
        )
        .map_err(std::io::Error::other)?;
        metrics
            .register(Box::new(dropped.clone()))
            .map_err(std::io::Error::other)?;
        let (tx, rx) = sync_channel(buffer);
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_lines(rx, BufWriter::new(file), &shown))?;
        Ok(Audit {
            file: Some((tx, dropped)),
        })
    }

    /// Events dropped so far because the writer's queue was full.
    pub fn dropped(&self) -> u64 {
        self.file.as_ref().map_or(0, |(_, d)| d.get())
    }

    /// Records one event: its log line now, its file line (stamped with the time and the
    /// current request's correlator) queued without waiting.
    pub fn record(&self, e: &AuditEvent) {
        let authentication_id = e.authentication_id.as_deref().unwrap_or("");
        let route = e.route.as_deref().unwrap_or("");
        let policy = e.policy.unwrap_or("");
        match (e.event, e.outcome) {
            (EventKind::Send, "sent") => {
                tracing::info!(target: TARGET, authentication_id, outcome = e.outcome, policy, route, sandbox = e.sandbox, "code sent")
            }
            (EventKind::Send, _) => {
                tracing::info!(target: TARGET, outcome = e.outcome, policy, sandbox = e.sandbox, "code not sent")
            }
            (EventKind::Validate, _) => {
                tracing::info!(target: TARGET, authentication_id, outcome = e.outcome, sandbox = e.sandbox, "code checked")
            }
        }
        let Some((tx, dropped)) = &self.file else {
            return;
        };
        let line = Line {
            at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            event: e,
            correlator: current_correlator(),
        };
        let Ok(line) = serde_json::to_string(&line) else {
            return;
        };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => dropped.inc(),
            Err(TrySendError::Disconnected(_)) => {
                dropped.inc();
                tracing::error!(target: TARGET, "the audit writer has stopped; event dropped");
            }
        }
    }
}

/// The writer thread: a line per event, flushed whenever the queue is empty, so a reader sees
/// every event soon after its request answered.
fn write_lines(rx: Receiver<String>, mut out: BufWriter<std::fs::File>, path: &str) {
    while let Ok(first) = rx.recv() {
        let mut line = Some(first);
        while let Some(l) = line.take() {
            if let Err(e) = writeln!(out, "{l}") {
                tracing::error!(target: TARGET, file = path, error = %e, "audit event not written");
            }
            line = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            tracing::error!(target: TARGET, file = path, error = %e, "audit file not flushed");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_carry_the_request_correlator_and_reach_the_file_as_json_lines() {
        let dir = std::env::temp_dir().join(format!("otpgw-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let metrics = Metrics::new().unwrap();
        let audit = Audit::to_file(&path, 100, &metrics).unwrap();
        with_correlator("corr-1".into(), async {
            let mut e = AuditEvent::new(EventKind::Send, "app", "sent");
            e.route = Some("smsc-a".into());
            audit.record(&e);
        })
        .await;
        audit.record(&AuditEvent::new(EventKind::Validate, "app", "valid"));
        drop(audit);
        // The writer flushes and ends once the last sender is gone.
        let mut text = String::new();
        for _ in 0..200 {
            text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["correlator"], "corr-1");
        assert_eq!(lines[0]["route"], "smsc-a");
        assert_eq!(lines[1]["event"], "validate");
        assert!(lines[1].get("correlator").is_none());
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (tx, _rx) = sync_channel(1);
        let audit = Audit {
            file: Some((tx, IntCounter::new("dropped", "dropped").unwrap())),
        };
        for _ in 0..3 {
            audit.record(&AuditEvent::new(EventKind::Validate, "app", "valid"));
        }
        assert_eq!(audit.dropped(), 2);
    }
}
