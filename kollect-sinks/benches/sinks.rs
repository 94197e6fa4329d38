//! Perf harness (not a test) for the sinks against real backends:
//!
//! - PostgreSQL, MongoDB (FerretDB) and BigQuery (goccy's emulator, in its dialect: a staged
//!   load and one transaction, not the MERGE BigQuery runs): full export of 100,000 rows into an
//!   empty table or collection, the same export again (nothing changed), and a 1-row delta on
//!   the 100,000-row inventory;
//! - Git: export of 10,000 rows in `perResource` layout (full), then a 1-row change;
//! - Kafka and NATS JetStream: 100,000 rows published in snapshot mode (parts within the sink's
//!   ceiling) and in row mode, a 1-row change in each, and a restarted row-mode sink finding
//!   nothing to publish.
//!
//! `cargo bench -p kollect-sinks --bench sinks --profile perf [-- postgres mongodb bigquery git kafka nats]`
//! (needs `hack/setup.sh`; the perf profile keeps debug assertions, which the test-only loopback
//! network policy requires).

// A harness may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use kollect_core::api::v1alpha1::KollectSnapshotSinkSpec;
use kollect_core::model::{Delta, Snapshot};
use kollect_core::netguard::{GuardedResolver, NetPolicy};
use kollect_core::sink::{ExportRequest, InventoryRef, Sink};
use kollect_sinks::bigquery::{BigqueryConfig, BigquerySink, Credentials, Dialect};
use kollect_sinks::git::{GitConfig, GitSink};
use kollect_sinks::mongodb::{MongodbConfig, MongodbSink};
use kollect_sinks::postgres::{PostgresConfig, PostgresSink};
use kollect_sinks::{BuildContext, SecretData};
use kollect_testkit::GitServer;
use kollect_testkit::backends::{BIGQUERY_DATASET, BIGQUERY_PROJECT, BigqueryEmulator, FerretDb, Postgres};
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
            // `cargo bench ... -- nats kafka` runs only those (cargo adds `--bench` itself).
            let only: Vec<String> = std::env::args()
                .skip(1)
                .filter(|a| !a.starts_with("--"))
                .collect();
            let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
            if wanted("postgres") {
                postgres().await;
            }
            if wanted("mongodb") {
                mongodb().await;
            }
            if wanted("bigquery") {
                bigquery().await;
            }
            if wanted("git") {
                git().await;
            }
            if wanted("kafka") {
                kafka().await;
            }
            if wanted("nats") {
                nats().await;
            }
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
    database("postgres", "table", &sink).await;
}

/// The testkit's FerretDB (SQLite backend), or the server `KOLLECT_BENCH_MONGODB_URI` names
/// (FerretDB's SQLite backend slows down with every document: 100,000 take hours there).
async fn mongodb() {
    let (_ferret, uri, label) = match std::env::var("KOLLECT_BENCH_MONGODB_URI") {
        Ok(uri) => (None, uri, "mongodb (KOLLECT_BENCH_MONGODB_URI)"),
        Err(_) => {
            let ferret = FerretDb::start().expect("FerretDB");
            let uri = ferret.uri();
            (Some(ferret), uri, "mongodb (FerretDB, SQLite)")
        }
    };
    let sink = MongodbSink::new(MongodbConfig::new(
        uri,
        "kollect",
        "bench",
        GuardedResolver::new(NetPolicy::permissive_for_tests()),
    ))
    .unwrap();
    // FerretDB's cost per write grows with the collection (about 26 ms per upsert at 100,000
    // documents on its PostgreSQL backend), so rewriting all 100,000 again would take most of
    // an hour and measure FerretDB, not the sink.
    database_with(label, "collection", &sink, false).await;
}

async fn bigquery() {
    let emulator = BigqueryEmulator::start().expect("bigquery-emulator");
    let config = BigqueryConfig::new(
        BIGQUERY_PROJECT,
        BIGQUERY_DATASET,
        "bench",
        Credentials::Anonymous,
        NetPolicy::permissive_for_tests(),
    )
    .with_endpoint(emulator.endpoint().parse().unwrap())
    .with_dialect(Dialect::Emulator);
    let sink = BigquerySink::new(config).unwrap();
    database("bigquery (emulator)", "table", &sink).await;
}

/// A database sink: full export of 100,000 rows into an empty `place`, the same rows again
/// (unless `repeat` is false), and a 1-row delta.
async fn database(label: &str, place: &str, sink: &dyn Sink) {
    database_with(label, place, sink, true).await;
}

