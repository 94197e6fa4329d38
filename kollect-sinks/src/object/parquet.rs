//! Parquet objects: one row per item, identity as typed columns, the attributes as one JSON
//! column, and chosen attributes promoted to columns of their own (`objectStore.hotAttributes`).
//!
//! The column names are the Go operator's, in its order (sorted by name), so queries written
//! against its files keep working; a `generation` column is added so the latest generation of
//! an inventory can be selected without parsing file names:
//!
//! | Column | Parquet type |
//! |---|---|
//! | `api_version` | STRING (the item's `version`) |
//! | `attr_<name>` | optional STRING, one per hot attribute |
//! | `attributes` | optional JSON, the compact attributes map |
//! | `cluster` | STRING (`default` when the inventory has no cluster identity) |
//! | `exported_at` | TIMESTAMP(MICROS, UTC), the envelope's `exportedAt` |
//! | `generation` | INT64, the inventory's `metadata.generation` |
//! | `group` | optional STRING, null for the core group |
//! | `inventory_name`, `inventory_namespace` | STRING |
//! | `kind`, `name`, `namespace` | STRING |
//! | `target_name`, `target_namespace` | STRING |
//! | `uid` | STRING |
//!
//! Every column is dictionary encoded; `serialization.compression` picks the page codec.

use std::sync::Arc;

use kollect_core::model::{Row, SharedRow};
use kollect_core::sink::{ExportRequest, SinkError};
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::types::Type;
use serde_json::Value;

/// Hot attributes when `objectStore.hotAttributes` is empty (the Go operator's default).
pub const DEFAULT_HOT_ATTRIBUTES: [&str; 2] = ["image", "version"];

/// `Content-Type` of a Parquet object.
pub const CONTENT_TYPE: &str = "application/vnd.apache.parquet";

/// The footer key holding the envelope checksum of the export a file belongs to.
pub const CHECKSUM_KEY: &str = "kollect.checksum";

/// The Zstandard level of Parquet pages: the library's default.
const ZSTD_LEVEL: i32 = 3;

/// An attribute promoted to a column of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotAttribute {
    /// The attribute's name in the profile.
    pub attribute: String,
    /// Its column: `attr_` and the lower-cased name, `-`, `_` and `.` turned into `_`, other
    /// characters dropped (`attr_unknown` when nothing is left).
    pub column: String,
}

impl HotAttribute {
    fn new(attribute: &str) -> Self {
        let mut column = String::from("attr_");
        for c in attribute.chars().flat_map(char::to_lowercase) {
            match c {
                'a'..='z' | '0'..='9' => column.push(c),
                '-' | '_' | '.' => column.push('_'),
                _ => {}
            }
        }
        if column.len() == "attr_".len() {
            column.push_str("unknown");
        }
        Self {
            attribute: attribute.to_owned(),
            column,
        }
    }
}

/// The page codecs `serialization.compression` selects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PageCodec {
    /// Uncompressed pages.
    #[default]
    None,
    /// Snappy.
    Snappy,
    /// gzip.
    Gzip,
    /// Zstandard.
    Zstd,
}

/// How Parquet objects are laid out: the hot attributes and the page codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetLayout {
    hot: Vec<HotAttribute>,
    codec: PageCodec,
}

