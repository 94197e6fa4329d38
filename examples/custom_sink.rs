//! A custom sink: implement [`Sink`] for your own destination and wrap it in Kollect's middleware.
//!
//! The sink below keeps the latest envelope per inventory in memory and fails its first attempt,
//! to show the retry layer at work. Run it with `cargo run -p kollect-examples --example custom_sink`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kollect_core::middleware::{BreakerConfig, CircuitBreakerLayer, RetryLayer, RetryPolicy, TimeoutLayer};
use kollect_core::model::{Row, Snapshot, decode};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};
use serde_json::json;
use tower::ServiceBuilder;

/// Keeps the last envelope of every inventory part, keyed by object path.
#[derive(Default)]
struct MemoryDocuments {
    documents: Mutex<BTreeMap<String, Vec<u8>>>,
    attempts: AtomicUsize,
}

#[async_trait]
impl Sink for MemoryDocuments {
    fn sink_type(&self) -> &str {
        "memory-documents"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::DOCUMENTS
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        if self.attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(SinkError::transient("backend warming up"));
        }
        let path = request.part_path(&request.inventory.default_object_path(".json"));
        let envelope = request.envelope();
        let bytes = envelope.len() as u64;
        let mut documents = self
            .documents
            .lock()
            .map_err(|_| SinkError::terminal("document map poisoned"))?;
        let unchanged = documents.get(&path) == Some(&envelope);
        documents.insert(path, envelope);
        Ok(if unchanged {
            ExportReceipt::unchanged()
        } else {
            ExportReceipt::written(bytes)
        })
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        let prefix = format!(
            "inventory/{}/{}",
            request.inventory.path_namespace(),
            request.inventory.name
        );
        let mut documents = self
            .documents
            .lock()
            .map_err(|_| SinkError::terminal("document map poisoned"))?;
        documents.retain(|path, _| !path.starts_with(&prefix));
        Ok(())
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        let start = Instant::now();
        Ok(ProbeReport::new(start.elapsed(), "memory is always reachable"))
    }
}

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
    let sink = ServiceBuilder::new()
        .layer(RetryLayer::new(
            RetryPolicy::default().with_initial_delay(Duration::from_millis(50)),
        ))
        .layer(CircuitBreakerLayer::new(
            "team-a/memory",
            BreakerConfig::default(),
        ))
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .service(MemoryDocuments::default());

    let snapshot = Snapshot::new(vec![row("web", "shop/web:1.4"), row("cart", "shop/cart:2.0")]);
    let request = ExportRequest::full(
        InventoryRef::namespaced("team-a", "shop"),
        1,
        k8s_openapi::jiff::Timestamp::now(),
        snapshot,
    );

    let receipt = sink.export(&request).await?;
    println!(
        "exported {} bytes after a retried transient failure",
        receipt.bytes
    );

    let envelope = decode(&request.envelope())?.ok_or("empty envelope")?;
    println!(
        "checksum {} over {} items:",
        envelope.checksum, envelope.item_count
    );
    for item in &envelope.items {
        println!(
            "  {}/{} -> {}",
            item.namespace,
            item.name,
            item.attributes
                .as_ref()
                .map_or(json!(null), |a| a["image"].clone())
        );
    }
    println!("probe: {}", sink.probe().await?.message);
    Ok(())
}
