//! Perf harness (not a test) for the sinks against real backends:
//!
//! - PostgreSQL: full export of 100,000 rows into an empty table, the same export again
//!   (nothing changed), and a 1-row delta on the 100,000-row inventory;
//! - Git: export of 10,000 rows in `perResource` layout (full), then a 1-row change.
//!
//! `cargo bench -p kollect-sinks --bench sinks --profile perf` (needs `hack/setup.sh`; the perf
//! profile keeps debug assertions, which the test-only loopback network policy requires).

// A harness may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use kollect_core::api::v1alpha1::KollectSnapshotSinkSpec;
use kollect_core::model::{Delta, Snapshot};
use kollect_core::netguard::{GuardedResolver, NetPolicy};
use kollect_core::sink::{ExportRequest, InventoryRef, Sink};
use kollect_sinks::git::{GitConfig, GitSink};
use kollect_sinks::postgres::{PostgresConfig, PostgresSink};
use kollect_sinks::{BuildContext, SecretData};
use kollect_testkit::GitServer;
use kollect_testkit::backends::Postgres;
use kollect_testkit::conformance::sample_row;

fn at(second: i64) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(second).unwrap()
}

fn snapshot(inventory: &InventoryRef, n: usize, changed: Option<usize>) -> Snapshot {
    Snapshot::new(
        (0..n)
            .map(|i| {
                sample_row(
                    inventory,
                    &format!("obj-{i:06}"),
                    if Some(i) == changed { 2 } else { 1 },
                )
            })
            .collect(),
    )
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            postgres().await;
            git().await;
        });
}

async fn postgres() {
    let pg = Postgres::start().expect("PostgreSQL");
    let sink = PostgresSink::new(PostgresConfig::new(
        pg.dsn("postgres"),
        "bench",
        GuardedResolver::new(NetPolicy::permissive_for_tests()),
    ))
    .unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let rows = 100_000;
    let full = ExportRequest::full(
        inventory.clone(),
        1,
        at(1_800_000_000),
        snapshot(&inventory, rows, None),
    );
    let started = Instant::now();
    sink.export(&full).await.unwrap();
    println!(
        "postgres: full export of {rows} rows into an empty table: {:.2?}",
        started.elapsed()
    );
    let started = Instant::now();
    sink.export(&full).await.unwrap();
    println!(
        "postgres: the same {rows} rows again (full reconcile): {:.2?}",
        started.elapsed()
    );
    let changed = snapshot(&inventory, rows, Some(rows / 2));
    let delta = Delta::between(&full.snapshot, &changed);
    assert_eq!(delta.upserts.len(), 1);
    let request = ExportRequest::full(inventory.clone(), 1, at(1_800_000_060), changed).with_delta(delta);
    let started = Instant::now();
    sink.export(&request).await.unwrap();
    println!(
        "postgres: 1-row delta on a {rows}-row inventory: {:.2?}",
        started.elapsed()
    );
}

async fn git() {
    let server = GitServer::start("kollect", "bench-token").expect("git server");
    let url = server.create_repo("bench").unwrap();
    let spec: KollectSnapshotSinkSpec = serde_json::from_value(serde_json::json!({
        "type": "git", "endpoint": url, "layout": {"mode": "perResource"}
    }))
    .unwrap();
    let mut context = BuildContext::new("bench/git", NetPolicy::permissive_for_tests());
    context.secret = SecretData::new([
        ("username".to_owned(), b"kollect".to_vec()),
        ("password".to_owned(), b"bench-token".to_vec()),
    ]);
    let mirrors = tempfile::tempdir().unwrap();
    let sink = GitSink::new(
        GitConfig::from_spec(&spec, context)
            .unwrap()
            .with_mirror_root(mirrors.path().to_path_buf()),
    );
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let rows = 10_000;
    let full = ExportRequest::full(
        inventory.clone(),
        1,
        at(1_800_000_000),
        snapshot(&inventory, rows, None),
    );
    let started = Instant::now();
    sink.export(&full).await.unwrap();
    println!(
        "git: perResource export of {rows} rows (first commit and push): {:.2?}",
        started.elapsed()
    );
    let changed = ExportRequest::full(
        inventory.clone(),
        1,
        at(1_800_000_060),
        snapshot(&inventory, rows, Some(rows / 2)),
    );
    let started = Instant::now();
    sink.export(&changed).await.unwrap();
    println!(
        "git: the same {rows} rows with 1 changed (fetch, 1-file commit, push): {:.2?}",
        started.elapsed()
    );
    let started = Instant::now();
    let receipt = sink.export(&changed).await.unwrap();
    assert!(receipt.unchanged);
    println!(
        "git: unchanged export of {rows} rows (fetch, no commit): {:.2?}",
        started.elapsed()
    );
}