impl ParquetLayout {
    /// The layout for `hot_attributes` (the default list when empty): blanks and
    /// case-insensitive repeats dropped, the rest sorted. Two attributes whose columns would
    /// share a name are refused.
    pub fn new(hot_attributes: &[String], codec: PageCodec) -> Result<Self, SinkError> {
        let configured: Vec<&str> = if hot_attributes.is_empty() {
            DEFAULT_HOT_ATTRIBUTES.to_vec()
        } else {
            hot_attributes.iter().map(|a| a.trim()).collect()
        };
        let mut names: Vec<&str> = Vec::new();
        for name in configured {
            if !name.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name);
            }
        }
        names.sort_unstable();
        let hot: Vec<HotAttribute> = names.into_iter().map(HotAttribute::new).collect();
        for (i, a) in hot.iter().enumerate() {
            if let Some(b) = hot[i + 1..].iter().find(|b| b.column == a.column) {
                return Err(SinkError::terminal(format!(
                    "objectStore.hotAttributes: \"{}\" and \"{}\" would both be the column {}",
                    a.attribute, b.attribute, a.column
                )));
            }
        }
        Ok(Self { hot, codec })
    }

    /// The promoted attributes, in column order.
    pub fn hot_attributes(&self) -> &[HotAttribute] {
        &self.hot
    }

    /// The page codec.
    pub fn codec(&self) -> PageCodec {
        self.codec
    }

    /// The column names, in file order.
    pub fn columns(&self) -> Vec<String> {
        self.column_specs().into_iter().map(|c| c.name).collect()
    }

    fn column_specs(&self) -> Vec<ColumnSpec> {
        use ColumnKind::{Int64, Json, OptionalString, String as Str, Timestamp};
        let mut columns = vec![ColumnSpec::new("api_version", Str)];
        columns.extend(
            self.hot
                .iter()
                .map(|h| ColumnSpec::new(&h.column, OptionalString)),
        );
        for (name, kind) in [
            ("attributes", Json),
            ("cluster", Str),
            ("exported_at", Timestamp),
            ("generation", Int64),
            ("group", OptionalString),
            ("inventory_name", Str),
            ("inventory_namespace", Str),
            ("kind", Str),
            ("name", Str),
            ("namespace", Str),
            ("target_name", Str),
            ("target_namespace", Str),
            ("uid", Str),
        ] {
            columns.push(ColumnSpec::new(name, kind));
        }
        columns
    }

    fn schema(&self) -> Result<Type, SinkError> {
        let fields = self
            .column_specs()
            .iter()
            .map(|c| c.parquet_type().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Type::group_type_builder("inventory")
            .with_fields(fields)
            .build()
            .map_err(encode_error)
    }

    fn properties(&self, request: &ExportRequest) -> Result<WriterProperties, SinkError> {
        let compression = match self.codec {
            PageCodec::None => Compression::UNCOMPRESSED,
            PageCodec::Snappy => Compression::SNAPPY,
            PageCodec::Gzip => Compression::GZIP(Default::default()),
            PageCodec::Zstd => Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).map_err(encode_error)?),
        };
        Ok(WriterProperties::builder()
            .set_compression(compression)
            .set_dictionary_enabled(true)
            .set_key_value_metadata(Some(vec![KeyValue::new(
                CHECKSUM_KEY.to_owned(),
                request.snapshot.fingerprint().as_str().to_owned(),
            )]))
            .build())
    }

    /// The file for `request`'s part: one row group holding every row of the part.
    pub fn render(&self, request: &ExportRequest) -> Result<Vec<u8>, SinkError> {
        let rows: Vec<&SharedRow> = request.rows().collect();
        let inventory = &request.inventory;
        let cluster = if inventory.cluster.is_empty() {
            "default"
        } else {
            inventory.cluster.as_str()
        };
        let exported_at = request.exported_at.as_microsecond();
        let mut writer = SerializedFileWriter::new(
            Vec::new(),
            Arc::new(self.schema()?),
            Arc::new(self.properties(request)?),
        )
        .map_err(encode_error)?;
        let mut group = writer.next_row_group().map_err(encode_error)?;
        for spec in self.column_specs() {
            let Some(mut column) = group.next_column().map_err(encode_error)? else {
                return Err(SinkError::terminal(
                    "render Parquet: the writer has fewer columns than the schema",
                ));
            };
            match spec.kind {
                ColumnKind::Timestamp | ColumnKind::Int64 => {
                    let value = if spec.kind == ColumnKind::Timestamp {
                        exported_at
                    } else {
                        request.generation
                    };
                    column
                        .typed::<Int64Type>()
                        .write_batch(&vec![value; rows.len()], None, None)
                        .map_err(encode_error)?;
                }
                kind => {
                    let values: Vec<Option<ByteArray>> = rows
                        .iter()
                        .map(|row| self.text(&spec.name, row, cluster, inventory))
                        .collect();
                    let writer = column.typed::<ByteArrayType>();
                    if kind == ColumnKind::String {
                        let present: Vec<ByteArray> =
                            values.into_iter().map(Option::unwrap_or_default).collect();
                        writer.write_batch(&present, None, None)
                    } else {
                        let levels: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
                        let present: Vec<ByteArray> = values.into_iter().flatten().collect();
                        writer.write_batch(&present, Some(&levels), None)
                    }
                    .map_err(encode_error)?;
                }
            }
            column.close().map_err(encode_error)?;
        }
        group.close().map_err(encode_error)?;
        writer.into_inner().map_err(encode_error)
    }

    /// The text of a string or JSON column of `row`; `None` is null.
    fn text(
        &self,
        column: &str,
        row: &SharedRow,
        cluster: &str,
        inventory: &kollect_core::sink::InventoryRef,
    ) -> Option<ByteArray> {
        let text: &str = match column {
            "api_version" => row.version(),
            "cluster" => cluster,
            "group" if row.group().is_empty() => return None,
            "group" => row.group(),
            "inventory_name" => &inventory.name,
            "inventory_namespace" => &inventory.namespace,
            "kind" => row.kind(),
            "name" => row.name(),
            "namespace" => row.namespace(),
            "target_name" => row.target_name(),
            "target_namespace" => row.target_namespace(),
            "uid" => row.uid(),
            "attributes" if !row.has_attributes() => return None,
            "attributes" => return Some(ByteArray::from(row.canonical_attributes().to_vec())),
            hot => {
                let attribute = self.hot.iter().find(|h| h.column == hot)?;
                let attributes = row.attributes()?;
                return hot_value(attributes.get(&attribute.attribute)?)
                    .map(|text| ByteArray::from(text.into_bytes()));
            }
        };
        Some(ByteArray::from(text))
    }
}

