//! Immutable, canonically sorted row sets and the delta between two of them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::checksum::{Checksum, items_fingerprint};
use super::row::{Row, RowKey, sort_canonical};

/// The rows of one inventory at one point in time, in canonical order.
///
/// Cloning is cheap (the rows are shared); the items fingerprint is computed at most once.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    rows: Arc<[Row]>,
    fingerprint: Arc<OnceLock<Checksum>>,
}

impl Snapshot {
    /// Sorts `rows` canonically and wraps them.
    pub fn new(mut rows: Vec<Row>) -> Self {
        sort_canonical(&mut rows);
        Self {
            rows: rows.into(),
            fingerprint: Arc::default(),
        }
    }

    /// An empty snapshot (an inventory with nothing collected still exports, decision X3).
    pub fn empty() -> Self {
        Self::default()
    }

    /// The rows in canonical order.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The items fingerprint (`envelope.checksum` of a single-part export of these rows).
    pub fn fingerprint(&self) -> &Checksum {
        self.fingerprint.get_or_init(|| items_fingerprint(&self.rows))
    }

    /// Finds the row with `key` (a linear scan: rows are ordered canonically, not by key).
    pub fn get(&self, key: &RowKey) -> Option<&Row> {
        self.rows.iter().find(|row| row.has_key(key))
    }
}

impl FromIterator<Row> for Snapshot {
    fn from_iter<I: IntoIterator<Item = Row>>(iter: I) -> Self {
        Self::new(iter.into_iter().collect())
    }
}

/// What changed between two snapshots of one inventory: rows to upsert (new or different) and
/// keys of rows to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// Rows that are new or whose content changed, in canonical order.
    pub upserts: Vec<Row>,
    /// Keys of rows that no longer exist, sorted.
    pub deletes: Vec<RowKey>,
    /// The deleted rows as they last were, in the order of `deletes`, when the producer still
    /// has them ([`Delta::between`] does); empty otherwise. Sinks whose keys derive from more
    /// than the row key (a per-resource file named after the object) need them.
    pub removed: Vec<Row>,
}

impl Delta {
    /// Computes the delta that turns `old` into `new`, in time linear in both sizes.
    pub fn between(old: &Snapshot, new: &Snapshot) -> Self {
        // Borrowed keys: no allocation per row, only for what actually changed.
        fn key(row: &Row) -> (&str, &str, &str) {
            (&row.target_namespace, &row.target_name, &row.uid)
        }
        let mut previous: HashMap<(&str, &str, &str), &Row> =
            old.rows().iter().map(|row| (key(row), row)).collect();
        let mut upserts = Vec::new();
        for row in new.rows() {
            match previous.remove(&key(row)) {
                Some(before) if before == row => {}
                _ => upserts.push(row.clone()),
            }
        }
        let mut removed: Vec<Row> = previous.into_values().cloned().collect();
        removed.sort_by_cached_key(Row::key);
        let deletes: Vec<RowKey> = removed.iter().map(Row::key).collect();
        Self {
            upserts,
            deletes,
            removed,
        }
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }

    /// Number of upserts plus deletes.
    pub fn len(&self) -> usize {
        self.upserts.len() + self.deletes.len()
    }

    /// Applies this delta to `base`, giving the snapshot it was computed towards.
    pub fn apply(&self, base: &Snapshot) -> Snapshot {
        let mut rows: HashMap<RowKey, Row> = base.rows().iter().map(|row| (row.key(), row.clone())).collect();
        for key in &self.deletes {
            rows.remove(key);
        }
        for row in &self.upserts {
            rows.insert(row.key(), row.clone());
        }
        Snapshot::new(rows.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn row(name: &str, uid: &str, value: i64) -> Row {
        Row {
            target_namespace: "ns".into(),
            target_name: "t".into(),
            namespace: "app".into(),
            name: name.into(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            uid: uid.into(),
            attributes: json!({"v": value}).as_object().cloned(),
            ..Row::default()
        }
    }

    #[test]
    fn delta_lists_changed_new_and_deleted_rows() {
        let old = Snapshot::new(vec![row("a", "1", 1), row("b", "2", 1), row("c", "3", 1)]);
        let new = Snapshot::new(vec![row("a", "1", 1), row("b", "2", 2), row("d", "4", 1)]);
        let delta = Delta::between(&old, &new);
        assert_eq!(delta.upserts, vec![row("b", "2", 2), row("d", "4", 1)]);
        assert_eq!(delta.deletes, vec![row("c", "3", 1).key()]);
        assert_eq!(delta.removed, vec![row("c", "3", 1)]);
        assert_eq!(delta.apply(&old).rows(), new.rows());
        assert!(Delta::between(&new, &new).is_empty());
    }

    #[test]
    fn snapshot_sorts_and_caches_fingerprint() {
        let s = Snapshot::new(vec![row("b", "2", 1), row("a", "1", 1)]);
        assert_eq!(s.rows()[0].name, "a");
        let f1 = s.fingerprint().clone();
        assert_eq!(&f1, s.clone().fingerprint());
        assert_eq!(Snapshot::empty().fingerprint(), &items_fingerprint(&[]));
        assert_eq!(s.get(&row("b", "2", 9).key()).map(|r| r.name.as_str()), Some("b"));
    }

    proptest! {
        #[test]
        fn apply_between_round_trips(
            old in proptest::collection::btree_map(0u8..40, 0i64..3, 0..30),
            new in proptest::collection::btree_map(0u8..40, 0i64..3, 0..30),
        ) {
            let mk = |m: &std::collections::BTreeMap<u8, i64>| Snapshot::new(m.iter().map(|(k, v)| row(&format!("o{k}"), &k.to_string(), *v)).collect());
            let (old, new) = (mk(&old), mk(&new));
            let delta = Delta::between(&old, &new);
            let applied = delta.apply(&old);
            prop_assert_eq!(applied.rows(), new.rows());
            prop_assert_eq!(delta.is_empty(), old.fingerprint() == new.fingerprint());
        }
    }
}
