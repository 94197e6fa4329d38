//! Rows in canonical order, held in chunks that versions share.
//!
//! A snapshot of a large partition is taken after every change. Holding its rows as one array
//! makes each version cost a pointer copy and a reference-count increment per row, and freeing
//! the previous version the matching decrements: O(rows) per change. [`SortedRows`] keeps the
//! rows in chunks of at most [`MAX_CHUNK`] and hands out [`Rows`] that share every chunk a change
//! did not touch, so a version costs one copied chunk and one pointer per chunk, and two versions
//! are compared chunk by chunk.

use std::fmt;
use std::iter::FusedIterator;
use std::ops::Index;
use std::sync::Arc;

use super::shared::SharedRow;

/// Rows per chunk at most; a chunk that grows past it is split in two. A change copies one
/// chunk (this many pointers at most) and the list of chunk pointers (rows / chunk size).
pub const MAX_CHUNK: usize = 512;

/// One run of consecutive rows. Unique chunks are changed in place; shared ones are copied
/// first (`Arc::make_mut`).
type Chunk = Arc<Vec<SharedRow>>;

/// An immutable sequence of rows in canonical order, as a [`super::Snapshot`] holds them.
///
/// Cloning copies two pointers. Indexing finds the chunk by binary search; iteration walks the
/// chunks in order.
#[derive(Clone, Default)]
pub struct Rows {
    chunks: Arc<[Chunk]>,
    /// The index of the first row of each chunk.
    starts: Arc<[usize]>,
    len: usize,
}

impl Rows {
    /// Wraps rows that are in canonical order, cut into chunks.
    pub(crate) fn from_ordered(rows: Vec<SharedRow>) -> Self {
        if rows.len() <= MAX_CHUNK {
            return Self::from_chunks(if rows.is_empty() {
                Vec::new()
            } else {
                vec![Arc::new(rows)]
            });
        }
        let chunks = rows.chunks(MAX_CHUNK).map(|run| Arc::new(run.to_vec())).collect();
        Self::from_chunks(chunks)
    }

    fn from_chunks(chunks: Vec<Chunk>) -> Self {
        let mut starts = Vec::with_capacity(chunks.len());
        let mut len = 0;
        for chunk in &chunks {
            starts.push(len);
            len += chunk.len();
        }
        Self {
            chunks: chunks.into(),
            starts: starts.into(),
            len,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The row at `index` in canonical order.
    pub fn get(&self, index: usize) -> Option<&SharedRow> {
        if index >= self.len {
            return None;
        }
        // The last chunk whose first row is at or before `index`.
        let chunk = self
            .starts
            .partition_point(|start| *start <= index)
            .checked_sub(1)?;
        self.chunks.get(chunk)?.get(index - self.starts.get(chunk)?)
    }

    /// The first row.
    pub fn first(&self) -> Option<&SharedRow> {
        self.chunks.first().and_then(|chunk| chunk.first())
    }

    /// The last row.
    pub fn last(&self) -> Option<&SharedRow> {
        self.chunks.last().and_then(|chunk| chunk.last())
    }

    /// The rows in canonical order.
    pub fn iter(&self) -> RowsIter<'_> {
        RowsIter::over(&self.chunks)
    }

    /// The rows as a vector (copies one pointer per row).
    pub fn to_vec(&self) -> Vec<SharedRow> {
        self.iter().cloned().collect()
    }

    /// True when both are clones of one sequence.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.chunks, &b.chunks)
    }

    /// Walks `a` and `b` side by side, skipping the chunks they share, and calls `visit` with
    /// each stretch where they differ: the rows of that stretch on each side, in canonical
    /// order. Two versions of one partition are so compared in time proportional to the chunks
    /// that changed; sequences that share nothing are one stretch.
    pub(crate) fn differing_stretches<'a>(
        a: &'a Self,
        b: &'a Self,
        mut visit: impl FnMut(RowsIter<'a>, RowsIter<'a>),
    ) {
        let (left, right) = (&a.chunks[..], &b.chunks[..]);
        let (mut i, mut j) = (0, 0);
        loop {
            while i < left.len() && j < right.len() && Arc::ptr_eq(&left[i], &right[j]) {
                i += 1;
                j += 1;
            }
            if i == left.len() && j == right.len() {
                return;
            }
            let (next_i, next_j) = next_shared(left, right, i, j).unwrap_or((left.len(), right.len()));
            visit(
                RowsIter::over(&left[i..next_i]),
                RowsIter::over(&right[j..next_j]),
            );
            (i, j) = (next_i, next_j);
        }
    }
}

