//! `KollectProfile`: what to extract from objects of one kind.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{GroupVersionKind, conditions_schema};

/// What to collect from objects of one GVK: named attributes (JSONPath, CEL or Helm release
/// fields), optionally a pruned copy of the whole object, and metrics derived from the rows.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kollect.dev",
    version = "v1alpha1",
    kind = "KollectProfile",
    plural = "kollectprofiles",
    shortname = "kprof",
    namespaced,
    status = "KollectProfileStatus",
    doc = "KollectProfile declares which attributes to extract from objects of one kind."
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.export) || self.export.mode == 'Resource' || (has(self.attributes) && size(self.attributes) > 0)",
        "message": "spec.attributes is required when spec.export.mode is Attributes",
    },
    {
        "rule": "!has(self.export) || self.export.mode != 'Resource' || !has(self.attributes) || !self.attributes.exists(a, a.name == self.export.__as__)",
        "message": "spec.export.as must not equal an attribute name in Resource mode",
    },
    {
        "rule": "!has(self.metrics) || self.metrics.all(m, has(self.attributes) && self.attributes.exists(a, a.name == m.path))",
        "message": "spec.metrics[].path must name an attribute",
    },
    {
        "rule": "!has(self.metrics) || self.metrics.all(m, !has(m.labels) || m.labels.all(l, has(self.attributes) && self.attributes.exists(a, a.name == l)))",
        "message": "spec.metrics[].labels must name attributes",
    },
]))]
pub struct KollectProfileSpec {
    /// The kind of object this profile reads.
    #[serde(rename = "targetGVK")]
    pub target_gvk: GroupVersionKind,
    /// Attributes to extract, evaluated in order; names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]), length(max = 256))]
    pub attributes: Vec<AttributeSpec>,
    /// Full-resource export settings; absent means attributes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportSpec>,
    /// Prometheus series computed from the rows of this profile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]), length(max = 64))]
    pub metrics: Vec<MetricSpec>,
}

/// One named attribute and where its value comes from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct AttributeSpec {
    /// Attribute name (the key in the row's attributes).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `$.a.b` or `{.a.b}` (JSONPath, kubectl dialect), `cel:<expression>` with `object` bound, or
    /// `helm:release.<field>` for Helm release Secrets.
    #[schemars(length(min = 1, max = 4096))]
    pub path: String,
    /// Documentary type hint (`string`, `int`, `list`, `map`, `bool`, ...); values are not coerced.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_hint: Option<String>,
    /// When true, a missing value or an evaluation error omits the attribute instead of failing
    /// the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

impl AttributeSpec {
    /// An attribute with a name and a path.
    pub fn new(name: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            ..Self::default()
        }
    }

    /// Whether `optional` is set to true.
    pub fn is_optional(&self) -> bool {
        self.optional.unwrap_or(false)
    }
}

/// Whether rows carry only attributes or also a pruned copy of the object.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ExportMode {
    /// Only the declared attributes.
    #[default]
    Attributes,
    /// The declared attributes plus the pruned object under `export.as`.
    Resource,
}

/// Which top-level sections of the object a Resource-mode export keeps.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ExportInclude {
    /// `apiVersion`, `kind` and `metadata`.
    MetadataOnly,
    /// `apiVersion`, `kind` and `spec`.
    SpecOnly,
    /// `apiVersion`, `kind` and `status`.
    StatusOnly,
    /// `apiVersion`, `kind`, `spec` and `status`.
    #[default]
    SpecAndStatus,
    /// The whole object.
    All,
}

fn default_export_as() -> String {
    "resource".to_owned()
}

/// Resource-mode export settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportSpec {
    /// `Attributes` (default) or `Resource`.
    #[serde(default)]
    pub mode: ExportMode,
    /// Attribute key holding the pruned object in Resource mode.
    #[serde(default = "default_export_as", rename = "as")]
    #[schemars(length(min = 1, max = 253))]
    pub as_: String,
    /// Sections of the object to keep.
    #[serde(default)]
    pub include: ExportInclude,
    /// Strip uid, namespace and name already carried by the row (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_identity: Option<bool>,
    /// Pruning applied to the copied object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneSpec>,
}

impl Default for ExportSpec {
    fn default() -> Self {
        Self {
            mode: ExportMode::default(),
            as_: default_export_as(),
            include: ExportInclude::default(),
            dedupe_identity: None,
            prune: None,
        }
    }
}

/// Pruning and redaction of a Resource-mode copy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PruneSpec {
    /// Drop managedFields, resourceVersion, generation and the last-applied / Argo CD tracking
    /// annotations (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<bool>,
    /// RFC 6901 pointers to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(p, p.startsWith('/') && !p.matches('~[^01]|~$'))",
        "message": "each JSON pointer must start with / and use only the escapes ~0 and ~1",
    }]), length(max = 128), inner(length(max = 1024)))]
    pub json_pointers: Vec<String>,
    /// JSONPath expressions to remove (wildcards and filters supported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_paths: Vec<String>,
    /// Extra keys to redact, case-insensitive, merged with the operator's `--scrub-keys`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scrub_keys: Vec<String>,
    /// Reserved: CEL prune expressions (accepted with a warning, not applied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cel: Vec<String>,
}

/// A Prometheus series computed from the rows of a profile.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct MetricSpec {
    /// Series name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Name of the numeric attribute to sum (an attribute name, not a path).
    #[schemars(length(min = 1, max = 253))]
    pub path: String,
    /// Attribute names whose values become labels (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 5), inner(length(max = 253)))]
    pub labels: Vec<String>,
}

/// `KollectProfile` status (present in the schema; nothing writes it).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct KollectProfileStatus {
    /// Standard conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

impl KollectProfileSpec {
    /// The effective export settings (absent means Attributes mode with defaults).
    pub fn export_or_default(&self) -> ExportSpec {
        self.export.clone().unwrap_or_default()
    }
}