async fn database_with(label: &str, place: &str, sink: &dyn Sink, repeat: bool) {
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
        "{label}: full export of {rows} rows into an empty {place}: {:.2?}",
        started.elapsed()
    );
    if repeat {
        let started = Instant::now();
        sink.export(&full).await.unwrap();
        println!(
            "{label}: the same {rows} rows again (full reconcile): {:.2?}",
            started.elapsed()
        );
    }
    let changed = snapshot(&inventory, rows, Some(rows / 2));
    let delta = Delta::between(&full.snapshot, &changed);
    assert_eq!(delta.upserts.len(), 1);
    let request = ExportRequest::full(inventory.clone(), 1, at(1_800_000_060), changed).with_delta(delta);
    let started = Instant::now();
    sink.export(&request).await.unwrap();
    println!(
        "{label}: 1-row delta on a {rows}-row inventory: {:.2?}",
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

async fn kafka() {
    use kollect_sinks::kafka::{KafkaConfig, KafkaSink};
    let broker = kollect_testkit::backends::Kafka::start().expect("Kafka");
    let bootstrap = broker.bootstrap_servers();
    event_sink("kafka", |name, mode| {
        Box::new(KafkaSink::new(
            KafkaConfig::new(
                &[bootstrap.as_str()],
                format!("bench-{name}"),
                GuardedResolver::new(NetPolicy::permissive_for_tests()),
            )
            .unwrap()
            .with_mode(mode),
        ))
    })
    .await;
}

async fn nats() {
    use kollect_sinks::nats::{NatsConfig, NatsSink};
    let server = kollect_testkit::backends::Nats::start().expect("nats-server");
    let url = server.url();
    event_sink("nats", |name, mode| {
        Box::new(NatsSink::new(
            NatsConfig::new(
                &url,
                &format!("bench-{name}.{{cluster}}.{{namespace}}.{{name}}"),
                GuardedResolver::new(NetPolicy::permissive_for_tests()),
            )
            .unwrap()
            .with_stream(&format!("bench_{name}"))
            .unwrap()
            .with_mode(mode),
        ))
    })
    .await;
}

/// An event sink (`make(name, mode)` builds one on its own topic or stream) publishing 100,000
/// rows in snapshot mode (parts within the sink's ceiling) and in row mode, a 1-row change in
/// each, and a restarted row-mode sink finding nothing to publish.
async fn event_sink(broker: &str, make: impl Fn(&str, kollect_sinks::events::MessageMode) -> Box<dyn Sink>) {
    use kollect_core::export::DEFAULT_MAX_EXPORT_BYTES;
    use kollect_core::model::{ExportMeta, partition};
    use kollect_sinks::events::MessageMode;
    use std::sync::Arc;

    let rows = 100_000;
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let full = snapshot(&inventory, rows, None);
    let changed = snapshot(&inventory, rows, Some(rows / 2));

    // Snapshot mode: every export is the whole inventory in parts, as the engine sends it.
    let sink = make("snapshot", MessageMode::Snapshot);
    sink.probe().await.unwrap();
    for (label, snapshot) in [("initial publish", &full), ("one-row change", &changed)] {
        let meta = ExportMeta {
            generation: Some(1),
            cluster: None,
            exported_at: at(1_800_000_000),
        };
        let started = Instant::now();
        let ceiling = sink.capabilities().ceiling(DEFAULT_MAX_EXPORT_BYTES);
        let parts = partition(snapshot, &meta, ceiling).unwrap().parts;
        let (mut messages, mut bytes) = (0, 0);
        for part in parts {
            let request = ExportRequest {
                inventory: inventory.clone(),
                generation: 1,
                exported_at: at(1_800_000_000),
                snapshot: snapshot.clone(),
                part: Arc::new(part),
                delta: None,
            };
            bytes += sink.export(&request).await.unwrap().bytes;
            messages += 1;
        }
        println!(
            "{broker} snapshot mode: {label} of {rows} rows: {:.2?}, {messages} messages, {bytes} bytes",
            started.elapsed()
        );
    }

    // Row mode: one message per row first, then the delta only.
    let sink = make("rows", MessageMode::Row);
    sink.probe().await.unwrap();
    let request = ExportRequest::full(inventory.clone(), 1, at(1_800_000_000), full.clone());
    let started = Instant::now();
    let receipt = sink.export(&request).await.unwrap();
    println!(
        "{broker} row mode: initial publish of {rows} rows: {:.2?}, {rows} messages, {} bytes",
        started.elapsed(),
        receipt.bytes
    );
    let delta = Delta::between(&full, &changed);
    let request =
        ExportRequest::full(inventory.clone(), 1, at(1_800_000_060), changed.clone()).with_delta(delta);
    let started = Instant::now();
    let receipt = sink.export(&request).await.unwrap();
    println!(
        "{broker} row mode: one-row change on {rows} rows: {:.2?}, 1 message, {} bytes",
        started.elapsed(),
        receipt.bytes
    );
    let restarted = make("rows", MessageMode::Row);
    let request = ExportRequest::full(inventory.clone(), 1, at(1_800_000_120), changed);
    let started = Instant::now();
    let receipt = restarted.export(&request).await.unwrap();
    assert!(receipt.unchanged);
    println!(
        "{broker} row mode: restarted sink, unchanged {rows} rows (read back, nothing published): {:.2?}",
        started.elapsed()
    );
}
