//! Immutable, canonically sorted row sets and the delta between two of them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use super::checksum::{Checksum, items_fingerprint};
use super::row::{Row, RowKey};
use super::rows::{Rows, SortedRows};
use super::shared::SharedRow;

/// The rows of one inventory at one point in time, in canonical order.
///
/// Cloning is cheap (the rows are shared), and so is building one from rows that are already
/// [`SharedRow`]s: only pointers are copied. A snapshot of [`SortedRows`] shares its chunks of
/// rows with the snapshots before and after it, so versions that differ in a few rows cost and
/// compare in proportion to those rows. The items fingerprint is computed at most once, from the
/// rows' cached encodings.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    rows: Rows,
    fingerprint: Arc<OnceLock<Checksum>>,
}

impl Snapshot {
    /// Sorts `rows` canonically and wraps them (each row is encoded once here).
    pub fn new(rows: Vec<Row>) -> Self {
        Self::from_shared(rows.into_iter().map(SharedRow::new).collect())
    }

    /// Sorts shared rows canonically and wraps them. The sort is adaptive: rows that are already
    /// in canonical order (as the row store hands them out) cost one comparison each.
    pub fn from_shared(mut rows: Vec<SharedRow>) -> Self {
        rows.sort_by(SharedRow::canonical_cmp);
        Self::from_rows(Rows::from_ordered(rows))
    }

    /// The rows `sorted` holds now, sharing its chunks.
    pub fn from_sorted(sorted: &SortedRows) -> Self {
        Self::from_rows(sorted.rows())
    }

    pub(crate) fn from_rows(rows: Rows) -> Self {
        Self {
            rows,
            fingerprint: Arc::default(),
        }
    }

    /// Wraps shared rows that are already in canonical order, without comparing them: for
    /// producers that keep rows ordered (the row store does). Rows out of order give a wrong
    /// fingerprint and wrong deltas; debug builds check the order and panic.
    pub fn from_canonical_order(rows: Vec<SharedRow>) -> Self {
        debug_assert!(
            rows.windows(2)
                .all(|pair| pair[0].canonical_cmp(&pair[1]).is_lt()),
            "rows are not in canonical order"
        );
        Self::from_rows(Rows::from_ordered(rows))
    }

    /// An empty snapshot (an inventory with nothing collected still exports, decision X3).
    pub fn empty() -> Self {
        Self::default()
    }

    /// The rows in canonical order.
    pub fn rows(&self) -> &Rows {
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

    /// The items fingerprint if something computed it already; never hashes.
    pub fn cached_fingerprint(&self) -> Option<&Checksum> {
        self.fingerprint.get()
    }

    /// True when both hold the same content: the same rows with the same canonical encodings,
    /// hence the same fingerprint. Compares pointers first and bytes only for rows that are not
    /// shared, so two versions of a large partition that differ in a few rows compare without
    /// hashing anything.
    pub fn same_content(a: &Self, b: &Self) -> bool {
        if Self::ptr_eq(a, b) {
            return true;
        }
        if let (Some(x), Some(y)) = (a.cached_fingerprint(), b.cached_fingerprint()) {
            return x == y;
        }
        if a.len() != b.len() {
            return false;
        }
        let mut same = true;
        Rows::differing_stretches(&a.rows, &b.rows, |x, y| {
            // Rows compare by their stored bytes, which are a function of the content.
            same = same && x.eq(y);
        });
        same
    }

    /// True when both are clones of one snapshot (same rows, same cached fingerprint).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Rows::ptr_eq(&a.rows, &b.rows)
    }

    /// Finds the row with `key` (a linear scan: rows are ordered canonically, not by key).
    pub fn get(&self, key: &RowKey) -> Option<&SharedRow> {
        self.rows.iter().find(|row| row.has_key(key))
    }
}

impl FromIterator<Row> for Snapshot {
    fn from_iter<I: IntoIterator<Item = Row>>(iter: I) -> Self {
        Self::new(iter.into_iter().collect())
    }
}

impl FromIterator<SharedRow> for Snapshot {
    fn from_iter<I: IntoIterator<Item = SharedRow>>(iter: I) -> Self {
        Self::from_shared(iter.into_iter().collect())
    }
}

/// What changed between two snapshots of one inventory: rows to upsert (new or different) and
/// keys of rows to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// Rows that are new or whose content changed, in canonical order.
    pub upserts: Vec<SharedRow>,
    /// Keys of rows that no longer exist, sorted.
    pub deletes: Vec<RowKey>,
    /// The deleted rows as they last were, in the order of `deletes`, when the producer still
    /// has them ([`Delta::between`] does); empty otherwise. Sinks whose keys derive from more
    /// than the row key (a per-resource file named after the object) need them.
    pub removed: Vec<SharedRow>,
}

impl Delta {
    /// Computes the delta that turns `old` into `new`.
    ///
    /// Both are in canonical order, so a merge walk pairs them up. Chunks of rows the two share
    /// are skipped whole, and within the stretches that differ, rows the two share (the same
    /// stored version) are recognised by pointer: only changed rows are compared or copied.
    /// Clones of one snapshot give an empty delta at once.
    pub fn between(old: &Snapshot, new: &Snapshot) -> Self {
        if Snapshot::ptr_eq(old, new) {
            return Self::default();
        }
        let mut upserts = Vec::new();
        let mut gone: Vec<&SharedRow> = Vec::new();
        Rows::differing_stretches(old.rows(), new.rows(), |before, after| {
            merge_walk(before, after, &mut upserts, &mut gone);
        });
        // A row whose sort fields changed (same uid, another kind or version) moved: it is an
        // upsert at its new place, not a delete at its old one.
        let moved: HashSet<(&str, &str, &str)> = upserts.iter().map(borrowed_key).collect();
        let mut removed: Vec<SharedRow> = gone
            .into_iter()
            .filter(|row| !moved.contains(&borrowed_key(row)))
            .cloned()
            .collect();
        removed.sort_by_cached_key(|row| row.key());
        let deletes: Vec<RowKey> = removed.iter().map(|row| row.key()).collect();
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
        let mut rows: HashMap<RowKey, SharedRow> =
            base.rows().iter().map(|row| (row.key(), row.clone())).collect();
        for key in &self.deletes {
            rows.remove(key);
        }
        for row in &self.upserts {
            rows.insert(row.key(), row.clone());
        }
        Snapshot::from_shared(rows.into_values().collect())
    }
}

