//! The local directory sink passes the sink conformance suite in each document format, and keeps
//! its file rules.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use kollect_core::model::Row;
use kollect_core::sink::InventoryRef;
use kollect_sinks::format::Format;
use kollect_sinks::local::{LocalConfig, LocalSink};
use kollect_testkit::conformance::Inspect;

/// Reads the document files of an inventory back (all parts, in order).
pub(crate) struct Files {
    sink: LocalSink,
    _dir: std::sync::Arc<tempfile::TempDir>,
}

#[async_trait]
impl Inspect for Files {
    async fn rows(&self, inventory: &InventoryRef) -> Result<Option<Vec<Row>>, String> {
        let base = self.sink.base_path(inventory, 0).map_err(|e| e.to_string())?;
        let files = self.sink.files_of(&base);
        if files.is_empty() {
            return Ok(None);
        }
        let mut rows = Vec::new();
        for file in files {
            let bytes = std::fs::read(&file).map_err(|e| e.to_string())?;
            rows.extend(self.sink.format().read_rows(&bytes)?);
        }
        Ok(Some(rows))
    }
}

/// A sink in a fresh directory and its reader.
pub(crate) fn setup(format: Format) -> (LocalSink, Files) {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let sink = LocalSink::new(LocalConfig::new(dir.path().join("out"), format)).unwrap();
    (sink.clone(), Files { sink, _dir: dir })
}

mod json {
    kollect_testkit::sink_conformance_tests!(async { super::setup(kollect_sinks::format::Format::Json) });
}

mod yaml {
    kollect_testkit::sink_conformance_tests!(async { super::setup(kollect_sinks::format::Format::Yaml) });
}

mod ndjson {
    kollect_testkit::sink_conformance_tests!(async { super::setup(kollect_sinks::format::Format::Ndjson) });
}

#[tokio::test]
async fn files_are_0644_dirs_0755_and_identical_bytes_are_not_rewritten() {
    use kollect_core::model::Snapshot;
    use kollect_core::sink::{ExportRequest, Sink};
    use std::os::unix::fs::PermissionsExt;
    let (sink, _files) = setup(Format::Json);
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let rows = vec![kollect_testkit::conformance::sample_row(&inventory, "web", 1)];
    let request = ExportRequest::full(
        inventory,
        1,
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        Snapshot::new(rows),
    );
    let first = sink.export(&request).await.unwrap();
    assert!(!first.unchanged);
    let path = sink.dir().join("inventory/team-a/apps.json");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o644);
    assert_eq!(mode(path.parent().unwrap()), 0o755);
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let second = sink.export(&request).await.unwrap();
    assert!(second.unchanged);
    assert_eq!(second.bytes, 0);
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified);
    assert_eq!(std::fs::read(&path).unwrap(), request.envelope());
}
