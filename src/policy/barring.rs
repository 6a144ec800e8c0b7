//! Numbers with SMS barring (403 PHONE_NUMBER_BLOCKED), from three sources: the configuration
//! (`policy.blocked_numbers`), a file the operator's provisioning system writes
//! (`policy.blocked_numbers_file`, reloaded when it changes) and the admin API. Numbers are
//! kept as integers (an E.164 number is at most 15 digits), 8 bytes each in a hash set.
//!
//! A file that fails to parse is not applied: the previous list stays in force (a half-read
//! list would unbar numbers), and the error names the line, not its content.
//!
//! With the Redis store the admin list lives in Redis too (one set, `<prefix>:barred`): a
//! change answers once Redis holds it, and every replica re-reads the set at each reload tick,
//! so a number barred through one replica is barred on all within `blocked_numbers_reload`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, RwLock};
use std::time::SystemTime;

use crate::domain::PhoneNumber;
use crate::store::redis::RedisHandle;
use crate::store::StoreError;

static ADD: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new("return redis.call('SADD', KEYS[1], ARGV[1])"));
static REMOVE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new("return redis.call('SREM', KEYS[1], ARGV[1])"));
static MEMBERS: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new("return redis.call('SMEMBERS', KEYS[1])"));

const TARGET: &str = "otp_gateway::policy";

/// Where a barring comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BarSource {
    /// `policy.blocked_numbers`.
    Config,
    /// `policy.blocked_numbers_file`.
    File,
    /// Added through the admin API.
    Admin,
}

/// What identifies a version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// The barred numbers; shared by the number policy, the admin API and the file watcher.
#[derive(Debug, Default)]
pub struct Barring {
    configured: HashSet<u64>,
    file: RwLock<Arc<HashSet<u64>>>,
    admin: RwLock<HashSet<u64>>,
    path: Option<PathBuf>,
    stamp: Mutex<Option<Stamp>>,
    /// Where the admin list is shared with the other replicas (the Redis store).
    shared: OnceLock<RedisHandle>,
}

