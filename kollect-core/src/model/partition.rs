//! Multipart partitioning of an export within a byte ceiling.

use k8s_openapi::jiff::Timestamp;

use super::checksum::{Checksum, items_fingerprint, partitions_checksum};
use super::envelope::{EnvelopeHeader, PartMarker};
use super::shared::SharedRow;
use super::snapshot::Snapshot;

/// The envelope fields shared by every part of one export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportMeta {
    /// Inventory `metadata.generation`.
    pub generation: Option<i64>,
    /// Cluster identity, when the producer sets one.
    pub cluster: Option<String>,
    /// Export time written into every part.
    pub exported_at: Timestamp,
}

/// One part of an export: which rows of the snapshot it carries and their checksum.
///
/// A whole-snapshot part (what databases get) refers to every row without listing them and
/// computes its checksum, the snapshot's fingerprint, only when something asks for it: a sink
/// that applies deltas never pays for hashing the whole inventory.
#[derive(Debug, Clone)]
pub struct Part {
    marker: Option<PartMarker>,
    rows: PartRows,
    checksum: PartChecksum,
}

#[derive(Debug, Clone)]
enum PartRows {
    /// The first `n` rows of the snapshot, i.e. all of them.
    All(usize),
    /// These positions, ascending.
    Listed(Vec<usize>),
}

#[derive(Debug, Clone)]
enum PartChecksum {
    /// The fingerprint of this snapshot, computed (once, shared with the snapshot) on first use.
    Whole(Snapshot),
    Known(Checksum),
}

impl Part {
    /// The whole snapshot as one unmarked part.
    pub fn whole(snapshot: &Snapshot) -> Self {
        Self {
            marker: None,
            rows: PartRows::All(snapshot.len()),
            checksum: PartChecksum::Whole(snapshot.clone()),
        }
    }

    /// The part marker; `None` for a single-part export (no `partIndex`/`partTotal` in the
    /// envelope, byte-identical to the non-partitioned form), set on every part of a multipart set.
    pub fn marker(&self) -> Option<PartMarker> {
        self.marker
    }

    /// Number of rows in this part.
    pub fn len(&self) -> usize {
        match &self.rows {
            PartRows::All(n) => *n,
            PartRows::Listed(rows) => rows.len(),
        }
    }

    /// True when the part carries no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Positions of this part's rows in the snapshot, ascending (so the rows are in canonical
    /// order).
    pub fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        let (all, listed) = match &self.rows {
            PartRows::All(n) => (0..*n, &[][..]),
            PartRows::Listed(rows) => (0..0, rows.as_slice()),
        };
        all.chain(listed.iter().copied())
    }

    /// Items fingerprint of this part's rows (computed on first use for a whole-snapshot part).
    pub fn checksum(&self) -> &Checksum {
        match &self.checksum {
            PartChecksum::Whole(snapshot) => snapshot.fingerprint(),
            PartChecksum::Known(checksum) => checksum,
        }
    }

    /// Iterates over this part's rows in canonical order, as the snapshot shares them.
    pub fn rows<'a>(&'a self, snapshot: &'a Snapshot) -> impl Iterator<Item = &'a SharedRow> + 'a {
        // As `positions`, but a whole part walks the rows instead of indexing each one.
        let (all, listed) = match &self.rows {
            PartRows::All(n) => (*n, &[][..]),
            PartRows::Listed(rows) => (0, rows.as_slice()),
        };
        let rows = snapshot.rows();
        rows.iter()
            .take(all)
            .chain(listed.iter().filter_map(|i| rows.get(*i)))
    }

    /// The envelope header of this part.
    pub fn header(&self, meta: &ExportMeta) -> EnvelopeHeader {
        EnvelopeHeader {
            checksum: self.checksum().clone(),
            generation: meta.generation,
            part: self.marker,
            item_count: self.len(),
            exported_at: meta.exported_at,
            cluster: meta.cluster.clone(),
        }
    }

    /// Encodes this part as a canonical envelope.
    pub fn encode(&self, snapshot: &Snapshot, meta: &ExportMeta) -> Vec<u8> {
        let mut out = Vec::new();
        self.header(meta).write_with(&mut out, |out| {
            for (i, row) in self.rows(snapshot).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                row.write_canonical(out);
            }
        });
        out
    }
}

/// Parts compare by marker, rows and checksum (computing pending checksums).
impl PartialEq for Part {
    fn eq(&self, other: &Self) -> bool {
        self.marker == other.marker
            && self.positions().eq(other.positions())
            && self.checksum() == other.checksum()
    }
}

impl Eq for Part {}

/// The parts of one export, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitioning {
    /// The parts; never empty (an empty snapshot is one empty part).
    pub parts: Vec<Part>,
}

impl Partitioning {
    /// `PartitionsChecksum` over the parts' checksums: the value snapshot sinks use for coalescing.
    pub fn checksum(&self) -> Checksum {
        partitions_checksum(self.parts.iter().map(Part::checksum))
    }

    /// True when the export was split into several parts.
    pub fn is_multipart(&self) -> bool {
        self.parts.len() > 1
    }
}

