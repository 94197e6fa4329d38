//! `KollectTarget`: where to collect and the collection filter it shares with
//! `KollectClusterTarget`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, LabelSelectorRequirement, Time,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{GroupVersionKind, conditions_schema, local_name_schema, string_set_schema};

// Several `printcolumn(...)` entries repeat the same keys by design.
#[allow(clippy::duplicated_attributes)]
/// Which objects of a profile's kind to collect, and from which namespaces.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kollect.dev",
    version = "v1alpha1",
    kind = "KollectTarget",
    plural = "kollecttargets",
    shortname = "ktgt",
    namespaced,
    status = "KollectTargetStatus",
    doc = "KollectTarget selects the namespaces and objects a profile is applied to.",
    printcolumn(name = "Collected", type_ = "integer", json_path = ".status.collectedCount"),
    printcolumn(
        name = "Updated",
        type_ = "date",
        json_path = ".status.collectedCountUpdatedAt"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct KollectTargetSpec {
    /// Name of a `KollectProfile` in the same namespace.
    #[schemars(schema_with = "local_name_schema")]
    pub profile_ref: String,
    /// Namespaces whose labels match are collected from; absent means every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Namespace lists, exclusions and resource rules.
    #[serde(flatten)]
    pub filter: CollectionFilter,
    /// Legacy resource filter on object labels (used when `resourceRules` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Legacy explicit object names (used when `resourceRules` is empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Stop collecting and drop this target's rows until unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// `All` collects every matching object; `OptIn` only objects in namespaces labelled or
    /// annotated `kollect.dev/watch=enabled` (or objects labelled so themselves).
    #[serde(default)]
    pub watch_mode: WatchMode,
}

/// The namespace and resource filters shared by `KollectTarget` and `KollectClusterTarget`
/// (besides `namespaceSelector`, which is optional on the first and required on the second).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectionFilter {
    /// Static namespace allowlist, intersected with `namespaceSelector`; empty means the operator's
    /// `--default-included-namespaces`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "string_set_schema")]
    pub included_namespaces: Vec<String>,
    /// Namespaces never collected from (unioned with `--default-excluded-namespaces`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "string_set_schema")]
    pub excluded_namespaces: Vec<String>,
    /// Namespaces whose labels match are never collected from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_exclude_selector: Option<LabelSelector>,
    /// OR-ed resource rules; empty means the profile's GVK with the legacy filters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"), length(max = 64))]
    pub resource_rules: Vec<ResourceRule>,
}

/// One alternative of what to collect: a GVK with optional namespace, label and CEL filters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRule {
    /// Kind to collect.
    pub gvk: GroupVersionKind,
    /// Additional namespace filter for this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Object labels that must all match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Object label requirements that must all match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
    /// CEL predicate over `object`; the rule matches only when it evaluates to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub match_policy: Option<String>,
}

/// Whether objects are collected by default or only when opted in.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum WatchMode {
    /// Collect every matching object unless opted out.
    #[default]
    All,
    /// Collect only from opted-in namespaces or opted-in objects.
    OptIn,
}

/// Observed state of a `KollectTarget`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KollectTargetStatus {
    /// `Ready`, `Synced`, `Degraded`, `SinkReachable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Objects whose required attributes failed to extract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extraction_failures: Option<i64>,
    /// The most recent extraction error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_extraction_error: Option<String>,
    /// Rows currently collected; absent until first computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collected_count: Option<i64>,
    /// When `collectedCount` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collected_count_updated_at: Option<Time>,
    /// Namespaces the target asks for, before the scope ceiling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matched_namespaces: Vec<String>,
    /// Namespaces actually collected from, after scope and exclusions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effective_namespaces: Vec<String>,
    /// Number of resource rules in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_resource_rules: Option<i64>,
}

impl KollectTargetSpec {
    /// Whether `suspend` is set to true.
    pub fn is_suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }
}
