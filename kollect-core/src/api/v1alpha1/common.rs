//! Building blocks shared by several kinds.

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::GoDuration;

/// Interval fields accept any Go duration from `0s` to `24h` inclusive.
pub(crate) const INTERVAL_RULE: &str =
    "duration(self) >= duration('0s') && duration(self) <= duration('24h')";
/// The syntax of Go's `time.ParseDuration`.
pub(crate) const GO_DURATION_PATTERN: &str =
    r"^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$";
/// Message for [`INTERVAL_RULE`].
pub(crate) const INTERVAL_MESSAGE: &str =
    "must be a Go duration between 0s and 24h, for example \"30s\" or \"1h\"";
/// Same-namespace references are bare names.
pub(crate) const NO_SLASH_MESSAGE: &str = "must be a name in the same namespace, not namespace/name";
/// RFC 1123 label, as Kubernetes requires for namespace names.
pub(crate) const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Schema of an interval field (`exportMinInterval`, `minExportInterval`): a Go duration string
/// bounded to 0..24h by a CEL rule.
pub(crate) fn interval_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 64,
        "pattern": GO_DURATION_PATTERN,
        "x-kubernetes-validations": [{"rule": INTERVAL_RULE, "message": INTERVAL_MESSAGE}],
    })
}

/// Schema of binary data carried as base64 text.
pub(crate) fn byte_string_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "byte"})
}

/// Schema of a same-namespace object name reference (no `/`).
pub(crate) fn local_name_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 253,
        "x-kubernetes-validations": [{"rule": "!self.contains('/')", "message": NO_SLASH_MESSAGE}],
    })
}

/// Schema of a namespace name.
pub(crate) fn namespace_name_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS_LABEL_PATTERN})
}

/// Schema of a list of unique, non-empty strings (`x-kubernetes-list-type: set`).
pub(crate) fn string_set_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": 253},
        "x-kubernetes-list-type": "set",
    })
}

/// Schema of a `conditions` list: standard conditions keyed by `type`.
pub(crate) fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = <Vec<Condition>>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema
}

/// A group/version/kind triple. An empty `group` is the core group. Comparisons in scope checks
/// are case-insensitive on all three parts (see [`GroupVersionKind::matches`]).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub struct GroupVersionKind {
    /// API group; empty or absent for the core group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// API version, e.g. `v1`.
    #[schemars(length(min = 1))]
    pub version: String,
    /// Kind, e.g. `Deployment`.
    #[schemars(length(min = 1))]
    pub kind: String,
}

impl GroupVersionKind {
    /// A GVK from its parts.
    pub fn new(group: impl Into<String>, version: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }

    /// Case-insensitive equality on all three parts, as scope allowlists compare GVKs. The group
    /// `core` is treated as the empty core group.
    pub fn matches(&self, other: &GroupVersionKind) -> bool {
        let group = |g: &str| {
            if g.eq_ignore_ascii_case("core") {
                String::new()
            } else {
                g.to_ascii_lowercase()
            }
        };
        group(&self.group) == group(&other.group)
            && self.version.eq_ignore_ascii_case(&other.version)
            && self.kind.eq_ignore_ascii_case(&other.kind)
    }

    /// `group/version/kind` as used in metric labels (a core group gives a leading `/`).
    pub fn label(&self) -> String {
        format!("{}/{}/{}", self.group, self.version, self.kind)
    }

    /// `group/version` (or just `version` for the core group), as in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// A reference to a Secret. `namespace` defaults to the referring object's namespace; whether a
/// different namespace may be used is an operator policy (decision A10).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub struct SecretReference {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Secret namespace; defaults to the namespace of the referring object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl SecretReference {
    /// The namespace to read the Secret from, given the referrer's namespace.
    pub fn namespace_or<'a>(&'a self, referrer_namespace: &'a str) -> &'a str {
        self.namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .unwrap_or(referrer_namespace)
    }
}

/// An explicit `name` + `namespace` reference, used by cluster-scoped kinds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub struct NamespacedObjectReference {
    /// Object name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Object namespace (required where the reference is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A binding from an inventory to one family sink, with optional per-binding overrides.
