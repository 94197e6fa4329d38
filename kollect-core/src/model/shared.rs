//! Rows shared by the store, snapshots and deltas, each encoded once.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::row::Row;

/// A row and its canonical encoding behind one reference count.
///
/// The row store keeps every row as a `SharedRow`; snapshots and deltas hold the same values, so
/// taking a snapshot or computing a delta copies pointers, not rows, and the canonical bytes
/// (what checksums and envelopes are made of) are computed once per row version instead of once
/// per export pass. It dereferences to [`Row`].
///
/// ```
/// use kollect_core::model::{Row, SharedRow};
///
/// let row = Row { name: "web".into(), uid: "u1".into(), ..Row::default() };
/// let shared = SharedRow::new(row.clone());
/// assert_eq!(shared.name, "web");
/// assert_eq!(shared.canonical(), row.canonical_bytes().as_slice());
/// assert!(SharedRow::ptr_eq(&shared, &shared.clone()));
/// ```
#[derive(Clone)]
pub struct SharedRow(Arc<Encoded>);

struct Encoded {
    row: Row,
    canonical: Box<[u8]>,
}

impl SharedRow {
    /// Encodes `row` and wraps it.
    pub fn new(row: Row) -> Self {
        let canonical = row.canonical_bytes().into_boxed_slice();
        Self(Arc::new(Encoded { row, canonical }))
    }

    /// The row.
    pub fn row(&self) -> &Row {
        &self.0.row
    }

    /// The row's canonical (Go `encoding/json`) encoding.
    pub fn canonical(&self) -> &[u8] {
        &self.0.canonical
    }

    /// Appends the canonical encoding to `out` (a copy of the cached bytes).
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.canonical);
    }

    /// True when both are the same stored value (one row version); `false` says nothing about
    /// their content.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// The row, copied only when another holder still shares it.
    pub fn into_row(self) -> Row {
        match Arc::try_unwrap(self.0) {
            Ok(encoded) => encoded.row,
            Err(shared) => shared.row.clone(),
        }
    }

    /// [`Row::canonical_cmp`] of the two rows.
    pub fn canonical_cmp(&self, other: &Self) -> Ordering {
        if Self::ptr_eq(self, other) {
            return Ordering::Equal;
        }
        self.0.row.canonical_cmp(&other.0.row)
    }
}

impl Deref for SharedRow {
    type Target = Row;

    fn deref(&self) -> &Row {
        &self.0.row
    }
}

impl AsRef<Row> for SharedRow {
    fn as_ref(&self) -> &Row {
        &self.0.row
    }
}

impl From<Row> for SharedRow {
    fn from(row: Row) -> Self {
        Self::new(row)
    }
}

impl PartialEq for SharedRow {
    fn eq(&self, other: &Self) -> bool {
        Self::ptr_eq(self, other) || self.0.row == other.0.row
    }
}

impl Eq for SharedRow {}

impl PartialEq<Row> for SharedRow {
    fn eq(&self, other: &Row) -> bool {
        self.0.row == *other
    }
}

impl PartialEq<SharedRow> for Row {
    fn eq(&self, other: &SharedRow) -> bool {
        *self == other.0.row
    }
}

impl fmt::Debug for SharedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.row.fmt(f)
    }
}

impl Serialize for SharedRow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.row.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedRow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Row::deserialize(deserializer).map(Self::new)
    }
}

/// Rows that can append their canonical encoding: [`Row`] encodes, [`SharedRow`] copies its
/// cached bytes. Lets the envelope and checksum functions take either.
pub trait Canonical {
    /// Appends the canonical encoding of this row to `out`.
    fn append_canonical(&self, out: &mut Vec<u8>);
}

impl Canonical for Row {
    fn append_canonical(&self, out: &mut Vec<u8>) {
        self.write_canonical(out);
    }
}

impl Canonical for SharedRow {
    fn append_canonical(&self, out: &mut Vec<u8>) {
        self.write_canonical(out);
    }
}

impl<T: Canonical + ?Sized> Canonical for &T {
    fn append_canonical(&self, out: &mut Vec<u8>) {
        (**self).append_canonical(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str) -> Row {
        Row {
            target_namespace: "ns".into(),
            target_name: "t".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            attributes: serde_json::json!({"v": 1}).as_object().cloned(),
            ..Row::default()
        }
    }

    #[test]
    fn shared_rows_compare_and_encode_as_their_rows() {
        let a = SharedRow::new(row("a"));
        let again = SharedRow::new(row("a"));
        assert_eq!(a, again);
        assert!(!SharedRow::ptr_eq(&a, &again));
        assert_eq!(a, row("a"));
        assert_ne!(a, SharedRow::new(row("b")));
        assert_eq!(a.canonical_cmp(&SharedRow::new(row("b"))), Ordering::Less);
        let mut out = Vec::new();
        a.append_canonical(&mut out);
        assert_eq!(out, row("a").canonical_bytes());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&row("a")).unwrap()
        );
        let back: SharedRow = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back.canonical(), a.canonical());
        let kept = a.clone();
        assert_eq!(a.into_row(), row("a"));
        assert_eq!(kept.into_row(), row("a"));
    }
}
