//! The versioned export document (`schemaVersion: kollect.dev/v1alpha1`).

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::canonical;
use super::checksum::Checksum;
use super::row::Row;
use super::shared::Canonical;

/// The only schema version this crate reads and writes.
pub const SCHEMA_VERSION: &str = "kollect.dev/v1alpha1";

/// Marks one part of a multipart export: `index` is 1-based, `total` is the number of parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartMarker {
    /// 1-based position of this part.
    pub index: u32,
    /// Number of parts in the set.
    pub total: u32,
}

/// Everything in an envelope except the items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// Items fingerprint of exactly the items in this envelope.
    pub checksum: Checksum,
    /// Inventory `metadata.generation`; omitted from JSON when 0 or absent.
    pub generation: Option<i64>,
    /// Set only on parts of a multipart export.
    pub part: Option<PartMarker>,
    /// Number of items in this envelope.
    pub item_count: usize,
    /// When the export was produced.
    pub exported_at: Timestamp,
    /// Cluster identity; omitted from JSON when empty.
    pub cluster: Option<String>,
}

/// Formats a timestamp like Go's `time.RFC3339Nano` in UTC: fractional seconds with trailing zeros
/// trimmed (and no fraction at all when it is zero), and a `Z` suffix.
pub fn format_exported_at(at: Timestamp) -> String {
    let mut out = at.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = at.subsec_nanosecond();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

impl EnvelopeHeader {
    /// Appends the canonical envelope with `items` (which must match `item_count` and
    /// `checksum`) to `out`.
    pub fn write<I>(&self, out: &mut Vec<u8>, items: I)
    where
        I: IntoIterator,
        I::Item: Canonical,
    {
        self.write_with(out, |out| {
            for (i, row) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                row.append_canonical(out);
            }
        });
    }

    /// Writes the envelope, letting `write_items` fill the inside of the `items` array.
    pub(crate) fn write_with(&self, out: &mut Vec<u8>, write_items: impl FnOnce(&mut Vec<u8>)) {
        out.extend_from_slice(b"{\"schemaVersion\":");
        canonical::write_str(out, SCHEMA_VERSION);
        out.extend_from_slice(b",\"checksum\":");
        canonical::write_str(out, self.checksum.as_str());
        if let Some(generation) = self.generation.filter(|g| *g != 0) {
            out.extend_from_slice(format!(",\"generation\":{generation}").as_bytes());
        }
        if let Some(part) = self.part {
            if part.index != 0 {
                out.extend_from_slice(format!(",\"partIndex\":{}", part.index).as_bytes());
            }
            if part.total != 0 {
                out.extend_from_slice(format!(",\"partTotal\":{}", part.total).as_bytes());
            }
        }
        out.extend_from_slice(format!(",\"itemCount\":{}", self.item_count).as_bytes());
        out.extend_from_slice(b",\"exportedAt\":");
        canonical::write_str(out, &format_exported_at(self.exported_at));
        if let Some(cluster) = self.cluster.as_deref().filter(|c| !c.is_empty()) {
            out.extend_from_slice(b",\"cluster\":");
            canonical::write_str(out, cluster);
        }
        out.extend_from_slice(b",\"items\":[");
        write_items(out);
        out.extend_from_slice(b"]}");
    }

    /// The encoded length of this header with an empty `items` array; an envelope with items of
    /// encoded lengths `l1..ln` is that plus `sum(li) + (n - 1)` bytes.
    pub fn empty_len(&self) -> usize {
        let mut out = Vec::with_capacity(256);
        self.write_with(&mut out, |_| {});
        out.len()
    }
}

/// Encodes a full envelope for `items` (already in canonical order), computing the checksum.
pub fn encode<I>(items: I, generation: Option<i64>, cluster: Option<&str>, exported_at: Timestamp) -> Vec<u8>
where
    I: IntoIterator,
    I::IntoIter: ExactSizeIterator + Clone,
    I::Item: Canonical,
{
    let items = items.into_iter();
    let header = EnvelopeHeader {
        checksum: super::checksum::items_fingerprint(items.clone()),
        generation,
        part: None,
        item_count: items.len(),
        exported_at,
        cluster: cluster.map(str::to_owned),
    };
    let mut out = Vec::new();
    header.write(&mut out, items);
    out
}

/// An export document as read back from a sink or a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Must be [`SCHEMA_VERSION`] when present.
    #[serde(default)]
    pub schema_version: String,
    /// Items fingerprint as written by the producer.
    #[serde(default)]
    pub checksum: String,
    /// Inventory generation (0 when absent).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub generation: i64,
    /// 1-based part index (0 when not multipart).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub part_index: u32,
    /// Number of parts (0 when not multipart).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub part_total: u32,
    /// Number of items as written by the producer.
    #[serde(default)]
    pub item_count: usize,
    /// Export time as written (RFC 3339).
    #[serde(default)]
    pub exported_at: String,
    /// Cluster identity, empty when not set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// The rows.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub items: Vec<Row>,
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Row>, D::Error> {
    Ok(Option::<Vec<Row>>::deserialize(d)?.unwrap_or_default())
}

