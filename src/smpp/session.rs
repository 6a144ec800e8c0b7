//! Supervisor task owning one SMPP session of the pool: connect, bind, serve
//! incoming PDUs, and reconnect with capped, jittered exponential back-off
//! until stopped.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSmResp};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{CommandId, CommandStatus, Pdu};
use rusmppc::{Client, ConnectionBuilder, Event};
use tokio::net::TcpStream;

use super::cancel::LateAck;
use super::client::Shared;
use super::inflight::{Inflight, Link, Routed};
use super::settings::BindMode;
use super::slot::jitter;
use super::TARGET;
use crate::domain::mask_digits;

/// Upper bound for TCP connect plus bind_transceiver_resp.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a bind response; enforced here, since rusmppc would apply its own
/// connection-wide timeout instead of a per-request one.
const BIND_TIMEOUT: Duration = Duration::from_secs(8);
/// How long to wait for unbind_resp and for the socket to close on shutdown.
const UNBIND_WAIT: Duration = Duration::from_secs(1);
/// How long [`super::SmppClient::shutdown`] waits for the supervisor.
pub(super) const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);
/// Largest PDU accepted from the SMSC.
const MAX_COMMAND_LENGTH: usize = 4096;

/// Why the serve loop returned.
enum SessionEnd {
    Stopped,
    Lost,
}

/// Supervisor main loop of session `index`; returns once a stop was requested.
pub(super) async fn run(shared: Arc<Shared>, index: usize) {
    let Some(slot) = shared.slots.get(index) else {
        return;
    };
    let settings = &shared.settings;
    let options = &settings.options;
    let smsc = &settings.smsc;
    let route = settings.name.as_str();
    let stop = &shared.stop;
    let min = options.reconnect_min.max(Duration::from_millis(10));
    let max = options.reconnect_max.max(min);
    let mut delay = min;
    let mut attempt: u32 = 0;
    let set_bound = |up: bool| {
        let (inc, dec) = if up { ("up", "down") } else { ("down", "up") };
        shared.metrics.binds.with_label_values(&[route, inc]).inc();
        shared.metrics.binds.with_label_values(&[route, dec]).dec();
    };

    loop {
        if stop.is_cancelled() {
            break;
        }
        attempt = attempt.saturating_add(1);
        slot.connecting();
        let connected = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            r = tokio::time::timeout(CONNECT_TIMEOUT, connect_and_bind(&shared, index, slot.is_receiver())) => {
                r.unwrap_or_else(|_| Err("connect/bind timed out".to_owned()))
            }
        };
        match connected {
            Ok((link, events)) => {
                let client = link.client.clone();
                let inflight = Arc::clone(&link.inflight);
                slot.bound(link);
                set_bound(true);
                shared.changed.notify_waiters();
                tracing::info!(
                    target: TARGET,
                    route,
                    session = index,
                    host = %smsc.host,
                    port = smsc.port,
                    system_id = %smsc.system_id,
                    mode = if slot.is_receiver() { "receiver" } else if options.bind_mode == BindMode::Transmitter { "transmitter" } else { "transceiver" },
                    "SMPP session bound"
                );
                attempt = 0;
                delay = min;
                let end = serve(&shared, index, &client, &inflight, events, stop).await;
                inflight.close();
                slot.unbound();
                set_bound(false);
                shared.changed.notify_waiters();
                match end {
                    SessionEnd::Stopped => {
                        unbind(&client).await;
                        break;
                    }
                    SessionEnd::Lost => {
                        client.close().await.ok();
                        tracing::warn!(
                            target: TARGET,
                            route,
                            session = index,
                            "SMPP session lost; reconnecting"
                        );
                    }
                }
            }
            Err(reason) => {
                slot.backing_off();
                shared.changed.notify_waiters();
                tracing::warn!(
                    target: TARGET,
                    route,
                    session = index,
                    host = %smsc.host,
                    port = smsc.port,
                    attempt,
                    retry_in = ?delay,
                    %reason,
                    "SMPP connect/bind failed"
                );
            }
        }
        // Jitter keeps the sessions of a pool (and gateways behind one
        // SMSC) from reconnecting in lock-step after an outage.
        let pause = jitter(delay);
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
        delay = delay.saturating_mul(2).min(max);
    }
    slot.stopped();
    shared.changed.notify_waiters();
    tracing::info!(target: TARGET, route, session = index, "SMPP supervisor stopped");
}