///
/// Written as an object; configuration files read by the `kollect` CLI may also give a bare
/// sink name (`- my-sink`).
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventorySinkRef {
    /// Name of the family sink.
    #[schemars(schema_with = "local_name_schema")]
    pub name: String,
    /// Namespace of the sink; only cluster inventories may set it (defaults to `sinkNamespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "namespace_name_schema")]
    pub namespace: Option<String>,
    /// Minimum interval between exports of unchanged content to this sink; overrides the sink's
    /// and the inventory's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "interval_schema")]
    pub export_min_interval: Option<GoDuration>,
    /// Size ceiling in bytes for one export part to this sink; replaces the inventory's ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_export_bytes: Option<i64>,
}

/// The two accepted spellings of a sink ref.
#[derive(Deserialize)]
#[serde(untagged)]
enum SinkRefForm {
    Name(String),
    #[serde(rename_all = "camelCase")]
    Object {
        name: String,
        #[serde(default)]
        namespace: Option<String>,
        #[serde(default)]
        export_min_interval: Option<GoDuration>,
        #[serde(default)]
        max_export_bytes: Option<i64>,
    },
}

impl<'de> Deserialize<'de> for InventorySinkRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match SinkRefForm::deserialize(deserializer)? {
            SinkRefForm::Name(name) => Self::named(name),
            SinkRefForm::Object {
                name,
                namespace,
                export_min_interval,
                max_export_bytes,
            } => Self {
                name,
                namespace,
                export_min_interval,
                max_export_bytes,
            },
        })
    }
}

impl InventorySinkRef {
    /// A ref by name with no overrides.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// TLS settings of a sink connection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Skip certificate verification (development only; sets the `TLSInsecure` condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// PEM CA bundle (base64 in YAML). Wins over `caSecretRef` when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "byte_string_schema")]
    pub ca_bundle: Option<ByteString>,
    /// Secret holding the CA under `tls.crt`, `ca.crt` or `ca.pem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretReference>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gvk_matching_is_case_insensitive_and_core_aware() {
        let a = GroupVersionKind::new("", "v1", "ConfigMap");
        assert!(a.matches(&GroupVersionKind::new("core", "V1", "configmap")));
        assert!(!a.matches(&GroupVersionKind::new("apps", "v1", "ConfigMap")));
        assert_eq!(a.label(), "/v1/ConfigMap");
        assert_eq!(a.api_version(), "v1");
        assert_eq!(
            GroupVersionKind::new("apps", "v1", "Deployment").api_version(),
            "apps/v1"
        );
    }

    #[test]
    fn sink_refs_decode_from_objects_and_bare_strings() {
        let refs: Vec<InventorySinkRef> = serde_json::from_str(
            r#"["git", {"name": "pg", "exportMinInterval": "1h", "maxExportBytes": 1024}]"#,
        )
        .unwrap();
        assert_eq!(refs[0], InventorySinkRef::named("git"));
        assert_eq!(refs[1].export_min_interval, Some(GoDuration::from_secs(3600)));
        assert_eq!(refs[1].max_export_bytes, Some(1024));
        assert_eq!(serde_json::to_string(&refs[0]).unwrap(), r#"{"name":"git"}"#);
        assert!(serde_json::from_str::<InventorySinkRef>("42").is_err());
    }

    proptest::proptest! {
        /// The CRD pattern for intervals accepts exactly the strings the Go duration parser does
        /// (out-of-range values aside, which the pattern cannot see).
        #[test]
        fn duration_pattern_agrees_with_the_parser(text in "[-+]?([0-9]{0,3}(\\.[0-9]{0,2})?(ns|us|µs|ms|s|m|h|d|x|)){1,3}") {
            let pattern = regex::Regex::new(GO_DURATION_PATTERN).unwrap();
            let parsed = text.parse::<GoDuration>();
            let out_of_range = parsed.as_ref().is_err_and(|e| e.to_string().contains("out of range"));
            if !out_of_range {
                proptest::prop_assert_eq!(pattern.is_match(&text), parsed.is_ok(), "{:?}", text);
            }
        }
    }

    #[test]
    fn secret_namespace_defaults_to_referrer() {
        let r = SecretReference {
            name: "s".into(),
            namespace: None,
        };
        assert_eq!(r.namespace_or("team-a"), "team-a");
        let r = SecretReference {
            name: "s".into(),
            namespace: Some("ops".into()),
        };
        assert_eq!(r.namespace_or("team-a"), "ops");
    }
}
