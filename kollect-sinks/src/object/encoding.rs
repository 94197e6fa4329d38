//! What an object holds: the format (`serialization.format`) and the compression
//! (`serialization.compression`) of the objects an object store sink writes.
//!
//! | Format | Object | Content-Type |
//! |---|---|---|
//! | `json` | the canonical envelope, byte-identical to the Go operator's | `application/json` |
//! | `yaml` | the same document as YAML | `application/yaml` |
//! | `ndjson` | the envelope header on the first line, then one item per line | `application/x-ndjson` |
//! | `csv` | a header line, then one row per item: [`CSV_COLUMNS`], attributes as compact JSON | `text/csv` |
//! | `parquet` | one row per item, typed columns (see [`super::parquet`]) | `application/vnd.apache.parquet` |
//!
//! For the text formats, `gzip` and `zstd` compress the whole object, add `.gz` or `.zst` to
//! its key and set `Content-Encoding: gzip` or `zstd`. For Parquet, `snappy`, `gzip` and `zstd`
//! are page codecs inside the file, whose key and headers stay those of a Parquet file.

use std::io::{Read, Write};

use kollect_core::api::v1alpha1::{
    Compression, KollectSnapshotSinkSpec, ObjectStoreFormat, SerializationFormat,
};
use kollect_core::model::Row;
use kollect_core::sink::{ExportRequest, SinkError};

use super::parquet::{PageCodec, ParquetLayout};
use crate::format::Format;

/// The CSV columns, in order. `cluster`, `inventory_namespace`, `inventory_name` and
/// `generation` say whose inventory a row belongs to, so files of several inventories (and
/// generations) can be read as one table.
pub const CSV_COLUMNS: [&str; 13] = [
    "cluster",
    "inventory_namespace",
    "inventory_name",
    "generation",
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectFormat {
    /// An envelope document (JSON, YAML or NDJSON).
    Document(Format),
    /// Rows as CSV.
    Csv,
    /// Rows as Parquet.
    Parquet(ParquetLayout),
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// The format.
    pub format: ObjectFormat,
    /// The compression.
    pub compression: ObjectCompression,
}

impl Encoding {
    /// The encoding a snapshot sink spec asks for: `serialization.format` (or the legacy
    /// `objectStore.format`), `serialization.compression` and, for Parquet,
    /// `objectStore.hotAttributes`. A combination that cannot be written is refused with a
    /// message naming the field, never ignored.
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
        let compression = serialization.and_then(|s| s.compression);
        let hot_attributes = spec
            .object_store
            .as_ref()
            .map(|o| o.hot_attributes.as_slice())
            .unwrap_or_default();
        let format = match serialization.and_then(|s| s.format).or(legacy) {
            None | Some(SerializationFormat::Json) => ObjectFormat::Document(Format::Json),
            Some(SerializationFormat::Yaml) => ObjectFormat::Document(Format::Yaml),
            Some(SerializationFormat::Ndjson) => ObjectFormat::Document(Format::Ndjson),
            Some(SerializationFormat::Csv) => ObjectFormat::Csv,
            Some(SerializationFormat::Parquet) => {
                let codec = match compression {
                    None | Some(Compression::None) => PageCodec::None,
                    Some(Compression::Snappy) => PageCodec::Snappy,
                    Some(Compression::Gzip) => PageCodec::Gzip,
                    Some(Compression::Zstd) => PageCodec::Zstd,
                };
                return Ok(Self {
                    format: ObjectFormat::Parquet(ParquetLayout::new(hot_attributes, codec)?),
                    compression: ObjectCompression::None,
                });
            }
        };
        if !hot_attributes.is_empty() {
            return Err(SinkError::terminal(
                "objectStore.hotAttributes: promoted columns exist only in Parquet; set serialization.format: parquet or remove them",
            ));
        }
        let compression = match compression {
            None | Some(Compression::None) => ObjectCompression::None,
            Some(Compression::Gzip) => ObjectCompression::Gzip,
            Some(Compression::Zstd) => ObjectCompression::Zstd,
            Some(Compression::Snappy) => {
                return Err(SinkError::terminal(
                    "serialization.compression snappy is a Parquet page codec; use none, gzip or zstd for this format",
                ));
            }
        };
        Ok(Self { format, compression })
    }

    /// The extension the path template's `{extension}` stands for (`.json`, `.csv`, ...).
    pub fn extension(&self) -> &'static str {
        match self.format {
            ObjectFormat::Document(format) => format.extension(),
            ObjectFormat::Csv => ".csv",
            ObjectFormat::Parquet(_) => ".parquet",
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
            ObjectFormat::Parquet(_) => super::parquet::CONTENT_TYPE,
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
            ObjectFormat::Parquet(_) => "parquet",
        }
    }

    /// `none`, `gzip`, ... as the pointer object names it (for Parquet, the page codec).
    pub fn compression_name(&self) -> &'static str {
        if let ObjectFormat::Parquet(layout) = &self.format {
            return match layout.codec() {
                PageCodec::None => "none",
                PageCodec::Snappy => "snappy",
                PageCodec::Gzip => "gzip",
                PageCodec::Zstd => "zstd",
            };
        }
        match self.compression {
            ObjectCompression::None => "none",
            ObjectCompression::Gzip => "gzip",
            ObjectCompression::Zstd => "zstd",
        }
    }

    /// The bytes of the object for `request`'s part.
    pub fn render(&self, request: &ExportRequest) -> Result<Vec<u8>, SinkError> {
        let plain = match &self.format {
            ObjectFormat::Document(format) => format.render(request)?,
            ObjectFormat::Csv => csv_rows(request)?,
            ObjectFormat::Parquet(layout) => return layout.render(request),
        };
        self.compress(plain)
    }

    /// `plain` compressed as this encoding says (unchanged without compression).
    pub fn compress(&self, plain: Vec<u8>) -> Result<Vec<u8>, SinkError> {
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
        let plain = self.decompress(bytes)?;
        match &self.format {
            ObjectFormat::Document(format) => format.read_rows(&plain),
            ObjectFormat::Csv => read_csv(&plain),
            ObjectFormat::Parquet(_) => super::parquet::read_rows(&plain),
        }
    }

    /// The bytes of an object written with this compression, decompressed.
    pub fn decompress(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        Ok(match self.compression {
            ObjectCompression::None => bytes.to_vec(),
            ObjectCompression::Gzip => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("gunzip: {e}"))?;
                out
            }
            ObjectCompression::Zstd => zstd::decode_all(bytes).map_err(|e| format!("zstd: {e}"))?,
        })
    }
}