/// A hot attribute's column value: strings as they are, booleans and numbers as text (floats
/// as Go's `%v` prints them, integers with every digit), lists and maps as compact JSON; null,
/// a missing attribute and the empty string are null.
pub(crate) fn hot_value(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) if n.is_f64() => n.as_f64().map(kollect_core::model::canonical::format_float_g),
        Value::Number(n) => Some(n.to_string()),
        other => Some(kollect_core::model::canonical::to_string(other)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    String,
    OptionalString,
    Json,
    Timestamp,
    Int64,
}

struct ColumnSpec {
    name: String,
    kind: ColumnKind,
}

impl ColumnSpec {
    fn new(name: &str, kind: ColumnKind) -> Self {
        Self {
            name: name.to_owned(),
            kind,
        }
    }

    fn parquet_type(&self) -> Result<Type, SinkError> {
        let (physical, logical, repetition) = match self.kind {
            ColumnKind::String => (
                Physical::BYTE_ARRAY,
                Some(LogicalType::String),
                Repetition::REQUIRED,
            ),
            ColumnKind::OptionalString => (
                Physical::BYTE_ARRAY,
                Some(LogicalType::String),
                Repetition::OPTIONAL,
            ),
            ColumnKind::Json => (
                Physical::BYTE_ARRAY,
                Some(LogicalType::Json),
                Repetition::OPTIONAL,
            ),
            ColumnKind::Timestamp => (
                Physical::INT64,
                Some(LogicalType::timestamp(true, TimeUnit::MICROS)),
                Repetition::REQUIRED,
            ),
            ColumnKind::Int64 => (Physical::INT64, None, Repetition::REQUIRED),
        };
        Type::primitive_type_builder(&self.name, physical)
            .with_logical_type(logical)
            .with_repetition(repetition)
            .build()
            .map_err(encode_error)
    }
}

fn encode_error(e: parquet::errors::ParquetError) -> SinkError {
    SinkError::terminal(format!("render Parquet: {e}"))
}

/// Reads back the rows of a Parquet object this sink wrote.
pub fn read_rows(bytes: &[u8]) -> Result<Vec<Row>, String> {
    let reader =
        SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes)).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for record in reader.get_row_iter(None).map_err(|e| e.to_string())? {
        let record = record.map_err(|e| e.to_string())?;
        let mut row = Row::default();
        for (name, field) in record.get_column_iter() {
            let text = match field {
                Field::Str(s) => Some(s.clone()),
                Field::Bytes(b) => Some(String::from_utf8_lossy(b.data()).into_owned()),
                _ => None,
            };
            let text = text.unwrap_or_default();
            match name.as_str() {
                "api_version" => row.version = text,
                "group" => row.group = text,
                "kind" => row.kind = text,
                "name" => row.name = text,
                "namespace" => row.namespace = text,
                "target_name" => row.target_name = text,
                "target_namespace" => row.target_namespace = text,
                "uid" => row.uid = text,
                "attributes" if !text.is_empty() => {
                    row.attributes =
                        Some(serde_json::from_str(&text).map_err(|e| format!("attributes: {e}"))?);
                }
                _ => {}
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hot_attribute_columns_follow_the_go_naming() {
        let layout = ParquetLayout::new(
            &[
                " Image ".into(),
                "image".into(),
                "".into(),
                "app.kubernetes.io/name".into(),
                "#!".into(),
            ],
            PageCodec::None,
        )
        .unwrap();
        let columns: Vec<(&str, &str)> = layout
            .hot_attributes()
            .iter()
            .map(|h| (h.attribute.as_str(), h.column.as_str()))
            .collect();
        assert_eq!(
            columns,
            [
                ("#!", "attr_unknown"),
                ("Image", "attr_image"),
                ("app.kubernetes.io/name", "attr_app_kubernetes_ioname")
            ]
        );
        let default = ParquetLayout::new(&[], PageCodec::None).unwrap();
        assert_eq!(
            default.columns()[..3],
            ["api_version", "attr_image", "attr_version"]
        );
        let clash = ParquetLayout::new(&["a-b".into(), "a_b".into()], PageCodec::None).unwrap_err();
        assert!(clash.message().contains("attr_a_b"), "{clash}");
    }

    #[test]
    fn hot_values_are_text_or_null() {
        for (value, want) in [
            (json!("nginx"), Some("nginx")),
            (json!(""), None),
            (json!(null), None),
            (json!(true), Some("true")),
            (json!(3), Some("3")),
            (json!(12345678901_i64), Some("12345678901")),
            (json!(1.5), Some("1.5")),
            (json!(1e6), Some("1e+06")),
            (json!(["a", 1]), Some("[\"a\",1]")),
        ] {
            assert_eq!(hot_value(&value).as_deref(), want, "{value}");
        }
    }
}