/// A row that cannot fit into any part on its own. Terminal: retrying cannot help until the
/// object, the profile or the ceiling changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "single item export envelope exceeds maxExportBytes ({ceiling}): {kind} {object} needs {size} bytes; \
     raise maxExportBytes on the inventory or its sink ref, or collect fewer attributes"
)]
pub struct ItemTooLarge {
    /// The ceiling in bytes.
    pub ceiling: u64,
    /// Encoded size of the smallest envelope holding only this row.
    pub size: u64,
    /// Kind of the offending object.
    pub kind: String,
    /// `namespace/name` (or `name`) of the offending object.
    pub object: String,
}

/// Splits `snapshot` into parts whose encoded envelopes are at most `ceiling` bytes.
///
/// - If the whole envelope without part markers fits, or `ceiling` is `None` or 0, the result is a
///   single part without markers.
/// - Otherwise rows are taken in the order of their canonical encoding (bytewise) and added to the
///   current part while its envelope, measured with `partIndex` and `partTotal` both equal to the
///   number of rows (an upper bound), stays within the ceiling; each part's rows are then re-sorted
///   canonically and checksummed.
/// - A row whose envelope alone exceeds the ceiling is an [`ItemTooLarge`] error.
pub fn partition(
    snapshot: &Snapshot,
    meta: &ExportMeta,
    ceiling: Option<u64>,
) -> Result<Partitioning, ItemTooLarge> {
    let rows = snapshot.rows();
    let whole = || Partitioning {
        parts: vec![Part::whole(snapshot)],
    };
    let Some(ceiling) = ceiling.filter(|c| *c > 0 && !rows.is_empty()) else {
        return Ok(whole());
    };
    let mut encoded: Vec<(usize, &[u8])> = rows.iter().map(SharedRow::canonical).enumerate().collect();
    let items_len: u64 = encoded.iter().map(|(_, bytes)| bytes.len() as u64).sum();
    let single = EnvelopeHeader {
        checksum: snapshot.fingerprint().clone(),
        generation: meta.generation,
        part: None,
        item_count: rows.len(),
        exported_at: meta.exported_at,
        cluster: meta.cluster.clone(),
    };
    if envelope_len(&single, items_len, rows.len()) <= ceiling {
        return Ok(whole());
    }

    encoded.sort_by(|a, b| a.1.cmp(b.1));
    let bound = u32::try_from(rows.len()).unwrap_or(u32::MAX);
    let placeholder = Checksum::of_bytes(b"");
    let measure = |count: usize, bytes: u64| {
        let header = EnvelopeHeader {
            checksum: placeholder.clone(),
            generation: meta.generation,
            part: Some(PartMarker {
                index: bound,
                total: bound,
            }),
            item_count: count,
            exported_at: meta.exported_at,
            cluster: meta.cluster.clone(),
        };
        envelope_len(&header, bytes, count)
    };

    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_bytes = 0u64;
    for (index, bytes) in &encoded {
        let len = bytes.len() as u64;
        if !current.is_empty() && measure(current.len() + 1, current_bytes + len) <= ceiling {
            current.push(*index);
            current_bytes += len;
            continue;
        }
        let alone = measure(1, len);
        if alone > ceiling {
            let row = &rows[*index];
            let object = if row.namespace().is_empty() {
                row.name().to_owned()
            } else {
                format!("{}/{}", row.namespace(), row.name())
            };
            return Err(ItemTooLarge {
                ceiling,
                size: alone,
                kind: row.kind().to_owned(),
                object,
            });
        }
        if !current.is_empty() {
            groups.push(std::mem::take(&mut current));
        }
        current.push(*index);
        current_bytes = len;
    }
    if !current.is_empty() {
        groups.push(current);
    }

    let total = u32::try_from(groups.len()).unwrap_or(u32::MAX);
    let parts = groups
        .into_iter()
        .enumerate()
        .map(|(i, mut indices)| {
            indices.sort_unstable();
            let part_rows: Vec<&SharedRow> = indices.iter().map(|&j| &rows[j]).collect();
            Part {
                marker: Some(PartMarker {
                    index: u32::try_from(i + 1).unwrap_or(u32::MAX),
                    total,
                }),
                checksum: PartChecksum::Known(items_fingerprint(&part_rows)),
                rows: PartRows::Listed(indices),
            }
        })
        .collect();
    Ok(Partitioning { parts })
}

impl From<ItemTooLarge> for crate::sink::SinkError {
    fn from(error: ItemTooLarge) -> Self {
        crate::sink::SinkError::terminal(error.to_string())
    }
}

fn envelope_len(header: &EnvelopeHeader, items_bytes: u64, count: usize) -> u64 {
    header.empty_len() as u64 + items_bytes + count.saturating_sub(1) as u64
}

