//! SMPP 3.4 client used by the gateway to hand OTP messages to an SMSC.
//!
//! [`SmppClient::start`] spawns one supervisor task per configured bind
//! (`binds`), each keeping a `bind_transceiver` (or `bind_transmitter`)
//! session alive with capped, jittered exponential back-off on top of
//! `rusmppc`, which itself has no managed reconnect. Every session has its own
//! in-flight window and its own segment rate limiter.
//! [`SmppClient::submit`] encodes a text (see [`encoding`]), picks the first
//! session with a free window slot (see `pool`), submits every segment and
//! retries throttled or failed segments within one request deadline.
//!
//! Logging never includes SMS texts, passwords or full phone numbers
//! (numbers go through [`mask_number`]).

pub mod encoding;
mod limiter;
mod pool;
pub mod receipt;
mod router;
mod session;
pub mod tls;
mod tracker;

pub use router::{Route, SmppRouter};

pub use receipt::{DeliveryState, MessageIdFormat};
pub use tracker::{DeliveryReport, SegmentReport};

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusmpp::pdus::SubmitSm;
use rusmpp::tlvs::MessageSubmissionRequestTlvValue;
use rusmpp::types::{AnyOctetString, COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, MessagePayload, Npi, RegisteredDelivery, ServiceType, Ton,
};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::SmppMetrics;
use pool::Slot;

/// tracing target of every event emitted by this module.
pub const TARGET: &str = "otp_gateway::smpp";

/// Extra time the outer safety timeout of a submit allows beyond the deadline.
const OUTER_GUARD_SLACK: Duration = Duration::from_millis(20);

/// esm_class bit telling the SMSC the short_message starts with a UDH.
const ESM_UDHI: u8 = 0x40;
/// registered_delivery: SMSC delivery receipt on final success or failure.
const RECEIPT_ON_FINAL_OUTCOME: u8 = 0x01;

/// SMPP 3.4 command_status values with a fixed meaning for the pool.
pub mod status {
    /// ESME_RMSGQFUL: the SMSC's queue is full; slow down and retry.
    pub const MSGQFUL: u32 = 0x14;
    /// ESME_RTHROTTLED: the bind exceeded its rate; slow down and retry.
    pub const THROTTLED: u32 = 0x58;
    /// ESME_RSYSERR: the SMSC failed internally; retry on another session.
    pub const SYSERR: u32 = 0x08;
    /// Statuses that reject the destination itself (invalid address, its
    /// TON, its NPI) unless `status_map` says otherwise.
    pub const DESTINATION: [u32; 3] = [0x0B, 0x50, 0x51];
}

/// Which bind the sessions use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BindMode {
    /// bind_transceiver: submits and receipts on one session.
    #[default]
    Transceiver,
    /// bind_transmitter: submits only (receipts need another bind).
    Transmitter,
}

/// What an operator-specific command_status means (`smpp.status_map`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusAction {
    /// The number cannot receive SMS: 403 PHONE_NUMBER_NOT_ALLOWED.
    NotAllowed,
    /// The number is barred: 403 PHONE_NUMBER_BLOCKED.
    Blocked,
    /// A service problem: 503 UNAVAILABLE, no retry.
    Unavailable,
}

