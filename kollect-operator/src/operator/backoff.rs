//! `--reconcile-rate-limit`: failed reconciles of one object are retried after a delay that
//! doubles with each consecutive failure, from the base up to 300 times the base, and starts
//! over once a reconcile of the object succeeds. Without a base each controller keeps its own
//! fixed retry delay.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use kube::Resource;

use super::status::key;

/// The longest delay, as a multiple of the base.
const MAX_FACTOR: u32 = 300;

/// Consecutive failures per object.
#[derive(Debug, Default)]
pub(crate) struct FailureBackoff {
    base: Option<Duration>,
    failures: Mutex<HashMap<String, u32>>,
}

impl FailureBackoff {
    /// Backoff from `base`; zero keeps the controllers' fixed delays.
    pub(crate) fn new(base: Duration) -> Self {
        Self {
            base: Some(base).filter(|b| !b.is_zero()),
            failures: Mutex::default(),
        }
    }

    /// The delay before retrying `object` after a failure (`fixed` without a base).
    pub(crate) fn after_failure<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        fixed: Duration,
    ) -> Duration {
        let Some(base) = self.base else {
            return fixed;
        };
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let count = failures.entry(key(object)).or_insert(0);
        let factor = 2u32.saturating_pow(*count).min(MAX_FACTOR);
        *count = count.saturating_add(1);
        base.saturating_mul(factor)
    }

    /// Forgets the failures of `object` (its reconcile succeeded).
    pub(crate) fn succeeded<K: Resource<DynamicType = ()>>(&self, object: &K) {
        if self.base.is_some() {
            self.failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key(object));
        }
    }
}

#[cfg(test)]
mod tests {
    use kollect_core::api::v1alpha1::KollectTarget;

    use super::*;

    fn target(name: &str) -> KollectTarget {
        let mut target = KollectTarget::new(name, Default::default());
        target.metadata.namespace = Some("team".into());
        target
    }

    #[test]
    fn delays_double_up_to_three_hundred_times_the_base_and_reset_on_success() {
        let backoff = FailureBackoff::new(Duration::from_millis(10));
        let (a, b) = (target("a"), target("b"));
        let fixed = Duration::from_secs(5);
        let delays: Vec<u128> = (0..10)
            .map(|_| backoff.after_failure(&a, fixed).as_millis())
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3000]);
        assert_eq!(
            backoff.after_failure(&b, fixed),
            Duration::from_millis(10),
            "per object"
        );
        backoff.succeeded(&a);
        assert_eq!(backoff.after_failure(&a, fixed), Duration::from_millis(10));
    }

    #[test]
    fn without_a_base_the_fixed_delay_stays() {
        let backoff = FailureBackoff::new(Duration::ZERO);
        let fixed = Duration::from_secs(5);
        assert_eq!(backoff.after_failure(&target("a"), fixed), fixed);
        assert_eq!(backoff.after_failure(&target("a"), fixed), fixed);
    }
}
