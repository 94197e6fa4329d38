//! The export engine between a row store and the sinks of one inventory: coalescing and deltas.
//!
//! One inventory is bound to two sinks: the `local` directory sink (documents: every change
//! rewrites the file) and an in-memory database-like sink from the testkit (rows: it takes
//! deltas). Four passes show what the engine sends each of them.
//!
//! Run it with `cargo run -p kollect-examples --example export_engine`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kollect_collect::runtime::RowStore;
use kollect_core::api::v1alpha1::SinkFamily;
use kollect_core::collect::RowOwner;
use kollect_core::export::{
    Binding, BindingKey, DEFAULT_MAX_EXPORT_BYTES, InventoryExporter, SinkOutcome, StackConfig, build_stack,
};
use kollect_core::middleware::ExportMetrics;
use kollect_core::model::Row;
use kollect_core::sink::{Capabilities, InventoryRef, Sink};
use kollect_sinks::format::Format;
use kollect_sinks::local::{LocalConfig, LocalSink};
use kollect_testkit::{MemorySink, Recorded};
use serde_json::json;

fn deployment(name: &str, image: &str) -> Row {
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

fn bind(family: SinkFamily, name: &str, sink: impl Sink + 'static, metrics: &ExportMetrics) -> Binding {
    Binding {
        key: BindingKey::new(family, name),
        sink: build_stack(&format!("team-a/{name}"), sink, &StackConfig::default(), metrics),
        // Unchanged content is sent again once per interval; changes go out at once.
        interval: Duration::from_secs(300),
        ceiling: DEFAULT_MAX_EXPORT_BYTES,
    }
}

fn describe(outcome: &SinkOutcome) -> String {
    match outcome {
        SinkOutcome::Exported { parts, bytes, with_delta, .. } => {
            let delta = if *with_delta { "a delta" } else { "the whole snapshot" };
            format!("exported {parts} part(s), {bytes} bytes, as {delta}")
        }
        SinkOutcome::Debounced { next_due } => {
            format!("debounced, content unchanged (due again in {next_due:?})")
        }
        SinkOutcome::Failed { class, message } => format!("failed ({class:?}): {message}"),
        other => format!("{other:?}"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let metrics = ExportMetrics::default();
    let table = MemorySink::new("table", Capabilities::ROWS);
    let files = LocalSink::new(LocalConfig::new(dir.path(), Format::Json))?;
    let bindings = [
        bind(SinkFamily::Snapshot, "files", files, &metrics),
        bind(SinkFamily::Database, "table", table.clone(), &metrics),
    ];
    let inventory = InventoryRef::namespaced("team-a", "shop");
    let mut exporter = InventoryExporter::new(inventory.clone(), "example", metrics);

    // Collection writes rows into a store; the inventory exports the store's view of its targets.
    let store = Arc::new(RowStore::new());
    let owner = RowOwner::target("team-a", "deployments");
    store.upsert(&owner, deployment("web", "shop/web:1.4"));
    store.upsert(&owner, deployment("cart", "shop/cart:2.0"));

    let start = Timestamp::now();
    let steps: [(&str, &dyn Fn()); 4] = [
        ("first pass", &|| {}),
        ("a minute later, nothing changed", &|| {}),
        ("web's image changed", &|| {
            store.upsert(&owner, deployment("web", "shop/web:1.5"));
        }),
        ("cart was deleted", &|| {
            store.remove(&owner, "uid-cart");
        }),
    ];
    for (minute, (label, change)) in steps.iter().enumerate() {
        change();
        let now = start.checked_add(SignedDuration::from_mins(minute as i64))?;
        let report =
            exporter.export(&store.snapshot_of(std::slice::from_ref(&owner)), 1, &bindings, now).await;
        println!("{label}: {} rows", report.item_count);
        for sink in &report.sinks {
            println!("  {:<6} {}", sink.key.name, describe(&sink.outcome));
        }
    }

    println!("what the table sink received:");
    for request in table.requests() {
        if let Recorded::Export { rows, delta, .. } = request {
            match delta {
                Some((upserts, deletes)) => println!("  delta: {upserts} upsert(s), {deletes} delete(s)"),
                None => println!("  full snapshot of {rows} rows"),
            }
        }
    }
    let document = std::fs::read_to_string(dir.path().join("inventory/team-a/shop.json"))?;
    println!("the directory holds inventory/team-a/shop.json:\n{document}");
    Ok(())
}