/// Connection and session settings for [`SmppClient`].
#[derive(Clone)]
pub struct SmppSettings {
    /// Name of this SMSC in metric labels (bounded by configuration).
    pub route: String,
    /// SMSC host name or IP address.
    pub host: String,
    /// SMSC TCP port (usually 2775).
    pub port: u16,
    /// ESME system_id sent in bind_transceiver (at most 15 characters).
    pub system_id: String,
    /// ESME password sent in bind_transceiver (at most 8 characters); never logged.
    pub password: String,
    /// ESME system_type sent in bind_transceiver (may be empty).
    pub system_type: String,
    /// Sender: alphanumeric → TON 5/NPI 0; digits (optionally with a leading
    /// `+`) → TON 1/NPI 1.
    pub source_addr: String,
    /// Deadline for a whole [`SmppClient::submit`] call (all segments).
    pub submit_timeout: Duration,
    /// Interval between enquire_link PDUs on an idle session.
    pub enquire_link_interval: Duration,
    /// First reconnect delay after a failed connect/bind or a lost session.
    pub reconnect_min: Duration,
    /// Cap of the doubling reconnect delay.
    pub reconnect_max: Duration,
    /// Maximum number of messages in flight at once, per session.
    pub window: usize,
    /// Number of sessions kept bound to this SMSC.
    pub binds: usize,
    /// bind_transceiver or bind_transmitter.
    pub bind_mode: BindMode,
    /// With [`BindMode::Transmitter`]: one more session, bound with
    /// bind_receiver, that takes the delivery receipts.
    pub receiver_bind: bool,
    /// Segments per second per session (0 = unlimited).
    pub max_tps: u32,
    /// Longest wait for one submit_sm_resp (capped by what is left of
    /// `submit_timeout`); shorter leaves time to retry on another session.
    pub response_timeout: Duration,
    /// Operator-specific command_status meanings; they take precedence over
    /// the built-in handling of every status.
    pub status_map: BTreeMap<u32, StatusAction>,
    /// How message ids in receipts relate to those in submit_sm_resp.
    pub message_id_format: MessageIdFormat,
    /// How long delivery reports of tagged messages are kept.
    pub receipt_retention: Duration,
    /// Delivery reports kept at most.
    pub receipt_capacity: u64,
    /// How texts longer than one segment are sent.
    pub concatenation: encoding::Concatenation,
    /// Connect with TLS (`smpps://`).
    pub tls: bool,
    /// PEM bundle of the CAs trusted for TLS; the public web roots when `None`.
    pub ca_file: Option<std::path::PathBuf>,
    /// Explicit source TON/NPI; auto-detected from `source_addr` when `None`.
    pub source_ton_npi: Option<(u8, u8)>,
}

impl Default for SmppSettings {
    fn default() -> Self {
        SmppSettings {
            route: "default".into(),
            host: "127.0.0.1".into(),
            port: 2775,
            system_id: String::new(),
            password: String::new(),
            system_type: String::new(),
            source_addr: "OTPGateway".into(),
            submit_timeout: Duration::from_secs(5),
            enquire_link_interval: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(30),
            window: 64,
            binds: 1,
            bind_mode: BindMode::Transceiver,
            receiver_bind: false,
            max_tps: 0,
            response_timeout: Duration::from_secs(5),
            status_map: BTreeMap::new(),
            message_id_format: MessageIdFormat::Auto,
            receipt_retention: Duration::from_secs(300),
            receipt_capacity: 100_000,
            concatenation: encoding::Concatenation::Udh8,
            tls: false,
            ca_file: None,
            source_ton_npi: None,
        }
    }
}

impl std::fmt::Debug for SmppSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written so the password can never end up in a log line.
        f.debug_struct("SmppSettings")
            .field("route", &self.route)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("system_id", &self.system_id)
            .field("password", &"<redacted>")
            .field("system_type", &self.system_type)
            .field("source_addr", &self.source_addr)
            .field("submit_timeout", &self.submit_timeout)
            .field("enquire_link_interval", &self.enquire_link_interval)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("window", &self.window)
            .field("binds", &self.binds)
            .field("bind_mode", &self.bind_mode)
            .field("receiver_bind", &self.receiver_bind)
            .field("max_tps", &self.max_tps)
            .field("response_timeout", &self.response_timeout)
            .field("status_map", &self.status_map)
            .field("message_id_format", &self.message_id_format)
            .field("receipt_retention", &self.receipt_retention)
            .field("receipt_capacity", &self.receipt_capacity)
            .field("concatenation", &self.concatenation)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("source_ton_npi", &self.source_ton_npi)
            .finish()
    }
}

