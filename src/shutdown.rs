//! Orderly shutdown, owned in one place: one [`CancellationToken`] tree and one
//! [`TaskTracker`].
//!
//! The tree has a root that lives as long as the application and a `draining` child that a
//! signal or [`StopHandle::stop`] cancels. Readiness reads `draining`, so it turns false the
//! moment a stop is requested; the embedded simulator holds another child of the root, so it
//! stops only when the whole sequence is done. The sequence, in [`Shutdown::run`]:
//!
//! 1. a stop is requested: `/health/ready` answers 503 with `"draining": true`;
//! 2. `http.shutdown_grace` passes while the API still serves, so load balancers that poll
//!    readiness stop sending before we stop accepting;
//! 3. the API stops accepting and finishes its in-flight requests (their SMS still go out);
//! 4. the SMPP sessions unbind;
//! 5. the admin listener stops, the root token is cancelled (stopping the simulator) and
//!    every tracked task is awaited.

use std::time::Duration;

use actix_web::dev::Server;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::smpp::SmppRouter;
use crate::smsc_sim::{self, SimSettings, SmscHandle};

const TARGET: &str = "otp_gateway::shutdown";

/// Requests an orderly shutdown of a running application; cheap to clone.
#[derive(Clone, Debug)]
pub struct StopHandle(CancellationToken);

impl StopHandle {
    /// Requests an orderly shutdown (idempotent).
    pub fn stop(&self) {
        self.0.cancel();
    }
}

/// The shutdown state of one application: its token tree, its task tracker and its grace.
#[derive(Debug)]
pub struct Shutdown {
    root: CancellationToken,
    draining: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
    /// Registered when the application is built, before the banner says it is up: a SIGTERM
    /// that follows the banner at once must start the orderly stop, not kill the process.
    signals: std::sync::Mutex<Option<Signals>>,
}

/// SIGTERM and SIGINT handlers, registered on creation.
#[derive(Debug)]
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn listen() -> Option<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Some(Signals {
            term: signal(SignalKind::terminate()).ok()?,
            interrupt: signal(SignalKind::interrupt()).ok()?,
        })
    }

    #[cfg(not(unix))]
    fn listen() -> Option<Signals> {
        None
    }

    /// Resolves on the first of the registered signals; without them, as [`signal`] does.
    async fn wait(signals: Option<Signals>) {
        #[cfg(unix)]
        if let Some(mut s) = signals {
            tokio::select! {
                _ = s.term.recv() => {}
                _ = s.interrupt.recv() => {}
            }
            return;
        }
        #[cfg(not(unix))]
        let _ = signals;
        signal().await;
    }
}

/// What [`Shutdown::run`] serves and then stops, in order.
pub(crate) struct Services {
    pub(crate) api: Server,
    pub(crate) admin: Server,
    pub(crate) smpp: SmppRouter,
    pub(crate) simulator: Option<SmscHandle>,
}

impl Shutdown {
    /// A fresh tree; `grace` is how long readiness reports draining before the API stops.
    pub fn new(grace: Duration) -> Shutdown {
        let root = CancellationToken::new();
        Shutdown {
            draining: root.child_token(),
            root,
            tracker: TaskTracker::new(),
            grace,
            signals: std::sync::Mutex::new(Signals::listen()),
        }
    }

    /// Cancelled once a stop was requested; the admin readiness check reads it.
    pub fn draining(&self) -> CancellationToken {
        self.draining.clone()
    }

    /// The root of the tree: long-lived services (the SMPP pools) take child tokens of it, so
    /// they keep working while the application drains and stop with the last step.
    pub fn root(&self) -> &CancellationToken {
        &self.root
    }

