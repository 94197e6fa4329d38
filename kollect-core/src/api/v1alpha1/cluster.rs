//! Cluster-scoped kinds: `KollectClusterTarget` and `KollectClusterInventory` .

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DEFAULT_EXPORT_MIN_INTERVAL;
use super::common::{
    DNS_LABEL_PATTERN, NamespacedObjectReference, conditions_schema, interval_schema, local_name_schema,
};
use super::inventory::{
    MAX_SINK_REFS_MESSAGE, MAX_SINK_REFS_RULE, SinkBindings, SinkExportStatus, default_export_min_interval,
};
use super::target::CollectionFilter;
use crate::GoDuration;

const NON_EMPTY_SELECTOR_RULE: &str = "(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)";
const NON_EMPTY_SELECTOR_MESSAGE: &str =
    "namespaceSelector must have at least one matchLabels entry or matchExpression";

fn required_selector_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <LabelSelector as JsonSchema>::json_schema(generator);
    schema.insert(
        "x-kubernetes-validations".into(),
        serde_json::json!([{"rule": NON_EMPTY_SELECTOR_RULE, "message": NON_EMPTY_SELECTOR_MESSAGE}]),
    );
    schema
}

fn local_name_list_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": local_name_schema(generator),
        "maxItems": 256,
        "x-kubernetes-list-type": "atomic",
    })
}

fn namespaced_ref_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <NamespacedObjectReference as JsonSchema>::json_schema(generator);
    schema.insert("required".into(), serde_json::json!(["name", "namespace"]));
    if let Some(namespace) = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("namespace"))
        .and_then(|n| n.as_object_mut())
    {
        namespace.insert("pattern".into(), DNS_LABEL_PATTERN.into());
        namespace.insert("maxLength".into(), 63.into());
    }
    schema.insert(
        "x-kubernetes-validations".into(),
        serde_json::json!([{"rule": "!self.name.contains('/')", "message": "name must not contain '/'"}]),
    );
    schema
}

/// Collects one profile across every namespace matching a selector, for platform-wide rollups.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kollect.dev",
    version = "v1alpha1",
    kind = "KollectClusterTarget",
    plural = "kollectclustertargets",
    shortname = "kctgt",
    status = "KollectClusterTargetStatus",
    doc = "KollectClusterTarget applies a namespaced profile across every namespace matching its selector."
)]
#[serde(rename_all = "camelCase")]
pub struct KollectClusterTargetSpec {
    /// The profile, by name and namespace (both required).
    #[schemars(schema_with = "namespaced_ref_schema")]
    pub profile_ref: NamespacedObjectReference,
    /// Namespaces to collect from; required and non-empty.
    #[schemars(schema_with = "required_selector_schema")]
    pub namespace_selector: LabelSelector,
    /// Namespace lists, exclusions and resource rules.
    #[serde(flatten)]
    pub filter: CollectionFilter,
    /// Stop collecting until unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

impl KollectClusterTargetSpec {
    /// Whether `suspend` is set to true.
    pub fn is_suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }
}

/// Observed state of a `KollectClusterTarget`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KollectClusterTargetStatus {
    /// `Ready`, `Synced`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Namespaces the selector matches, before the scope ceiling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matched_namespaces: Vec<String>,
    /// Namespaces actually collected from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effective_namespaces: Vec<String>,
    /// Number of resource rules in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_resource_rules: Option<i64>,
}

fn default_sink_namespace() -> String {
    "kollect-system".to_owned()
}

/// How rows of several cluster targets for the same object are merged.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum DedupeMode {
    /// Keep every row.
    #[default]
    #[serde(rename = "keepAll")]
    KeepAll,
    /// Keep one row per (namespace, uid); the last writer wins.
    #[serde(rename = "byResourceUID")]
    ByResourceUid,
}

/// Rolls up the rows of selected cluster targets and exports them.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kollect.dev",
    version = "v1alpha1",
    kind = "KollectClusterInventory",
    plural = "kollectclusterinventories",
    shortname = "kcinv",
    status = "KollectClusterInventoryStatus",
    doc = "KollectClusterInventory rolls up the rows of cluster targets and exports them."
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": MAX_SINK_REFS_RULE, "message": MAX_SINK_REFS_MESSAGE}]))]
pub struct KollectClusterInventorySpec {
    /// Reserved: a profile by name and namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "namespaced_ref_schema")]
    pub profile_ref: Option<NamespacedObjectReference>,
    /// Cluster targets to roll up; empty means all targets matching `targetSelector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "local_name_list_schema")]
    pub target_refs: Vec<String>,
    /// Labels selecting cluster targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_selector: Option<LabelSelector>,
    /// Workload namespaces to include; required and non-empty.
    #[schemars(schema_with = "required_selector_schema")]
    pub namespace_selector: LabelSelector,
    /// Static namespace list, intersected with `namespaceSelector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), inner(length(max = 63), regex(pattern = DNS_LABEL_PATTERN)))]
    pub namespaces: Vec<String>,
    /// Sink bindings; a ref without `namespace` resolves in `sinkNamespace`.
    #[serde(flatten)]
    pub sinks: SinkBindings,
    /// Namespace sink refs resolve in when they set none.
    #[serde(default = "default_sink_namespace")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "!self.contains('/')", "message": "sinkNamespace must be a namespace name"}]), length(max = 63))]
    pub sink_namespace: String,
    /// Minimum interval between exports of unchanged content.
    #[serde(default = "default_export_min_interval")]
    #[schemars(schema_with = "interval_schema")]
    pub export_min_interval: GoDuration,
    /// How duplicate rows of one object are merged.
    #[serde(default)]
    pub dedupe: DedupeMode,
    /// Stop exporting until unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

impl Default for KollectClusterInventorySpec {
    fn default() -> Self {
        Self {
            profile_ref: None,
            target_refs: Vec::new(),
            target_selector: None,
            namespace_selector: LabelSelector::default(),
            namespaces: Vec::new(),
            sinks: SinkBindings::default(),
            sink_namespace: default_sink_namespace(),
            export_min_interval: DEFAULT_EXPORT_MIN_INTERVAL,
            dedupe: DedupeMode::default(),
            suspend: None,
        }
    }
}

/// Observed state of a `KollectClusterInventory`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KollectClusterInventoryStatus {
    /// `Ready`, `Synced`, `Degraded`, `SinkReachable`, `ExportSucceeded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Rows in the last rollup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_count: Option<i64>,
    /// Cluster targets rolled up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_count: Option<i64>,
    /// Namespace shards in the rollup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_shard_count: Option<i64>,
    /// Per-namespace shard summary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["namespace"]))]
    pub namespace_shards: Vec<NamespaceShardStatus>,
    /// Latest successful export to any sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_export_time: Option<Time>,
    /// Per-binding export state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]), length(max = 20))]
    pub sink_exports: Vec<SinkExportStatus>,
}

/// Summary of one namespace shard of a rollup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceShardStatus {
    /// Workload namespace.
    pub namespace: String,
    /// Rows in the shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_count: Option<i64>,
    /// Targets contributing to the shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_count: Option<i64>,
    /// Items fingerprint of the shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}