/// One message to be sent to a handset.
#[derive(Clone)]
pub struct OutboundSms {
    /// E.164 number with a leading `+`.
    pub destination: String,
    /// Message text (any Unicode; encoding is chosen automatically).
    pub text: String,
    /// How long the SMSC should keep trying to deliver.
    pub validity: Duration,
}

impl std::fmt::Debug for OutboundSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The text carries the code and the number is personal data.
        f.debug_struct("OutboundSms")
            .field("destination", &mask_number(&self.destination))
            .field("text", &"<redacted>")
            .field("validity", &self.validity)
            .finish()
    }
}

/// Outcome of a successful [`SmppClient::submit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmitReceipt {
    /// SMSC message ids, one per segment, in segment order.
    pub message_ids: Vec<String>,
    /// Number of submit_sm PDUs sent.
    pub segments: usize,
    /// data_coding used (0 = GSM 03.38, 8 = UCS-2).
    pub data_coding: u8,
}

/// Why a submit failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmppError {
    /// No bound SMPP session is available (SMSC down, bind refused, or
    /// reconnect in progress); the message was not sent.
    #[error("no bound SMPP session")]
    NotBound,
    /// Every session's window (or rate budget) stayed full until the
    /// deadline; the message was not sent.
    #[error("SMPP window full")]
    Busy,
    /// The SMSC kept answering ESME_RTHROTTLED / ESME_RMSGQFUL until the
    /// deadline; the message was not (completely) accepted.
    #[error("SMSC throttled the message: command_status 0x{command_status:08X}")]
    Throttled {
        /// The last throttling status.
        command_status: u32,
    },
    /// The SMSC refused the destination (built-in destination statuses, or
    /// `not_allowed` in `status_map`).
    #[error("SMSC refused the destination: command_status 0x{command_status:08X}")]
    NotAllowed {
        /// SMPP command_status.
        command_status: u32,
    },
    /// The SMSC reports the destination as barred (`blocked` in `status_map`).
    #[error("SMSC reports the destination blocked: command_status 0x{command_status:08X}")]
    Blocked {
        /// SMPP command_status.
        command_status: u32,
    },
    /// Not every submit_sm_resp arrived within the deadline; the message
    /// may or may not have been accepted by the SMSC.
    #[error("no submit_sm_resp within {after:?}")]
    Timeout {
        /// The deadline that elapsed.
        after: Duration,
    },
    /// The SMSC answered a segment with a non-zero command_status that is
    /// neither retried nor a destination status (the status of the first
    /// failing segment).
    #[error("SMSC rejected the message: command_status 0x{command_status:08X}")]
    Rejected {
        /// SMPP command_status, e.g. 0x0B (ESME_RINVDSTADR).
        command_status: u32,
    },
    /// No route serves the destination (`[[smpp.routes]]` prefixes).
    #[error("no SMPP route serves the destination")]
    NoRoute,
    /// The message cannot be expressed as SMPP PDUs (bad destination or
    /// sender, too many segments).
    #[error("cannot encode message: {0}")]
    Encoding(String),
    /// The session broke while the message was being submitted.
    #[error("SMPP connection error: {0}")]
    Connection(String),
}

/// Masks a phone number for logs: keeps the first 4 and last 2 characters.
pub fn mask_number(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let mut out: String = chars[..4].iter().collect();
    out.extend(std::iter::repeat_n('*', chars.len() - 6));
    out.extend(&chars[chars.len() - 2..]);
    out
}

/// Formats `validity` as an SMPP 3.4 §7.1.1 relative time
/// (`YYMMDDhhmmss000R`), with years of 365 days and months of 30 days, capped
/// at 99 years. A zero duration yields `None` (use the SMSC default).
pub fn relative_validity(validity: Duration) -> Option<String> {
    const MAX: &str = "991129235959000R";
    let secs = validity.as_secs();
    if secs == 0 {
        return None;
    }
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (years, rest_days) = (days / 365, days % 365);
    if years > 99 {
        return Some(MAX.to_owned());
    }
    let (months, days) = (rest_days / 30, rest_days % 30);
    // 12 months of 30 days are 360 < 365, so months may reach 12.
    let (years, months) = if months >= 12 {
        (years + 1, months - 12)
    } else {
        (years, months)
    };
    if years > 99 {
        return Some(MAX.to_owned());
    }
    Some(format!(
        "{years:02}{months:02}{days:02}{:02}{:02}{:02}000R",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    ))
}

