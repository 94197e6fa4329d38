//! SHA-256 checksums over canonical encodings.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::row::write_canonical_array;
use super::shared::Canonical;
use super::snapshot::Snapshot;

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

/// The checksum of exported content, known already or computed from its snapshot on first use.
///
/// The export engine remembers what each sink last received by this value: for sinks that apply
/// deltas nothing asks for the hex digest on the hot path (whether content changed is decided by
/// [`Snapshot::same_content`]), so one changed row in a large inventory costs no hashing of the
/// whole inventory until the status or a snapshot sink needs the digest.
#[derive(Clone)]
pub struct ContentChecksum(Content);

#[derive(Clone)]
enum Content {
    Known(Checksum),
    Of(Snapshot),
}

impl ContentChecksum {
    /// A checksum computed already (a partitions checksum, or one read back from a status).
    pub fn known(checksum: Checksum) -> Self {
        Self(Content::Known(checksum))
    }

    /// The items fingerprint of `snapshot`, computed when first asked for (and then cached by the
    /// snapshot, so every clone of it shares the work).
    pub fn of(snapshot: &Snapshot) -> Self {
        Self(Content::Of(snapshot.clone()))
    }

    /// The digest, computing it if needed.
    pub fn get(&self) -> &Checksum {
        match &self.0 {
            Content::Known(checksum) => checksum,
            Content::Of(snapshot) => snapshot.fingerprint(),
        }
    }

    /// The digest if it is known without hashing.
    pub fn peek(&self) -> Option<&Checksum> {
        match &self.0 {
            Content::Known(checksum) => Some(checksum),
            Content::Of(snapshot) => snapshot.cached_fingerprint(),
        }
    }

    /// True when both stand for the same content. Two snapshots are compared row by row
    /// ([`Snapshot::same_content`]); anything else compares digests.
    pub fn same_content(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Content::Of(a), Content::Of(b)) => Snapshot::same_content(a, b),
            _ => self.get() == other.get(),
        }
    }
}

impl From<Checksum> for ContentChecksum {
    fn from(checksum: Checksum) -> Self {
        Self::known(checksum)
    }
}

impl PartialEq for ContentChecksum {
    fn eq(&self, other: &Self) -> bool {
        self.same_content(other)
    }
}

impl Eq for ContentChecksum {}

impl fmt::Debug for ContentChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Formatting never hashes: a pending digest prints as such.
        match self.peek() {
            Some(checksum) => checksum.fmt(f),
            None => f.write_str("Checksum(pending)"),
        }
    }
}

/// `ItemsFingerprint`: SHA-256 of the canonical JSON array of `rows`, which must already be in
/// canonical order (see [`super::Snapshot`]). An empty list hashes `[]`. Shared rows contribute
/// their cached encodings.
pub fn items_fingerprint<I>(rows: I) -> Checksum
where
    I: IntoIterator,
    I::Item: Canonical,
{
    let mut hasher = Sha256::new();
    // Rows are gathered into a 64 KiB buffer and hashed a buffer at a time: one hasher call per
    // row (a few hundred bytes each) was slower than the copy. A large inventory still needs no
    // buffer of its full encoding.
    let mut buf = Vec::with_capacity(64 * 1024 + 4096);
    buf.push(b'[');
    for (i, row) in rows.into_iter().enumerate() {
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
pub fn canonical_array<I>(rows: I) -> Vec<u8>
where
    I: IntoIterator,
    I::Item: Canonical,
{
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
            items_fingerprint(&[] as &[Row]).as_str(),
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

    fn snapshot(values: &[&str]) -> Snapshot {
        Snapshot::new(
            values
                .iter()
                .enumerate()
                .map(|(i, value)| Row {
                    name: format!("cm-{i}"),
                    uid: format!("uid-{i}"),
                    attributes: serde_json::json!({ "v": value }).as_object().cloned(),
                    ..Row::default()
                })
                .collect(),
        )
    }

    #[test]
    fn content_checksums_of_snapshots_compare_without_hashing() {
        let a = snapshot(&["x", "y", "z"]);
        let shared: Vec<SharedRow> = a.rows().to_vec();
        let mut changed = shared.clone();
        changed[1] = SharedRow::new(snapshot(&["x", "other", "z"]).rows()[1].to_row());
        let b = Snapshot::from_canonical_order(shared);
        let c = Snapshot::from_canonical_order(changed);
        // Same rows in another snapshot, an equal copy of the rows, and one changed row.
        let copy = snapshot(&["x", "y", "z"]);
        let (ca, cb, cc, ccopy) = (
            ContentChecksum::of(&a),
            ContentChecksum::of(&b),
            ContentChecksum::of(&c),
            ContentChecksum::of(&copy),
        );
        assert!(ca.same_content(&cb));
        assert!(ca.same_content(&ccopy));
        assert!(!ca.same_content(&cc));
        assert!(!ca.same_content(&ContentChecksum::of(&snapshot(&["x", "y"]))));
        for s in [&a, &b, &c, &copy] {
            assert!(s.cached_fingerprint().is_none(), "compared without hashing");
        }
        assert_eq!(format!("{ca:?}"), "Checksum(pending)");
        // A digest from elsewhere compares by value, computing the snapshot's.
        let known = ContentChecksum::known(items_fingerprint(a.rows()));
        assert!(known.same_content(&ca));
        assert!(!known.same_content(&cc));
        assert_eq!(ca.peek(), Some(a.fingerprint()));
        assert_eq!(cb.get(), a.fingerprint());
        assert_ne!(cc.get(), a.fingerprint());
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