/// The object path of one part: `dir/name.part-0001-of-0003.ext`, the suffix inserted before the
/// extension of the last path segment (or appended when it has none). Single-part exports (no
/// marker) keep `path` unchanged.
pub fn part_path(path: &str, marker: Option<PartMarker>) -> String {
    let Some(PartMarker { index, total }) = marker else {
        return path.to_owned();
    };
    let suffix = format!(".part-{index:04}-of-{total:04}");
    let file_start = path.rfind('/').map_or(0, |i| i + 1);
    match path[file_start..].rfind('.') {
        Some(dot) => {
            let dot = file_start + dot;
            format!("{}{}{}", &path[..dot], suffix, &path[dot..])
        }
        None => format!("{path}{suffix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Row;
    use proptest::prelude::*;
    use serde_json::json;

    fn meta() -> ExportMeta {
        ExportMeta {
            generation: Some(7),
            cluster: None,
            exported_at: "2026-11-26T10:00:00Z".parse().unwrap(),
        }
    }

    fn rows(n: usize, payload: usize) -> Snapshot {
        Snapshot::new(
            (0..n)
                .map(|i| Row {
                    target_namespace: "ns".into(),
                    target_name: "t".into(),
                    namespace: "app".into(),
                    name: format!("cm-{i:04}"),
                    version: "v1".into(),
                    kind: "ConfigMap".into(),
                    uid: format!("uid-{i}"),
                    attributes: json!({"data": "x".repeat(payload + i % 7)}).as_object().cloned(),
                    ..Row::default()
                })
                .collect(),
        )
    }

    #[test]
    fn fits_means_one_unmarked_part_identical_to_plain_envelope() {
        let s = rows(5, 10);
        for ceiling in [None, Some(0), Some(1 << 20)] {
            let p = partition(&s, &meta(), ceiling).unwrap();
            assert_eq!(p.parts.len(), 1);
            assert_eq!(p.parts[0].marker(), None);
            assert_eq!(p.parts[0].checksum(), s.fingerprint());
            let bytes = p.parts[0].encode(&s, &meta());
            assert_eq!(
                bytes,
                super::super::envelope::encode(s.rows(), Some(7), None, meta().exported_at)
            );
        }
    }

    #[test]
    fn empty_snapshot_is_one_empty_part() {
        let p = partition(&Snapshot::empty(), &meta(), Some(10)).unwrap_or_else(|e| panic!("{e}"));
        // There is nothing to split: an empty inventory is always one unmarked (empty) part.
        assert_eq!(p.parts.len(), 1);
        assert!(p.parts[0].is_empty());
    }

    #[test]
    fn oversized_item_is_a_clear_error() {
        let s = rows(3, 5000);
        let err = partition(&s, &meta(), Some(2000)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("single item export envelope exceeds maxExportBytes (2000): ConfigMap app/cm-"),
            "{err}"
        );
    }

    #[test]
    fn part_paths() {
        let m = Some(PartMarker { index: 1, total: 3 });
        assert_eq!(
            part_path("inventory/ns/inv.json", m),
            "inventory/ns/inv.part-0001-of-0003.json"
        );
        assert_eq!(
            part_path("inventory/ns/inv", m),
            "inventory/ns/inv.part-0001-of-0003"
        );
        assert_eq!(part_path("a.b/inv", m), "a.b/inv.part-0001-of-0003");
        assert_eq!(part_path("x/inv.tar.gz", m), "x/inv.tar.part-0001-of-0003.gz");
        assert_eq!(part_path("x/inv.json", None), "x/inv.json");
        assert_eq!(
            part_path(
                "x",
                Some(PartMarker {
                    index: 12,
                    total: 12345
                })
            ),
            "x.part-0012-of-12345"
        );
    }

    proptest! {
        #[test]
        fn every_row_in_exactly_one_part_each_within_ceiling(n in 0usize..60, payload in 0usize..300, ceiling in 900u64..6000) {
            let s = rows(n, payload);
            match partition(&s, &meta(), Some(ceiling)) {
                Ok(p) => {
                    let mut seen: Vec<usize> = p.parts.iter().flat_map(|part| part.positions().collect::<Vec<_>>()).collect();
                    seen.sort_unstable();
                    prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
                    let total = p.parts.len();
                    for (i, part) in p.parts.iter().enumerate() {
                        let bytes = part.encode(&s, &meta());
                        if total > 1 {
                            prop_assert!(bytes.len() as u64 <= ceiling, "part {} is {} > {}", i, bytes.len(), ceiling);
                            prop_assert_eq!(part.marker(), Some(PartMarker { index: i as u32 + 1, total: total as u32 }));
                        }
                        let decoded = super::super::envelope::decode(&bytes).unwrap().unwrap();
                        prop_assert_eq!(decoded.items.len(), part.len());
                        let part_rows: Vec<SharedRow> = part.rows(&s).cloned().collect();
                        prop_assert_eq!(&decoded.checksum, part.checksum().as_str());
                        prop_assert_eq!(part.checksum().clone(), items_fingerprint(&part_rows));
                    }
                    if total == 1 {
                        prop_assert!(p.parts[0].marker().is_none());
                    }
                }
                Err(err) => {
                    // Only legitimate when some single row cannot fit.
                    prop_assert!(err.size > ceiling);
                }
            }
        }
    }
}
