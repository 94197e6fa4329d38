//! The stdout sink: records written to a shared writer.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use kollect_core::model::{ExportMeta, Part, Snapshot};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::format::Format;

type Writer = Box<dyn Write + Send>;

/// A writer that indents every line after the first by two spaces (JSON text has no raw
/// newlines inside strings, so every newline starts a line of structure) and counts the bytes
/// it passes on. serde_json's pretty printer cannot start at an indentation level of its own.
struct Indented<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Indented<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            self.inner.write_all(&rest[..=at])?;
            self.inner.write_all(b"  ")?;
            self.written += at as u64 + 3;
            rest = &rest[at + 1..];
        }
        self.inner.write_all(rest)?;
        self.written += rest.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A record of the JSON format, fields in output order; `envelope` is a transcoder that copies
/// the encoded envelope into the output.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonRecord<'a, E> {
    context: &'a str,
    target_namespace: &'a str,
    target_name: &'a str,
    path: &'a str,
    envelope: E,
}

fn write_error(e: impl std::fmt::Display) -> SinkError {
    SinkError::transient(format!("write to output: {e}"))
}

/// Writes records to a writer.
///
/// Each record is written as it comes, JSON included: the JSON array is opened by the first
/// record and closed by [`StdoutSink::finish`], so nothing but the record being written is held.
#[derive(Clone)]
pub struct StdoutSink {
    format: Format,
    out: Arc<Mutex<Output>>,
}

/// The writer and how many records it holds.
struct Output {
    writer: Writer,
    records: usize,
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
            out: Arc::new(Mutex::new(Output {
                writer: Box::new(writer),
                records: 0,
            })),
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

    /// Writes the record of `envelope` as one element of the JSON array, as a pretty-printed
    /// array shows it: after `[` for the first and `,` for the others, indented by two spaces.
    /// The envelope is transcoded from its bytes token by token straight into the output
    /// (through a buffer), so neither a parsed copy nor a rendered copy of it is held. Returns
    /// the bytes written.
    fn write_json_element(
        writer: &mut Writer,
        inventory: &InventoryRef,
        path: &str,
        envelope: &[u8],
        first: bool,
    ) -> Result<u64, SinkError> {
        let mut element = Indented {
            inner: std::io::BufWriter::with_capacity(64 * 1024, writer),
            written: 0,
        };
        element
            .write_all(if first { b"[\n" } else { b",\n" })
            .map_err(write_error)?;
        let mut source = serde_json::Deserializer::from_slice(envelope);
        let record = JsonRecord {
            context: &inventory.cluster,
            target_namespace: &inventory.namespace,
            target_name: &inventory.name,
            path,
            envelope: serde_transcode::Transcoder::new(&mut source),
        };
        // The envelope comes from the export engine's encoder, so a parse error here is a
        // defect, not bad input; it is reported as terminal either way.
        serde_json::to_writer_pretty(&mut element, &record)
            .and_then(|()| source.end())
            .map_err(|e| match e.is_io() {
                true => write_error(e),
                false => SinkError::terminal(format!("re-read envelope: {e}")),
            })?;
        element.flush().map_err(write_error)?;
        Ok(element.written)
    }

