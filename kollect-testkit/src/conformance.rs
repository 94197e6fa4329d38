//! The sink conformance suite: behaviour every [`Sink`] must show, whoever wrote it.
//!
//! Each case is a plain async function taking the sink under test and an [`Inspect`]or that reads
//! back what the destination holds (a `SELECT`, a file listing, a bucket listing, ...). Run them
//! all with [`sink_conformance_tests!`](crate::sink_conformance_tests), or call single cases:
//!
//! ```no_run
//! use kollect_core::sink::Capabilities;
//! use kollect_testkit::MemorySink;
//!
//! // For a real backend: connect the sink and a reader of the same backend here.
//! kollect_testkit::sink_conformance_tests!(async {
//!     let sink = MemorySink::new("memory", Capabilities::DOCUMENTS);
//!     (sink.clone(), sink)
//! });
//! # fn main() {}
//! ```
//!
//! Cases use their own inventory names, so they can share one backend.

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use kollect_core::model::{Delta, ExportMeta, Row, SharedRow, Snapshot, partition};
use kollect_core::sink::{ExportRequest, InventoryRef, RemoveRequest, Sink};
use serde_json::json;
use std::sync::Arc;

/// Reads back what a destination holds for an inventory.
#[async_trait]
pub trait Inspect: Send + Sync {
    /// The rows held for `inventory`, in any order; `None` (or an empty list) when it holds
    /// nothing.
    async fn rows(&self, inventory: &InventoryRef) -> Result<Option<Vec<Row>>, String>;
}

/// A failed expectation, with what was expected and found.
pub type CaseResult = Result<(), String>;

fn at() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A realistic row of inventory `inventory` for object `name`.
pub fn sample_row(inventory: &InventoryRef, name: &str, version: i64) -> Row {
    Row {
        target_namespace: if inventory.namespace.is_empty() { "platform".into() } else { inventory.namespace.clone() },
        target_name: "deployments".into(),
        namespace: "shop".into(),
        name: name.into(),
        group: "apps".into(),
        version: "v1".into(),
        kind: "Deployment".into(),
        uid: format!("uid-{name}"),
        attributes: json!({"image": format!("registry.example.com/{name}:{version}"), "replicas": version, "labels": {"team": "web"}})
            .as_object()
            .cloned(),
    }
}

fn rows(inventory: &InventoryRef, names: &[&str], version: i64) -> Vec<Row> {
    names.iter().map(|n| sample_row(inventory, n, version)).collect()
}

async fn held(inspect: &dyn Inspect, inventory: &InventoryRef) -> Result<Vec<Row>, String> {
    let mut found = inspect.rows(inventory).await?.unwrap_or_default();
    kollect_core::model::sort_canonical(&mut found);
    Ok(found)
}

/// What a sink holds after everything of an inventory is gone.
const NO_ROWS: &[Row] = &[];

async fn expect_rows(
    inspect: &dyn Inspect,
    inventory: &InventoryRef,
    expected: &[impl Clone + Into<Row>],
    step: &str,
) -> CaseResult {
    let found = held(inspect, inventory).await?;
    let mut expected: Vec<Row> = expected.iter().cloned().map(Into::into).collect();
    kollect_core::model::sort_canonical(&mut expected);
    if found == expected {
        return Ok(());
    }
    let names = |rows: &[Row]| {
        rows.iter()
            .map(|r| {
                format!(
                    "{}@{}",
                    r.name,
                    r.attributes
                        .as_ref()
                        .map_or(json!(null), |a| a["replicas"].clone())
                )
            })
            .collect::<Vec<_>>()
    };
    Err(format!(
        "{step}: {inventory} holds {:?}, expected {:?}",
        names(&found),
        names(&expected)
    ))
}

async fn export_full(
    sink: &dyn Sink,
    inventory: &InventoryRef,
    generation: i64,
    rows: Vec<Row>,
) -> CaseResult {
    let request = ExportRequest::full(inventory.clone(), generation, at(), Snapshot::new(rows));
    sink.export(&request)
        .await
        .map(drop)
        .map_err(|e| format!("export to {inventory}: {e}"))
}