/// The number as an integer (its digits after `+`).
fn key(phone: &PhoneNumber) -> u64 {
    phone
        .as_e164()
        .bytes()
        .filter(u8::is_ascii_digit)
        .fold(0u64, |n, b| {
            n.wrapping_mul(10).wrapping_add(u64::from(b - b'0'))
        })
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// Reads a barring file: one E.164 number a line; blank lines and `#` comments are skipped.
pub fn read_file(path: &Path) -> Result<HashSet<u64>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut numbers = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let phone = PhoneNumber::parse(line).map_err(|_| {
            format!(
                "{} line {}: not an E.164 number (`+` and 5 to 15 digits)",
                path.display(),
                i + 1
            )
        })?;
        numbers.insert(key(&phone));
    }
    Ok(numbers)
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Barring {
    /// The configured numbers and, when `path` is given, the file's (read now: a file that
    /// cannot be read or parsed at start is a configuration error).
    pub fn new(configured: &[PhoneNumber], path: Option<&Path>) -> Result<Barring, String> {
        let barring = Barring {
            configured: configured.iter().map(key).collect(),
            path: path.map(Path::to_path_buf),
            ..Barring::default()
        };
        if barring.path.is_some() {
            barring.reload_if_changed()?;
        }
        Ok(barring)
    }

    /// Where the number's barring comes from, if it is barred.
    pub fn source(&self, phone: &PhoneNumber) -> Option<BarSource> {
        let n = key(phone);
        if self.configured.contains(&n) {
            Some(BarSource::Config)
        } else if read(&self.file).contains(&n) {
            Some(BarSource::File)
        } else if self
            .admin
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&n)
        {
            Some(BarSource::Admin)
        } else {
            None
        }
    }

    /// True when the number is barred by any source.
    pub fn is_barred(&self, phone: &PhoneNumber) -> bool {
        self.source(phone).is_some()
    }

    /// Shares the admin list through the store's Redis (before the watcher starts).
    pub(crate) fn share(&self, redis: RedisHandle) {
        let _ = self.shared.set(redis);
    }

    fn shared_key(redis: &RedisHandle) -> String {
        format!("{}:barred", redis.prefix())
    }

    /// Bars the number through the admin API; false when the admin list already had it.
    /// With a shared list the answer waits for Redis (503 when it cannot answer).
    pub async fn add(&self, phone: &PhoneNumber) -> Result<bool, StoreError> {
        let n = key(phone);
        let mut inserted = false;
        if let Some(redis) = self.shared.get() {
            let mut inv = ADD.prepare_invoke();
            inv.key(Self::shared_key(redis)).arg(n);
            inserted = redis.invoke::<i64>(inv).await? == 1;
        }
        let local = self
            .admin
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(n);
        tracing::info!(target: TARGET, %phone, "number barred by the admin API");
        Ok(inserted || local)
    }

    /// Lifts an admin barring; false when the admin list did not have it (a barring from the
    /// configuration or the file is lifted there).
    pub async fn remove(&self, phone: &PhoneNumber) -> Result<bool, StoreError> {
        let n = key(phone);
        let mut removed = false;
        if let Some(redis) = self.shared.get() {
            let mut inv = REMOVE.prepare_invoke();
            inv.key(Self::shared_key(redis)).arg(n);
            removed = redis.invoke::<i64>(inv).await? == 1;
        }
        let local = self
            .admin
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&n);
        if removed || local {
            tracing::info!(target: TARGET, %phone, "admin barring lifted");
        }
        Ok(removed || local)
    }

    /// Replaces the local admin list with the shared one (no-op without one).
    async fn refresh_shared(&self) -> Result<(), StoreError> {
        let Some(redis) = self.shared.get() else {
            return Ok(());
        };
        let mut inv = MEMBERS.prepare_invoke();
        inv.key(Self::shared_key(redis));
        let members: Vec<u64> = redis.invoke(inv).await?;
        *self.admin.write().unwrap_or_else(|p| p.into_inner()) = members.into_iter().collect();
        Ok(())
    }

    /// Numbers barred by each source: (config, file, admin).
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.configured.len(),
            read(&self.file).len(),
            self.admin.read().unwrap_or_else(|p| p.into_inner()).len(),
        )
    }

    /// Re-reads the file when its modification time or size changed: Ok(true) when a new list
    /// is in force, Ok(false) when nothing changed (or no file is configured), Err when the
    /// file could not be read or parsed (the previous list stays).
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let now = stamp(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut last = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if *last == Some(now) {
            return Ok(false);
        }
        let numbers = read_file(path)?;
        let count = numbers.len();
        *self.file.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(numbers);
        *last = Some(now);
        tracing::info!(target: TARGET, numbers = count, file = %path.display(), "barring file loaded");
        Ok(true)
    }

    /// Re-reads the file now, changed or not (the admin API's policy reload): Ok(Some(count))
    /// with the numbers now in force from it, Ok(None) when no file is configured, Err when it
    /// could not be read or parsed (the previous list stays).
    pub fn reload_now(&self) -> Result<Option<usize>, String> {
        if self.path.is_none() {
            return Ok(None);
        }
        *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.reload_if_changed()?;
        Ok(Some(read(&self.file).len()))
    }

    /// Checks the file (and re-reads the shared admin list) every `every` until `stop`; a file
    /// that went bad is logged at each change and the previous list stays in force, as does
    /// the last admin list read when Redis cannot answer.
    pub async fn watch(
        self: Arc<Barring>,
        every: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        if self.path.is_none() && self.shared.get().is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.reload_if_changed() {
                tracing::error!(target: TARGET, error = %e, "barring file not reloaded; the previous list stays in force");
            }
            if let Err(e) = self.refresh_shared().await {
                tracing::warn!(target: TARGET, error = %e, "shared admin barrings not re-read; the last list stays in force");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn n(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s).unwrap()
    }

    #[test]
    fn the_file_is_reloaded_when_it_changes_and_a_bad_one_keeps_the_old_list() {
        let dir = std::env::temp_dir().join(format!("otpgw-barring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("barred.txt");
        std::fs::write(
            &file,
            "# provisioning export\n+34611111111\n\n+34622222222  # fraud\n",
        )
        .unwrap();
        let b = Barring::new(&[n("+34600000009")], Some(&file)).unwrap();
        assert_eq!(b.source(&n("+34611111111")), Some(BarSource::File));
        assert_eq!(b.source(&n("+34622222222")), Some(BarSource::File));
        assert_eq!(b.source(&n("+34600000009")), Some(BarSource::Config));
        assert_eq!(b.source(&n("+34633333333")), None);
        assert!(!b.reload_if_changed().unwrap(), "unchanged");

        // A new version (another size) replaces the list.
        std::fs::write(&file, "+34633333333\n").unwrap();
        assert!(b.reload_if_changed().unwrap());
        assert!(b.is_barred(&n("+34633333333")));
        assert!(!b.is_barred(&n("+34611111111")));

        // A broken version is refused as a whole, naming the line only.
        std::fs::write(&file, "+34644444444\n+34 655 secret\n").unwrap();
        let err = b.reload_if_changed().unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("655"), "the line's content stays out: {err}");
        assert!(b.is_barred(&n("+34633333333")), "the previous list stays");
        assert!(!b.is_barred(&n("+34644444444")));

        // A file that is bad at start is a configuration error.
        assert!(Barring::new(&[], Some(&file)).is_err());
    }

    #[tokio::test]
    async fn admin_barrings_add_and_lift_without_touching_other_sources() {
        let b = Barring::new(&[n("+34600000009")], None).unwrap();
        assert!(b.add(&n("+34611111111")).await.unwrap());
        assert!(!b.add(&n("+34611111111")).await.unwrap());
        assert_eq!(b.source(&n("+34611111111")), Some(BarSource::Admin));
        assert!(
            !b.remove(&n("+34600000009")).await.unwrap(),
            "a configured barring is lifted in the config"
        );
        assert!(b.is_barred(&n("+34600000009")));
        assert!(b.remove(&n("+34611111111")).await.unwrap());
        assert!(!b.is_barred(&n("+34611111111")));
        assert_eq!(b.counts(), (1, 0, 0));
    }
}
