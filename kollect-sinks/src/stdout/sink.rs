//! The stdout sink: records written to a shared writer.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use kollect_core::model::{ExportMeta, Part, Snapshot};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};
use serde_json::{Map, Value};

use crate::format::Format;

type Writer = Box<dyn Write + Send>;

/// Writes records to a writer.
#[derive(Clone)]
pub struct StdoutSink {
    format: Format,
    out: Arc<Mutex<Writer>>,
    pending: Arc<Mutex<Vec<Value>>>,
}

impl std::fmt::Debug for StdoutSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdoutSink")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl StdoutSink {
    /// Records to standard output.
    pub fn stdout(format: Format) -> Self {
        Self::to_writer(format, std::io::stdout())
    }

    /// Records to `writer`.
    pub fn to_writer(format: Format, writer: impl Write + Send + 'static) -> Self {
        Self {
            format,
            out: Arc::new(Mutex::new(Box::new(writer))),
            pending: Arc::default(),
        }
    }

    /// The record's fields before the envelope, in output order.
    fn fields(inventory: &InventoryRef, path: String) -> [(&'static str, String); 4] {
        [
            ("context", inventory.cluster.clone()),
            ("targetNamespace", inventory.namespace.clone()),
            ("targetName", inventory.name.clone()),
            ("path", path),
        ]
    }

    fn record(inventory: &InventoryRef, path: String, envelope: &[u8]) -> Result<Value, SinkError> {
        let envelope: Value = serde_json::from_slice(envelope)
            .map_err(|e| SinkError::terminal(format!("re-read envelope: {e}")))?;
        let mut record: Map<String, Value> = Self::fields(inventory, path)
            .into_iter()
            .map(|(key, value)| (key.to_owned(), Value::String(value)))
            .collect();
        record.insert("envelope".into(), envelope);
        Ok(Value::Object(record))
    }

    /// One NDJSON line with the envelope's bytes as they were encoded: re-rendering them
    /// through `serde_json` would print floats its own way (`1e20`) instead of Go's
    /// (`100000000000000000000`).
    fn ndjson_line(inventory: &InventoryRef, path: String, envelope: &[u8]) -> Vec<u8> {
        let mut line = Vec::with_capacity(envelope.len() + 128);
        line.push(b'{');
        for (key, value) in Self::fields(inventory, path) {
            kollect_core::model::canonical::write_str(&mut line, key);
            line.push(b':');
            kollect_core::model::canonical::write_str(&mut line, &value);
            line.push(b',');
        }
        line.extend_from_slice(b"\"envelope\":");
        line.extend_from_slice(envelope);
        line.extend_from_slice(b"}\n");
        line
    }

    fn emit(&self, inventory: &InventoryRef, path: String, envelope: &[u8]) -> Result<u64, SinkError> {
        let bytes = match self.format {
            Format::Json => {
                let record = Self::record(inventory, path, envelope)?;
                self.pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(record);
                return Ok(0);
            }
            Format::Ndjson => Self::ndjson_line(inventory, path, envelope),
            Format::Yaml => {
                let record = Self::record(inventory, path, envelope)?;
                let yaml = serde_norway::to_string(&record)
                    .map_err(|e| SinkError::terminal(format!("render record: {e}")))?;
                format!("---\n{yaml}").into_bytes()
            }
        };
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.write_all(&bytes)
            .and_then(|()| out.flush())
            .map_err(|e| SinkError::transient(format!("write to output: {e}")))?;
        Ok(bytes.len() as u64)
    }

    /// Writes the JSON array of every record (JSON format; a no-op otherwise) and flushes.
    pub fn finish(&self) -> Result<(), SinkError> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if self.format == Format::Json {
            let records = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
            let mut text = serde_json::to_string_pretty(&Value::Array(records))
                .map_err(|e| SinkError::terminal(format!("render records: {e}")))?;
            text.push('\n');
            out.write_all(text.as_bytes())
                .map_err(|e| SinkError::transient(format!("write to output: {e}")))?;
        }
        out.flush()
            .map_err(|e| SinkError::transient(format!("write to output: {e}")))
    }

    /// Reads records back from NDJSON or YAML output: `(record fields, envelope)` in order.
    pub fn parse_records(format: Format, text: &str) -> Result<Vec<Value>, String> {
        match format {
            Format::Ndjson => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
                .collect(),
            Format::Yaml => text
                .split("---\n")
                .filter(|d| !d.trim().is_empty())
                .map(|d| serde_norway::from_str(d).map_err(|e| e.to_string()))
                .collect(),
            Format::Json => serde_json::from_str(text).map_err(|e| e.to_string()),
        }
    }
}

#[async_trait]
impl Sink for StdoutSink {
    fn sink_type(&self) -> &str {
        super::TYPE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::MESSAGES.with_delta(false)
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        let path = request.part_path(&request.inventory.default_object_path(".json"));
        let bytes = self.emit(&request.inventory, path, &request.envelope())?;
        Ok(ExportReceipt::written(bytes))
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        let meta = ExportMeta {
            generation: Some(request.generation),
            cluster: Some(request.inventory.cluster.clone()).filter(|c| !c.is_empty()),
            exported_at: k8s_openapi::jiff::Timestamp::now(),
        };
        let envelope = Part::whole(&Snapshot::empty()).encode(&Snapshot::empty(), &meta);
        self.emit(
            &request.inventory,
            request.inventory.default_object_path(".json"),
            &envelope,
        )
        .map(|_| ())
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        Ok(ProbeReport::new(
            std::time::Duration::ZERO,
            "standard output is always available",
        ))
    }
}
