//! One global log capture for this test binary (a process has one global subscriber): tests
//! that read what the gateway logged call [`start`] and tell their own lines apart by what
//! only they produce (an x-correlator, a number). Only the targets those tests read are
//! captured, so the other tests pay nothing for it.

use std::io::Write;
use std::sync::{Arc, LazyLock, Mutex};

use tracing_subscriber::fmt::MakeWriter;

static LOG: LazyLock<Arc<Mutex<Vec<u8>>>> = LazyLock::new(|| {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let filter = std::env::var("TEST_LOG").unwrap_or_else(|_| {
        "otp_gateway::api=info,otp_gateway::otp=warn,otp_gateway::auth=info,otp_gateway::policy=info".into()
    });
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Capture(Arc::clone(&buffer)))
        .finish();
    // Only this module installs a global subscriber in this binary.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    buffer
});

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// Installs the capture (idempotent).
pub fn start() {
    LazyLock::force(&LOG);
}

/// Everything captured so far.
pub fn text() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned()
}
