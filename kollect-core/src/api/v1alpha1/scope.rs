//! `KollectScope` and `KollectClusterScope`: tenant policy ceilings.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{GroupVersionKind, interval_schema, string_set_schema};
use crate::GoDuration;

/// The ceiling fields shared by both scope kinds. An empty list means "no restriction".
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeCeilingSpec {
    /// Kinds targets may collect; empty allows any kind.
    #[serde(default, rename = "allowedGVKs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub allowed_gvks: Vec<GroupVersionKind>,
    /// Workload namespaces targets may collect from; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "string_set_schema")]
    pub allowed_namespaces: Vec<String>,
    /// Namespaces never collected from, whatever targets ask for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "string_set_schema")]
    pub denied_namespaces: Vec<String>,
    /// Floor for export intervals; smaller intervals (including `0s`) are raised to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "interval_schema")]
    pub min_export_interval: Option<GoDuration>,
    /// Snapshot sinks inventories may bind; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "string_set_schema")]
    pub snapshot_sink_refs: Vec<String>,
    /// Database sinks inventories may bind; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "string_set_schema")]
    pub database_sink_refs: Vec<String>,
    /// Event sinks inventories may bind; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "string_set_schema")]
    pub event_sink_refs: Vec<String>,
}

impl ScopeCeilingSpec {
    /// Whether `gvk` is allowed (case-insensitive; an empty list allows everything).
    pub fn allows_gvk(&self, gvk: &GroupVersionKind) -> bool {
        self.allowed_gvks.is_empty() || self.allowed_gvks.iter().any(|allowed| allowed.matches(gvk))
    }

    /// Whether `namespace` passes the allow and deny lists.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        !self.denied_namespaces.iter().any(|d| d == namespace)
            && (self.allowed_namespaces.is_empty() || self.allowed_namespaces.iter().any(|a| a == namespace))
    }
}

/// Policy ceiling for the targets and inventories of one namespace. It has no status.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "kollect.dev",
    version = "v1alpha1",
    kind = "KollectScope",
    plural = "kollectscopes",
    shortname = "kscope",
    namespaced,
    doc = "KollectScope limits what the targets and inventories of its namespace may collect and where they may export."
)]
pub struct KollectScopeSpec {
    /// The ceiling.
    #[serde(flatten)]
    pub ceiling: ScopeCeilingSpec,
}

/// Policy ceiling for cluster-scoped targets and inventories. It has no status.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "kollect.dev",
    version = "v1alpha1",
    kind = "KollectClusterScope",
    plural = "kollectclusterscopes",
    shortname = "kcscope",
    doc = "KollectClusterScope limits what cluster targets and cluster inventories may collect, reference and export to."
)]
#[serde(rename_all = "camelCase")]
pub struct KollectClusterScopeSpec {
    /// The ceiling.
    #[serde(flatten)]
    pub ceiling: ScopeCeilingSpec,
    /// Namespaces cluster kinds may reference profiles and sinks in; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "string_set_schema")]
    pub allowed_static_ref_namespaces: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lists_are_unrestricted_and_deny_wins() {
        let open = ScopeCeilingSpec::default();
        assert!(open.allows_gvk(&GroupVersionKind::new("apps", "v1", "Deployment")));
        assert!(open.allows_namespace("anything"));
        let closed = ScopeCeilingSpec {
            allowed_gvks: vec![GroupVersionKind::new("apps", "v1", "Deployment")],
            allowed_namespaces: vec!["team-a".into(), "kube-system".into()],
            denied_namespaces: vec!["kube-system".into()],
            ..ScopeCeilingSpec::default()
        };
        assert!(closed.allows_gvk(&GroupVersionKind::new("APPS", "v1", "deployment")));
        assert!(!closed.allows_gvk(&GroupVersionKind::new("", "v1", "Secret")));
        assert!(closed.allows_namespace("team-a"));
        assert!(!closed.allows_namespace("kube-system"));
        assert!(!closed.allows_namespace("team-b"));
    }
}