async fn connect_and_bind(
    shared: &Arc<Shared>,
    index: usize,
    receiver: bool,
) -> Result<(Link, BoxStream<'static, Event>), String> {
    let s = &shared.settings.options;
    let smsc = &shared.settings.smsc;
    let builder = ConnectionBuilder::new()
        .max_command_length(MAX_COMMAND_LENGTH)
        .enquire_link_interval(s.enquire_link_interval.max(Duration::from_millis(100)))
        .enquire_link_response_timeout(
            s.enquire_link_interval
                .clamp(Duration::from_millis(100), Duration::from_secs(10)),
        )
        // Every wait is timed here (bind, submit_sm, cancel_sm): rusmppc 0.4 applies this
        // connection-wide timeout to each request and ignores a per-request one.
        .no_response_timeout()
        // rusmppc defaults to SMPP 5.0; this gateway speaks 3.4.
        .disable_interface_version_check();
    let (client, events, injector) = if smsc.tls {
        let builder = match &s.ca_file {
            Some(ca) => builder.rustls_config(super::tls::client_config(ca)?),
            None => builder,
        };
        let (client, events) = builder
            .connect(format!("smpps://{}:{}", smsc.host, smsc.port))
            .await
            .map_err(|e| format!("TLS connect: {e}"))?;
        // rusmppc owns the TLS stream: no splice, so no cancel_sm on smpps://.
        (client, events.boxed(), None)
    } else {
        let stream = TcpStream::connect((smsc.host.as_str(), smsc.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).ok();
        let (stream, injector) = super::splice::Splice::new(stream);
        let (client, events) = builder.connected(stream);
        (client, events.boxed(), Some(injector))
    };

    let (system_id, password, system_type) = (
        field(&smsc.system_id, "system_id")?,
        field(smsc.password.expose(), "password")?,
        field(&s.system_type, "system_type")?,
    );
    let mode = if receiver { None } else { Some(s.bind_mode) };
    // rusmpp has one PDU type per bind kind with identical builders; one macro fills them.
    macro_rules! bind {
        ($pdu:ident, $call:ident) => {{
            let pdu = $pdu::builder()
                .system_id(system_id)
                .password(password)
                .system_type(system_type)
                .interface_version(InterfaceVersion::Smpp3_4)
                .addr_ton(Ton::Unknown)
                .addr_npi(Npi::Unknown)
                .address_range(COctetString::empty())
                .build();
            match tokio::time::timeout(BIND_TIMEOUT, client.$call(pdu)).await {
                Ok(r) => r.map(|_| ()).map_err(Some),
                Err(_) => Err(None),
            }
        }};
    }
    let bound = match mode {
        None => bind!(BindReceiver, bind_receiver),
        Some(BindMode::Transceiver) => bind!(BindTransceiver, bind_transceiver),
        Some(BindMode::Transmitter) => bind!(BindTransmitter, bind_transmitter),
    };
    match bound {
        Ok(()) => Ok((
            Link {
                client,
                inflight: Arc::new(Inflight::default()),
                injector,
                route: Arc::downgrade(shared),
                slot: index,
            },
            events,
        )),
        Err(e) => {
            client.close().await.ok();
            Err(match e {
                Some(rusmppc::error::Error::UnexpectedResponse { response }) => format!(
                    "bind refused: command_status 0x{:08X}",
                    u32::from(response.status())
                ),
                Some(other) => format!("bind: {other}"),
                None => format!("bind: no response within {BIND_TIMEOUT:?}"),
            })
        }
    }
}

/// Converts a bind field; the error names the field but never echoes it.
fn field<const MIN: usize, const MAX: usize>(
    value: &str,
    name: &str,
) -> Result<COctetString<MIN, MAX>, String> {
    COctetString::from_str(value).map_err(|_| {
        format!(
            "{name} is not a valid C-Octet String of at most {} ASCII chars",
            MAX - 1
        )
    })
}

async fn serve(
    shared: &Arc<Shared>,
    index: usize,
    client: &Client,
    inflight: &Inflight,
    mut events: impl Stream<Item = Event> + Unpin,
    stop: &tokio_util::sync::CancellationToken,
) -> SessionEnd {
    loop {
        let event = tokio::select! {
            biased;
            () = stop.cancelled() => return SessionEnd::Stopped,
            e = events.next() => e,
        };
        match event {
            None => return SessionEnd::Lost,
            Some(Event::Error(e)) => {
                tracing::warn!(target: TARGET, error = %e, "SMPP session error");
            }
            Some(Event::Incoming(command))
                if matches!(
                    command.id(),
                    CommandId::SubmitSmResp | CommandId::GenericNack | CommandId::CancelSmResp
                ) =>
            {
                if let Routed::Late(late, command) = inflight.dispatch(command) {
                    match super::pool::accepted(&command) {
                        Some(message_id) => late.ledger.late_ack(LateAck {
                            shared: Arc::clone(shared),
                            slot: index,
                            message_id,
                            addresses: late.addresses,
                        }),
                        None => tracing::debug!(
                            target: TARGET,
                            status = ?command.status(),
                            "late answer refusing an abandoned submit_sm"
                        ),
                    }
                }
            }
            Some(Event::Incoming(command)) => {
                let seq = command.sequence_number();
                match command.pdu() {
                    Some(Pdu::DeliverSm(deliver)) => {
                        match super::receipts::parse::parse(deliver) {
                            Some(receipt) => shared.tracker.on_receipt(receipt),
                            // Mobile-originated content is user data:
                            // acknowledge, never log it.
                            None => tracing::debug!(
                                target: TARGET,
                                handset = %mask_digits(deliver.source_addr.as_str()),
                                "non-receipt deliver_sm acknowledged"
                            ),
                        }
                        if let Err(e) = client.deliver_sm_resp(seq, DeliverSmResp::default()).await
                        {
                            tracing::warn!(target: TARGET, error = %e, "deliver_sm_resp failed");
                        }
                    }
                    Some(Pdu::Unbind) => {
                        tracing::info!(target: TARGET, "SMSC requested unbind");
                        client.unbind_resp(seq).await.ok();
                        return SessionEnd::Lost;
                    }
                    _ => {
                        let id = command.id();
                        let is_request = u32::from(id) & 0x8000_0000 == 0;
                        // EnquireLink is answered by rusmppc itself.
                        if is_request && id != CommandId::EnquireLink {
                            tracing::debug!(target: TARGET, ?id, "unsupported request; generic_nack");
                            client
                                .status(CommandStatus::EsmeRinvcmdid)
                                .generic_nack(seq)
                                .await
                                .ok();
                        } else {
                            tracing::debug!(target: TARGET, ?id, seq, "ignored PDU");
                        }
                    }
                }
            }
        }
    }
}

async fn unbind(client: &Client) {
    match tokio::time::timeout(UNBIND_WAIT, client.unbind()).await {
        Ok(Ok(())) => tracing::info!(target: TARGET, "SMPP session unbound"),
        Ok(Err(e)) => tracing::warn!(target: TARGET, error = %e, "unbind failed"),
        Err(_) => tracing::warn!(target: TARGET, "no unbind_resp in time"),
    }
    client.close().await.ok();
    tokio::time::timeout(UNBIND_WAIT, client.closed())
        .await
        .ok();
}
