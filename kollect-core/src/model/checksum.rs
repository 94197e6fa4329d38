//! SHA-256 checksums over canonical encodings.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::row::write_canonical_array;
use super::shared::Canonical;

/// A lower-case hex SHA-256 digest, as written to `envelope.checksum` and
/// `status.sinkExports[].lastChecksum` (no `sha256:` prefix).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Checksum(String);

impl Checksum {
    /// The SHA-256 of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    /// Wraps a checksum read back from somewhere (status, a sink); no validation is done, so a
    /// value written by another implementation compares as plain text.
    pub fn from_hex(hex: impl Into<String>) -> Self {
        Self(hex.into())
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex characters, as used in commit subjects (`{checksumShort}`).
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.0)
    }
}

/// `ItemsFingerprint`: SHA-256 of the canonical JSON array of `rows`, which must already be in
/// canonical order (see [`super::Snapshot`]). An empty list hashes `[]`. Shared rows contribute
/// their cached encodings.
pub fn items_fingerprint<R: Canonical>(rows: &[R]) -> Checksum {
    let mut hasher = Sha256::new();
    // Rows are gathered into a 64 KiB buffer and hashed a buffer at a time: one hasher call per
    // row (a few hundred bytes each) was slower than the copy. A large inventory still needs no
    // buffer of its full encoding.
    let mut buf = Vec::with_capacity(64 * 1024 + 4096);
    buf.push(b'[');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        row.append_canonical(&mut buf);
        if buf.len() >= 64 * 1024 {
            hasher.update(&buf);
            buf.clear();
        }
    }
    buf.push(b']');
    hasher.update(&buf);
    Checksum(hex::encode(hasher.finalize()))
}

/// `PartitionsChecksum`: SHA-256 over each part's items checksum followed by `\n`, in part order.
pub fn partitions_checksum<'a>(part_checksums: impl IntoIterator<Item = &'a Checksum>) -> Checksum {
    let mut hasher = Sha256::new();
    for checksum in part_checksums {
        hasher.update(checksum.as_str().as_bytes());
        hasher.update(b"\n");
    }
    Checksum(hex::encode(hasher.finalize()))
}

/// The cluster-inventory rollup checksum: SHA-256 over `"<namespace>:<shard checksum>\n"` for
/// every shard in bytewise namespace order (the input order does not matter).
pub fn rollup_checksum<'a>(shards: impl IntoIterator<Item = (&'a str, &'a Checksum)>) -> Checksum {
    let mut shards: Vec<_> = shards.into_iter().collect();
    shards.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut hasher = Sha256::new();
    for (namespace, checksum) in shards {
        hasher.update(namespace.as_bytes());
        hasher.update(b":");
        hasher.update(checksum.as_str().as_bytes());
        hasher.update(b"\n");
    }
    Checksum(hex::encode(hasher.finalize()))
}

/// The canonical JSON array of `rows` as bytes (in the given order).
pub fn canonical_array<R: Canonical>(rows: &[R]) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical_array(&mut out, rows);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Row, SharedRow};

    #[test]
    fn empty_list_hashes_brackets() {
        // sha256("[]")
        assert_eq!(
            items_fingerprint::<Row>(&[]).as_str(),
            "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
        );
    }

    #[test]
    fn streaming_fingerprint_equals_hash_of_full_array() {
        let rows: Vec<Row> = (0..2000)
            .map(|i| Row {
                target_namespace: "ns".into(),
                target_name: "t".into(),
                name: format!("obj-{i:05}"),
                uid: format!("uid-{i}"),
                version: "v1".into(),
                kind: "ConfigMap".into(),
                attributes: Some(
                    serde_json::json!({"data": "x".repeat(50)})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                ),
                ..Row::default()
            })
            .collect();
        assert_eq!(
            items_fingerprint(&rows),
            Checksum::of_bytes(&canonical_array(&rows))
        );
        let shared: Vec<SharedRow> = rows.iter().cloned().map(SharedRow::new).collect();
        assert_eq!(items_fingerprint(&shared), items_fingerprint(&rows));
    }

    #[test]
    fn partitions_and_rollup_follow_their_formulas() {
        let a = Checksum::of_bytes(b"a");
        let b = Checksum::of_bytes(b"b");
        assert_eq!(
            partitions_checksum([&a, &b]),
            Checksum::of_bytes(format!("{a}\n{b}\n").as_bytes())
        );
        assert_eq!(
            rollup_checksum([("team-b", &b), ("team-a", &a)]),
            Checksum::of_bytes(format!("team-a:{a}\nteam-b:{b}\n").as_bytes())
        );
        assert_eq!(a.short().len(), 12);
    }
}
