//! SMPP 3.4 client used by the gateway to hand OTP messages to an SMSC.
//!
//! [`SmppClient::start`] spawns a supervisor task that keeps one
//! `bind_transceiver` session alive (reconnecting with capped exponential
//! back-off) on top of `rusmppc`, which itself has no managed reconnect.
//! [`SmppClient::submit`] encodes a text (see [`encoding`]), submits every
//! segment on the current session and waits for all `submit_sm_resp`s within
//! a single deadline.
//!
//! Logging never includes SMS texts, passwords or full phone numbers
//! (numbers go through [`mask_number`]).

pub mod encoding;
mod session;

#[cfg(test)]
mod tests;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusmpp::pdus::SubmitSm;
use rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, Npi, RegisteredDelivery, ServiceType, Ton};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// tracing target of every event emitted by this module.
pub const TARGET: &str = "otp_gateway::smpp";

/// Longest wait for a bind that is in progress when a submit finds no
/// session; bounded so callers get `NotBound` quickly during an outage.
const BIND_GRACE: Duration = Duration::from_secs(1);

/// Extra time the outer safety timeout of a submit allows beyond the deadline.
const OUTER_GUARD_SLACK: Duration = Duration::from_millis(20);

/// esm_class bit telling the SMSC the short_message starts with a UDH.
const ESM_UDHI: u8 = 0x40;
/// registered_delivery: SMSC delivery receipt on final success or failure.
const RECEIPT_ON_FINAL_OUTCOME: u8 = 0x01;

/// Connection and session settings for [`SmppClient`].
#[derive(Clone)]
pub struct SmppSettings {
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
    /// Maximum number of messages in flight at once.
    pub window: usize,
}

impl std::fmt::Debug for SmppSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written so the password can never end up in a log line.
        f.debug_struct("SmppSettings")
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
    /// Every in-flight slot of the window stayed occupied until the
    /// deadline; the message was not sent.
    #[error("SMPP window full")]
    Busy,
    /// Not every submit_sm_resp arrived within the deadline; the message
    /// may or may not have been accepted by the SMSC.
    #[error("no submit_sm_resp within {after:?}")]
    Timeout {
        /// The deadline that elapsed.
        after: Duration,
    },
    /// The SMSC answered a segment with a non-zero command_status (the
    /// status of the first failing segment).
    #[error("SMSC rejected the message: command_status 0x{command_status:08X}")]
    Rejected {
        /// SMPP command_status, e.g. 0x0B (ESME_RINVDSTADR).
        command_status: u32,
    },
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

/// Builds one submit_sm per segment of `sms`.
fn build_submits(
    source: &str,
    sms: &OutboundSms,
) -> Result<(encoding::Encoded, Vec<SubmitSm>), SmppError> {
    let dest = sms
        .destination
        .strip_prefix('+')
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| SmppError::Encoding("destination is not +<digits>".into()))?;
    let dest = COctetString::<1, 21>::from_str(dest)
        .map_err(|e| SmppError::Encoding(format!("destination: {e}")))?;
    let (src_ton, src_npi, src) = source_address(source);
    let src = COctetString::<1, 21>::from_str(src)
        .map_err(|e| SmppError::Encoding(format!("source_addr: {e}")))?;
    let validity = match relative_validity(sms.validity) {
        Some(v) => EmptyOrFullCOctetString::<17>::from_str(&v)
            .map_err(|e| SmppError::Encoding(format!("validity_period: {e}")))?,
        None => EmptyOrFullCOctetString::empty(),
    };

    let encoded = encoding::encode(&sms.text);
    if encoded.segments.len() > encoding::MAX_SEGMENTS {
        return Err(SmppError::Encoding(format!(
            "text needs {} segments (max {})",
            encoded.segments.len(),
            encoding::MAX_SEGMENTS
        )));
    }
    let esm_class = EsmClass::from(if encoded.udhi { ESM_UDHI } else { 0 });
    let submits = encoded
        .segments
        .iter()
        .map(|body| {
            let short_message = OctetString::<0, 255>::from_slice(body)
                .map_err(|e| SmppError::Encoding(format!("short_message: {e}")))?;
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
                .build())
        })
        .collect::<Result<Vec<_>, SmppError>>()?;
    Ok((encoded, submits))
}

/// State shared between the handles and the supervisor task.
struct Shared {
    settings: SmppSettings,
    /// `Some` while a session is bound; submits clone the client out of it.
    session: watch::Sender<Option<rusmppc::Client>>,
    /// True while the supervisor is connecting/binding, i.e. a session may
    /// appear shortly; during back-off sleeps submits fail at once.
    connecting: AtomicBool,
    /// Set once to ask the supervisor to unbind and stop.
    stop: watch::Sender<bool>,
    window: Semaphore,
}