    /// A handle that requests the shutdown.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.draining.clone())
    }

    /// Starts the embedded simulator on a child of the root token, so it outlives draining
    /// and stops with the last step.
    pub async fn start_simulator(&self, settings: SimSettings) -> std::io::Result<SmscHandle> {
        smsc_sim::start_with_token(settings, self.root.child_token()).await
    }

    /// Waits for SIGINT/SIGTERM or [`StopHandle::stop`], marks the application draining,
    /// then waits out the grace period.
    pub async fn drain(&self) {
        let signals = crate::sync::lock(&self.signals).take();
        tokio::select! {
            () = Signals::wait(signals) => tracing::info!(target: TARGET, "signal received, shutting down"),
            () = self.draining.cancelled() => tracing::info!(target: TARGET, "stop requested"),
        }
        self.draining.cancel();
        tracing::info!(
            target: TARGET,
            grace = %humantime::format_duration(self.grace),
            "draining: readiness reports 503 while the API keeps serving"
        );
        tokio::time::sleep(self.grace).await;
    }

    /// Serves until a stop is requested, then runs the whole sequence (see the module
    /// documentation). Returns once every tracked task has ended.
    pub(crate) async fn run(self, services: Services) -> anyhow::Result<()> {
        let Services {
            api,
            admin,
            smpp,
            simulator,
        } = services;
        let api_handle = api.handle();
        let admin_handle = admin.handle();
        let api_task = self.tracker.spawn(api);
        let admin_task = self.tracker.spawn(admin);
        // Everything the sequence waits for is spawned; wait() may complete once they end.
        self.tracker.close();

        self.drain().await;
        tracing::info!(target: TARGET, "stopping the API: no new connections, draining in-flight requests");
        api_handle.stop(true).await;
        log_server_end("API", api_task.await);
        smpp.shutdown().await;
        admin_handle.stop(true).await;
        log_server_end("admin", admin_task.await);
        self.root.cancel();
        if let Some(sim) = simulator {
            sim.stop().await;
        }
        self.tracker.wait().await;
        tracing::info!(target: TARGET, "stopped");
        Ok(())
    }
}

/// A server that failed is worth a log line, but shutdown goes on: the process is leaving.
fn log_server_end(name: &str, end: Result<std::io::Result<()>, tokio::task::JoinError>) {
    match end {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(target: TARGET, server = name, error = %e, "server ended with an error")
        }
        Err(e) => tracing::warn!(target: TARGET, server = name, error = %e, "server task failed"),
    }
}

/// Resolves on SIGINT or (on Unix) SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paused clock: the grace is measured exactly, without real sleeps.
    #[tokio::test(start_paused = true)]
    async fn readiness_drops_at_once_and_the_grace_holds_the_rest() {
        let grace = Duration::from_secs(5);
        let shutdown = Shutdown::new(grace);
        let draining = shutdown.draining();
        let stop = shutdown.stop_handle();
        let drain = tokio::spawn(async move { shutdown.drain().await });
        tokio::task::yield_now().await;
        assert!(!draining.is_cancelled(), "nobody asked to stop yet");

        stop.stop();
        assert!(draining.is_cancelled(), "readiness turns false at once");
        tokio::time::sleep(grace - Duration::from_millis(1)).await;
        assert!(!drain.is_finished(), "the grace is not over yet");
        let finished = tokio::time::timeout(Duration::from_millis(2), drain).await;
        assert!(
            matches!(finished, Ok(Ok(()))),
            "drain ends when the grace does"
        );
    }

    #[tokio::test]
    async fn the_simulator_stops_with_the_root_not_with_draining() {
        let shutdown = Shutdown::new(Duration::ZERO);
        let sim = shutdown
            .start_simulator(SimSettings {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                system_id: "esme".into(),
                password: "pw".into(),
                receipt_delay: Duration::from_millis(10),
                print_messages: false,
                inbox_capacity: 1,
                faults: smsc_sim::SimFaults::default(),
            })
            .await
            .expect("simulator starts");
        shutdown.stop_handle().stop();
        tokio::task::yield_now().await;
        assert!(
            tokio::net::TcpStream::connect(sim.local_addr())
                .await
                .is_ok(),
            "still accepting while draining"
        );
        shutdown.root.cancel();
        sim.stop().await;
        assert!(tokio::net::TcpStream::connect(sim.local_addr())
            .await
            .is_err());
    }
}
