//! Export coalescing (decision X2), as a pure component with an injected clock.
//!
//! A sink is exported to when its content (checksum) or the inventory's generation changed since
//! the last successful export to it. Unchanged content is re-sent once per interval; an interval
//! of zero means "on change only". State can be seeded from what the operator persisted in
//! `status.sinkExports[]` (decision X7), so a restart does not re-export unchanged content.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::model::ContentChecksum;

/// When nothing is pending on a sink with interval `0s`, check again after this long.
pub(crate) const WATCHDOG: Duration = Duration::from_secs(30);
/// Earliest re-check after a debounce, so a sub-second interval cannot cause a busy loop.
pub(crate) const MIN_WAKEUP: Duration = Duration::from_secs(1);
/// Entries idle for longer than this are forgotten by [`Coalescer::evict_idle`].
pub(crate) const IDLE_EVICTION: Duration = Duration::from_secs(48 * 3600);

/// What was last delivered to one sink for one inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoalesceState {
    /// When the last successful export finished.
    pub last_export: Timestamp,
    /// Checksum of the content it delivered (computed only when someone reads the digest).
    pub last_checksum: ContentChecksum,
    /// Inventory generation it delivered.
    pub last_generation: i64,
}

/// The outcome of [`Coalescer::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoalesceDecision {
    /// Export now.
    Export(ExportReason),
    /// Skip; nothing needs sending before `next_due` has passed.
    Debounce {
        /// Time until the unchanged content is due again (or until the watchdog for `0s`).
        next_due: Duration,
    },
}

/// Why an export is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportReason {
    /// Nothing is known about this sink yet.
    NoState,
    /// The content checksum differs.
    ContentChanged,
    /// The inventory spec changed (generation differs).
    GenerationChanged,
    /// Content is unchanged but the interval has passed since the last export.
    IntervalElapsed,
}

/// Coalescing state for many (inventory, sink) keys.
#[derive(Debug, Clone)]
pub struct Coalescer<K> {
    states: HashMap<K, CoalesceState>,
}

impl<K> Default for Coalescer<K> {
    fn default() -> Self {
        Self {
            states: HashMap::new(),
        }
    }
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    let signed: SignedDuration = now.duration_since(since);
    // A clock that went backwards counts as no time elapsed.
    Duration::try_from(signed).unwrap_or(Duration::ZERO)
}

impl<K: Eq + Hash + Clone> Coalescer<K> {
    /// An empty coalescer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Seeds the state of `key`, e.g. from `status.sinkExports[]` after a restart.
    pub fn seed(&mut self, key: K, state: CoalesceState) {
        self.states.insert(key, state);
    }

    /// The state of `key`, if known.
    pub fn state(&self, key: &K) -> Option<&CoalesceState> {
        self.states.get(key)
    }

    /// Decides whether `key` needs an export of content `checksum` at `generation`, given its
    /// effective `interval` and the current time. Content is compared with
    /// [`ContentChecksum::same_content`], which hashes nothing when both sides are snapshots.
    pub fn decide(
        &self,
        key: &K,
        checksum: &ContentChecksum,
        generation: i64,
        interval: Duration,
        now: Timestamp,
    ) -> CoalesceDecision {
        let Some(state) = self.states.get(key) else {
            return CoalesceDecision::Export(ExportReason::NoState);
        };
        if state.last_generation != generation {
            return CoalesceDecision::Export(ExportReason::GenerationChanged);
        }
        if !state.last_checksum.same_content(checksum) {
            return CoalesceDecision::Export(ExportReason::ContentChanged);
        }
        if interval.is_zero() {
            return CoalesceDecision::Debounce { next_due: WATCHDOG };
        }
        let since = elapsed(state.last_export, now);
        if since >= interval {
            CoalesceDecision::Export(ExportReason::IntervalElapsed)
        } else {
            CoalesceDecision::Debounce {
                next_due: (interval - since).max(MIN_WAKEUP),
            }
        }
    }

    /// Records a successful export (only successes are recorded, so a failed sink is retried on
    /// the next pass whatever its interval).
    pub fn record(&mut self, key: K, checksum: ContentChecksum, generation: i64, now: Timestamp) {
        self.states.insert(
            key,
            CoalesceState {
                last_export: now,
                last_checksum: checksum,
                last_generation: generation,
            },
        );
    }

    /// Forgets `key` (its sink was unbound or the inventory deleted).
    pub fn forget(&mut self, key: &K) {
        self.states.remove(key);
    }