/// Owned by the handles only, so dropping the last [`SmppClient`] stops the
/// supervisor even without an explicit [`SmppClient::shutdown`].
struct Handles {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handles {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
    }
}

/// Handle to the gateway's SMPP session; cheap to clone.
#[derive(Clone)]
pub struct SmppClient {
    inner: Arc<Handles>,
}

impl std::fmt::Debug for SmppClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppClient")
            .field("bound", &self.is_bound())
            .finish_non_exhaustive()
    }
}

impl SmppClient {
    /// Spawns the supervisor task (connect → bind_transceiver → serve,
    /// reconnecting with back-off) and returns immediately.
    ///
    /// Must be called from within a Tokio runtime.
    pub fn start(settings: SmppSettings) -> SmppClient {
        let window = Semaphore::new(settings.window.clamp(1, Semaphore::MAX_PERMITS));
        let shared = Arc::new(Shared {
            settings,
            session: watch::Sender::new(None),
            connecting: AtomicBool::new(false),
            stop: watch::Sender::new(false),
            window,
        });
        let supervisor = tokio::spawn(session::run(Arc::clone(&shared)));
        SmppClient {
            inner: Arc::new(Handles {
                shared,
                supervisor: Mutex::new(Some(supervisor)),
            }),
        }
    }

    /// Whether a session is currently bound.
    pub fn is_bound(&self) -> bool {
        self.inner.shared.session.borrow().is_some()
    }

    /// Waits up to `timeout` until a session is bound; returns whether it is.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.shared.session.subscribe();
        let bound = matches!(
            tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await,
            Ok(Ok(_))
        );
        bound
    }

    /// Submits every segment of `sms` and waits for all submit_sm_resps.
    ///
    /// The call never takes longer than `submit_timeout`; without a bound
    /// session it fails with [`SmppError::NotBound`] after at most a short
    /// grace period for a bind in progress.
    pub async fn submit(&self, sms: OutboundSms) -> Result<SubmitReceipt, SmppError> {
        let after = self.inner.shared.settings.submit_timeout;
        let deadline = Instant::now() + after;
        // Each stage honours `deadline` itself and reports its own error
        // (NotBound / Busy / Timeout); this outer guard only catches stalls.
        let guard = deadline + OUTER_GUARD_SLACK;
        match tokio::time::timeout_at(guard, self.submit_inner(&sms, deadline)).await {
            Ok(result) => result,
            Err(_) => Err(SmppError::Timeout { after }),
        }
    }

    async fn submit_inner(
        &self,
        sms: &OutboundSms,
        deadline: Instant,
    ) -> Result<SubmitReceipt, SmppError> {
        let shared = &self.inner.shared;
        let settings = &shared.settings;
        let (encoded, submits) = build_submits(&settings.source_addr, sms)?;

        let mut rx = shared.session.subscribe();
        if rx.borrow().is_none() && !shared.connecting.load(Ordering::Acquire) {
            return Err(SmppError::NotBound);
        }
        let grace = deadline.min(Instant::now() + BIND_GRACE);
        let client = match tokio::time::timeout_at(grace, rx.wait_for(Option::is_some)).await {
            Ok(Ok(session)) => session.clone().ok_or(SmppError::NotBound)?,
            Ok(Err(_)) | Err(_) => return Err(SmppError::NotBound),
        };

        let _permit = match tokio::time::timeout_at(deadline, shared.window.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => return Err(SmppError::Busy),
        };

        let mut message_ids = Vec::with_capacity(submits.len());
        for submit in submits {
            let resp = tokio::time::timeout_at(deadline, client.submit_sm(submit))
                .await
                .map_err(|_| SmppError::Timeout {
                    after: settings.submit_timeout,
                })?
                .map_err(|e| map_error(e, settings))?;
            message_ids.push(resp.message_id().as_str().to_owned());
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

    /// Unbinds (waiting briefly for unbind_resp), closes the session and
    /// stops reconnecting. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shared.stop.send_replace(true);
        let handle = self
            .inner
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            if tokio::time::timeout(session::SHUTDOWN_WAIT, handle)
                .await
                .is_err()
            {
                tracing::warn!(target: TARGET, "SMPP supervisor did not stop in time");
            }
        }
    }
}

fn map_error(error: rusmppc::error::Error, settings: &SmppSettings) -> SmppError {
    use rusmppc::error::Error;
    match error {
        Error::UnexpectedResponse { response } => {
            let status = u32::from(response.status());
            if status != 0 {
                SmppError::Rejected {
                    command_status: status,
                }
            } else {
                SmppError::Connection(format!("unexpected response {:?}", response.id()))
            }
        }
        Error::ResponseTimeout { .. } => SmppError::Timeout {
            after: settings.submit_timeout,
        },
        other => SmppError::Connection(other.to_string()),
    }
}
