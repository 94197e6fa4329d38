//! Behaviour of the export engine (kollect_core::export) over in-memory sinks, with tokio's
//! clock paused so that intervals, retries and the circuit breaker run deterministically.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kollect_core::api::v1alpha1::SinkFamily;
use kollect_core::error::ErrorClass;
use kollect_core::export::{Binding, BindingKey, InventoryExporter, SinkOutcome, StackConfig, build_stack};
use kollect_core::middleware::{ExportMetrics, RetryPolicy};
use kollect_core::model::{Row, SharedRow, Snapshot};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};
use kollect_testkit::conformance::sample_row;
use kollect_testkit::{MemorySink, Recorded};

fn inventory() -> InventoryRef {
    InventoryRef::namespaced("team-a", "apps")
}

fn snapshot(names: &[&str], version: i64) -> Snapshot {
    Snapshot::new(
        names
            .iter()
            .map(|n| sample_row(&inventory(), n, version))
            .collect::<Vec<Row>>(),
    )
}

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn later(secs: i64) -> Timestamp {
    t0().checked_add(SignedDuration::from_secs(secs)).unwrap()
}

fn binding(family: SinkFamily, name: &str, sink: Arc<dyn Sink>, interval: u64) -> Binding {
    Binding {
        key: BindingKey::new(family, name),
        sink,
        interval: Duration::from_secs(interval),
        ceiling: 1_572_864,
    }
}

fn exporter() -> InventoryExporter {
    InventoryExporter::new(inventory(), "KollectInventory", ExportMetrics::default())
}