fn inventory(case: &str) -> InventoryRef {
    InventoryRef::namespaced("conformance", case).with_cluster("test-cluster")
}

/// A full snapshot lands as exactly its rows.
pub async fn full_snapshot(sink: &dyn Sink, inspect: &dyn Inspect) -> CaseResult {
    let inv = inventory("full-snapshot");
    let rows = rows(&inv, &["web", "cart", "search"], 1);
    export_full(sink, &inv, 1, rows.clone()).await?;
    expect_rows(inspect, &inv, &rows, "after a full export").await
}

/// A later snapshot with its delta (upserts and deletes) leaves exactly the new rows, whether the
/// sink applies the delta or reconciles the snapshot.
pub async fn delta_upserts_and_deletes(sink: &dyn Sink, inspect: &dyn Inspect) -> CaseResult {
    let inv = inventory("delta");
    let before = Snapshot::new(rows(&inv, &["web", "cart", "search"], 1));
    export_full(
        sink,
        &inv,
        1,
        before.rows().iter().map(SharedRow::to_row).collect(),
    )
    .await?;
    let mut after_rows = rows(&inv, &["web", "checkout"], 1);
    after_rows.push(sample_row(&inv, "cart", 2));
    let after = Snapshot::new(after_rows);
    let request =
        ExportRequest::full(inv.clone(), 1, at(), after.clone()).with_delta(Delta::between(&before, &after));
    sink.export(&request)
        .await
        .map_err(|e| format!("delta export: {e}"))?;
    expect_rows(inspect, &inv, &after.rows().to_vec(), "after a delta export").await
}

/// Delivering the same request twice leaves the destination as after the first.
pub async fn idempotent_replay(sink: &dyn Sink, inspect: &dyn Inspect) -> CaseResult {
    let inv = inventory("replay");
    let rows = rows(&inv, &["web", "cart"], 3);
    let request = ExportRequest::full(inv.clone(), 2, at(), Snapshot::new(rows.clone()));
    for attempt in 1..=2 {
        sink.export(&request)
            .await
            .map_err(|e| format!("attempt {attempt}: {e}"))?;
    }
    expect_rows(inspect, &inv, &rows, "after replaying the same export").await
}

/// An empty snapshot is delivered, and the destination then holds no rows (decision X3).
pub async fn empty_snapshot(sink: &dyn Sink, inspect: &dyn Inspect) -> CaseResult {
    let inv = inventory("empty");
    export_full(sink, &inv, 1, rows(&inv, &["web"], 1)).await?;
    export_full(sink, &inv, 1, Vec::new()).await?;
    expect_rows(inspect, &inv, NO_ROWS, "after exporting an empty snapshot").await
}

/// Removing an inventory removes everything it exported; removing again is harmless.
pub async fn inventory_removal(sink: &dyn Sink, inspect: &dyn Inspect) -> CaseResult {
    let inv = inventory("removal");
    export_full(sink, &inv, 1, rows(&inv, &["web", "cart"], 1)).await?;
    for attempt in 1..=2 {
        sink.remove(&RemoveRequest {
            inventory: inv.clone(),
            generation: 1,
        })
        .await
        .map_err(|e| format!("remove attempt {attempt}: {e}"))?;
    }
    expect_rows(inspect, &inv, NO_ROWS, "after removing the inventory").await
}