    /// When `key` should be looked at again: 1 s without state, the watchdog for interval `0s`,
    /// otherwise the time left of the interval, at least 1 s.
    pub fn next_due(&self, key: &K, interval: Duration, now: Timestamp) -> Duration {
        match self.states.get(key) {
            None => MIN_WAKEUP,
            Some(_) if interval.is_zero() => WATCHDOG,
            Some(state) => interval
                .saturating_sub(elapsed(state.last_export, now))
                .max(MIN_WAKEUP),
        }
    }

    /// Keeps only the keys for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.states.retain(|key, _| keep(key));
    }

    /// Drops entries whose last export is more than 48 hours old; returns how many.
    pub fn evict_idle(&mut self, now: Timestamp) -> usize {
        let before = self.states.len();
        self.states
            .retain(|_, state| elapsed(state.last_export, now) <= IDLE_EVICTION);
        before - self.states.len()
    }

    /// Number of tracked keys.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Checksum;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn sum(s: &str) -> ContentChecksum {
        Checksum::of_bytes(s.as_bytes()).into()
    }

    const MIN30: Duration = Duration::from_secs(30);

    #[test]
    fn first_export_then_debounce_then_interval() {
        let mut c = Coalescer::new();
        let key = "ns/inv\0snapshot/git";
        assert_eq!(
            c.decide(&key, &sum("a"), 1, MIN30, at(0)),
            CoalesceDecision::Export(ExportReason::NoState)
        );
        assert_eq!(c.next_due(&key, MIN30, at(0)), Duration::from_secs(1));
        c.record(key, sum("a"), 1, at(0));
        assert_eq!(
            c.decide(&key, &sum("a"), 1, MIN30, at(10)),
            CoalesceDecision::Debounce {
                next_due: Duration::from_secs(20)
            }
        );
        assert_eq!(c.next_due(&key, MIN30, at(10)), Duration::from_secs(20));
        assert_eq!(
            c.decide(&key, &sum("a"), 1, MIN30, at(30)),
            CoalesceDecision::Export(ExportReason::IntervalElapsed)
        );
    }

    #[test]
    fn changes_export_at_once_whatever_the_interval() {
        let mut c = Coalescer::new();
        c.record("k", sum("a"), 1, at(0));
        let hour = Duration::from_secs(3600);
        assert_eq!(
            c.decide(&"k", &sum("b"), 1, hour, at(1)),
            CoalesceDecision::Export(ExportReason::ContentChanged)
        );
        assert_eq!(
            c.decide(&"k", &sum("a"), 2, hour, at(1)),
            CoalesceDecision::Export(ExportReason::GenerationChanged)
        );
    }

    #[test]
    fn zero_interval_means_on_change_only_with_watchdog() {
        let mut c = Coalescer::new();
        c.record("k", sum("a"), 1, at(0));
        for later in [1, 100, 100_000] {
            assert_eq!(
                c.decide(&"k", &sum("a"), 1, Duration::ZERO, at(later)),
                CoalesceDecision::Debounce { next_due: WATCHDOG }
            );
        }
        assert_eq!(c.next_due(&"k", Duration::ZERO, at(5)), WATCHDOG);
    }

    #[test]
    fn sub_second_remaining_time_is_floored() {
        let mut c = Coalescer::new();
        c.record("k", sum("a"), 1, at(0));
        let interval = Duration::from_millis(30_500);
        assert_eq!(
            c.decide(&"k", &sum("a"), 1, interval, at(30)),
            CoalesceDecision::Debounce { next_due: MIN_WAKEUP }
        );
    }

    #[test]
    fn seeded_state_suppresses_the_first_export_after_restart() {
        let mut c = Coalescer::new();
        c.seed(
            "k",
            CoalesceState {
                last_export: at(0),
                last_checksum: sum("a"),
                last_generation: 3,
            },
        );
        assert!(matches!(
            c.decide(&"k", &sum("a"), 3, MIN30, at(5)),
            CoalesceDecision::Debounce { .. }
        ));
        assert_eq!(
            c.decide(&"k", &sum("b"), 3, MIN30, at(5)),
            CoalesceDecision::Export(ExportReason::ContentChanged)
        );
    }

    #[test]
    fn clock_going_backwards_is_not_an_elapsed_interval() {
        let mut c = Coalescer::new();
        c.record("k", sum("a"), 1, at(100));
        assert_eq!(
            c.decide(&"k", &sum("a"), 1, MIN30, at(50)),
            CoalesceDecision::Debounce { next_due: MIN30 }
        );
    }

    #[test]
    fn idle_entries_are_evicted_and_forget_works() {
        let mut c = Coalescer::new();
        c.record("old", sum("a"), 1, at(0));
        c.record("new", sum("a"), 1, at(48 * 3600));
        assert_eq!(c.evict_idle(at(48 * 3600 + 1)), 1);
        assert!(c.state(&"old").is_none());
        c.forget(&"new");
        assert!(c.is_empty());
    }
}
