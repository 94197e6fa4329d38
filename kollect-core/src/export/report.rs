//! Outcomes of an export pass and the conditions they imply (decision A12), as
//! plain data the operator turns into status.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::binding::BindingKey;
use crate::GoDuration;
use crate::api::{condition_types as types, reasons};
use crate::error::ErrorClass;
use crate::middleware::coalesce::WATCHDOG;
use crate::model::ContentChecksum;
use crate::sink::SinkError;

/// How soon a binding whose export failed transiently (after the in-process retries) is tried
/// again, unless its interval is shorter.
pub const FAILURE_RETRY: Duration = Duration::from_secs(10);

/// What happened to one binding in a pass.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SinkOutcome {
    /// The content was delivered.
    Exported {
        /// The checksum recorded for coalescing (partitions checksum for snapshot sinks; for the
        /// others the content fingerprint, computed when first read).
        checksum: ContentChecksum,
        /// Number of parts sent.
        parts: u32,
        /// Bytes the sink reported writing.
        bytes: u64,
        /// Whether the sink was handed a delta.
        with_delta: bool,
    },
    /// Nothing to send: the content is unchanged and the interval has not passed.
    Debounced {
        /// When the binding is due again.
        next_due: Duration,
    },
    /// The export failed.
    Failed {
        /// Error class.
        class: ErrorClass,
        /// Credential-free message.
        message: String,
    },
}

/// A condition to write, without timestamps (the operator keeps `lastTransitionTime` stable when
/// status and reason do not change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionSpec {
    /// Condition type.
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: bool,
    /// Reason (one of [`crate::api::reasons`]).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl ConditionSpec {
    fn new(type_: &'static str, status: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// The pass outcome of one binding, with what `status.sinkExports[]` should show.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkReport {
    /// The binding.
    pub key: BindingKey,
    /// What happened.
    pub outcome: SinkOutcome,
    /// The binding's effective interval.
    pub interval: Duration,
    /// Last successful export (kept for debounced and failed bindings, decision A12).
    pub last_export: Option<Timestamp>,
    /// Checksum of the last successful export (reading the digest may hash the content once).
    pub last_checksum: Option<ContentChecksum>,
}

impl SinkReport {
    /// The per-sink `Synced` condition of `status.sinkExports[]`.
    pub fn synced_condition(&self) -> ConditionSpec {
        match &self.outcome {
            SinkOutcome::Exported { .. } => {
                ConditionSpec::new(types::SYNCED, true, reasons::EXPORTED, "export completed")
            }
            // The message names the due time, not the time left, so that passes between two
            // exports leave the status untouched (decision A11).
            SinkOutcome::Debounced { .. } => {
                let interval = GoDuration::from_std(self.interval);
                let due = self
                    .last_export
                    .and_then(|last| last.checked_add(self.interval).ok());
                let message = match due {
                    _ if self.interval.is_zero() => {
                        format!("checksum unchanged; next export on change (interval {interval})")
                    }
                    Some(due) => format!(
                        "checksum unchanged; next export at {} (interval {interval})",
                        crate::model::format_exported_at(due)
                    ),
                    None => format!("checksum unchanged (interval {interval})"),
                };
                ConditionSpec::new(types::SYNCED, false, reasons::DEBOUNCED, message)
            }
            SinkOutcome::Failed { message, .. } => {
                ConditionSpec::new(types::SYNCED, false, reasons::EXPORT_FAILED, message.clone())
            }
        }
    }

    /// When this binding should be looked at again; `None` for terminal failures (wait for a
    /// change).
    pub fn requeue_after(&self) -> Option<Duration> {
        let interval_or_watchdog = if self.interval.is_zero() {
            WATCHDOG
        } else {
            self.interval
        };
        match &self.outcome {
            SinkOutcome::Exported { .. } => Some(interval_or_watchdog),
            SinkOutcome::Debounced { next_due } => Some(*next_due),
            SinkOutcome::Failed { class, .. } if *class == ErrorClass::Terminal => None,
            SinkOutcome::Failed { .. } => Some(interval_or_watchdog.min(FAILURE_RETRY)),
        }
    }
}

