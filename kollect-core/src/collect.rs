//! Who collected a row ([`RowOwner`]).
//!
//! There is deliberately no collector trait: the watch runtime writes rows straight into its
//! row store from its per-kind workers, and the offline file source returns rows in one call;
//! both build rows with the same code (`kollect_collect::target`), which is what keeps them
//! equal. A stream of change objects between them would add a hop per event with no second
//! consumer to justify it. Embedders plug in at the row store and at the `Sink` trait.

use std::fmt;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_distinct_and_printable() {
        assert_ne!(RowOwner::target("a", "x"), RowOwner::cluster_target("x"));
        assert_eq!(
            RowOwner::cluster_target("x").to_string(),
            "KollectClusterTarget x"
        );
        assert_eq!(RowOwner::target("a", "x").to_string(), "KollectTarget a/x");
    }
}