/// How far [`next_shared`] looks ahead pairwise before it indexes the rest of the chunks.
const LOOKAHEAD: usize = 4;

/// The nearest positions at or after `(i, j)` where `left` and `right` hold the same chunk. A
/// change of one lineage replaces, splits or merges a chunk or two, so the next shared chunk is
/// almost always a step or two ahead; otherwise the remaining left-hand chunks are indexed.
fn next_shared(left: &[Chunk], right: &[Chunk], i: usize, j: usize) -> Option<(usize, usize)> {
    let same = |x: usize, y: usize| x < left.len() && y < right.len() && Arc::ptr_eq(&left[x], &right[y]);
    for distance in 1..=LOOKAHEAD {
        for step_left in 0..=distance {
            let (x, y) = (i + step_left, j + distance - step_left);
            if same(x, y) {
                return Some((x, y));
            }
        }
    }
    let ahead: std::collections::HashMap<*const Vec<SharedRow>, usize> = left
        .iter()
        .enumerate()
        .skip(i)
        .map(|(at, chunk)| (Arc::as_ptr(chunk), at))
        .collect();
    right
        .iter()
        .enumerate()
        .skip(j)
        .find_map(|(at, chunk)| ahead.get(&Arc::as_ptr(chunk)).map(|x| (*x, at)))
}

/// The rows of a [`Rows`] (or of a stretch of its chunks), in canonical order.
#[derive(Clone)]
pub struct RowsIter<'a> {
    chunks: std::slice::Iter<'a, Chunk>,
    current: std::slice::Iter<'a, SharedRow>,
    remaining: usize,
}

impl<'a> RowsIter<'a> {
    fn over(chunks: &'a [Chunk]) -> Self {
        Self {
            chunks: chunks.iter(),
            current: [].iter(),
            remaining: chunks.iter().map(|chunk| chunk.len()).sum(),
        }
    }
}

impl<'a> Iterator for RowsIter<'a> {
    type Item = &'a SharedRow;

    fn next(&mut self) -> Option<&'a SharedRow> {
        loop {
            if let Some(row) = self.current.next() {
                self.remaining -= 1;
                return Some(row);
            }
            self.current = self.chunks.next()?.iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for RowsIter<'_> {}

impl FusedIterator for RowsIter<'_> {}

impl<'a> IntoIterator for &'a Rows {
    type Item = &'a SharedRow;
    type IntoIter = RowsIter<'a>;

    fn into_iter(self) -> RowsIter<'a> {
        self.iter()
    }
}

impl Index<usize> for Rows {
    type Output = SharedRow;

    /// # Panics
    ///
    /// When `index` is out of bounds, as a slice does; [`Rows::get`] does not panic.
    fn index(&self, index: usize) -> &SharedRow {
        match self.get(index) {
            Some(row) => row,
            None => panic!("row index {index} out of range for {} rows", self.len),
        }
    }
}

impl PartialEq for Rows {
    fn eq(&self, other: &Self) -> bool {
        if Self::ptr_eq(self, other) {
            return true;
        }
        if self.len != other.len {
            return false;
        }
        let mut equal = true;
        Self::differing_stretches(self, other, |left, right| {
            equal = equal && left.eq(right);
        });
        equal
    }
}

impl Eq for Rows {}

/// Rows compare with a vector of rows (plain or shared) element by element, so a test can check
/// what a sink read back against a snapshot.
impl<T: PartialEq<SharedRow>> PartialEq<Rows> for Vec<T> {
    fn eq(&self, other: &Rows) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl<T: PartialEq<SharedRow>> PartialEq<&Rows> for Vec<T> {
    fn eq(&self, other: &&Rows) -> bool {
        *self == **other
    }
}

impl fmt::Debug for Rows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl From<Vec<SharedRow>> for Rows {
    /// Wraps rows that are in canonical order (not checked here; [`super::Snapshot`]'s
    /// constructors sort or check).
    fn from(rows: Vec<SharedRow>) -> Self {
        Self::from_ordered(rows)
    }
}

/// Rows kept in canonical order, changed in place, that hand out [`Rows`] sharing every chunk
/// a change did not touch. The row store keeps one per partition.
#[derive(Debug, Default)]
pub struct SortedRows {
    chunks: Vec<Chunk>,
    len: usize,
}

impl SortedRows {
    /// No rows.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk `row` belongs in: the first whose last row sorts at or after it, else the last.
    fn chunk_for(&self, row: &SharedRow) -> usize {
        let after = self
            .chunks
            .partition_point(|chunk| chunk.last().is_some_and(|last| last.canonical_cmp(row).is_lt()));
        after.min(self.chunks.len().saturating_sub(1))
    }