/// Source TON/NPI and address as sent on the wire.
fn source_address(source: &str) -> (Ton, Npi, &str) {
    let digits = source.strip_prefix('+').unwrap_or(source);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        (Ton::International, Npi::Isdn, digits)
    } else {
        (Ton::Alphanumeric, Npi::Unknown, source)
    }
}

/// Builds one submit_sm per segment of `sms` (one in total with
/// [`encoding::Concatenation::MessagePayload`]).
fn build_submits(
    settings: &SmppSettings,
    sms: &OutboundSms,
) -> Result<(encoding::Encoded, Vec<SubmitSm>), SmppError> {
    let source = settings.source_addr.as_str();
    let mode = settings.concatenation;
    let dest = sms
        .destination
        .strip_prefix('+')
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| SmppError::Encoding("destination is not +<digits>".into()))?;
    let dest = COctetString::<1, 21>::from_str(dest)
        .map_err(|e| SmppError::Encoding(format!("destination: {e}")))?;
    let (src_ton, src_npi, src) = match settings.source_ton_npi {
        // An operator-mandated TON/NPI is sent as configured, address untouched.
        Some((ton, npi)) => (Ton::from(ton), Npi::from(npi), source),
        None => source_address(source),
    };
    let src = COctetString::<1, 21>::from_str(src)
        .map_err(|e| SmppError::Encoding(format!("source_addr: {e}")))?;
    let validity = match relative_validity(sms.validity) {
        Some(v) => EmptyOrFullCOctetString::<17>::from_str(&v)
            .map_err(|e| SmppError::Encoding(format!("validity_period: {e}")))?,
        None => EmptyOrFullCOctetString::empty(),
    };

    let encoded = encoding::encode_as(&sms.text, mode);
    if encoded.message_payload
        && encoded.segments.iter().map(Vec::len).sum::<usize>() > encoding::MAX_PAYLOAD
    {
        return Err(SmppError::Encoding(
            "text longer than message_payload allows".into(),
        ));
    }
    if encoded.segments.len() > encoding::MAX_SEGMENTS {
        return Err(SmppError::Encoding(format!(
            "text needs {} segments (max {})",
            encoded.segments.len(),
            encoding::MAX_SEGMENTS
        )));
    }
    let esm_class = EsmClass::from(if encoded.udhi { ESM_UDHI } else { 0 });
    let total = u8::try_from(encoded.segments.len()).unwrap_or(u8::MAX);
    let submits = encoded
        .segments
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut tlvs: Vec<MessageSubmissionRequestTlvValue> = Vec::new();
            let short_message = if encoded.message_payload {
                tlvs.push(MessageSubmissionRequestTlvValue::MessagePayload(
                    MessagePayload::new(AnyOctetString::from_slice(body)),
                ));
                OctetString::<0, 255>::empty()
            } else {
                OctetString::<0, 255>::from_slice(body)
                    .map_err(|e| SmppError::Encoding(format!("short_message: {e}")))?
            };
            if let Some(reference) = encoded.sar_reference {
                tlvs.push(MessageSubmissionRequestTlvValue::SarMsgRefNum(reference));
                tlvs.push(MessageSubmissionRequestTlvValue::SarTotalSegments(total));
                tlvs.push(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(
                    u8::try_from(i + 1).unwrap_or(u8::MAX),
                ));
            }
            Ok(SubmitSm::builder()
                .service_type(ServiceType::default())
                .source_addr_ton(src_ton)
                .source_addr_npi(src_npi)
                .source_addr(src.clone())
                .dest_addr_ton(Ton::International)
                .dest_addr_npi(Npi::Isdn)
                .destination_addr(dest.clone())
                .esm_class(esm_class)
                .validity_period(validity.clone())
                .registered_delivery(RegisteredDelivery::from(RECEIPT_ON_FINAL_OUTCOME))
                .data_coding(DataCoding::from(encoded.data_coding))
                .short_message(short_message)
                .tlvs(tlvs)
                .build())
        })
        .collect::<Result<Vec<_>, SmppError>>()?;
    Ok((encoded, submits))
}

