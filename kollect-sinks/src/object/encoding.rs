//! What an object holds: the format (`serialization.format`) and the compression
//! (`serialization.compression`) of the objects an object store sink writes.
//!
//! | Format | Object | Content-Type |
//! |---|---|---|
//! | `json` | the canonical envelope, byte-identical to the Go operator's | `application/json` |
//! | `yaml` | the same document as YAML | `application/yaml` |
//! | `ndjson` | the envelope header on the first line, then one item per line | `application/x-ndjson` |
//! | `csv` | a header line, then one row per item: [`CSV_COLUMNS`], attributes as compact JSON | `text/csv` |
//!
//! `gzip` and `zstd` compress the whole object, add `.gz` or `.zst` to its key and set
//! `Content-Encoding: gzip` or `zstd`.

use std::io::{Read, Write};

use kollect_core::api::v1alpha1::{
    Compression, KollectSnapshotSinkSpec, ObjectStoreFormat, SerializationFormat,
};
use kollect_core::model::Row;
use kollect_core::sink::{ExportRequest, SinkError};

use crate::format::Format;

/// The CSV columns, in order. `cluster`, `inventory_namespace` and `inventory_name` say whose
/// inventory a row belongs to, so files of several inventories can be read as one table.
pub const CSV_COLUMNS: [&str; 12] = [
    "cluster",
    "inventory_namespace",
    "inventory_name",
    "target_namespace",
    "target_name",
    "namespace",
    "name",
    "group",
    "version",
    "kind",
    "uid",
    "attributes",
];

/// The Zstandard level: the library's default, a good ratio at gzip-like speed.
const ZSTD_LEVEL: i32 = 3;

/// The layout of an object's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectFormat {
    /// An envelope document (JSON, YAML or NDJSON).
    Document(Format),
    /// Rows as CSV.
    Csv,
}

/// How objects are compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ObjectCompression {
    /// Not compressed.
    #[default]
    None,
    /// gzip (`.gz`, `Content-Encoding: gzip`).
    Gzip,
    /// Zstandard (`.zst`, `Content-Encoding: zstd`).
    Zstd,
}

/// Format and compression together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// The format.
    pub format: ObjectFormat,
    /// The compression.
    pub compression: ObjectCompression,
}

impl Encoding {
    /// The encoding a snapshot sink spec asks for: `serialization.format` (or the legacy
    /// `objectStore.format`) and `serialization.compression`. What this build cannot write is
    /// refused with a message naming the field, never ignored.
    pub fn from_spec(spec: &KollectSnapshotSinkSpec) -> Result<Self, SinkError> {
        let serialization = spec.common.serialization.as_ref();
        let legacy = spec
            .object_store
            .as_ref()
            .and_then(|o| o.format)
            .map(|f| match f {
                ObjectStoreFormat::Json => SerializationFormat::Json,
                ObjectStoreFormat::Parquet => SerializationFormat::Parquet,
            });
        let format = match serialization.and_then(|s| s.format).or(legacy) {
            None | Some(SerializationFormat::Json) => ObjectFormat::Document(Format::Json),
            Some(SerializationFormat::Yaml) => ObjectFormat::Document(Format::Yaml),
            Some(SerializationFormat::Ndjson) => ObjectFormat::Document(Format::Ndjson),
            Some(SerializationFormat::Csv) => ObjectFormat::Csv,
            Some(SerializationFormat::Parquet) => {
                return Err(SinkError::terminal(
                    "serialization.format parquet: this build's object store sinks do not write Parquet; use json, ndjson, yaml or csv",
                ));
            }
        };
        let compression = match serialization.and_then(|s| s.compression) {
            None | Some(Compression::None) => ObjectCompression::None,
            Some(Compression::Gzip) => ObjectCompression::Gzip,
            Some(Compression::Zstd) => ObjectCompression::Zstd,
            Some(Compression::Snappy) => {
                return Err(SinkError::terminal(
                    "serialization.compression snappy is a Parquet page codec; use none, gzip or zstd for this format",
                ));
            }
        };
        if spec
            .object_store
            .as_ref()
            .is_some_and(|o| !o.hot_attributes.is_empty())
        {
            return Err(SinkError::terminal(
                "objectStore.hotAttributes: promoted columns exist only in Parquet, which this build's object store sinks do not write",
            ));
        }
        Ok(Self { format, compression })
    }