    /// Inserts `row` at its place, or replaces the row that sorts equal to it (the same row
    /// key and sort fields) and returns that one.
    pub fn insert(&mut self, row: SharedRow) -> Option<SharedRow> {
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(vec![row]));
            self.len = 1;
            return None;
        }
        let at = self.chunk_for(&row);
        let chunk = Arc::make_mut(&mut self.chunks[at]);
        match chunk.binary_search_by(|held| held.canonical_cmp(&row)) {
            Ok(i) => return Some(std::mem::replace(&mut chunk[i], row)),
            Err(i) => chunk.insert(i, row),
        }
        self.len += 1;
        if chunk.len() > MAX_CHUNK {
            let tail = chunk.split_off(chunk.len() / 2);
            self.chunks.insert(at + 1, Arc::new(tail));
        }
        None
    }

    /// Removes the row that sorts equal to `row`, and returns it.
    pub fn remove(&mut self, row: &SharedRow) -> Option<SharedRow> {
        if self.chunks.is_empty() {
            return None;
        }
        let at = self.chunk_for(row);
        let i = self.chunks[at]
            .binary_search_by(|held| held.canonical_cmp(row))
            .ok()?;
        let chunk = Arc::make_mut(&mut self.chunks[at]);
        let removed = chunk.remove(i);
        self.len -= 1;
        let left = chunk.len();
        if left == 0 {
            self.chunks.remove(at);
        } else if left < MAX_CHUNK / 4 {
            self.merge_small(at);
        }
        Some(removed)
    }

    /// Merges the small chunk at `at` into a neighbour when the two fit in one chunk, so
    /// deletions do not leave a long list of tiny chunks.
    fn merge_small(&mut self, at: usize) {
        let fits = |a: usize, b: usize| self.chunks[a].len() + self.chunks[b].len() <= MAX_CHUNK;
        let (into, from) = if at + 1 < self.chunks.len() && fits(at, at + 1) {
            (at, at + 1)
        } else if at > 0 && fits(at - 1, at) {
            (at - 1, at)
        } else {
            return;
        };
        let moved = self.chunks.remove(from);
        Arc::make_mut(&mut self.chunks[into]).extend(moved.iter().cloned());
    }

    /// The rows as they are now; shares every chunk with the `SortedRows` until it changes.
    pub fn rows(&self) -> Rows {
        Rows::from_chunks(self.chunks.clone())
    }

    /// The rows in canonical order.
    pub fn iter(&self) -> RowsIter<'_> {
        RowsIter::over(&self.chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Delta, Row, Snapshot};
    use proptest::prelude::*;

    fn row(name: u32, version: u32) -> SharedRow {
        SharedRow::new(Row {
            target_namespace: "ns".into(),
            target_name: "t".into(),
            namespace: "ns".into(),
            name: format!("obj-{name:05}"),
            uid: format!("uid-{name}"),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            attributes: serde_json::json!({ "v": version }).as_object().cloned(),
            ..Row::default()
        })
    }

    fn sorted(names: impl IntoIterator<Item = u32>) -> SortedRows {
        let mut rows = SortedRows::new();
        for name in names {
            rows.insert(row(name, 0));
        }
        rows
    }

    fn chunk_sizes(rows: &Rows) -> Vec<usize> {
        rows.chunks.iter().map(|chunk| chunk.len()).collect()
    }

    fn shared_chunks(a: &Rows, b: &Rows) -> usize {
        a.chunks
            .iter()
            .filter(|x| b.chunks.iter().any(|y| Arc::ptr_eq(x, y)))
            .count()
    }

    #[test]
    fn a_version_that_changes_one_row_shares_every_other_chunk() {
        let mut store = sorted((0..10_000).rev());
        let before = store.rows();
        assert_eq!(before.len(), 10_000);
        assert!(chunk_sizes(&before).iter().all(|n| (1..=MAX_CHUNK).contains(n)));
        let chunks = before.chunks.len();

        let replaced = store.insert(row(4_321, 1));
        assert_eq!(replaced, Some(row(4_321, 0)));
        let after = store.rows();
        assert_eq!(after.len(), 10_000);
        assert_eq!(shared_chunks(&before, &after), chunks - 1);
        assert_eq!(after.get(4_321), Some(&row(4_321, 1)));
        assert_eq!(
            before.get(4_321),
            Some(&row(4_321, 0)),
            "the earlier version is unchanged"
        );

        // The delta and the content comparison look at the one chunk that differs.
        let (old, new) = (
            Snapshot::from_rows(before.clone()),
            Snapshot::from_rows(after.clone()),
        );
        let delta = Delta::between(&old, &new);
        assert_eq!(delta.upserts, vec![row(4_321, 1)]);
        assert!(delta.deletes.is_empty());
        assert!(!Snapshot::same_content(&old, &new));
        let mut stretches = 0;
        Rows::differing_stretches(&before, &after, |_, _| stretches += 1);
        assert_eq!(stretches, 1);

        assert_eq!(
            store.remove(&row(4_321, 9)),
            Some(row(4_321, 1)),
            "found by sort key"
        );
        assert_eq!(store.remove(&row(4_321, 1)), None);
        assert_eq!(store.len(), 9_999);
        assert_eq!(shared_chunks(&after, &store.rows()), chunks - 1);
    }