/// A snapshot larger than the ceiling is split into parts, sent in order, and the destination
/// holds every row of every part.
pub async fn large_snapshot_in_parts(sink: &dyn Sink, inspect: &dyn Inspect) -> CaseResult {
    let inv = inventory("multipart");
    let names: Vec<String> = (0..60).map(|i| format!("svc-{i:02}")).collect();
    let rows: Vec<Row> = names.iter().map(|n| sample_row(&inv, n, 1)).collect();
    let snapshot = Snapshot::new(rows.clone());
    let meta = ExportMeta {
        generation: Some(1),
        cluster: Some(inv.cluster.clone()),
        exported_at: at(),
    };
    let parts = partition(&snapshot, &meta, Some(4096))
        .map_err(|e| e.to_string())?
        .parts;
    if parts.len() < 3 {
        return Err(format!(
            "expected the test snapshot to need at least 3 parts, got {}",
            parts.len()
        ));
    }
    for part in parts {
        let request = ExportRequest {
            inventory: inv.clone(),
            generation: 1,
            exported_at: at(),
            snapshot: snapshot.clone(),
            part: Arc::new(part),
            delta: None,
        };
        sink.export(&request)
            .await
            .map_err(|e| format!("part {:?}: {e}", request.marker()))?;
    }
    expect_rows(inspect, &inv, &rows, "after a multipart export").await
}

/// Inventories with the same name in different namespaces, and the same inventory in two
/// clusters, are kept apart.
pub async fn inventories_and_clusters_apart(sink: &dyn Sink, inspect: &dyn Inspect) -> CaseResult {
    let a = InventoryRef::namespaced("conformance-a", "shared").with_cluster("east");
    let b = InventoryRef::namespaced("conformance-b", "shared").with_cluster("east");
    let west = InventoryRef::namespaced("conformance-a", "shared").with_cluster("west");
    let (rows_a, rows_b, rows_west) = (
        rows(&a, &["web"], 1),
        rows(&b, &["cart"], 1),
        rows(&west, &["web"], 9),
    );
    export_full(sink, &a, 1, rows_a.clone()).await?;
    export_full(sink, &b, 1, rows_b.clone()).await?;
    export_full(sink, &west, 1, rows_west.clone()).await?;
    expect_rows(inspect, &a, &rows_a, "namespace a, cluster east").await?;
    expect_rows(inspect, &b, &rows_b, "namespace b, cluster east").await?;
    expect_rows(inspect, &west, &rows_west, "namespace a, cluster west").await?;
    sink.remove(&RemoveRequest {
        inventory: a.clone(),
        generation: 1,
    })
    .await
    .map_err(|e| format!("remove: {e}"))?;
    expect_rows(inspect, &a, NO_ROWS, "removed inventory").await?;
    expect_rows(inspect, &b, &rows_b, "other namespace after a removal").await?;
    expect_rows(inspect, &west, &rows_west, "other cluster after a removal").await
}

/// The connection probe succeeds against a healthy destination and says so.
pub async fn probe(sink: &dyn Sink, _inspect: &dyn Inspect) -> CaseResult {
    let report = sink.probe().await.map_err(|e| format!("probe: {e}"))?;
    if report.message.trim().is_empty() {
        return Err("probe succeeded without a message".to_owned());
    }
    Ok(())
}

/// Every case, in order; stops at the first failure.
pub async fn run_all(sink: &dyn Sink, inspect: &dyn Inspect) -> CaseResult {
    full_snapshot(sink, inspect).await?;
    delta_upserts_and_deletes(sink, inspect).await?;
    idempotent_replay(sink, inspect).await?;
    empty_snapshot(sink, inspect).await?;
    inventory_removal(sink, inspect).await?;
    large_snapshot_in_parts(sink, inspect).await?;
    inventories_and_clusters_apart(sink, inspect).await?;
    probe(sink, inspect).await
}

/// Generates one `#[tokio::test]` per conformance case. `$setup` is an async expression
/// yielding `(sink, inspector)`; it runs once per case.
#[macro_export]
macro_rules! sink_conformance_tests {
    ($setup:expr) => {
        $crate::sink_conformance_tests!(@cases $setup;
            full_snapshot, delta_upserts_and_deletes, idempotent_replay, empty_snapshot,
            inventory_removal, large_snapshot_in_parts, inventories_and_clusters_apart, probe);
    };
    (@cases $setup:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (sink, inspect) = $setup.await;
                if let Err(failure) = $crate::conformance::$case(&sink, &inspect).await {
                    panic!("sink conformance case {} failed: {failure}", stringify!($case));
                }
            }
        )*
    };
}
