//! The pumping counters of one process: per prefix a map of window slices, the prefixes
//! cooling down, the admin pins, and which prefix each live authenticationId was sent to.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::RangeInclusive;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{Check, Cooling, Event, Thresholds, Verdict};

/// Ids remembered at most (a live code each); beyond, the oldest validations go uncounted,
/// which can only make a prefix look worse, never hide pumping.
const MAX_REMEMBERED: u64 = 1_000_000;

#[derive(Default)]
struct State {
    /// Per prefix: slice number → (sent, validated).
    windows: HashMap<String, BTreeMap<u64, (u64, u64)>>,
    cooling: HashMap<String, Cooling>,
    pins: HashSet<String>,
}

pub(super) struct MemoryPumping {
    state: Mutex<State>,
    /// authenticationId → prefix, for the code's lifetime.
    sent_to: moka::sync::Cache<String, String>,
}

impl MemoryPumping {
    pub(super) fn new(code_ttl: Duration) -> MemoryPumping {
        MemoryPumping {
            state: Mutex::new(State::default()),
            sent_to: moka::sync::Cache::builder()
                .max_capacity(MAX_REMEMBERED)
                .time_to_live(code_ttl)
                .build(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn check(
        &self,
        prefix: &str,
        now_ms: u64,
        slices: RangeInclusive<u64>,
        limits: Thresholds,
    ) -> Check {
        let mut st = self.state();
        if st.pins.contains(prefix) {
            return Check {
                verdict: Verdict::Pinned,
                sent: 0,
                validated: 0,
                until_ms: 0,
                cooling: 0,
            };
        }
        st.cooling.retain(|_, c| c.until_ms > now_ms);
        let count = st.cooling.len() as u64;
        if let Some(c) = st.cooling.get(prefix) {
            return Check {
                verdict: Verdict::Cooling,
                sent: c.sent,
                validated: c.validated,
                until_ms: c.until_ms,
                cooling: count,
            };
        }
        let first = *slices.start();
        let (sent, validated) = match st.windows.get_mut(prefix) {
            None => (0, 0),
            Some(w) => {
                // Slices behind the window are never read again.
                *w = w.split_off(&first);
                w.range(slices)
                    .fold((0, 0), |(s, v), (_, (ds, dv))| (s + ds, v + dv))
            }
        };
        if !limits.trips(sent, validated) {
            return Check {
                verdict: Verdict::Open,
                sent,
                validated,
                until_ms: 0,
                cooling: count,
            };
        }
        st.windows.remove(prefix);
        st.cooling.insert(
            prefix.to_owned(),
            Cooling {
                prefix: prefix.to_owned(),
                until_ms: limits.until_ms,
                sent,
                validated,
            },
        );
        Check {
            verdict: Verdict::Tripped,
            sent,
            validated,
            until_ms: limits.until_ms,
            cooling: count + 1,
        }
    }

    pub(super) fn record(&self, prefix: &str, event: Event, slice: u64) {
        let mut st = self.state();
        let counts = st
            .windows
            .entry(prefix.to_owned())
            .or_default()
            .entry(slice)
            .or_default();
        match event {
            Event::Sent => counts.0 += 1,
            Event::Validated => counts.1 += 1,
        }
    }

    pub(super) fn remember(&self, id: &str, prefix: &str) {
        self.sent_to.insert(id.to_owned(), prefix.to_owned());
    }

    pub(super) fn take(&self, id: &str) -> Option<String> {
        self.sent_to.remove(id)
    }

    pub(super) fn status(&self, now_ms: u64) -> (Vec<Cooling>, Vec<String>) {
        let mut st = self.state();
        st.cooling.retain(|_, c| c.until_ms > now_ms);
        (
            st.cooling.values().cloned().collect(),
            st.pins.iter().cloned().collect(),
        )
    }

    pub(super) fn lift(&self, prefix: &str) -> bool {
        self.state().cooling.remove(prefix).is_some()
    }

    /// Adds (`on`) or removes a pin: true when that changed something.
    pub(super) fn pin(&self, prefix: &str, on: bool) -> bool {
        let mut st = self.state();
        if on {
            st.pins.insert(prefix.to_owned())
        } else {
            st.pins.remove(prefix)
        }
    }
}
