//! The row store: one canonical row per (collecting target, object uid), nothing else. Source
//! objects are never kept; a change of what a target extracts is handled by relisting.
//!
//! Rows are grouped into partitions: the rows of namespaced targets by the target's namespace
//! (what a `KollectInventory` in that namespace exports), and the rows of cluster targets apart
//! (decision A7). Every mutation that changes content bumps a store-wide monotonic version,
//! records it as the partition's version, appends to the partition's bounded change log (so an
//! exporter can ask for the delta since the version it last exported) and notifies subscribers.
//!
//! Rows are kept as [`SharedRow`]s (encoded once, when stored) and each partition also keeps
//! them in canonical order as [`SortedRows`], so a snapshot needs no sort and shares every chunk
//! of rows a change did not touch with the snapshots before it; the snapshot of a version is
//! built once and handed out again until the next change.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError, RwLock};

use kollect_core::collect::RowOwner;
use kollect_core::model::{Delta, Row, SharedRow, Snapshot, SortedRows};
use tokio::sync::broadcast;

pub use crate::target::owner_key;

/// A group of rows exported together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Partition {
    /// Rows of the namespaced targets in this namespace.
    Namespace(String),
    /// Rows of cluster targets.
    Cluster,
}

impl Partition {
    /// The partition `owner`'s rows belong to.
    pub fn of(owner: &RowOwner) -> Self {
        match owner {
            RowOwner::Target { namespace, .. } => Partition::Namespace(namespace.clone()),
            RowOwner::ClusterTarget { .. } => Partition::Cluster,
        }
    }
}

/// A notification that a partition's rows changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreChange {
    /// The partition.
    pub partition: Partition,
    /// Its version after the change.
    pub version: u64,
}

/// A consistent snapshot of one partition.
#[derive(Debug, Clone)]
pub struct View {
    /// The rows, canonically ordered.
    pub snapshot: Snapshot,
    /// The partition version the rows correspond to.
    pub version: u64,
}

/// How many changes each partition remembers for [`RowStore::delta_since`]. Older versions get
/// `None` and the exporter falls back to a full snapshot.
const CHANGE_LOG_CAPACITY: usize = 16_384;

#[derive(Debug, Default)]
struct PartitionState {
    version: u64,
    /// (version, owner, uid) of each change, oldest first.
    log: VecDeque<(u64, RowOwner, String)>,
    /// The log holds every change after this version.
    complete_after: u64,
}

/// True when `row` was collected by `owner`.
fn owns(owner: &RowOwner, row: &SharedRow) -> bool {
    match owner {
        RowOwner::Target { namespace, name } => {
            row.target_namespace() == namespace && row.target_name() == name
        }
        RowOwner::ClusterTarget { name } => row.target_namespace().is_empty() && row.target_name() == name,
    }
}

/// One owner's rows, found by uid. The uid is read from the row itself, so it is not stored a
/// second time as a key.
#[derive(Debug, Default)]
struct RowsByUid(HashSet<ByUid>);

#[derive(Debug, Clone)]
struct ByUid(SharedRow);

impl PartialEq for ByUid {
    fn eq(&self, other: &Self) -> bool {
        self.0.uid() == other.0.uid()
    }
}

impl Eq for ByUid {}

impl Hash for ByUid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Equal to hashing the `str` it borrows as, which `HashSet::get(&str)` relies on.
        self.0.uid().hash(state);
    }
}

impl Borrow<str> for ByUid {
    fn borrow(&self) -> &str {
        self.0.uid()
    }
}

impl RowsByUid {
    fn get(&self, uid: &str) -> Option<&SharedRow> {
        self.0.get(uid).map(|row| &row.0)
    }

    /// Stores `row`, returning the row it replaces.
    fn insert(&mut self, row: SharedRow) -> Option<SharedRow> {
        self.0.replace(ByUid(row)).map(|old| old.0)
    }

    fn remove(&mut self, uid: &str) -> Option<SharedRow> {
        self.0.take(uid).map(|row| row.0)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn values(&self) -> impl Iterator<Item = &SharedRow> {
        self.0.iter().map(|row| &row.0)
    }
}

#[derive(Debug, Default)]
struct Inner {
    rows: HashMap<RowOwner, RowsByUid>,
    /// The same rows per partition, in canonical order, in chunks the snapshots share.
    ordered: HashMap<Partition, SortedRows>,
    version: u64,
    partitions: HashMap<Partition, PartitionState>,
    total: usize,
}

impl Inner {
    fn unorder(&mut self, owner: &RowOwner, row: &SharedRow) {
        let partition = Partition::of(owner);
        if let Some(ordered) = self.ordered.get_mut(&partition) {
            ordered.remove(row);
            if ordered.is_empty() {
                self.ordered.remove(&partition);
            }
        }
    }