fn outcome_kinds(report: &kollect_core::export::ExportReport) -> Vec<&'static str> {
    report
        .sinks
        .iter()
        .map(|s| match s.outcome {
            SinkOutcome::Exported { .. } => "exported",
            SinkOutcome::Debounced { .. } => "debounced",
            SinkOutcome::Failed { .. } => "failed",
            _ => "other",
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn coalescing_exports_on_change_and_once_per_interval() {
    let sink = MemorySink::default();
    let bindings = [binding(SinkFamily::Snapshot, "git", Arc::new(sink.clone()), 30)];
    let mut exporter = exporter();
    let v1 = snapshot(&["web", "cart"], 1);

    let first = exporter.export(&v1, 1, &bindings, t0()).await;
    assert_eq!(outcome_kinds(&first), ["exported"]);
    assert_eq!(sink.rows(&inventory()).unwrap(), v1.rows());

    let unchanged = exporter.export(&v1, 1, &bindings, later(10)).await;
    assert_eq!(
        unchanged.sinks[0].outcome,
        SinkOutcome::Debounced {
            next_due: Duration::from_secs(20)
        }
    );
    assert_eq!(unchanged.requeue_after(), Some(Duration::from_secs(20)));
    assert!(unchanged.synced().status, "all debounced is Synced=True (A12)");
    assert_eq!(
        unchanged.sinks[0].last_export,
        Some(t0()),
        "a debounced sink keeps its last export time"
    );

    let elapsed = exporter.export(&v1, 1, &bindings, later(30)).await;
    assert_eq!(
        outcome_kinds(&elapsed),
        ["exported"],
        "unchanged content is re-sent once per interval"
    );

    let changed = exporter
        .export(&snapshot(&["web"], 1), 1, &bindings, later(31))
        .await;
    assert_eq!(
        outcome_kinds(&changed),
        ["exported"],
        "changed content exports at once"
    );
    let spec_edit = exporter
        .export(&snapshot(&["web"], 1), 2, &bindings, later(32))
        .await;
    assert_eq!(
        outcome_kinds(&spec_edit),
        ["exported"],
        "a generation change exports at once"
    );
    assert_eq!(sink.export_count(), 4);
}

#[tokio::test(start_paused = true)]
async fn zero_interval_means_on_change_only() {
    let sink = MemorySink::default();
    let bindings = [binding(SinkFamily::Snapshot, "git", Arc::new(sink.clone()), 0)];
    let mut exporter = exporter();
    let v1 = snapshot(&["web"], 1);
    exporter.export(&v1, 1, &bindings, t0()).await;
    for secs in [1, 60, 86_400] {
        let report = exporter.export(&v1, 1, &bindings, later(secs)).await;
        assert_eq!(
            report.sinks[0].outcome,
            SinkOutcome::Debounced {
                next_due: Duration::from_secs(30)
            }
        );
    }
    assert_eq!(sink.export_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn empty_snapshots_are_exported_and_clear_the_destination() {
    let sink = MemorySink::default();
    let bindings = [binding(SinkFamily::Snapshot, "git", Arc::new(sink.clone()), 30)];
    let mut exporter = exporter();
    exporter.export(&snapshot(&["web"], 1), 1, &bindings, t0()).await;
    let report = exporter.export(&Snapshot::empty(), 1, &bindings, later(1)).await;
    assert_eq!(outcome_kinds(&report), ["exported"]);
    assert_eq!(sink.rows(&inventory()), Some(Vec::new()));
}

#[tokio::test(start_paused = true)]
async fn delta_capable_sinks_get_the_delta_since_their_last_ack() {
    let db = MemorySink::new("postgres", Capabilities::ROWS);
    let bindings = [binding(SinkFamily::Database, "pg", Arc::new(db.clone()), 30)];
    let mut exporter = exporter();
    exporter
        .export(&snapshot(&["web", "cart", "search"], 1), 1, &bindings, t0())
        .await;
    let mut next: Vec<Row> = snapshot(&["web", "checkout"], 1)
        .rows()
        .iter()
        .map(SharedRow::to_row)
        .collect();
    next.push(sample_row(&inventory(), "cart", 2));
    let next = Snapshot::new(next);
    let report = exporter.export(&next, 1, &bindings, later(1)).await;
    assert!(matches!(
        report.sinks[0].outcome,
        SinkOutcome::Exported {
            with_delta: true,
            parts: 1,
            ..
        }
    ));
    let deltas: Vec<_> = db
        .requests()
        .into_iter()
        .filter_map(|r| match r {
            Recorded::Export { delta, .. } => Some(delta),
            _ => None,
        })
        .collect();
    assert_eq!(
        deltas,
        vec![None, Some((2, 1))],
        "first export is full, the second carries 2 upserts and 1 delete"
    );
    assert_eq!(db.rows(&inventory()).unwrap(), next.rows());
}

/// A database-like sink that applies only the delta it is handed and never reads the snapshot.
struct DeltaOnly;

#[async_trait]
impl Sink for DeltaOnly {
    fn sink_type(&self) -> &str {
        "delta-only"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::ROWS
    }
    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        let written = request
            .delta
            .as_ref()
            .map_or(request.part.len(), |d| d.upserts.len());
        Ok(ExportReceipt::written(written as u64))
    }
    async fn remove(&self, _: &RemoveRequest) -> Result<(), SinkError> {
        Ok(())
    }
    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        Ok(ProbeReport::new(Duration::ZERO, "ok"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_change_exported_as_a_delta_hashes_nothing_until_the_digest_is_read() {
    let bindings = [binding(SinkFamily::Database, "pg", Arc::new(DeltaOnly), 30)];
    let mut exporter = exporter();
    let first = snapshot(&["web", "cart", "search"], 1);
    exporter.export(&first, 1, &bindings, t0()).await;
    // The next version shares every row but one, as the row store hands it out.
    let mut rows = first.rows().to_vec();
    rows[0] = sample_row(&inventory(), rows[0].name(), 2).into();
    let second = Snapshot::from_shared(rows);
    let report = exporter.export(&second, 1, &bindings, later(1)).await;
    let SinkOutcome::Exported {
        checksum,
        with_delta,
        bytes,
        ..
    } = &report.sinks[0].outcome
    else {
        panic!("{report:?}");
    };
    assert!(with_delta);
    assert_eq!(*bytes, 1, "one upsert");
    // The same content again is debounced, still without hashing.
    let again = exporter
        .export(
            &Snapshot::from_shared(second.rows().to_vec()),
            1,
            &bindings,
            later(2),
        )
        .await;
    assert_eq!(outcome_kinds(&again), ["debounced"]);
    assert!(first.cached_fingerprint().is_none() && second.cached_fingerprint().is_none());
    // Reading the digest (what the status does) computes the Go operator's fingerprint.
    assert_eq!(
        checksum.get(),
        &kollect_core::model::items_fingerprint(second.rows())
    );
    assert_eq!(second.cached_fingerprint(), Some(checksum.get()));
}

#[tokio::test(start_paused = true)]
async fn restart_seeding_suppresses_an_unchanged_export() {
    let sink = MemorySink::default();
    let bindings = [binding(SinkFamily::Snapshot, "git", Arc::new(sink.clone()), 30)];
    let v1 = snapshot(&["web"], 1);
    let mut before_restart = exporter();
    before_restart.export(&v1, 3, &bindings, t0()).await;
    let persisted = before_restart.state(&bindings[0].key).unwrap().clone();

    // A new process seeds its exporter from status.sinkExports[] and sees the same content.
    let mut after_restart = exporter();
    after_restart.seed(
        bindings[0].key.clone(),
        persisted.last_export,
        persisted.last_checksum.get().clone(),
        3,
    );
    let report = after_restart.export(&v1, 3, &bindings, later(5)).await;
    assert_eq!(outcome_kinds(&report), ["debounced"]);
    assert_eq!(
        sink.export_count(),
        1,
        "no export after a restart with unchanged content"
    );
    let changed = after_restart
        .export(&snapshot(&["web", "cart"], 1), 3, &bindings, later(6))
        .await;
    assert_eq!(outcome_kinds(&changed), ["exported"]);
}

#[tokio::test(start_paused = true)]
async fn seeded_database_sink_reconciles_without_delta_first() {
    let db = MemorySink::new("postgres", Capabilities::ROWS);
    let bindings = [binding(SinkFamily::Database, "pg", Arc::new(db.clone()), 30)];
    let mut exporter = exporter();
    exporter.seed(
        bindings[0].key.clone(),
        t0(),
        kollect_core::model::Checksum::from_hex("stale"),
        1,
    );
    let report = exporter
        .export(&snapshot(&["web"], 1), 1, &bindings, later(1))
        .await;
    assert!(matches!(
        report.sinks[0].outcome,
        SinkOutcome::Exported {
            with_delta: false,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn one_slow_sink_does_not_delay_the_others() {
    let fast = MemorySink::new("fast", Capabilities::DOCUMENTS);
    let slow = MemorySink::new("slow", Capabilities::DOCUMENTS);
    slow.set_delay(Duration::from_secs(60));
    let bindings = vec![
        binding(SinkFamily::Snapshot, "slow", Arc::new(slow.clone()), 30),
        binding(SinkFamily::Snapshot, "fast", Arc::new(fast.clone()), 30),
    ];
    let v1 = snapshot(&["web"], 1);
    let task = tokio::spawn({
        let v1 = v1.clone();
        async move {
            let mut exporter = exporter();
            exporter.export(&v1, 1, &bindings, t0()).await
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        fast.rows(&inventory()).unwrap(),
        v1.rows(),
        "the fast sink is done while the slow one still works"
    );
    assert_eq!(slow.rows(&inventory()), None);
    let started = tokio::time::Instant::now();
    let report = task.await.unwrap();
    assert!(
        started.elapsed() <= Duration::from_secs(59),
        "the pass waits only for the slow sink itself"
    );
    assert_eq!(outcome_kinds(&report), ["exported", "exported"]);
}

#[tokio::test(start_paused = true)]
async fn retries_transient_errors_but_not_terminal_ones() {
    let metrics = ExportMetrics::default();
    let config = StackConfig::default().with_retry(RetryPolicy::default().with_jitter(false));
    let flaky = MemorySink::default();
    flaky.fail_next(2, ErrorClass::Transient);
    let broken = MemorySink::new("broken", Capabilities::DOCUMENTS);
    broken.fail_next(1, ErrorClass::Terminal);
    let bindings = [
        binding(
            SinkFamily::Snapshot,
            "flaky",
            build_stack("team-a/flaky", flaky.clone(), &config, &metrics),
            30,
        ),
        binding(
            SinkFamily::Snapshot,
            "broken",
            build_stack("team-a/broken", broken.clone(), &config, &metrics),
            30,
        ),
    ];
    let report = exporter()
        .export(&snapshot(&["web"], 1), 1, &bindings, t0())
        .await;
    assert_eq!(outcome_kinds(&report), ["exported", "failed"]);
    assert_eq!(flaky.export_count(), 3, "two transient failures, then success");
    assert_eq!(broken.export_count(), 1, "terminal errors are not retried");
    assert_eq!(report.synced().reason, "PartiallySynced");
    assert_eq!(
        report.sinks[1].requeue_after(),
        None,
        "terminal failures wait for a change"
    );
    assert_eq!(metrics.error_count("terminal"), 1);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_and_recovers() {
    let metrics = ExportMetrics::default();
    let config = StackConfig::default().with_retry(RetryPolicy::none());
    let sink = MemorySink::default();
    sink.fail_with(ErrorClass::Transient);
    let bindings = [binding(
        SinkFamily::Snapshot,
        "git",
        build_stack("team-a/git", sink.clone(), &config, &metrics),
        30,
    )];
    let mut exporter = exporter();
    let v1 = snapshot(&["web"], 1);
    for i in 0..5 {
        exporter.export(&v1, 1, &bindings, later(i)).await;
    }
    assert_eq!(sink.export_count(), 5);
    let open = exporter.export(&v1, 1, &bindings, later(6)).await;
    match &open.sinks[0].outcome {
        SinkOutcome::Failed { class, message } => {
            assert_eq!(*class, ErrorClass::Transient);
            assert_eq!(message, "sink circuit breaker open for \"team-a/git\"");
        }
        other => panic!("expected an open breaker, got {other:?}"),
    }
    assert_eq!(sink.export_count(), 5, "an open breaker does not call the sink");
    assert_eq!(open.degraded().map(|c| c.reason), Some("Progressing"));

    sink.heal();
    tokio::time::advance(Duration::from_secs(30)).await;
    let recovered = exporter.export(&v1, 1, &bindings, later(40)).await;
    assert_eq!(outcome_kinds(&recovered), ["exported"]);
    assert_eq!(sink.export_count(), 6);
}

/// Fails the second part of a multipart set.
struct FailSecondPart(MemorySink);

#[async_trait]
impl Sink for FailSecondPart {
    fn sink_type(&self) -> &str {
        "fail-second-part"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::DOCUMENTS
    }
    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        if request.marker().is_some_and(|m| m.index == 2) {
            return Err(SinkError::transient("part rejected"));
        }
        self.0.export(request).await
    }
    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        self.0.remove(request).await
    }
    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        self.0.probe().await
    }
}

#[tokio::test(start_paused = true)]
async fn parts_go_in_order_and_stop_at_the_first_failure() {
    let names: Vec<String> = (0..40).map(|i| format!("svc-{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let big = snapshot(&names, 1);
    let ok = MemorySink::default();
    let store = MemorySink::default();
    let mut small = binding(SinkFamily::Snapshot, "ok", Arc::new(ok.clone()), 30);
    small.ceiling = 4096;
    let mut failing = binding(
        SinkFamily::Snapshot,
        "bad",
        Arc::new(FailSecondPart(store.clone())),
        30,
    );
    failing.ceiling = 4096;
    let report = exporter().export(&big, 1, &[small, failing], t0()).await;
    let markers: Vec<_> = ok
        .requests()
        .into_iter()
        .filter_map(|r| match r {
            Recorded::Export { marker, .. } => marker,
            _ => None,
        })
        .collect();
    assert!(markers.len() >= 3);
    assert!(
        markers
            .iter()
            .enumerate()
            .all(|(i, m)| m.index as usize == i + 1 && m.total as usize == markers.len())
    );
    assert_eq!(ok.rows(&inventory()).unwrap(), big.rows());
    match &report.sinks[1].outcome {
        SinkOutcome::Failed { message, .. } => assert!(message.starts_with("part 2 of "), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.export_count(), 1, "parts after the failed one are not sent");
}

#[tokio::test(start_paused = true)]
async fn an_item_too_large_for_the_ceiling_is_a_terminal_failure() {
    let sink = MemorySink::default();
    let mut tiny = binding(SinkFamily::Snapshot, "git", Arc::new(sink.clone()), 30);
    tiny.ceiling = 100;
    let report = exporter().export(&snapshot(&["web"], 1), 1, &[tiny], t0()).await;
    match &report.sinks[0].outcome {
        SinkOutcome::Failed { class, message } => {
            assert_eq!(*class, ErrorClass::Terminal);
            assert!(
                message.starts_with("single item export envelope exceeds maxExportBytes (100)"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sink.export_count(), 0);
    assert_eq!(report.degraded().map(|c| c.reason), Some("ExportTerminal"));
}

#[tokio::test(start_paused = true)]
async fn deleting_an_inventory_removes_it_from_every_sink() {
    let git = MemorySink::default();
    let db = MemorySink::new("postgres", Capabilities::ROWS);
    let bindings = [
        binding(SinkFamily::Snapshot, "git", Arc::new(git.clone()), 30),
        binding(SinkFamily::Database, "pg", Arc::new(db.clone()), 30),
    ];
    let mut exporter = exporter();
    exporter.export(&snapshot(&["web"], 1), 1, &bindings, t0()).await;
    db.fail_next(1, ErrorClass::Terminal);
    let first = exporter.remove(&bindings, 1).await;
    assert!(!first.all_removed());
    assert!(first.has_terminal_failure());
    assert_eq!(git.rows(&inventory()), None);
    let second = exporter.remove(&bindings, 1).await;
    assert!(second.all_removed());
    assert_eq!(db.rows(&inventory()), None);
}

/// The engine reads what a sink's capabilities say, not which family binds it: a whole-payload
/// sink gets one request however small the ceiling, a parts sink is split within it.
#[tokio::test(start_paused = true)]
async fn the_payload_capability_decides_between_one_request_and_parts() {
    let names: Vec<String> = (0..40).map(|i| format!("svc-{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let big = snapshot(&names, 1);
    let whole = MemorySink::new("rows", Capabilities::ROWS);
    let parts = MemorySink::new("messages", Capabilities::MESSAGES);
    // Both bound through the event family: the family does not decide anything.
    let mut a = binding(SinkFamily::Event, "whole", Arc::new(whole.clone()), 30);
    let mut b = binding(SinkFamily::Event, "parts", Arc::new(parts.clone()), 30);
    a.ceiling = 4096;
    b.ceiling = 4096;
    let report = exporter().export(&big, 1, &[a, b], t0()).await;
    assert_eq!(outcome_kinds(&report), ["exported", "exported"]);
    assert_eq!(whole.export_count(), 1);
    assert!(parts.export_count() >= 3, "{}", parts.export_count());
}

/// Which checksum coalescing compares follows the capability: a content checksum stays the
/// same when only the partitioning changes, a parts checksum does not.
#[tokio::test(start_paused = true)]
async fn the_checksum_capability_decides_what_coalescing_compares() {
    let names: Vec<String> = (0..40).map(|i| format!("svc-{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let big = snapshot(&names, 1);
    let documents = MemorySink::new("documents", Capabilities::DOCUMENTS);
    let messages = MemorySink::new("messages", Capabilities::MESSAGES);
    let mut exporter = exporter();
    let mut bound = [
        binding(
            SinkFamily::Snapshot,
            "documents",
            Arc::new(documents.clone()),
            3600,
        ),
        binding(SinkFamily::Snapshot, "messages", Arc::new(messages.clone()), 3600),
    ];
    exporter.export(&big, 1, &bound, t0()).await;
    for b in &mut bound {
        b.ceiling = 4096;
    }
    let report = exporter.export(&big, 1, &bound, later(1)).await;
    assert_eq!(
        outcome_kinds(&report),
        ["exported", "debounced"],
        "documents are rewritten when split differently; messages carry the same content"
    );
}

/// A sink that holds nothing of an inventory is not asked to remove it.
#[tokio::test(start_paused = true)]
async fn removal_skips_sinks_that_need_none() {
    let held = MemorySink::default();
    let streamed = MemorySink::new("stream", Capabilities::MESSAGES.with_removal(false));
    let bindings = [
        binding(SinkFamily::Snapshot, "held", Arc::new(held.clone()), 30),
        binding(SinkFamily::Event, "streamed", Arc::new(streamed.clone()), 30),
    ];
    let mut exporter = exporter();
    exporter.export(&snapshot(&["web"], 1), 1, &bindings, t0()).await;
    let report = exporter.remove(&bindings, 1).await;
    assert!(report.all_removed());
    let removes = |sink: &MemorySink| {
        sink.requests()
            .iter()
            .filter(|r| matches!(r, Recorded::Remove { .. }))
            .count()
    };
    assert_eq!(removes(&held), 1);
    assert_eq!(removes(&streamed), 0);
}
