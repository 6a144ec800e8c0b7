//! Per-bind rate limiter counting segments (not messages), so a concatenated
//! message never pushes a bind over what the operator granted.
//!
//! A classic token bucket of capacity `max_tps` refilled at `max_tps`/s lets
//! through up to twice that in one second (a full bucket plus the refill).
//! Operators check "at most N in any one-second window", so this keeps the
//! send times of the last `max_tps` segments and schedules each new one no
//! earlier than one [`PERIOD`] after the `max_tps`-th previous one.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The window the operator counts in, plus a margin that absorbs timer
/// lateness: a segment sent a few ms after its planned time must not make
/// a later one land inside the SMSC's one-second window.
pub(super) const PERIOD: Duration = Duration::from_millis(1025);

/// Sliding-window limiter: at most `max` segments in any [`PERIOD`].
#[derive(Debug)]
pub(super) struct SegmentLimiter {
    max: usize,
    /// Planned send times still inside the window, oldest first.
    sent: VecDeque<Instant>,
}

impl SegmentLimiter {
    /// `None` when `max_tps` is 0, i.e. unlimited.
    pub(super) fn new(max_tps: u32) -> Option<SegmentLimiter> {
        let max = usize::try_from(max_tps).ok().filter(|m| *m > 0)?;
        Some(SegmentLimiter {
            max,
            sent: VecDeque::with_capacity(max.min(4096)),
        })
    }

    fn forget_old(&mut self, now: Instant) {
        while self.sent.front().is_some_and(|t| *t + PERIOD <= now) {
            self.sent.pop_front();
        }
    }

    /// Send times for `n` segments, the first not before `now`, without
    /// recording them.
    pub(super) fn plan(&mut self, n: usize, now: Instant) -> Vec<Instant> {
        self.forget_old(now);
        let mut planned: Vec<Instant> = Vec::with_capacity(n);
        let mut earliest = self.sent.back().map_or(now, |t| (*t).max(now));
        for _ in 0..n {
            let total = self.sent.len() + planned.len();
            if total >= self.max {
                // The max-th most recent send (recorded or planned) bounds this one.
                let idx = total - self.max;
                let anchor = match self.sent.get(idx) {
                    Some(t) => *t,
                    None => planned[idx - self.sent.len()],
                };
                earliest = earliest.max(anchor + PERIOD);
            }
            planned.push(earliest);
        }
        planned
    }

    /// Records planned send times (from [`SegmentLimiter::plan`]).
    pub(super) fn commit(&mut self, times: &[Instant]) {
        self.sent.extend(times.iter().copied());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn count_in_any_window(times: &[Instant]) -> usize {
        let one_second = Duration::from_secs(1);
        times
            .iter()
            .map(|start| {
                times
                    .iter()
                    .filter(|t| **t >= *start && **t < *start + one_second)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_max_in_any_second() {
        let mut l = SegmentLimiter::new(5).unwrap();
        let mut all = Vec::new();
        for i in 0..40u64 {
            // Irregular arrivals, messages of 1 to 3 segments.
            tokio::time::advance(Duration::from_millis(37 * (i % 4))).await;
            let plan = l.plan(usize::try_from(i % 3 + 1).unwrap(), Instant::now());
            l.commit(&plan);
            all.extend(plan);
        }
        assert!(all.windows(2).all(|w| w[0] <= w[1]), "monotonic");
        assert_eq!(count_in_any_window(&all), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn bursts_up_to_the_grant_go_at_once() {
        let mut l = SegmentLimiter::new(3).unwrap();
        let now = Instant::now();
        let plan = l.plan(3, now);
        assert!(plan.iter().all(|t| *t == now));
        l.commit(&plan);
        let next = l.plan(2, now);
        assert_eq!(next, vec![now + PERIOD, now + PERIOD]);
        // Not committed: planning again gives the same answer.
        assert_eq!(l.plan(2, now), next);
        tokio::time::advance(Duration::from_secs(2)).await;
        let later = Instant::now();
        assert_eq!(l.plan(3, later), vec![later; 3]);
    }

    #[test]
    fn zero_means_unlimited() {
        assert!(SegmentLimiter::new(0).is_none());
    }
}