/// The outcome of an export pass over all bindings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExportReport {
    /// One report per binding, in binding order.
    pub sinks: Vec<SinkReport>,
    /// Rows in the exported snapshot.
    pub item_count: usize,
}

impl ExportReport {
    fn count(&self, pred: impl Fn(&SinkOutcome) -> bool) -> usize {
        self.sinks.iter().filter(|s| pred(&s.outcome)).count()
    }

    /// Bindings exported in this pass.
    pub fn exported(&self) -> usize {
        self.count(|o| matches!(o, SinkOutcome::Exported { .. }))
    }

    /// Bindings debounced in this pass.
    pub fn debounced(&self) -> usize {
        self.count(|o| matches!(o, SinkOutcome::Debounced { .. }))
    }

    /// Bindings that failed in this pass.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, SinkOutcome::Failed { .. }))
    }

    fn all_failures_terminal(&self) -> bool {
        self.sinks.iter().all(
            |s| !matches!(&s.outcome, SinkOutcome::Failed { class, .. } if *class != ErrorClass::Terminal),
        )
    }

    /// `Synced` when the inventory binds no sink: `True/NoExport`.
    pub fn no_sinks_condition() -> ConditionSpec {
        ConditionSpec::new(types::SYNCED, true, reasons::NO_EXPORT, "no sinks are bound")
    }

    /// The aggregate `Synced` condition.
    ///
    /// Debounced bindings already hold the current content, so they count as in sync (decision
    /// A12): an inventory whose sinks are all debounced is `Synced=True/Exported`, and a pass
    /// with exported and debounced bindings but no failure is `Synced=True` too.
    pub fn synced(&self) -> ConditionSpec {
        let (e, d, f) = (self.exported(), self.debounced(), self.failed());
        if f > 0 && e > 0 {
            return ConditionSpec::new(
                types::SYNCED,
                false,
                reasons::PARTIALLY_SYNCED,
                format!("{e}/{} sinks exported; {f} failed", e + f),
            );
        }
        if f > 0 {
            let reason = if self.all_failures_terminal() {
                reasons::EXPORT_TERMINAL
            } else {
                reasons::PROGRESSING
            };
            return ConditionSpec::new(types::SYNCED, false, reason, format!("{f} sink(s) failed export"));
        }
        let message = match (e, d) {
            (0, d) => format!("content unchanged; {d} sink(s) already up to date"),
            (e, 0) => format!("exported to {e} sink(s)"),
            (e, d) => format!("exported to {e} sink(s); {d} sink(s) already up to date"),
        };
        ConditionSpec::new(types::SYNCED, true, reasons::EXPORTED, message)
    }

    /// The `Ready` condition, or `None` when the pass leaves it unchanged (only failures).
    pub fn ready(&self) -> Option<ConditionSpec> {
        let (e, f) = (self.exported(), self.failed());
        let total = self.sinks.len();
        if f == 0 {
            Some(ConditionSpec::new(
                types::READY,
                true,
                reasons::EXPORTED,
                format!("exported {} item(s) across {total} sink(s)", self.item_count),
            ))
        } else if e > 0 {
            Some(ConditionSpec::new(
                types::READY,
                true,
                reasons::PARTIALLY_SYNCED,
                format!("exported {} item(s) to {e}/{total} sink(s)", self.item_count),
            ))
        } else {
            None
        }
    }

    /// `Degraded` after a total failure (nothing exported or debounced, something failed):
    /// `ExportTerminal` when every failure is terminal, `Progressing` otherwise. `None` means the
    /// export side is healthy.
    pub fn degraded(&self) -> Option<ConditionSpec> {
        if self.failed() == 0 || self.exported() > 0 || self.debounced() > 0 {
            return None;
        }
        let reason = if self.all_failures_terminal() {
            reasons::EXPORT_TERMINAL
        } else {
            reasons::PROGRESSING
        };
        Some(ConditionSpec::new(
            types::DEGRADED,
            true,
            reason,
            self.failure_messages(),
        ))
    }

    /// The post-export `SinkReachable` condition.
    pub fn sink_reachable(&self) -> ConditionSpec {
        if self.failed() == 0 {
            return ConditionSpec::new(
                types::SINK_REACHABLE,
                true,
                reasons::EXPORT_SUCCEEDED,
                "all bound sinks accepted the export",
            );
        }
        let reason = if self.all_failures_terminal() {
            reasons::EXPORT_TERMINAL
        } else {
            reasons::EXPORT_FAILED
        };
        ConditionSpec::new(types::SINK_REACHABLE, false, reason, self.failure_messages())
    }

    fn failure_messages(&self) -> String {
        self.sinks
            .iter()
            .filter_map(|s| match &s.outcome {
                SinkOutcome::Failed { message, .. } => Some(format!("{}: {message}", s.key.export_name())),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// When the inventory should be reconciled again: the earliest binding requeue, or `None`
    /// when every binding waits for a change.
    pub fn requeue_after(&self) -> Option<Duration> {
        self.sinks.iter().filter_map(SinkReport::requeue_after).min()
    }

    /// The latest successful export time over all bindings.
    pub fn last_export_time(&self) -> Option<Timestamp> {
        self.sinks.iter().filter_map(|s| s.last_export).max()
    }
}

/// The outcome of removing an inventory from its sinks.
#[derive(Debug, Clone, Default)]
pub struct RemoveReport {
    /// One result per binding.
    pub results: Vec<(BindingKey, Result<(), SinkError>)>,
}

impl RemoveReport {
    /// True when every sink removed the inventory's data.
    pub fn all_removed(&self) -> bool {
        self.results.iter().all(|(_, r)| r.is_ok())
    }

    /// True when some sink failed with a terminal error (the finalizer should not be retried
    /// automatically; `Degraded=True/CleanupTerminal`).
    pub fn has_terminal_failure(&self) -> bool {
        self.results
            .iter()
            .any(|(_, r)| r.as_ref().is_err_and(|e| e.class() == ErrorClass::Terminal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::SinkFamily;

    fn sink(name: &str, outcome: SinkOutcome) -> SinkReport {
        SinkReport {
            key: BindingKey::new(SinkFamily::Snapshot, name),
            outcome,
            interval: Duration::from_secs(30),
            last_export: None,
            last_checksum: None,
        }
    }

    fn exported() -> SinkOutcome {
        SinkOutcome::Exported {
            checksum: crate::model::Checksum::of_bytes(b"x").into(),
            parts: 1,
            bytes: 10,
            with_delta: false,
        }
    }

    fn debounced() -> SinkOutcome {
        SinkOutcome::Debounced {
            next_due: Duration::from_secs(12),
        }
    }

    fn failed(class: ErrorClass) -> SinkOutcome {
        SinkOutcome::Failed {
            class,
            message: "boom".into(),
        }
    }

    fn report(outcomes: Vec<SinkOutcome>) -> ExportReport {
        ExportReport {
            sinks: outcomes
                .into_iter()
                .enumerate()
                .map(|(i, o)| sink(&format!("s{i}"), o))
                .collect(),
            item_count: 7,
        }
    }

    fn synced(outcomes: Vec<SinkOutcome>) -> (bool, &'static str, String) {
        let c = report(outcomes).synced();
        (c.status, c.reason, c.message)
    }

    #[test]
    fn synced_condition_table() {
        use ErrorClass::*;
        assert_eq!(
            synced(vec![exported(), exported()]),
            (true, "Exported", "exported to 2 sink(s)".into())
        );
        assert_eq!(
            synced(vec![exported(), failed(Transient)]),
            (false, "PartiallySynced", "1/2 sinks exported; 1 failed".into())
        );
        assert_eq!(
            synced(vec![exported(), debounced(), failed(Terminal)]),
            (false, "PartiallySynced", "1/2 sinks exported; 1 failed".into())
        );
        assert_eq!(
            synced(vec![failed(Transient), failed(Terminal)]),
            (false, "Progressing", "2 sink(s) failed export".into())
        );
        assert_eq!(
            synced(vec![failed(Terminal)]),
            (false, "ExportTerminal", "1 sink(s) failed export".into())
        );
        assert_eq!(
            synced(vec![debounced(), failed(Transient)]),
            (false, "Progressing", "1 sink(s) failed export".into())
        );
        // Decision A12: debounced sinks are in sync.
        assert_eq!(
            synced(vec![debounced(), debounced()]),
            (
                true,
                "Exported",
                "content unchanged; 2 sink(s) already up to date".into()
            )
        );
        assert_eq!(
            synced(vec![exported(), debounced()]),
            (
                true,
                "Exported",
                "exported to 1 sink(s); 1 sink(s) already up to date".into()
            )
        );
        assert_eq!(ExportReport::no_sinks_condition().reason, "NoExport");
    }

    #[test]
    fn ready_degraded_and_reachable() {
        use ErrorClass::*;
        let all_ok = report(vec![exported(), debounced()]);
        assert_eq!(
            all_ok.ready().map(|c| (c.reason, c.message)),
            Some(("Exported", "exported 7 item(s) across 2 sink(s)".into()))
        );
        assert_eq!(all_ok.degraded(), None);
        assert_eq!(all_ok.sink_reachable().reason, "ExportSucceeded");
        let partial = report(vec![exported(), failed(Transient)]);
        assert_eq!(
            partial.ready().map(|c| (c.status, c.reason, c.message)),
            Some((
                true,
                "PartiallySynced",
                "exported 7 item(s) to 1/2 sink(s)".into()
            ))
        );
        assert_eq!(partial.degraded(), None);
        assert_eq!(partial.sink_reachable().reason, "ExportFailed");
        let down = report(vec![failed(Transient), failed(Terminal)]);
        assert_eq!(down.ready(), None, "Ready is left unchanged");
        let degraded = down.degraded().unwrap();
        assert_eq!(
            (degraded.reason, degraded.message.as_str()),
            ("Progressing", "snapshot/s0: boom; snapshot/s1: boom")
        );
        let terminal = report(vec![failed(Terminal)]);
        assert_eq!(terminal.degraded().map(|c| c.reason), Some("ExportTerminal"));
        assert_eq!(terminal.sink_reachable().reason, "ExportTerminal");
        assert_eq!(
            report(vec![debounced(), failed(Terminal)]).degraded(),
            None,
            "not a total failure"
        );
    }

    #[test]
    fn per_sink_conditions_and_requeue() {
        let d = SinkReport {
            last_export: Some("2026-01-01T00:00:00Z".parse().unwrap()),
            ..sink("git", debounced())
        };
        assert_eq!(
            d.synced_condition().message,
            "checksum unchanged; next export at 2026-01-01T00:00:30Z (interval 30s)"
        );
        let on_change = SinkReport {
            interval: Duration::ZERO,
            ..sink("git", debounced())
        };
        assert_eq!(
            on_change.synced_condition().message,
            "checksum unchanged; next export on change (interval 0s)"
        );
        assert_eq!(d.requeue_after(), Some(Duration::from_secs(12)));
        let e = sink("git", exported());
        assert_eq!(
            (e.synced_condition().reason, e.synced_condition().message.as_str()),
            ("Exported", "export completed")
        );
        assert_eq!(e.requeue_after(), Some(Duration::from_secs(30)));
        let zero = SinkReport {
            interval: Duration::ZERO,
            ..sink("git", exported())
        };
        assert_eq!(zero.requeue_after(), Some(WATCHDOG));
        assert_eq!(sink("git", failed(ErrorClass::Terminal)).requeue_after(), None);
        assert_eq!(
            sink("git", failed(ErrorClass::Transient)).requeue_after(),
            Some(FAILURE_RETRY)
        );
        let r = report(vec![exported(), debounced(), failed(ErrorClass::Terminal)]);
        assert_eq!(r.requeue_after(), Some(Duration::from_secs(12)));
        assert_eq!(report(vec![failed(ErrorClass::Terminal)]).requeue_after(), None);
    }
}
