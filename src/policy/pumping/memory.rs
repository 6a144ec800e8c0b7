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
/// Prefixes with counts before a new one makes the map drop those with nothing in the window
/// (prefixes that are never checked again would otherwise stay forever).
const PRUNE_ABOVE: usize = 10_000;

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
                w.retain(|slice, _| *slice >= first);
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

    /// Counts `event` in `slice`; `oldest` is the first slice the window still reads.
    pub(super) fn record(&self, prefix: &str, event: Event, slice: u64, oldest: u64) {
        let mut st = self.state();
        if st.windows.len() >= PRUNE_ABOVE && !st.windows.contains_key(prefix) {
            st.windows
                .retain(|_, w| w.last_key_value().is_some_and(|(s, _)| *s >= oldest));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_with_nothing_left_in_the_window_are_dropped_once_many_are_tracked() {
        let m = MemoryPumping::new(Duration::from_secs(60));
        for i in 0..PRUNE_ABOVE {
            m.record(&format!("+{i}"), Event::Sent, 0, 0);
        }
        m.record("+1", Event::Sent, 9, 5);
        assert_eq!(
            m.state().windows.len(),
            PRUNE_ABOVE,
            "a known prefix prunes nothing"
        );
        m.record("+99999999", Event::Sent, 9, 5);
        let st = m.state();
        assert_eq!(
            st.windows.len(),
            2,
            "only the prefixes counted in the window stay"
        );
        assert!(st.windows.contains_key("+1") && st.windows.contains_key("+99999999"));
    }
}