fn csv_rows(request: &ExportRequest) -> Result<Vec<u8>, SinkError> {
    let error = |e: csv::Error| SinkError::terminal(format!("render CSV: {e}"));
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_COLUMNS).map_err(error)?;
    let inventory = &request.inventory;
    let generation = request.generation.to_string();
    for row in request.rows() {
        // The canonical encoding of the attributes, or an empty cell without them.
        let attributes = match row.has_attributes() {
            true => String::from_utf8_lossy(row.canonical_attributes()),
            false => std::borrow::Cow::Borrowed(""),
        };
        writer
            .write_record([
                inventory.cluster.as_str(),
                inventory.namespace.as_str(),
                inventory.name.as_str(),
                &generation,
                row.target_namespace(),
                row.target_name(),
                row.namespace(),
                row.name(),
                row.group(),
                row.version(),
                row.kind(),
                row.uid(),
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
        let attributes = match record.get(12).unwrap_or_default() {
            "" => None,
            text => Some(serde_json::from_str(text).map_err(|e| format!("attributes: {e}"))?),
        };
        rows.push(Row {
            target_namespace: field(4),
            target_name: field(5),
            namespace: field(6),
            name: field(7),
            group: field(8),
            version: field(9),
            kind: field(10),
            uid: field(11),
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
    fn parquet_takes_page_codecs_and_keeps_its_key_and_headers() {
        for (yaml, codec) in [
            ("serialization: {format: parquet}", "none"),
            ("objectStore: {format: parquet}", "none"),
            ("serialization: {format: parquet, compression: snappy}", "snappy"),
            ("serialization: {format: parquet, compression: gzip}", "gzip"),
            ("serialization: {format: parquet, compression: zstd}", "zstd"),
        ] {
            let encoding =
                Encoding::from_spec(&spec(&format!("type: s3\nendpoint: s3://b\n{yaml}\n"))).unwrap();
            assert_eq!(
                (
                    encoding.extension(),
                    encoding.suffix(),
                    encoding.content_type(),
                    encoding.content_encoding(),
                    encoding.format_name(),
                    encoding.compression_name()
                ),
                (
                    ".parquet",
                    "",
                    "application/vnd.apache.parquet",
                    None,
                    "parquet",
                    codec
                ),
                "{yaml}"
            );
        }
    }

    #[test]
    fn what_cannot_be_written_is_refused_by_name() {
        for (yaml, field) in [
            (
                "serialization: {compression: snappy}",
                "serialization.compression snappy",
            ),
            (
                "objectStore: {hotAttributes: [image]}",
                "objectStore.hotAttributes",
            ),
            (
                "serialization: {format: parquet}\nobjectStore: {hotAttributes: [a.b, a-b]}",
                "objectStore.hotAttributes",
            ),
        ] {
            let error =
                Encoding::from_spec(&spec(&format!("type: s3\nendpoint: s3://b\n{yaml}\n"))).unwrap_err();
            assert!(error.message().starts_with(field), "{yaml}: {error}");
        }
    }
}