    #[test]
    fn indexing_iteration_and_comparison_agree_with_a_vector() {
        let store = sorted((0..1_500).map(|n| n * 7 % 1_500));
        let rows = store.rows();
        let flat: Vec<SharedRow> = (0..1_500).map(|n| row(n, 0)).collect();
        assert_eq!(rows.to_vec(), flat);
        assert_eq!(rows.iter().len(), 1_500);
        assert!(rows.iter().eq(flat.iter()));
        assert!((0..1_500).all(|i| rows.get(i) == flat.get(i) && rows[i] == flat[i]));
        assert_eq!(rows.get(1_500), None);
        assert_eq!((rows.first(), rows.last()), (flat.first(), flat.last()));
        // Equal content compares equal whether or not chunks are shared.
        assert_eq!(rows, Rows::from_ordered(flat.clone()));
        assert_eq!(flat, rows);
        let mut other = flat;
        other[700] = row(700, 1);
        assert_ne!(rows, Rows::from_ordered(other));
        assert!(Rows::default().is_empty() && Rows::default().iter().next().is_none());
    }

    #[test]
    fn deletions_merge_small_chunks() {
        let mut store = sorted(0..4_000);
        for name in (0..4_000).filter(|n| n % 10 != 0) {
            assert!(store.remove(&row(name, 0)).is_some());
        }
        let rows = store.rows();
        assert_eq!(rows.len(), 400);
        assert!(rows.chunks.len() <= 4, "{:?}", chunk_sizes(&rows));
        assert!(
            rows.iter()
                .map(|r| r.name().to_owned())
                .eq((0..4_000).step_by(10).map(|n| format!("obj-{n:05}")))
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Upsert(u32, u32),
        Remove(u32),
        Snapshot,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u32..3_000, 0u32..3).prop_map(|(n, v)| Op::Upsert(n, v)),
            3 => (0u32..3_000).prop_map(Op::Remove),
            1 => Just(Op::Snapshot),
        ]
    }

    proptest! {
        /// Any sequence of changes leaves the rows in canonical order, as a sorted map has them,
        /// and the deltas and comparisons between any two versions equal those of flat copies.
        #[test]
        fn chunked_versions_behave_as_flat_ones(ops in proptest::collection::vec(op(), 1..1_500)) {
            let mut store = SortedRows::new();
            let mut model = std::collections::BTreeMap::new();
            let mut versions = vec![store.rows()];
            for op in ops {
                match op {
                    Op::Upsert(n, v) => {
                        let replaced = store.insert(row(n, v));
                        prop_assert_eq!(replaced.is_some(), model.insert(n, v).is_some());
                    }
                    Op::Remove(n) => {
                        prop_assert_eq!(store.remove(&row(n, 0)).is_some(), model.remove(&n).is_some());
                    }
                    Op::Snapshot => versions.push(store.rows()),
                }
            }
            versions.push(store.rows());
            let now = store.rows();
            let expected: Vec<SharedRow> = model.iter().map(|(n, v)| row(*n, *v)).collect();
            prop_assert_eq!(now.len(), store.len());
            prop_assert_eq!(&now.to_vec(), &expected);
            prop_assert!(chunk_sizes(&now).iter().all(|n| (1..=MAX_CHUNK).contains(n)));
            for pair in versions.windows(2) {
                let (a, b) = (Snapshot::from_rows(pair[0].clone()), Snapshot::from_rows(pair[1].clone()));
                let (flat_a, flat_b) = (
                    Snapshot::from_canonical_order(pair[0].to_vec()),
                    Snapshot::from_canonical_order(pair[1].to_vec()),
                );
                prop_assert_eq!(Delta::between(&a, &b), Delta::between(&flat_a, &flat_b));
                prop_assert_eq!(Snapshot::same_content(&a, &b), pair[0].to_vec() == pair[1].to_vec());
                prop_assert_eq!(pair[0] == pair[1], pair[0].to_vec() == pair[1].to_vec());
            }
        }
    }
}