/// State shared between the handles, the submitters and the supervisors.
struct Shared {
    settings: SmppSettings,
    /// One per configured bind, in configuration order ("first free wins").
    slots: Vec<Slot>,
    /// Woken whenever a window slot frees up or a session binds or drops.
    changed: Notify,
    /// Set once to ask the supervisors to unbind and stop.
    stop: watch::Sender<bool>,
    metrics: Option<SmppMetrics>,
    hot: Option<pool::HotMetrics>,
    tracker: tracker::Tracker,
}

impl Shared {
    fn bound_count(&self) -> usize {
        self.slots.iter().filter(|s| s.can_submit()).count()
    }
}

/// Owned by the handles only, so dropping the last [`SmppClient`] stops the
/// supervisors even without an explicit [`SmppClient::shutdown`].
struct Handles {
    shared: Arc<Shared>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handles {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
    }
}

/// Handle to the gateway's SMPP session pool; cheap to clone.
#[derive(Clone)]
pub struct SmppClient {
    inner: Arc<Handles>,
}

impl std::fmt::Debug for SmppClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppClient")
            .field("bound_sessions", &self.bound_sessions())
            .finish_non_exhaustive()
    }
}

impl SmppClient {
    /// Spawns one supervisor per bind (connect → bind → serve, reconnecting
    /// with back-off) and returns immediately. Records no metrics.
    ///
    /// Must be called from within a Tokio runtime.
    pub fn start(settings: SmppSettings) -> SmppClient {
        Self::start_with_metrics(settings, None)
    }

    /// Like [`SmppClient::start`], recording into `metrics`.
    pub fn start_with_metrics(settings: SmppSettings, metrics: Option<SmppMetrics>) -> SmppClient {
        let submitters = settings.binds.max(1);
        // The receipts-only session comes last, so "first free wins" never meets it.
        let receiver = settings.receiver_bind && settings.bind_mode == BindMode::Transmitter;
        let binds = submitters + usize::from(receiver);
        let slots = (0..binds)
            .map(|i| Slot::new(i, &settings, i >= submitters))
            .collect();
        if let Some(m) = &metrics {
            m.binds
                .with_label_values(&[settings.route.as_str(), "down"])
                .set(i64::try_from(binds).unwrap_or(i64::MAX));
            m.binds
                .with_label_values(&[settings.route.as_str(), "up"])
                .set(0);
        }
        let tracker = tracker::Tracker::new(
            settings.message_id_format,
            settings.receipt_retention,
            settings.receipt_capacity,
            metrics.clone(),
        );
        let hot = metrics
            .as_ref()
            .map(|m| pool::HotMetrics::new(m, &settings.route));
        let shared = Arc::new(Shared {
            settings,
            slots,
            changed: Notify::new(),
            stop: watch::Sender::new(false),
            metrics,
            hot,
            tracker,
        });
        let supervisors = (0..binds)
            .map(|i| tokio::spawn(session::run(Arc::clone(&shared), i)))
            .collect();
        SmppClient {
            inner: Arc::new(Handles {
                shared,
                supervisors: Mutex::new(supervisors),
            }),
        }
    }

    /// Whether at least one session is currently bound.
    pub fn is_bound(&self) -> bool {
        self.inner.shared.slots.iter().any(Slot::can_submit)
    }

