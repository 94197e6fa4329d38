//! `KollectInventory`: aggregate the rows of a namespace and export them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{InventorySinkRef, conditions_schema, interval_schema};
use crate::GoDuration;

/// The largest number of sink refs across the three lists of one inventory.
pub const MAX_SINK_REFS: usize = 20;

/// The default `exportMinInterval` of inventories.
pub const DEFAULT_EXPORT_MIN_INTERVAL: GoDuration = GoDuration::from_secs(30);

pub(crate) fn default_export_min_interval() -> GoDuration {
    DEFAULT_EXPORT_MIN_INTERVAL
}

/// Exports every row collected by the targets of its namespace to the bound sinks.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kollect.dev",
    version = "v1alpha1",
    kind = "KollectInventory",
    plural = "kollectinventories",
    shortname = "kinv",
    namespaced,
    status = "KollectInventoryStatus",
    doc = "KollectInventory exports the rows collected in its namespace to snapshot, database and event sinks."
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": MAX_SINK_REFS_RULE, "message": MAX_SINK_REFS_MESSAGE},
    {
        "rule": "(!has(self.snapshotSinkRefs) || self.snapshotSinkRefs.all(r, !has(r.__namespace__))) && (!has(self.databaseSinkRefs) || self.databaseSinkRefs.all(r, !has(r.__namespace__))) && (!has(self.eventSinkRefs) || self.eventSinkRefs.all(r, !has(r.__namespace__)))",
        "message": "sink refs of a namespaced inventory must not set namespace; sinks are resolved in the inventory's namespace",
    },
]))]
pub struct KollectInventorySpec {
    /// Sink bindings, resolved in the inventory's namespace.
    #[serde(flatten)]
    pub sinks: SinkBindings,
    /// Minimum interval between exports of unchanged content (`0s`: export on change only).
    /// Changed content always exports at once.
    #[serde(default = "default_export_min_interval")]
    #[schemars(schema_with = "interval_schema")]
    pub export_min_interval: GoDuration,
    /// Size ceiling in bytes of one export part; defaults to the operator's `--max-export-bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_export_bytes: Option<i64>,
    /// Stop exporting until unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Reserved (accepted, not used): the read API is an operator-wide setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_endpoint: Option<HttpEndpointSpec>,
}

impl Default for KollectInventorySpec {
    fn default() -> Self {
        Self {
            sinks: SinkBindings::default(),
            export_min_interval: DEFAULT_EXPORT_MIN_INTERVAL,
            max_export_bytes: None,
            suspend: None,
            http_endpoint: None,
        }
    }
}

impl KollectInventorySpec {
    /// Whether `suspend` is set to true.
    pub fn is_suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }
}

/// The rule bounding the number of sink refs of one inventory.
pub(crate) const MAX_SINK_REFS_RULE: &str = "(has(self.snapshotSinkRefs) ? size(self.snapshotSinkRefs) : 0) + (has(self.databaseSinkRefs) ? size(self.databaseSinkRefs) : 0) + (has(self.eventSinkRefs) ? size(self.eventSinkRefs) : 0) <= 20";
/// Message of [`MAX_SINK_REFS_RULE`].
pub(crate) const MAX_SINK_REFS_MESSAGE: &str =
    "an inventory may bind at most 20 sinks across snapshotSinkRefs, databaseSinkRefs and eventSinkRefs";

/// The three sink-ref lists of an inventory.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SinkBindings {
    /// Bindings to `KollectSnapshotSink`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "sink_ref_list_schema")]
    pub snapshot_sink_refs: Vec<InventorySinkRef>,
    /// Bindings to `KollectDatabaseSink`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "sink_ref_list_schema")]
    pub database_sink_refs: Vec<InventorySinkRef>,
    /// Bindings to `KollectEventSink`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "sink_ref_list_schema")]
    pub event_sink_refs: Vec<InventorySinkRef>,
}

impl SinkBindings {
    /// Every binding in export order: snapshot, then database, then event refs.
    pub fn iter(&self) -> impl Iterator<Item = (SinkFamily, &InventorySinkRef)> {
        let family = |f: SinkFamily| move |r| (f, r);
        self.snapshot_sink_refs
            .iter()
            .map(family(SinkFamily::Snapshot))
            .chain(self.database_sink_refs.iter().map(family(SinkFamily::Database)))
            .chain(self.event_sink_refs.iter().map(family(SinkFamily::Event)))
    }

    /// Total number of bindings.
    pub fn len(&self) -> usize {
        self.snapshot_sink_refs.len() + self.database_sink_refs.len() + self.event_sink_refs.len()
    }

    /// True when nothing is bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Schema of one sink-ref list: at most 20 entries with unique names.
pub(crate) fn sink_ref_list_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <Vec<InventorySinkRef>>::json_schema(generator);
    schema.insert("maxItems".into(), MAX_SINK_REFS.into());
    schema.insert(
        "x-kubernetes-validations".into(),
        serde_json::json!([{
            "rule": "self.all(r, self.exists_one(o, o.name == r.name))",
            "message": "sink ref names must be unique within a list",
        }]),
    );
    schema
}

/// The three sink families.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SinkFamily {
    /// `KollectSnapshotSink`.
    Snapshot,
    /// `KollectDatabaseSink`.
    Database,
    /// `KollectEventSink`.
    Event,
}

impl SinkFamily {
    /// `snapshot`, `database` or `event`: the prefix of `sinkExports[].name`.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkFamily::Snapshot => "snapshot",
            SinkFamily::Database => "database",
            SinkFamily::Event => "event",
        }
    }

    /// The key of a binding in `status.sinkExports[].name`: `<family>/<sinkName>`.
    pub fn export_key(self, sink_name: &str) -> String {
        format!("{}/{}", self.as_str(), sink_name)
    }
}

/// Reserved HTTP endpoint settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HttpEndpointSpec {
    /// Reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Reserved; 1-65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// Observed state of a `KollectInventory`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KollectInventoryStatus {
    /// `Ready`, `Synced`, `Degraded`, `SinkReachable`, `ExportShardWarning`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Rows in the last export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_count: Option<i64>,
    /// Latest successful export to any sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_export_time: Option<Time>,
    /// Per-binding export state, keyed by `<family>/<sinkName>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]), length(max = 20))]
    pub sink_exports: Vec<SinkExportStatus>,
}

/// Export state of one binding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SinkExportStatus {
    /// `<family>/<sinkName>`, e.g. `snapshot/inventory-git`.
    pub name: String,
    /// Sink namespace (cluster inventories only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Last successful export to this sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_export_time: Option<Time>,
    /// Checksum of the content last acknowledged by this sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checksum: Option<String>,
    /// Per-sink `Synced` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_refs_iterate_in_family_order_with_export_keys() {
        let sinks = SinkBindings {
            event_sink_refs: vec![InventorySinkRef::named("bus")],
            snapshot_sink_refs: vec![InventorySinkRef::named("git")],
            database_sink_refs: vec![InventorySinkRef::named("pg")],
        };
        assert_eq!(sinks.len(), 3);
        let keys: Vec<_> = sinks.iter().map(|(f, r)| f.export_key(&r.name)).collect();
        assert_eq!(keys, ["snapshot/git", "database/pg", "event/bus"]);
    }

    #[test]
    fn export_min_interval_defaults_to_30s() {
        let spec: KollectInventorySpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec.export_min_interval, GoDuration::from_secs(30));
    }
}
