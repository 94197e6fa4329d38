//! A sink of your own: implement [`Sink`] for a destination Kollect does not ship, run it behind
//! the same middleware as the built-in sinks, and prove it with the sink conformance suite.
//!
//! The destination here is an in-memory document store (one JSON envelope per inventory part,
//! as files in a bucket would be). Its first export fails on purpose, to show the retry layer at
//! work. The tutorial "Writing a sink" in the book walks through this file.
//!
//! Run it with `cargo run -p kollect-examples --example custom_sink`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kollect_core::export::{StackConfig, build_stack};
use kollect_core::middleware::{ExportMetrics, RetryPolicy};
use kollect_core::model::{Row, Snapshot, decode, decode_items};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};
use kollect_testkit::conformance::{self, Inspect};
use serde_json::json;

// ANCHOR: state
/// The documents one inventory holds, and the paths written by the export set in progress.
#[derive(Default)]
struct InventoryDocuments {
    documents: HashMap<String, Vec<u8>>,
    current_set: BTreeSet<String>,
}

/// An in-memory document store. Clones share the store, so a test can keep a reader of it.
#[derive(Clone, Default)]
struct MemoryDocuments {
    inventories: Arc<Mutex<HashMap<InventoryRef, InventoryDocuments>>>,
    /// How many of the next exports fail with a transient error.
    failures_left: Arc<AtomicUsize>,
}

impl MemoryDocuments {
    fn lock(&self) -> Result<MutexGuard<'_, HashMap<InventoryRef, InventoryDocuments>>, SinkError> {
        self.inventories.lock().map_err(|_| SinkError::terminal("document store poisoned"))
    }
}
// ANCHOR_END: state

// ANCHOR: sink
#[async_trait]
impl Sink for MemoryDocuments {
    fn sink_type(&self) -> &str {
        "memory-documents"
    }

    /// Files in a store: whole documents within the part size, no deltas, removable.
    fn capabilities(&self) -> Capabilities {
        Capabilities::DOCUMENTS
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        let fail =
            self.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if fail {
            // Transient errors are retried with backoff, behind the circuit breaker.
            return Err(SinkError::transient("store warming up"));
        }
        let path = request.part_path(&request.inventory.default_object_path(".json"));
        let envelope = request.envelope();
        let bytes = envelope.len() as u64;
        let mut inventories = self.lock()?;
        let held = inventories.entry(request.inventory.clone()).or_default();
        // A new set starts with its first part; parts of the previous set that the new one no
        // longer has are dropped with its last part, so readers never see a mixed set.
        if request.marker().is_none_or(|m| m.index == 1) {
            held.current_set.clear();
        }
        held.current_set.insert(path.clone());
        let unchanged = held.documents.get(&path) == Some(&envelope);
        held.documents.insert(path, envelope);
        if request.is_last_part() {
            let keep = std::mem::take(&mut held.current_set);
            held.documents.retain(|path, _| keep.contains(path));
        }
        // Exports are delivered at least once: writing the same content again is a no-op.
        Ok(if unchanged { ExportReceipt::unchanged() } else { ExportReceipt::written(bytes) })
    }

    /// Inventory deletion: everything held for it goes.
    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        self.lock()?.remove(&request.inventory);
        Ok(())
    }

    /// Reachability and credentials, without writing.
    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        let start = Instant::now();
        drop(self.lock()?);
        Ok(ProbeReport::new(start.elapsed(), "memory is always reachable"))
    }
}
// ANCHOR_END: sink

// ANCHOR: inspect
/// Reads back what the store holds for an inventory, for the conformance suite: the rows of
/// every document of the inventory.
#[async_trait]
impl Inspect for MemoryDocuments {
    async fn rows(&self, inventory: &InventoryRef) -> Result<Option<Vec<Row>>, String> {
        let inventories = self.lock().map_err(|e| e.to_string())?;
        let Some(held) = inventories.get(inventory) else {
            return Ok(None);
        };
        let mut rows = Vec::new();
        for document in held.documents.values() {
            rows.extend(decode_items(document).map_err(|e| e.to_string())?);
        }
        Ok(Some(rows))
    }
}
// ANCHOR_END: inspect

fn row(name: &str, image: &str) -> Row {
    Row {
        target_namespace: "team-a".into(),
        target_name: "deployments".into(),
        namespace: "shop".into(),
        name: name.into(),
        group: "apps".into(),
        version: "v1".into(),
        kind: "Deployment".into(),
        uid: format!("uid-{name}"),
        attributes: json!({ "image": image }).as_object().cloned(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: stack
    let store = MemoryDocuments::default();
    store.failures_left.store(1, Ordering::SeqCst);
    // Metrics, retry, circuit breaker and timeout: the stack every built-in sink runs in.
    let config = StackConfig::default()
        .with_retry(RetryPolicy::default().with_initial_delay(Duration::from_millis(50)))
        .with_timeout(Duration::from_secs(5));
    let sink = build_stack("team-a/memory", store.clone(), &config, &ExportMetrics::default());
    // ANCHOR_END: stack

    let snapshot = Snapshot::new(vec![row("web", "shop/web:1.4"), row("cart", "shop/cart:2.0")]);
    let request = ExportRequest::full(
        InventoryRef::namespaced("team-a", "shop"),
        1,
        k8s_openapi::jiff::Timestamp::now(),
        snapshot,
    );
    let receipt = sink.export(&request).await?;
    println!("exported {} bytes after a retried transient failure", receipt.bytes);

    let envelope = decode(&request.envelope())?.ok_or("empty envelope")?;
    println!("checksum {} over {} items:", envelope.checksum, envelope.item_count);
    for item in &envelope.items {
        let image = item.attributes.as_ref().map_or(json!(null), |a| a["image"].clone());
        println!("  {}/{} -> {image}", item.namespace, item.name);
    }
    println!("probe: {}", sink.probe().await?.message);

    // ANCHOR: conformance
    // The suite every built-in backend passes: full snapshots, deltas, replays, empty and
    // multipart snapshots, removal, inventories and clusters kept apart, probe.
    conformance::run_all(sink.as_ref(), &store)
        .await
        .map_err(|failure| format!("sink conformance suite: {failure}"))?;
    println!("memory-documents passes the sink conformance suite");
    // ANCHOR_END: conformance
    Ok(())
}