    /// Number of submit sessions currently bound (the receipts-only session
    /// of `receiver_bind` is not counted).
    pub fn bound_sessions(&self) -> usize {
        self.inner.shared.bound_count()
    }

    /// Waits up to `timeout` until at least one session is bound; returns
    /// whether one is.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        self.wait_bound_sessions(1, timeout).await
    }

    /// Waits up to `timeout` until at least `n` sessions are bound.
    pub async fn wait_bound_sessions(&self, n: usize, timeout: Duration) -> bool {
        let shared = &self.inner.shared;
        let until = Instant::now() + timeout;
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if shared.bound_count() >= n {
                return true;
            }
            if tokio::time::timeout_at(until, changed).await.is_err() {
                return shared.bound_count() >= n;
            }
        }
    }

    /// Submits every segment of `sms` and waits for all submit_sm_resps.
    ///
    /// The call never takes longer than `submit_timeout`; without a bound
    /// session it fails with [`SmppError::NotBound`] after at most a short
    /// grace period for a bind in progress.
    pub async fn submit(&self, sms: OutboundSms) -> Result<SubmitReceipt, SmppError> {
        self.submit_tagged(sms, None).await
    }

    /// Like [`SmppClient::submit`]; with a `tag`, the message's delivery
    /// receipts are tracked and readable with [`SmppClient::delivery_report`].
    pub async fn submit_tagged(
        &self,
        sms: OutboundSms,
        tag: Option<&str>,
    ) -> Result<SubmitReceipt, SmppError> {
        let deadline = Instant::now() + self.submit_timeout();
        self.submit_until(sms, tag, deadline).await
    }

    /// The configured `submit_timeout`.
    pub fn submit_timeout(&self) -> Duration {
        self.inner.shared.settings.submit_timeout
    }

    /// Like [`SmppClient::submit_tagged`] with an explicit deadline (the
    /// router shares one deadline across failover).
    pub async fn submit_until(
        &self,
        sms: OutboundSms,
        tag: Option<&str>,
        deadline: Instant,
    ) -> Result<SubmitReceipt, SmppError> {
        let shared = &self.inner.shared;
        let started = Instant::now();
        let after = shared.settings.submit_timeout;
        let (encoded, submits) = build_submits(&shared.settings, &sms)?;
        // Each stage honours `deadline` itself and reports its own error
        // (NotBound / Busy / Timeout); this outer guard only catches stalls.
        let guard = deadline + OUTER_GUARD_SLACK;
        let message_ids =
            match tokio::time::timeout_at(guard, pool::submit(shared, &submits, deadline)).await {
                Ok(result) => result?,
                Err(_) => return Err(SmppError::Timeout { after }),
            };
        if let Some(h) = &shared.hot {
            h.submit_latency.observe(started.elapsed().as_secs_f64());
        }
        if let Some(tag) = tag {
            shared.tracker.file(
                tag,
                &sms.destination,
                &shared.settings.route,
                &message_ids,
                started,
            );
        }
        tracing::debug!(
            target: TARGET,
            destination = %mask_number(&sms.destination),
            segments = message_ids.len(),
            data_coding = encoded.data_coding,
            message_ids = ?message_ids,
            "message submitted"
        );
        Ok(SubmitReceipt {
            segments: message_ids.len(),
            message_ids,
            data_coding: encoded.data_coding,
        })
    }

    /// Delivery state of the message submitted with `tag`, while kept.
    pub fn delivery_report(&self, tag: &str) -> Option<DeliveryReport> {
        self.inner.shared.tracker.report(tag)
    }

    /// Unbinds every session (waiting briefly for unbind_resp), closes them
    /// and stops reconnecting. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shared.stop.send_replace(true);
        let handles = std::mem::take(
            &mut *self
                .inner
                .supervisors
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let all = futures::future::join_all(handles);
        if tokio::time::timeout(session::SHUTDOWN_WAIT, all)
            .await
            .is_err()
        {
            tracing::warn!(target: TARGET, "SMPP supervisors did not stop in time");
        }
    }
}
