//! Export passes that outlive the reconcile that started them.
//!
//! A pass runs every bound sink with its retries, and a hanging sink can take minutes. The
//! reconcile that starts a pass waits for it only for a short budget; past that it leaves the
//! pass running here and frees its reconcile slot, so one slow sink never delays other
//! inventories. The next reconcile of the same inventory picks the finished pass up (or looks
//! again later). Dropping the set, at the end of a leadership term, aborts what still runs.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::task::JoinHandle;

/// Running passes by inventory key (`namespace/name`).
#[derive(Debug)]
pub(crate) struct Passes<T> {
    running: Mutex<HashMap<String, JoinHandle<T>>>,
}

impl<T> Default for Passes<T> {
    fn default() -> Self {
        Self {
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Passes<T> {
    /// Takes the pass of `key`, if one was left running.
    pub(crate) fn take(&self, key: &str) -> Option<JoinHandle<T>> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
    }

    /// Leaves `pass` running for `key`.
    pub(crate) fn keep(&self, key: String, pass: JoinHandle<T>) {
        if let Some(previous) = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, pass)
        {
            previous.abort();
        }
    }

    /// Aborts the pass of `key` (the inventory is being deleted).
    pub(crate) fn abort(&self, key: &str) {
        if let Some(pass) = self.take(key) {
            pass.abort();
        }
    }
}

impl<T> Drop for Passes<T> {
    fn drop(&mut self) {
        for (_, pass) in self
            .running
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            pass.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn dropping_the_set_aborts_what_runs() {
        let passes = Passes::default();
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        passes.keep(
            "a/b".into(),
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                let _ = done.send(());
            }),
        );
        drop(passes);
        assert!(finished.await.is_err(), "the pass was aborted, never finished");
    }

    #[tokio::test]
    async fn a_kept_pass_is_taken_once() {
        let passes = Passes::default();
        passes.keep("a/b".into(), tokio::spawn(async { 7 }));
        let pass = passes.take("a/b").expect("kept");
        assert_eq!(pass.await.expect("joined"), 7);
        assert!(passes.take("a/b").is_none());
    }
}
