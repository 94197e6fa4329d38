//! The one format enum every backend uses ([`Format`]: JSON, YAML, NDJSON), and the rendering of
//! an envelope as a document: the canonical JSON envelope, the same document as YAML, and NDJSON
//! (the envelope header on the first line, then one item per line).
//!
//! Backends differ in what a format means for them (the git sink sorts YAML keys, standard
//! output writes records), but they all name it with this enum and parse it with
//! [`Format::parse`] or [`Format::from_serialization`].
//!
//! YAML and NDJSON documents are derived from the canonical JSON, so keys keep its order
//! (envelope fields in declaration order, map keys sorted) whatever the build's serde_json
//! features are.

use kollect_core::api::v1alpha1::SerializationFormat;
use kollect_core::sink::{ExportRequest, SinkError};
use serde_json::Value;

/// How a document, file or record is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON (for documents: the canonical envelope, byte-identical to the Go operator's).
    #[default]
    Json,
    /// YAML.
    Yaml,
    /// One JSON value per line (for documents: the envelope header, then one item per line).
    Ndjson,
}

impl Format {
    /// The format of `spec.serialization.format`; `None` when the value is not one of these
    /// three (the caller names the backend in its error).
    pub fn from_serialization(format: SerializationFormat) -> Option<Self> {
        match format {
            SerializationFormat::Json => Some(Self::Json),
            SerializationFormat::Yaml => Some(Self::Yaml),
            SerializationFormat::Ndjson => Some(Self::Ndjson),
            _ => None,
        }
    }

    /// Parses `json`, `yaml` or `ndjson` (case-insensitive).
    pub fn parse(text: &str) -> Result<Self, SinkError> {
        match text.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "yaml" | "yml" => Ok(Self::Yaml),
            "ndjson" | "jsonl" => Ok(Self::Ndjson),
            other => Err(SinkError::terminal(format!(
                "unknown format \"{other}\" (supported: json, ndjson, yaml)"
            ))),
        }
    }

    /// The file extension, with the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Json => ".json",
            Self::Yaml => ".yaml",
            Self::Ndjson => ".ndjson",
        }
    }

    /// Renders the envelope of `request`'s part as a document.
    pub fn render(self, request: &ExportRequest) -> Result<Vec<u8>, SinkError> {
        let json = request.envelope();
        match self {
            Self::Json => Ok(json),
            Self::Yaml => {
                let value = parse(&json)?;
                serde_norway::to_string(&value)
                    .map(String::into_bytes)
                    .map_err(|e| SinkError::terminal(format!("render YAML: {e}")))
            }
            Self::Ndjson => {
                let Value::Object(mut envelope) = parse(&json)? else {
                    return Err(SinkError::terminal("the envelope is not a JSON object"));
                };
                let items = envelope.remove("items");
                let mut out = serde_json::to_vec(&envelope)
                    .map_err(|e| SinkError::terminal(format!("render NDJSON: {e}")))?;
                out.push(b'\n');
                for item in items.as_ref().and_then(Value::as_array).into_iter().flatten() {
                    serde_json::to_writer(&mut out, item)
                        .map_err(|e| SinkError::terminal(format!("render NDJSON: {e}")))?;
                    out.push(b'\n');
                }
                Ok(out)
            }
        }
    }

    /// Reads back the rows of a document written in this format.
    pub fn read_rows(self, bytes: &[u8]) -> Result<Vec<kollect_core::model::Row>, String> {
        match self {
            Self::Json => kollect_core::model::decode_items(bytes).map_err(|e| e.to_string()),
            Self::Yaml => {
                let value: Value = serde_norway::from_slice(bytes).map_err(|e| e.to_string())?;
                serde_json::from_value(value.get("items").cloned().unwrap_or(Value::Null))
                    .map(|items: Option<Vec<_>>| items.unwrap_or_default())
                    .map_err(|e| e.to_string())
            }
            Self::Ndjson => std::str::from_utf8(bytes)
                .map_err(|e| e.to_string())?
                .lines()
                .skip(1)
                .filter(|line| !line.trim().is_empty())
                .map(|line| serde_json::from_str(line).map_err(|e| e.to_string()))
                .collect(),
        }
    }
}

fn parse(json: &[u8]) -> Result<Value, SinkError> {
    serde_json::from_slice(json).map_err(|e| SinkError::terminal(format!("re-read envelope: {e}")))
}
