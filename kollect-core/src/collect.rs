//! The [`Collector`] trait: a source of row changes.
//!
//! Watch-driven collection against a cluster, a one-shot list, and collection from manifest files
//! all produce the same stream of [`RowChange`]s, so everything downstream (row store, export
//! engine, CLI output) is shared.

use std::fmt;

use futures::stream::{self, BoxStream, StreamExt};

use crate::error::ErrorClass;
use crate::model::Row;

/// Who collected a row. Namespaced and cluster targets are kept apart (decision A7): a row of a
/// cluster target never lands in a namespaced inventory, and names cannot collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowOwner {
    /// A `KollectTarget`.
    Target {
        /// Target namespace.
        namespace: String,
        /// Target name.
        name: String,
    },
    /// A `KollectClusterTarget`.
    ClusterTarget {
        /// Target name.
        name: String,
    },
}

impl RowOwner {
    /// A namespaced target.
    pub fn target(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        RowOwner::Target {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// A cluster target.
    pub fn cluster_target(name: impl Into<String>) -> Self {
        RowOwner::ClusterTarget { name: name.into() }
    }
}

impl fmt::Display for RowOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowOwner::Target { namespace, name } => write!(f, "KollectTarget {namespace}/{name}"),
            RowOwner::ClusterTarget { name } => write!(f, "KollectClusterTarget {name}"),
        }
    }
}

/// One change reported by a collector.
// Upserts dominate the stream and are moved, not stored; boxing the row would add an
// allocation per change to save space in the rare deletes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RowChange {
    /// The row of an object was created or changed; it replaces any previous row with the same
    /// owner and uid.
    Upsert {
        /// Collecting target.
        owner: RowOwner,
        /// The new row.
        row: Row,
    },
    /// The object is gone or no longer matches; its row is removed.
    Delete {
        /// Collecting target.
        owner: RowOwner,
        /// UID of the object.
        uid: String,
    },
    /// The collector has reported every current object of `owner` since the previous
    /// `ResyncComplete` (or since it started). Rows of `owner` that were not upserted in between
    /// are stale and must be removed. Collectors emit this after an initial list and after every
    /// relist, so a consumer converges to exactly the objects that exist.
    ResyncComplete {
        /// The target whose rows are now complete.
        owner: RowOwner,
    },
}

impl RowChange {
    /// The target this change belongs to.
    pub fn owner(&self) -> &RowOwner {
        match self {
            RowChange::Upsert { owner, .. }
            | RowChange::Delete { owner, .. }
            | RowChange::ResyncComplete { owner } => owner,
        }
    }
}

/// A collection failure that does not end the stream (for example one object failing extraction
/// or one namespace being forbidden).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{owner_text}{message}", owner_text = owner.as_ref().map(|o| format!("{o}: ")).unwrap_or_default())]
pub struct CollectError {
    /// How to treat the failure.
    pub class: ErrorClass,
    /// The affected target, when known.
    pub owner: Option<RowOwner>,
    /// What went wrong.
    pub message: String,
}

impl CollectError {
    /// A failure of `class` for `owner`.
    pub fn new(class: ErrorClass, owner: Option<RowOwner>, message: impl Into<String>) -> Self {
        Self {
            class,
            owner,
            message: message.into(),
        }
    }
}

/// A source of row changes.
pub trait Collector: Send {
    /// A short name for logs (`watch`, `list`, `files`, ...).
    fn name(&self) -> &str;

    /// Starts collecting. The stream ends when the source is exhausted (list-once and file
    /// collectors) or never (watch collectors, until dropped).
    fn changes(self: Box<Self>) -> BoxStream<'static, Result<RowChange, CollectError>>;
}

/// A collector that replays a fixed list of changes: the shape of list-once collection, and a
/// convenient source for tests and examples.
#[derive(Debug, Clone, Default)]
pub struct StaticCollector {
    changes: Vec<Result<RowChange, CollectError>>,
}

impl StaticCollector {
    /// Replays `changes` in order.
    pub fn new(changes: Vec<Result<RowChange, CollectError>>) -> Self {
        Self { changes }
    }

    /// Upserts every row for `owner`, then reports the resync as complete.
    pub fn snapshot(owner: RowOwner, rows: impl IntoIterator<Item = Row>) -> Self {
        let mut changes: Vec<_> = rows
            .into_iter()
            .map(|row| {
                Ok(RowChange::Upsert {
                    owner: owner.clone(),
                    row,
                })
            })
            .collect();
        changes.push(Ok(RowChange::ResyncComplete { owner }));
        Self { changes }
    }
}

impl Collector for StaticCollector {
    fn name(&self) -> &str {
        "static"
    }

    fn changes(self: Box<Self>) -> BoxStream<'static, Result<RowChange, CollectError>> {
        stream::iter(self.changes).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn static_collector_upserts_then_completes() {
        let owner = RowOwner::target("team-a", "apps");
        let rows = vec![
            Row {
                uid: "1".into(),
                ..Row::default()
            },
            Row {
                uid: "2".into(),
                ..Row::default()
            },
        ];
        let collector: Box<dyn Collector> = Box::new(StaticCollector::snapshot(owner.clone(), rows));
        assert_eq!(collector.name(), "static");
        let changes: Vec<_> = collector.changes().map(Result::unwrap).collect().await;
        assert_eq!(changes.len(), 3);
        assert!(matches!(&changes[0], RowChange::Upsert { row, .. } if row.uid == "1"));
        assert_eq!(changes[2], RowChange::ResyncComplete { owner: owner.clone() });
        assert!(changes.iter().all(|c| c.owner() == &owner));
    }

    #[test]
    fn owners_are_distinct_and_printable() {
        assert_ne!(RowOwner::target("a", "x"), RowOwner::cluster_target("x"));
        let e = CollectError::new(
            ErrorClass::Forbidden,
            Some(RowOwner::cluster_target("x")),
            "list pods in ns b: forbidden",
        );
        assert_eq!(
            e.to_string(),
            "KollectClusterTarget x: list pods in ns b: forbidden"
        );
    }
}
