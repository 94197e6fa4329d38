//! The stdout sink passes the sink conformance suite (its records are read back), and writes the
//! CLI's record shapes.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kollect_core::model::Row;
use kollect_core::sink::InventoryRef;
use kollect_sinks::format::Format;
use kollect_sinks::stdout::StdoutSink;
use kollect_testkit::conformance::Inspect;

/// A writer into shared memory.
#[derive(Clone, Default)]
pub(crate) struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads the latest export (all its parts) of an inventory from the records.
pub(crate) struct Records(Buffer, Format);

#[async_trait]
impl Inspect for Records {
    async fn rows(&self, inventory: &InventoryRef) -> Result<Option<Vec<Row>>, String> {
        let text = String::from_utf8(self.0.0.lock().unwrap().clone()).map_err(|e| e.to_string())?;
        let mut latest: Option<Vec<Row>> = None;
        for record in StdoutSink::parse_records(self.1, &text)? {
            if record["targetNamespace"] != inventory.namespace.as_str()
                || record["targetName"] != inventory.name.as_str()
                || record["context"] != inventory.cluster.as_str()
            {
                continue;
            }
            let envelope = &record["envelope"];
            let items: Vec<Row> =
                serde_json::from_value(envelope["items"].clone()).map_err(|e| e.to_string())?;
            let first_part = envelope.get("partIndex").and_then(|v| v.as_u64()).unwrap_or(1) == 1;
            match (&mut latest, first_part) {
                (Some(rows), false) => rows.extend(items),
                _ => latest = Some(items),
            }
        }
        Ok(latest)
    }
}

/// A sink writing into memory and its reader.
pub(crate) fn setup(format: Format) -> (StdoutSink, Records) {
    let buffer = Buffer::default();
    (
        StdoutSink::to_writer(format, buffer.clone()),
        Records(buffer, format),
    )
}

mod ndjson {
    kollect_testkit::sink_conformance_tests!(async { super::setup(kollect_sinks::format::Format::Ndjson) });
}

mod yaml {
    kollect_testkit::sink_conformance_tests!(async { super::setup(kollect_sinks::format::Format::Yaml) });
}

#[tokio::test]
async fn json_records_are_one_indented_array_and_empty_is_brackets() {
    use kollect_core::model::Snapshot;
    use kollect_core::sink::{ExportRequest, Sink};
    let (sink, records) = setup(Format::Json);
    sink.finish().unwrap();
    assert_eq!(
        String::from_utf8(records.0.0.lock().unwrap().clone()).unwrap(),
        "[]\n"
    );

    let (sink, records) = setup(Format::Json);
    let inventory = InventoryRef::namespaced("team-a", "apps").with_cluster("kind-dev");
    let rows = vec![kollect_testkit::conformance::sample_row(&inventory, "web", 1)];
    let request = ExportRequest::full(
        inventory,
        2,
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        Snapshot::new(rows),
    );
    sink.export(&request).await.unwrap();
    // The record is written as it is exported; finish only closes the array.
    let written = String::from_utf8(records.0.0.lock().unwrap().clone()).unwrap();
    assert!(
        written.starts_with("[\n  {") && !written.ends_with("]\n"),
        "{written}"
    );
    sink.finish().unwrap();
    let text = String::from_utf8(records.0.0.lock().unwrap().clone()).unwrap();
    assert!(text.starts_with("[\n  {\n    \"context\": \"kind-dev\",\n    \"targetNamespace\": \"team-a\",\n    \"targetName\": \"apps\",\n    \"path\": \"inventory/team-a/apps.json\",\n    \"envelope\": {\n      \"schemaVersion\": \"kollect.dev/v1alpha1\""), "{text}");
    assert!(text.ends_with("]\n"));
}

/// NDJSON lines carry the envelope exactly as it was encoded: floats as Go writes them
/// (`100000000000000000000`, not `1e20`), and the checksum therefore matches the bytes.
#[tokio::test]
async fn ndjson_lines_keep_the_envelope_bytes() {
    use kollect_core::model::Snapshot;
    use kollect_core::sink::{ExportRequest, Sink};
    let (sink, records) = setup(Format::Ndjson);
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let mut row = kollect_testkit::conformance::sample_row(&inventory, "web", 1);
    if let Some(attributes) = row.attributes.as_mut() {
        attributes.insert("big".into(), serde_json::json!(1e20));
        attributes.insert("small".into(), serde_json::json!(1e-7));
    }
    let request = ExportRequest::full(
        inventory,
        1,
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        Snapshot::new(vec![row]),
    );
    sink.export(&request).await.unwrap();
    let text = String::from_utf8(records.0.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains(r#""big":100000000000000000000"#), "{text}");
    assert!(text.contains(r#""small":1e-7"#), "{text}");
    let envelope = text
        .trim_end()
        .strip_prefix(r#"{"context":"","targetNamespace":"team-a","targetName":"apps","path":"inventory/team-a/apps.json","envelope":"#)
        .and_then(|rest| rest.strip_suffix('}'))
        .expect("the record's fields, then the envelope");
    assert_eq!(envelope.as_bytes(), request.envelope().as_slice());
}