/// Why an export payload could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The envelope declares a schema version this crate does not understand.
    #[error("unsupported schemaVersion {0:?} (expected \"{SCHEMA_VERSION}\")")]
    UnsupportedSchemaVersion(String),
    /// The payload is neither an envelope nor a legacy array of items.
    #[error("decode export payload: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads the items of an export payload (`ItemsFromExportPayload`): an empty payload, `[]` or
/// `null` has no items; an object is an envelope whose non-empty `schemaVersion` must be
/// [`SCHEMA_VERSION`]; an array is the legacy bare list of items.
pub fn decode_items(payload: &[u8]) -> Result<Vec<Row>, DecodeError> {
    Ok(decode(payload)?
        .map(|envelope| envelope.items)
        .unwrap_or_default())
}

/// Reads a whole export payload. Returns `None` for an empty payload or `null`; a legacy bare
/// array comes back as an envelope with only `items` (and `itemCount`) set.
pub fn decode(payload: &[u8]) -> Result<Option<Envelope>, DecodeError> {
    let trimmed = payload.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return Ok(None);
    }
    if trimmed.first() == Some(&b'[') {
        let items: Vec<Row> = serde_json::from_slice(trimmed)?;
        let item_count = items.len();
        return Ok(Some(Envelope {
            items,
            item_count,
            ..Envelope::default()
        }));
    }
    let envelope: Envelope = serde_json::from_slice(trimmed)?;
    if !envelope.schema_version.is_empty() && envelope.schema_version != SCHEMA_VERSION {
        return Err(DecodeError::UnsupportedSchemaVersion(envelope.schema_version));
    }
    Ok(Some(envelope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn sample_row() -> Row {
        Row {
            target_namespace: "default".into(),
            target_name: "shop".into(),
            namespace: "demo".into(),
            name: "storefront".into(),
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            uid: "1b2c".into(),
            attributes: json!({"image": "shop:1.2", "replicas": 3}).as_object().cloned(),
        }
    }

    #[test]
    fn exported_at_trims_like_rfc3339nano() {
        assert_eq!(
            format_exported_at(ts("2026-11-26T10:00:00Z")),
            "2026-11-26T10:00:00Z"
        );
        assert_eq!(
            format_exported_at(ts("2026-11-26T10:00:00.5Z")),
            "2026-11-26T10:00:00.5Z"
        );
        assert_eq!(
            format_exported_at(ts("2026-11-26T10:00:00.123456789Z")),
            "2026-11-26T10:00:00.123456789Z"
        );
        assert_eq!(
            format_exported_at(ts("2026-11-26T12:00:00.120+02:00")),
            "2026-11-26T10:00:00.12Z"
        );
    }

    #[test]
    fn field_order_and_omit_rules() {
        let rows = vec![sample_row()];
        let bytes = encode(&rows, Some(4), None, ts("2026-11-26T10:00:00Z"));
        let text = String::from_utf8(bytes).unwrap();
        let checksum = crate::model::items_fingerprint(&rows);
        assert_eq!(
            text,
            format!(
                r#"{{"schemaVersion":"kollect.dev/v1alpha1","checksum":"{checksum}","generation":4,"itemCount":1,"exportedAt":"2026-11-26T10:00:00Z","items":[{}]}}"#,
                String::from_utf8(rows[0].canonical_bytes()).unwrap()
            )
        );
        let header = EnvelopeHeader {
            checksum: checksum.clone(),
            generation: Some(0),
            part: Some(PartMarker { index: 2, total: 3 }),
            item_count: 0,
            exported_at: ts("2026-11-26T10:00:00Z"),
            cluster: Some("prod".into()),
        };
        let mut out = Vec::new();
        header.write(&mut out, &[] as &[Row]);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"schemaVersion":"kollect.dev/v1alpha1","checksum":"{checksum}","partIndex":2,"partTotal":3,"itemCount":0,"exportedAt":"2026-11-26T10:00:00Z","cluster":"prod","items":[]}}"#
            )
        );
        assert_eq!(header.empty_len(), text.len());
    }

    #[test]
    fn decode_accepts_envelope_legacy_array_and_empty() {
        let rows = vec![sample_row()];
        let bytes = encode(&rows, Some(2), Some("c1"), ts("2026-01-01T00:00:00Z"));
        let env = decode(&bytes).unwrap().unwrap();
        assert_eq!(env.items, rows);
        assert_eq!(
            (env.generation, env.cluster.as_str(), env.item_count),
            (2, "c1", 1)
        );
        let legacy = serde_json::to_vec(&rows).unwrap();
        assert_eq!(decode_items(&legacy).unwrap(), rows);
        for empty in [&b""[..], b"  ", b"null", b"[]", br#"{"items":null}"#] {
            assert!(decode_items(empty).unwrap().is_empty());
        }
    }

    #[test]
    fn decode_rejects_foreign_schema_version_and_garbage() {
        let err = decode(br#"{"schemaVersion":"kollect.dev/v2","items":[]}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported schemaVersion \"kollect.dev/v2\" (expected \"kollect.dev/v1alpha1\")"
        );
        assert!(matches!(decode(b"{nope"), Err(DecodeError::Json(_))));
        assert!(decode(br#"{"items":[]}"#).unwrap().is_some());
    }
}