    fn record(&mut self, owner: &RowOwner, uid: &str) -> StoreChange {
        self.version += 1;
        let version = self.version;
        let partition = Partition::of(owner);
        let state = self.partitions.entry(partition.clone()).or_default();
        state.version = version;
        state.log.push_back((version, owner.clone(), uid.to_owned()));
        if state.log.len() > CHANGE_LOG_CAPACITY
            && let Some((dropped, _, _)) = state.log.pop_front()
        {
            state.complete_after = dropped;
        }
        StoreChange { partition, version }
    }
}

/// Rows keyed by (owner, uid), with per-partition versions, deltas and change notifications.
///
/// ```
/// use kollect_collect::runtime::{Partition, RowStore};
/// use kollect_core::collect::RowOwner;
/// use kollect_core::model::Row;
///
/// let row = |name: &str, image: &str| Row {
///     target_namespace: "team-a".into(), target_name: "apps".into(),
///     namespace: "shop".into(), name: name.into(), uid: format!("uid-{name}"),
///     group: "apps".into(), version: "v1".into(), kind: "Deployment".into(),
///     attributes: serde_json::json!({ "image": image }).as_object().cloned(),
/// };
/// let store = RowStore::new();
/// let owner = RowOwner::target("team-a", "apps");
/// let partition = Partition::of(&owner);
/// store.upsert(&owner, row("web", "web:1"));
/// store.upsert(&owner, row("cart", "cart:1"));
/// let exported = store.snapshot(&partition);
/// assert_eq!(exported.snapshot.rows().len(), 2);
///
/// // An identical row is no change; a new image is.
/// assert!(!store.upsert(&owner, row("web", "web:1")));
/// assert!(store.upsert(&owner, row("web", "web:2")));
/// store.remove(&owner, "uid-cart");
///
/// // What an exporter that exported `exported.version` has to send now.
/// let (delta, now) = store.delta_since(&partition, exported.version).expect("within the change log");
/// assert_eq!(delta.upserts.len(), 1);
/// assert_eq!(delta.deletes.len(), 1);
/// assert!(now > exported.version);
/// ```
#[derive(Debug)]
pub struct RowStore {
    inner: RwLock<Inner>,
    /// The last snapshot built per partition, valid while the partition keeps its version.
    views: Mutex<HashMap<Partition, View>>,
    changes: broadcast::Sender<StoreChange>,
}

impl Default for RowStore {
    fn default() -> Self {
        Self::new()
    }
}

impl RowStore {
    /// An empty store.
    pub fn new() -> Self {
        // Subscribers that fall behind get `Lagged` and re-read the partitions they care about;
        // nothing blocks the writers.
        let (changes, _) = broadcast::channel(1024);
        Self {
            inner: RwLock::default(),
            views: Mutex::default(),
            changes,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Every mutation leaves the maps consistent, so a poisoned lock is still usable.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self, changes: Vec<StoreChange>) {
        for change in changes {
            // No subscriber is not an error.
            let _ = self.changes.send(change);
        }
    }

    /// Inserts or replaces the row of `row.uid` for `owner`. Returns whether the content changed
    /// (an identical row is not a change: no version bump, no notification).
    pub fn upsert(&self, owner: &RowOwner, row: Row) -> bool {
        // Relists and resyncs repeat rows unchanged: those are recognised before anything is
        // encoded or the write lock is taken.
        let unchanged = |inner: &Inner| {
            inner
                .rows
                .get(owner)
                .and_then(|rows| rows.get(&row.uid))
                .is_some_and(|existing| *existing == row)
        };
        if unchanged(&self.read()) {
            return false;
        }
        let row = SharedRow::new(row);
        let change = {
            let mut inner = self.write();
            let rows = inner.rows.entry(owner.clone()).or_default();
            // Another writer may have stored the same content since the check above; the map
            // and the ordered set then keep the value they already share.
            if rows.get(row.uid()).is_some_and(|existing| *existing == row) {
                return false;
            }
            match rows.insert(row.clone()) {
                // Sorting equal, the new version takes the old one's place below.
                Some(existing) if existing.canonical_cmp(&row).is_eq() => {}
                Some(existing) => inner.unorder(owner, &existing),
                None => inner.total += 1,
            }
            inner
                .ordered
                .entry(Partition::of(owner))
                .or_default()
                .insert(row.clone());
            inner.record(owner, row.uid())
        };
        self.notify(vec![change]);
        true
    }

    /// Removes the row of `uid` for `owner`; returns whether there was one.
    pub fn remove(&self, owner: &RowOwner, uid: &str) -> bool {
        let change = {
            let mut inner = self.write();
            let Some(rows) = inner.rows.get_mut(owner) else {
                return false;
            };
            let Some(removed) = rows.remove(uid) else {
                return false;
            };
            if rows.is_empty() {
                inner.rows.remove(owner);
            }
            inner.unorder(owner, &removed);
            inner.total -= 1;
            inner.record(owner, uid)
        };
        self.notify(vec![change]);
        true
    }

    /// Removes the rows of `owner` for which `stale` is true; returns how many.
    pub fn remove_where(&self, owner: &RowOwner, stale: impl Fn(&SharedRow) -> bool) -> usize {
        let changes = {
            let mut inner = self.write();
            let Some(rows) = inner.rows.get_mut(owner) else {
                return 0;
            };
            let uids: Vec<String> = rows
                .values()
                .filter(|row| stale(row))
                .map(|row| row.uid().to_owned())
                .collect();
            let removed: Vec<SharedRow> = uids.iter().filter_map(|uid| rows.remove(uid)).collect();
            if rows.is_empty() {
                inner.rows.remove(owner);
            }
            for row in &removed {
                inner.unorder(owner, row);
            }
            inner.total -= uids.len();
            uids.iter()
                .map(|uid| inner.record(owner, uid))
                .collect::<Vec<_>>()
        };
        let removed = changes.len();
        self.notify(changes);
        removed
    }

    /// Removes every row of `owner` (a deleted or suspended target); returns how many.
    pub fn remove_owner(&self, owner: &RowOwner) -> usize {
        self.remove_where(owner, |_| true)
    }

    /// Number of rows of `owner`.
    pub fn count(&self, owner: &RowOwner) -> usize {
        self.read().rows.get(owner).map_or(0, RowsByUid::len)
    }

    /// Number of rows in the store.
    pub fn len(&self) -> usize {
        self.read().total
    }

    /// Whether the store holds no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The uids of `owner`'s rows.
    pub fn uids(&self, owner: &RowOwner) -> BTreeSet<String> {
        self.read()
            .rows
            .get(owner)
            .map(|rows| rows.values().map(|row| row.uid().to_owned()).collect())
            .unwrap_or_default()
    }

    /// The current version of `partition` (0 before its first change).
    pub fn version(&self, partition: &Partition) -> u64 {
        self.read()
            .partitions
            .get(partition)
            .map_or(0, |state| state.version)
    }

    /// Number of rows in `partition` (without copying them, unlike [`RowStore::snapshot`]).
    pub fn partition_len(&self, partition: &Partition) -> usize {
        self.read().ordered.get(partition).map_or(0, SortedRows::len)
    }

    /// All rows of `partition`, canonically ordered, with the version they correspond to.
    ///
    /// The rows are shared with the store, and the snapshot of one version is built once: asking
    /// again before the partition changes returns a clone of it (with its fingerprint, once
    /// computed).
    pub fn snapshot(&self, partition: &Partition) -> View {
        let inner = self.read();
        let version = inner.partitions.get(partition).map_or(0, |s| s.version);
        let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(view) = views.get(partition).filter(|view| view.version == version) {
            return view.clone();
        }
        let snapshot = inner
            .ordered
            .get(partition)
            .map(Snapshot::from_sorted)
            .unwrap_or_default();
        let view = View { snapshot, version };
        views.insert(partition.clone(), view.clone());
        view
    }

    /// The rows of the given owners only (a cluster inventory's selection of cluster targets).
    pub fn snapshot_of(&self, owners: &[RowOwner]) -> Snapshot {
        let inner = self.read();
        // Each partition holds its rows in canonical order: taking the owners' rows from there
        // needs no sort (the final sort checks the order of the partitions in one pass).
        let partitions: BTreeSet<Partition> = owners.iter().map(Partition::of).collect();
        let mut rows = Vec::new();
        for partition in &partitions {
            let Some(sorted) = inner.ordered.get(partition) else {
                continue;
            };
            rows.extend(
                sorted
                    .iter()
                    .filter(|row| owners.iter().any(|owner| owns(owner, row)))
                    .cloned(),
            );
        }
        Snapshot::from_shared(rows)
    }

    /// What changed in `partition` after version `since`, and the version it brings the caller
    /// to; `None` when the change log no longer reaches back that far (take a full snapshot).
    pub fn delta_since(&self, partition: &Partition, since: u64) -> Option<(Delta, u64)> {
        let inner = self.read();
        let Some(state) = inner.partitions.get(partition) else {
            return (since == 0).then(|| (Delta::default(), 0));
        };
        if since < state.complete_after {
            return None;
        }
        let touched: BTreeSet<(&RowOwner, &str)> = state
            .log
            .iter()
            .rev()
            .take_while(|(version, _, _)| *version > since)
            .map(|(_, owner, uid)| (owner, uid.as_str()))
            .collect();
        let mut delta = Delta::default();
        for (owner, uid) in touched {
            match inner.rows.get(owner).and_then(|rows| rows.get(uid)) {
                Some(row) => delta.upserts.push(row.clone()),
                None => delta.deletes.push(owner_key(owner, uid)),
            }
        }
        delta.upserts.sort_by(SharedRow::canonical_cmp);
        delta.deletes.sort();
        Some((delta, state.version))
    }

    /// Subscribes to change notifications. A receiver that lags behind gets
    /// `RecvError::Lagged` and should re-read every partition it cares about.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreChange> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kollect_core::model::Attributes;

    fn owner(ns: &str, name: &str) -> RowOwner {
        RowOwner::target(ns, name)
    }

    fn row(owner: &RowOwner, uid: &str, image: &str) -> Row {
        let key = owner_key(owner, uid);
        let mut attributes = Attributes::new();
        attributes.insert("image".into(), image.into());
        Row {
            target_namespace: key.target_namespace,
            target_name: key.target_name,
            namespace: "apps".into(),
            name: format!("obj-{uid}"),
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            uid: uid.into(),
            attributes: Some(attributes),
        }
    }

    #[test]
    fn identical_upserts_do_not_bump_the_version() {
        let store = RowStore::new();
        let a = owner("team-a", "deploys");
        let partition = Partition::of(&a);
        assert!(store.upsert(&a, row(&a, "1", "web:1")));
        let v1 = store.version(&partition);
        assert!(!store.upsert(&a, row(&a, "1", "web:1")));
        assert_eq!(store.version(&partition), v1);
        assert!(store.upsert(&a, row(&a, "1", "web:2")));
        assert!(store.version(&partition) > v1);
        assert_eq!(store.count(&a), 1);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn snapshots_share_ordered_rows_and_are_rebuilt_only_after_a_change() {
        let store = RowStore::new();
        let a = owner("team-a", "deploys");
        let b = owner("team-a", "another");
        let partition = Partition::of(&a);
        for uid in ["3", "1", "2"] {
            store.upsert(&a, row(&a, uid, "x"));
        }
        store.upsert(&b, row(&b, "9", "x"));
        let first = store.snapshot(&partition);
        let order: Vec<_> = first
            .snapshot
            .rows()
            .iter()
            .map(|r| (r.target_name(), r.uid()))
            .collect();
        assert_eq!(
            order,
            [
                ("another", "9"),
                ("deploys", "1"),
                ("deploys", "2"),
                ("deploys", "3")
            ]
        );
        assert_eq!(store.partition_len(&partition), 4);
        // Nothing changed: the same snapshot (and its fingerprint, once computed).
        let fingerprint = first.snapshot.fingerprint().clone();
        let again = store.snapshot(&partition);
        assert!(Snapshot::ptr_eq(&first.snapshot, &again.snapshot));
        assert!(!store.upsert(&a, row(&a, "2", "x")));
        assert!(Snapshot::ptr_eq(
            &first.snapshot,
            &store.snapshot(&partition).snapshot
        ));

        // One change: a new snapshot that shares every other row with the first.
        store.upsert(&a, row(&a, "2", "y"));
        let second = store.snapshot(&partition);
        assert!(!Snapshot::ptr_eq(&first.snapshot, &second.snapshot));
        assert_ne!(second.snapshot.fingerprint(), &fingerprint);
        for i in [0, 1, 3] {
            assert!(SharedRow::ptr_eq(
                &first.snapshot.rows()[i],
                &second.snapshot.rows()[i]
            ));
        }
        assert_eq!(second.snapshot.rows()[2].attributes().unwrap()["image"], "y");
        let delta = Delta::between(&first.snapshot, &second.snapshot);
        assert_eq!((delta.upserts.len(), delta.deletes.len()), (1, 0));

        store.remove(&a, "1");
        let third = store.snapshot(&partition);
        assert_eq!(third.snapshot.len(), 3);
        assert_eq!(store.partition_len(&partition), 3);
        assert_eq!(store.remove_owner(&a), 2);
        assert_eq!(store.partition_len(&partition), 1);
        assert_eq!(store.snapshot(&partition).snapshot.rows()[0].uid(), "9");
    }

    #[test]
    fn partitions_keep_namespaces_and_cluster_targets_apart() {
        let store = RowStore::new();
        let a = owner("team-a", "deploys");
        let b = owner("team-b", "deploys");
        let cluster = RowOwner::cluster_target("deploys");
        store.upsert(&a, row(&a, "1", "x"));
        store.upsert(&b, row(&b, "1", "x"));
        store.upsert(&cluster, row(&cluster, "1", "x"));
        let view = store.snapshot(&Partition::Namespace("team-a".into()));
        assert_eq!(view.snapshot.len(), 1);
        assert_eq!(store.partition_len(&Partition::Namespace("team-a".into())), 1);
        assert_eq!(store.partition_len(&Partition::Cluster), 1);
        assert_eq!(store.partition_len(&Partition::Namespace("team-c".into())), 0);
        assert_eq!(view.snapshot.rows()[0].target_namespace(), "team-a");
        let view = store.snapshot(&Partition::Cluster);
        assert_eq!(view.snapshot.rows()[0].target_namespace(), "");
        let picked = store.snapshot_of(&[a.clone(), cluster.clone()]);
        let owners: Vec<(&str, &str)> = picked
            .rows()
            .iter()
            .map(|row| (row.target_namespace(), row.target_name()))
            .collect();
        assert_eq!(
            owners,
            [("", "deploys"), ("team-a", "deploys")],
            "canonical order, owned rows only"
        );
        // Another target of the same namespace is not picked.
        let other = owner("team-a", "other");
        store.upsert(&other, row(&other, "2", "y"));
        assert_eq!(store.snapshot_of(std::slice::from_ref(&a)).len(), 1);
        assert_eq!(store.snapshot_of(&[a.clone(), other.clone()]).len(), 2);
        store.remove_owner(&other);
        assert_eq!(store.remove_owner(&a), 1);
        assert_eq!(
            store
                .snapshot(&Partition::Namespace("team-a".into()))
                .snapshot
                .len(),
            0
        );
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn delta_since_a_version_lists_upserts_and_deletes_once() {
        let store = RowStore::new();
        let a = owner("team-a", "deploys");
        let partition = Partition::of(&a);
        store.upsert(&a, row(&a, "1", "x"));
        store.upsert(&a, row(&a, "2", "x"));
        let since = store.version(&partition);
        store.upsert(&a, row(&a, "1", "y"));
        store.upsert(&a, row(&a, "1", "z"));
        store.remove(&a, "2");
        store.upsert(&a, row(&a, "3", "x"));
        let (delta, version) = store.delta_since(&partition, since).unwrap();
        assert_eq!(version, store.version(&partition));
        let upserted: Vec<_> = delta.upserts.iter().map(|r| r.uid()).collect();
        assert_eq!(upserted, ["1", "3"]);
        assert_eq!(delta.upserts[0].attributes().unwrap()["image"], "z");
        assert_eq!(delta.deletes, vec![owner_key(&a, "2")]);
        let (empty, _) = store.delta_since(&partition, version).unwrap();
        assert!(empty.is_empty());
        // The delta equals the difference of the two snapshots.
        assert_eq!(
            store.delta_since(&partition, 0).unwrap().0.upserts.len(),
            store.snapshot(&partition).snapshot.len()
        );
    }

    #[test]
    fn a_truncated_change_log_asks_for_a_full_snapshot() {
        let store = RowStore::new();
        let a = owner("team-a", "deploys");
        let partition = Partition::of(&a);
        for i in 0..(CHANGE_LOG_CAPACITY + 10) {
            store.upsert(&a, row(&a, "1", &i.to_string()));
        }
        assert!(store.delta_since(&partition, 1).is_none());
        let recent = store.version(&partition) - 5;
        assert!(store.delta_since(&partition, recent).is_some());
    }

    #[test]
    fn remove_where_sweeps_stale_rows_and_notifies() {
        let store = RowStore::new();
        let mut changes = store.subscribe();
        let a = owner("team-a", "deploys");
        for uid in ["1", "2", "3"] {
            store.upsert(&a, row(&a, uid, "x"));
        }
        let keep: BTreeSet<&str> = ["2"].into();
        assert_eq!(store.remove_where(&a, |r| !keep.contains(r.uid())), 2);
        assert_eq!(store.uids(&a), BTreeSet::from(["2".to_owned()]));
        let mut seen = 0;
        while let Ok(change) = changes.try_recv() {
            assert_eq!(change.partition, Partition::Namespace("team-a".into()));
            seen += 1;
        }
        assert_eq!(seen, 5);
    }
}