    /// The extension the path template's `{extension}` stands for (`.json`, `.csv`, ...).
    pub fn extension(&self) -> &'static str {
        match self.format {
            ObjectFormat::Document(format) => format.extension(),
            ObjectFormat::Csv => ".csv",
        }
    }

    /// What compression adds after the rendered key (`.gz`), or nothing.
    pub fn suffix(&self) -> &'static str {
        match self.compression {
            ObjectCompression::None => "",
            ObjectCompression::Gzip => ".gz",
            ObjectCompression::Zstd => ".zst",
        }
    }

    /// `Content-Type`.
    pub fn content_type(&self) -> &'static str {
        match self.format {
            ObjectFormat::Document(Format::Json) => "application/json",
            ObjectFormat::Document(Format::Yaml) => "application/yaml",
            ObjectFormat::Document(Format::Ndjson) => "application/x-ndjson",
            ObjectFormat::Csv => "text/csv",
        }
    }

    /// `Content-Encoding`, when compressed.
    pub fn content_encoding(&self) -> Option<&'static str> {
        match self.compression {
            ObjectCompression::None => None,
            ObjectCompression::Gzip => Some("gzip"),
            ObjectCompression::Zstd => Some("zstd"),
        }
    }

    /// `json`, `csv`, ... as the pointer object names it.
    pub fn format_name(&self) -> &'static str {
        match self.format {
            ObjectFormat::Document(Format::Json) => "json",
            ObjectFormat::Document(Format::Yaml) => "yaml",
            ObjectFormat::Document(Format::Ndjson) => "ndjson",
            ObjectFormat::Csv => "csv",
        }
    }

    /// `none` or `gzip`, as the pointer object names it.
    pub fn compression_name(&self) -> &'static str {
        match self.compression {
            ObjectCompression::None => "none",
            ObjectCompression::Gzip => "gzip",
            ObjectCompression::Zstd => "zstd",
        }
    }

    /// The bytes of the object for `request`'s part.
    pub fn render(&self, request: &ExportRequest) -> Result<Vec<u8>, SinkError> {
        let plain = match self.format {
            ObjectFormat::Document(format) => format.render(request)?,
            ObjectFormat::Csv => csv_rows(request)?,
        };
        match self.compression {
            ObjectCompression::None => Ok(plain),
            ObjectCompression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder
                    .write_all(&plain)
                    .and_then(|()| encoder.finish())
                    .map_err(|e| SinkError::terminal(format!("gzip: {e}")))
            }
            ObjectCompression::Zstd => zstd::encode_all(plain.as_slice(), ZSTD_LEVEL)
                .map_err(|e| SinkError::terminal(format!("zstd: {e}"))),
        }
    }

    /// Reads back the rows of an object written with this encoding.
    pub fn read_rows(&self, bytes: &[u8]) -> Result<Vec<Row>, String> {
        let plain = match self.compression {
            ObjectCompression::None => bytes.to_vec(),
            ObjectCompression::Gzip => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("gunzip: {e}"))?;
                out
            }
            ObjectCompression::Zstd => zstd::decode_all(bytes).map_err(|e| format!("zstd: {e}"))?,
        };
        match self.format {
            ObjectFormat::Document(format) => format.read_rows(&plain),
            ObjectFormat::Csv => read_csv(&plain),
        }
    }
}

fn csv_rows(request: &ExportRequest) -> Result<Vec<u8>, SinkError> {
    let error = |e: csv::Error| SinkError::terminal(format!("render CSV: {e}"));
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_COLUMNS).map_err(error)?;
    let inventory = &request.inventory;
    for row in request.rows() {
        let attributes = row
            .attributes
            .as_ref()
            .map(|a| kollect_core::model::canonical::to_string(&serde_json::Value::Object(a.clone())))
            .unwrap_or_default();
        writer
            .write_record([
                inventory.cluster.as_str(),
                inventory.namespace.as_str(),
                inventory.name.as_str(),
                &row.target_namespace,
                &row.target_name,
                &row.namespace,
                &row.name,
                &row.group,
                &row.version,
                &row.kind,
                &row.uid,
                &attributes,
            ])
            .map_err(error)?;
    }
    writer
        .into_inner()
        .map_err(|e| SinkError::terminal(format!("render CSV: {e}")))
}

fn read_csv(bytes: &[u8]) -> Result<Vec<Row>, String> {
    let mut reader = csv::Reader::from_reader(bytes);
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| e.to_string())?;
        let field = |i: usize| record.get(i).unwrap_or_default().to_owned();
        let attributes = match record.get(11).unwrap_or_default() {
            "" => None,
            text => Some(serde_json::from_str(text).map_err(|e| format!("attributes: {e}"))?),
        };
        rows.push(Row {
            target_namespace: field(3),
            target_name: field(4),
            namespace: field(5),
            name: field(6),
            group: field(7),
            version: field(8),
            kind: field(9),
            uid: field(10),
            attributes,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> KollectSnapshotSinkSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn formats_and_compression_from_the_spec() {
        let default = Encoding::from_spec(&spec("type: s3\nendpoint: s3://b\n")).unwrap();
        assert_eq!(
            default,
            Encoding {
                format: ObjectFormat::Document(Format::Json),
                compression: ObjectCompression::None
            }
        );
        let csv = Encoding::from_spec(&spec(
            "type: s3\nendpoint: s3://b\nserialization: {format: csv, compression: gzip}\n",
        ))
        .unwrap();
        assert_eq!(
            (csv.extension(), csv.suffix(), csv.content_type()),
            (".csv", ".gz", "text/csv")
        );
        let zstd = Encoding::from_spec(&spec(
            "type: s3\nendpoint: s3://b\nserialization: {compression: zstd}\n",
        ))
        .unwrap();
        assert_eq!((zstd.suffix(), zstd.content_encoding()), (".zst", Some("zstd")));
    }

    #[test]
    fn what_cannot_be_written_is_refused_by_name() {
        for (yaml, field) in [
            ("serialization: {format: parquet}", "serialization.format parquet"),
            ("objectStore: {format: parquet}", "serialization.format parquet"),
            (
                "serialization: {compression: snappy}",
                "serialization.compression snappy",
            ),
            (
                "objectStore: {hotAttributes: [image]}",
                "objectStore.hotAttributes",
            ),
        ] {
            let error =
                Encoding::from_spec(&spec(&format!("type: s3\nendpoint: s3://b\n{yaml}\n"))).unwrap_err();
            assert!(error.message().starts_with(field), "{yaml}: {error}");
        }
    }
}