/// Pairs up the rows of one stretch of two canonically ordered sequences: rows only `after`
/// has or whose content differs go to `upserts`, rows only `before` has to `gone`.
fn merge_walk<'a>(
    before: impl Iterator<Item = &'a SharedRow>,
    after: impl Iterator<Item = &'a SharedRow>,
    upserts: &mut Vec<SharedRow>,
    gone: &mut Vec<&'a SharedRow>,
) {
    let (mut before, mut after) = (before.peekable(), after.peekable());
    while let (Some(was), Some(is)) = (before.peek().copied(), after.peek().copied()) {
        if SharedRow::ptr_eq(was, is) {
            before.next();
            after.next();
            continue;
        }
        match was.canonical_cmp(is) {
            // The same sort key holds the row key: the same row, maybe changed.
            std::cmp::Ordering::Equal => {
                if was != is {
                    upserts.push(is.clone());
                }
                before.next();
                after.next();
            }
            std::cmp::Ordering::Less => {
                gone.push(was);
                before.next();
            }
            std::cmp::Ordering::Greater => {
                upserts.push(is.clone());
                after.next();
            }
        }
    }
    gone.extend(before);
    upserts.extend(after.cloned());
}

/// A row's key as borrowed strings: no allocation per row.
fn borrowed_key(row: &SharedRow) -> (&str, &str, &str) {
    (row.target_namespace(), row.target_name(), row.uid())
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
    fn delta_of_shared_rows_and_of_moved_rows() {
        let old = Snapshot::new(vec![row("a", "1", 1), row("b", "2", 1), row("c", "3", 1)]);
        assert!(Delta::between(&old, &old.clone()).is_empty());
        // A snapshot rebuilt from the same shared rows with one replaced: only that one differs.
        let mut rows: Vec<SharedRow> = old.rows().to_vec();
        rows[1] = SharedRow::new(row("b", "2", 5));
        let new = Snapshot::from_shared(rows);
        assert!(!Snapshot::ptr_eq(&old, &new));
        let delta = Delta::between(&old, &new);
        assert_eq!(delta.upserts, vec![row("b", "2", 5)]);
        assert!(delta.deletes.is_empty());
        // The same uid under another kind sorts elsewhere: an upsert, not a delete.
        let mut moved = row("a", "1", 1);
        moved.kind = "Secret".into();
        let new = Snapshot::new(vec![moved.clone(), row("b", "2", 1), row("c", "3", 1)]);
        let delta = Delta::between(&old, &new);
        assert_eq!(delta.upserts, vec![moved]);
        assert!(delta.deletes.is_empty() && delta.removed.is_empty());
        assert_eq!(delta.apply(&old).rows(), new.rows());
    }

    #[test]
    fn rows_in_canonical_order_are_taken_as_given_and_checked_in_debug_builds() {
        let sorted = Snapshot::new(vec![row("b", "2", 1), row("a", "1", 1)]);
        let again = Snapshot::from_canonical_order(sorted.rows().to_vec());
        assert_eq!(again.fingerprint(), sorted.fingerprint());
        let mut reversed = sorted.rows().to_vec();
        reversed.reverse();
        let taken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Snapshot::from_canonical_order(reversed)
        }));
        assert_eq!(taken.is_err(), cfg!(debug_assertions));
    }

    #[test]
    fn snapshot_sorts_and_caches_fingerprint() {
        let s = Snapshot::new(vec![row("b", "2", 1), row("a", "1", 1)]);
        assert_eq!(s.rows()[0].name(), "a");
        let f1 = s.fingerprint().clone();
        assert_eq!(&f1, s.clone().fingerprint());
        assert_eq!(Snapshot::empty().fingerprint(), &items_fingerprint(&[] as &[Row]));
        assert_eq!(s.get(&row("b", "2", 9).key()).map(SharedRow::name), Some("b"));
    }

    proptest! {
        #[test]
        fn apply_between_round_trips(
            old in proptest::collection::btree_map(0u8..40, 0i64..3, 0..30),
            new in proptest::collection::btree_map(0u8..40, 0i64..3, 0..30),
        ) {
            // Values of 2 also change the kind, which moves the row in canonical order.
            let mk = |m: &std::collections::BTreeMap<u8, i64>| Snapshot::new(m.iter().map(|(k, v)| {
                let mut r = row(&format!("o{k}"), &k.to_string(), *v);
                if *v == 2 {
                    r.kind = "Secret".into();
                }
                r
            }).collect());
            let (old, new) = (mk(&old), mk(&new));
            let delta = Delta::between(&old, &new);
            let applied = delta.apply(&old);
            prop_assert_eq!(applied.rows(), new.rows());
            prop_assert_eq!(delta.is_empty(), old.fingerprint() == new.fingerprint());
        }
    }
}