    fn emit(&self, inventory: &InventoryRef, path: String, envelope: &[u8]) -> Result<u64, SinkError> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let out = &mut *out;
        let written = match self.format {
            Format::Json => {
                let first = out.records == 0;
                Self::write_json_element(&mut out.writer, inventory, &path, envelope, first)?
            }
            Format::Ndjson => {
                let line = Self::ndjson_line(inventory, path, envelope);
                out.writer.write_all(&line).map_err(write_error)?;
                line.len() as u64
            }
            Format::Yaml => {
                let record = Self::record(inventory, path, envelope)?;
                let yaml = serde_norway::to_string(&record)
                    .map_err(|e| SinkError::terminal(format!("render record: {e}")))?;
                let document = format!("---\n{yaml}");
                out.writer.write_all(document.as_bytes()).map_err(write_error)?;
                document.len() as u64
            }
        };
        out.writer.flush().map_err(write_error)?;
        out.records += 1;
        Ok(written)
    }

    /// Closes the JSON array (`[]` when nothing was written; a no-op for the other formats) and
    /// flushes.
    pub fn finish(&self) -> Result<(), SinkError> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if self.format == Format::Json {
            let end: &[u8] = if out.records == 0 { b"[]\n" } else { b"\n]\n" };
            out.writer.write_all(end).map_err(write_error)?;
        }
        out.writer.flush().map_err(write_error)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose bytes the test can read while the sink still holds it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap_or_else(PoisonError::into_inner).clone())
                .unwrap_or_default()
        }
    }

    fn envelope(items: &str) -> Vec<u8> {
        format!(r#"{{"schemaVersion":"v1","checksum":"c","itemCount":1,"items":[{items}]}}"#).into_bytes()
    }

    #[test]
    fn json_records_are_written_as_they_come_and_form_the_pretty_array() {
        for count in [0usize, 1, 3] {
            let out = Shared::default();
            let sink = StdoutSink::to_writer(Format::Json, out.clone());
            let inventory = InventoryRef::namespaced("team-a", "apps");
            let mut records = Vec::new();
            for i in 0..count {
                let path = format!("inventory/team-a/apps.part-{i}.json");
                let envelope = envelope(&format!(r#"{{"name":"cm-{i}","n":{i}}}"#));
                sink.emit(&inventory, path.clone(), &envelope).unwrap();
                records.push(StdoutSink::record(&inventory, path, &envelope).unwrap());
                // Written already, not held until the end.
                assert!(out.text().contains(&format!("cm-{i}")));
            }
            sink.finish().unwrap();
            let expected = serde_json::to_string_pretty(&Value::Array(records)).unwrap() + "\n";
            assert_eq!(out.text(), expected, "{count} records");
            assert_eq!(
                StdoutSink::parse_records(Format::Json, &out.text())
                    .unwrap()
                    .len(),
                count
            );
        }
    }

    #[test]
    fn json_records_render_every_kind_of_value_as_a_parsed_value_would() {
        let items = r#"{"float":1.5e300,"small":1e-7,"negative":-0.0,"int":-12,
            "max":18446744073709551615,"emptyMap":{},"emptyList":[],"text":"line\nbreak \u00e9 \"q\" \u2028 \\",
            "nested":{"a":[{},[],{"b":null}],"c":[1,-2,3.25,true,false]}}"#;
        let envelope = envelope(items);
        let out = Shared::default();
        let sink = StdoutSink::to_writer(Format::Json, out.clone());
        let inventory = InventoryRef::namespaced("team-a", "apps");
        sink.emit(&inventory, "p.json".into(), &envelope).unwrap();
        sink.emit(&inventory, "q.json".into(), &envelope).unwrap();
        sink.finish().unwrap();
        let record = |path: &str| StdoutSink::record(&inventory, path.into(), &envelope).unwrap();
        let expected = serde_json::to_string_pretty(&Value::Array(vec![record("p.json"), record("q.json")]))
            .unwrap()
            + "\n";
        assert_eq!(out.text(), expected);
    }

    #[test]
    fn a_malformed_envelope_is_a_terminal_error_and_is_not_counted() {
        for bad in [&b"{\"items\":[1,"[..], b"{} trailing", b"not json"] {
            let out = Shared::default();
            let sink = StdoutSink::to_writer(Format::Json, out.clone());
            let inventory = InventoryRef::namespaced("team-a", "apps");
            let error = sink.emit(&inventory, "p.json".into(), bad).unwrap_err();
            assert!(!error.is_retryable(), "{error}");
            assert!(error.to_string().contains("re-read envelope"), "{error}");
            let out_records = sink.out.lock().unwrap_or_else(PoisonError::into_inner).records;
            assert_eq!(out_records, 0);
        }
    }
}
