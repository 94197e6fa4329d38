//! The three family sink kinds: `KollectSnapshotSink`, `KollectDatabaseSink`,
//! `KollectEventSink`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{SecretReference, TlsSpec, conditions_schema, interval_schema};
use crate::GoDuration;

/// Option keys whose lower-cased form contains one of these words are refused: secrets belong in
/// Secrets, never in `spec.options`.
pub const SECRET_LIKE_OPTION_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "accesskey",
    "access_key",
    "secretkey",
    "secret_key",
    "privatekey",
    "private_key",
    "credential",
];

const PATH_TEMPLATE_RULE: &str = "!self.startsWith('/') && !self.contains('..') && self.contains('{namespace}') && self.contains('{name}') && self.findAll('\\\\{[^}]*\\\\}').all(p, p in ['{cluster}', '{namespace}', '{name}', '{generation}', '{extension}'])";
const PATH_TEMPLATE_MESSAGE: &str = "must be a relative path without '..' containing {namespace} and {name}; allowed placeholders: {cluster} {namespace} {name} {generation} {extension}";

fn path_template_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "maxLength": 1024,
        "x-kubernetes-validations": [{"rule": PATH_TEMPLATE_RULE, "message": PATH_TEMPLATE_MESSAGE}],
    })
}

fn options_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let words: Vec<String> = SECRET_LIKE_OPTION_WORDS
        .iter()
        .map(|w| format!("'{w}'"))
        .collect();
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": 4096},
        "maxProperties": 64,
        "x-kubernetes-validations": [{
            "rule": format!("self.all(k, ![{}].exists(w, k.lowerAscii().contains(w)))", words.join(", ")),
            "message": "spec.options must not carry secrets (keys containing password, token, secret, apikey, accesskey, privatekey or credential are refused); reference a Secret instead",
        }],
    })
}

/// Settings every family sink has (inlined into each sink's `spec`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SinkCommonSpec {
    /// URL, repository, bucket or server address of the destination (checked against the SSRF
    /// policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub endpoint: Option<String>,
    /// Secret with credentials (`username`, `password`, `token`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
    /// TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Probe the connection on every reconcile; absent means true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_test: Option<bool>,
    /// Cluster identity stamped into exports and the `{cluster}` placeholder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Document path; default `inventory/{namespace}/{name}{extension}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "path_template_schema")]
    pub path_template: Option<String>,
    /// Default interval for inventory refs that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "interval_schema")]
    pub export_min_interval: Option<GoDuration>,
    /// Output format and compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serialization: Option<SerializationSpec>,
    /// File layout of snapshot sinks: one document per inventory, or one file or object per row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<LayoutSpec>,
    /// Whether Kollect creates destination resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<ProvisioningSpec>,
    /// Non-secret, backend-specific options (e.g. `statement_timeout`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "options_schema")]
    pub options: BTreeMap<String, String>,
}

impl SinkCommonSpec {
    /// Whether a connection probe runs on every reconcile (absent means true).
    pub fn connection_test_enabled(&self) -> bool {
        self.connection_test.unwrap_or(true)
    }

    /// Whether TLS verification is disabled.
    pub fn tls_insecure(&self) -> bool {
        self.tls
            .as_ref()
            .and_then(|t| t.insecure_skip_verify)
            .unwrap_or(false)
    }

    /// The effective provisioning mode (absent means `ensure`).
    pub fn provisioning_mode(&self) -> ProvisioningMode {
        self.provisioning
            .as_ref()
            .and_then(|p| p.mode)
            .unwrap_or_default()
    }
}

/// Output serialization.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SerializationSpec {
    /// Document format; the default depends on the sink type (yaml for git/gitlab, json otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<SerializationFormat>,
    /// Compression of written objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
}

/// Document formats.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SerializationFormat {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// Apache Parquet.
    Parquet,
    /// Comma-separated values.
    Csv,
    /// One JSON object per line.
    Ndjson,
}

/// Compression codecs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// Zstandard.
    Zstd,
}

/// Whether the sink creates what it writes into.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ProvisioningSpec {
    /// `ensure` (default) creates tables, streams or topics; `existing` never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ProvisioningMode>,
    /// Naming of provisioned resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub naming: Option<NamingSpec>,
}

/// Provisioning modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProvisioningMode {
    /// Create missing destination resources.
    #[default]
    Ensure,
    /// Use existing resources only; fail clearly when they are missing.
    Existing,
}

impl ProvisioningMode {
    /// The mode as the CRD spells it (`ensure`, `existing`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ensure => "ensure",
            Self::Existing => "existing",
        }
    }
}

/// Naming template of provisioned resources.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct NamingSpec {
    /// Same grammar as `pathTemplate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "path_template_schema")]
    pub template: Option<String>,
}

/// How a git-family sink lays out files.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LayoutSpec {
    /// `document` (one file per inventory), `perResource` or `split` (a file per row plus an index).
    #[serde(default)]
    pub mode: LayoutMode,
    /// What each per-resource file holds.
    #[serde(default)]
    pub content: LayoutContent,
    /// Per-row path; default `{cluster}/{sourceNamespace}/{kind}/{sourceName}{extension}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "(self.contains('{sourceName}') || self.contains('{name}') || self.contains('{uid}')) && !self.contains('..') && self.findAll('\\\\{[^}]*\\\\}').all(p, p in ['{cluster}', '{namespace}', '{name}', '{targetNamespace}', '{targetName}', '{sourceNamespace}', '{sourceName}', '{group}', '{kind}', '{uid}', '{generation}', '{extension}'])",
        "message": "must contain {sourceName}, {name} or {uid}, must not contain '..', and may only use the layout placeholders",
    }]), length(max = 1024))]
    pub path_template: Option<String>,
    /// Index sidecar (default on for `split`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<LayoutIndexSpec>,
    /// File name rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<FilenameSpec>,
}

/// Layout modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LayoutMode {
    /// One document per inventory.
    #[default]
    Document,
    /// One file per row.
    PerResource,
    /// One file per row plus an index document.
    Split,
}

/// Contents of per-row files.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LayoutContent {
    /// The whole row.
    #[default]
    Item,
    /// The row's attributes.
    Attributes,
    /// The Resource-mode manifest.
    Manifest,
}

/// The index sidecar of tree layouts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LayoutIndexSpec {
    /// Write the index (default true for `split`, false for `perResource`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Index path; default `inventory/{namespace}/{name}{extension}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub path_template: Option<String>,
}

/// File name rules of per-row files.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilenameSpec {
    /// Whether the API group appears in paths (`auto` and `always` use it when non-empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_in_path: Option<GroupInPath>,
    /// Lower-case the kind segment (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowercase_kind: Option<bool>,
    /// Longest path segment (default 63).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_segment_length: Option<i32>,
}

/// Whether the API group is part of per-row paths.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupInPath {
    /// Use the group when it is non-empty.
    #[default]
    Auto,
    /// Same as auto.
    Always,
    /// Never use the group.
    Never,
}

/// Observed state of a family sink.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct FamilySinkStatus {
    /// `ConnectionVerified`, `Degraded`, `TLSInsecure`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// What an export would produce; present while the `kollect.dev/preview` annotation is `"true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<SinkPreview>,
}

/// A dry rendering of a sink's output for a synthetic sample.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SinkPreview {
    /// When the preview was rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered_at: Option<Time>,
    /// Where the sample came from (`synthetic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_sample_source: Option<String>,
    /// Effective provisioning mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_mode: Option<String>,
    /// Effective serialization format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serialization_format: Option<String>,
    /// Document path or object key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_path: Option<String>,
    /// Git commit preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitPreview>,
    /// Layout preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<LayoutPreview>,
    /// PostgreSQL preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresPreview>,
    /// MongoDB preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongodb: Option<MongodbPreview>,
    /// Kafka preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaPreview>,
    /// NATS JetStream preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsPreview>,
    /// Notes about the configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Git commit preview.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitPreview {
    /// Rendered commit subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_commit_subject: Option<String>,
    /// Rendered commit body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_commit_body: Option<String>,
}

/// Layout preview.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LayoutPreview {
    /// Effective layout mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Effective content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Whether stale files are pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,
    /// Example paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample_paths: Vec<String>,
}

/// PostgreSQL preview.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresPreview {
    /// The DDL an `ensure` sink would run.
    #[serde(default, rename = "expectedDDL", skip_serializing_if = "Option::is_none")]
    pub expected_ddl: Option<String>,
}

/// MongoDB preview.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MongodbPreview {
    /// Keys of the unique index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_index_keys: Vec<String>,
}

/// Kafka preview.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct KafkaPreview {
    /// Destination topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// NATS JetStream preview.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct NatsPreview {
    /// Stream that captures the messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Subject of the first message (the rendered template; a row's subject in row mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Snapshot sinks
// ---------------------------------------------------------------------------------------------

/// Snapshot sink backends.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotSinkType {
    /// A Git repository.
    Git,
    /// A GitLab (or Gitea/Forgejo) repository, optionally through merge requests.
    Gitlab,
    /// An S3-compatible bucket.
    S3,
    /// A Google Cloud Storage bucket.
    Gcs,
    /// An Azure Blob Storage container.
    Azureblob,
}

/// Writes inventory documents to Git or an object store.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kollect.dev",
    version = "v1alpha1",
    kind = "KollectSnapshotSink",
    plural = "kollectsnapshotsinks",
    shortname = "ksnap",
    namespaced,
    status = "FamilySinkStatus",
    doc = "KollectSnapshotSink delivers inventory documents to Git, GitLab or an object store."
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.endpoint) && self.endpoint != ''", "message": "spec.endpoint is required: a repository URL or a bucket"},
    {"rule": "!has(self.endpoint) || !self.endpoint.lowerAscii().startsWith('file:')", "message": "file:// endpoints are not allowed"},
    {"rule": "!has(self.git) || self.type in ['git', 'gitlab']", "message": "spec.git is only allowed for types git and gitlab"},
    {"rule": "self.type != 'gitlab' || !has(self.git) || !has(self.git.auth) || !has(self.git.auth.type) || self.git.auth.type == 'token'", "message": "gitlab sinks push over HTTPS with a token: spec.git.auth.type must be token"},
    {"rule": "!has(self.gitlab) || self.type == 'gitlab'", "message": "spec.gitlab is only allowed for type gitlab"},
    {"rule": "!has(self.objectStore) || self.type in ['s3', 'gcs', 'azureblob']", "message": "spec.objectStore is only allowed for types s3, gcs and azureblob"},
    {"rule": "!has(self.http)", "message": "spec.http is reserved: snapshot type http is not supported"},
    {
        "rule": "!has(self.serialization) || !has(self.serialization.format) || (self.type in ['git', 'gitlab'] ? self.serialization.format in ['json', 'yaml', 'ndjson'] : true)",
        "message": "git and gitlab sinks support serialization.format json, yaml or ndjson",
    },
]))]
pub struct KollectSnapshotSinkSpec {
    /// Backend type.
    #[serde(rename = "type")]
    pub type_: SnapshotSinkType,
    /// Settings shared by all sinks.
    #[serde(flatten)]
    pub common: SinkCommonSpec,
    /// Git settings (types git and gitlab; optional, absent means defaults: a gitlab sink then
    /// force-pushes commits titled `kollect: export inventory`, as the Go operator's did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSpec>,
    /// GitLab settings (type gitlab).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab: Option<GitlabSpec>,
    /// Object store settings (types s3, gcs, azureblob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreSpec>,
    /// Reserved; always refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSinkSpec>,
}

/// Git settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSpec {
    /// Branch to write (default `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"), length(max = 255), extend("x-kubernetes-validations" = [{
        "rule": "!self.contains('..') && !self.endsWith('.') && !self.endsWith('.lock') && !self.startsWith('refs/') && !self.contains('//') && !self.endsWith('/')",
        "message": "must be a short branch name: no '..', no trailing '.', '/' or '.lock', no 'refs/' prefix",
    }]))]
    pub branch: Option<String>,
    /// `Commit` (default) appends commits; `ForcePush` overwrites history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_policy: Option<PushPolicy>,
    /// Authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<GitAuthSpec>,
    /// Commit subject template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_message: Option<String>,
    /// Commit body template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_body: Option<String>,
    /// Commit trailer templates, one paragraph each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commit_trailers: Vec<String>,
    /// Commit author (default `kollect <kollect@kollect.dev>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<GitAuthor>,
    /// Clone depth (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub clone_depth: Option<i32>,
    /// Remove files that no longer correspond to rows (always on for tree layouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,
    /// Accepted for compatibility; this implementation always uses libgit2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<GitEngine>,
    /// Send credentials preemptively as HTTP basic auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_basic_auth: Option<bool>,
}

/// Push policies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum PushPolicy {
    /// Fast-forward pushes; a concurrent change is fetched and the export re-applied.
    #[default]
    Commit,
    /// Force-push, overwriting the branch.
    ForcePush,
}

/// Git authentication settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitAuthSpec {
    /// `token` (HTTPS) or `ssh`; inferred from the endpoint scheme when absent.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<GitAuthType>,
    /// Secret overriding `spec.secretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
}

/// Git authentication types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GitAuthType {
    /// HTTPS with a token or username/password.
    Token,
    /// SSH with a private key and known_hosts.
    Ssh,
}

/// Git engine names accepted for compatibility; Kollect always uses libgit2.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum GitEngine {
    /// go-git.
    #[serde(rename = "go-git")]
    GoGit,
    /// The git command line.
    #[serde(rename = "cli")]
    Cli,
}

/// Commit identity.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct GitAuthor {
    /// Author name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Author e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// GitLab settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitlabSpec {
    /// Merge request workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_request: Option<MergeRequestSpec>,
}

/// Merge request workflow settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.mode) || self.mode != 'merge_request' || (has(self.targetBranch) && self.targetBranch != '')",
    "message": "targetBranch is required when mode is merge_request",
}]))]
pub struct MergeRequestSpec {
    /// `direct` (default) or `merge_request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MergeRequestMode>,
    /// Branch merge requests target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_branch: Option<String>,
    /// Prefix of feature branches (default `kollect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_prefix: Option<String>,
    /// Title template (`{namespace}`, `{name}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_template: Option<String>,
    /// Not supported: the sink opens merge requests and never merges them, so `true` is
    /// refused (`false` is accepted for compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "!self",
        "message": "autoMerge is not supported: the sink opens merge requests and never merges them",
    }]))]
    pub auto_merge: Option<bool>,
}

/// Merge request modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum MergeRequestMode {
    /// Push to the branch.
    #[serde(rename = "direct")]
    Direct,
    /// Push to a feature branch and open a merge request.
    #[serde(rename = "merge_request")]
    MergeRequest,
}

/// Object store settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreSpec {
    /// Legacy format switch; `serialization.format` wins when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ObjectStoreFormat>,
    /// Attributes promoted to typed Parquet columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub hot_attributes: Vec<String>,
    /// How many generations of an inventory's objects to keep; unset keeps every generation.
    /// Needs `{generation}` in the object key (the Parquet default key has it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<ObjectRetention>,
}

/// Retention of an inventory's object generations.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRetention {
    /// Generations kept per inventory, the current one included; older ones are deleted after
    /// each export.
    #[schemars(range(min = 1, max = 1000))]
    pub generations: u32,
}

/// Legacy object store formats.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ObjectStoreFormat {
    /// JSON envelope.
    Json,
    /// Apache Parquet.
    Parquet,
}

/// Reserved HTTP sink block.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HttpSinkSpec {
    /// Reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Database sinks
// ---------------------------------------------------------------------------------------------

/// Database sink backends.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseSinkType {
    /// PostgreSQL.
    Postgres,
    /// Google BigQuery.
    Bigquery,
    /// MongoDB.
    Mongodb,
}

/// Keeps one database row per collected object.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kollect.dev",
    version = "v1alpha1",
    kind = "KollectDatabaseSink",
    plural = "kollectdatabasesinks",
    shortname = "kdb",
    namespaced,
    status = "FamilySinkStatus",
    doc = "KollectDatabaseSink keeps one row per collected object in PostgreSQL, BigQuery or MongoDB."
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type != 'postgres' || has(self.postgres)", "message": "spec.postgres is required for type postgres"},
    {"rule": "self.type != 'bigquery' || has(self.bigquery)", "message": "spec.bigquery is required for type bigquery"},
    {"rule": "self.type != 'mongodb' || has(self.mongodb)", "message": "spec.mongodb is required for type mongodb"},
    {"rule": "!has(self.postgres) || self.type == 'postgres'", "message": "spec.postgres is only allowed for type postgres"},
    {"rule": "!has(self.bigquery) || self.type == 'bigquery'", "message": "spec.bigquery is only allowed for type bigquery"},
    {"rule": "!has(self.mongodb) || self.type == 'mongodb'", "message": "spec.mongodb is only allowed for type mongodb"},
    {"rule": "!has(self.layout)", "message": "spec.layout is only allowed for snapshot sinks"},
    {"rule": "!has(self.deletedRows) || self.deletedRows == 'Delete' || self.type != 'bigquery'", "message": "spec.deletedRows: SoftDelete is supported by types postgres and mongodb"},
    {"rule": "!has(self.serialization) || !has(self.serialization.format) || self.serialization.format == 'json'", "message": "database sinks support serialization.format json only"},
]))]
pub struct KollectDatabaseSinkSpec {
    /// Backend type.
    #[serde(rename = "type")]
    pub type_: DatabaseSinkType,
    /// Settings shared by all sinks.
    #[serde(flatten)]
    pub common: SinkCommonSpec,
    /// PostgreSQL settings (type postgres).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSpec>,
    /// BigQuery settings (type bigquery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bigquery: Option<BigquerySpec>,
    /// MongoDB settings (type mongodb).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongodb: Option<MongodbSpec>,
    /// What happens to the row of an object that is no longer collected: `Delete` (default)
    /// removes it; `SoftDelete` keeps it with `deleted_at` set, cleared again if the object
    /// comes back. Deleting the inventory removes its rows either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_rows: Option<DeletedRows>,
}

impl KollectDatabaseSinkSpec {
    /// The effective handling of rows that disappear (absent means [`DeletedRows::Delete`]).
    pub fn deleted_rows(&self) -> DeletedRows {
        self.deleted_rows.unwrap_or_default()
    }
}

/// What a database sink does with the row of an object that is no longer collected.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum DeletedRows {
    /// The row is deleted.
    #[default]
    Delete,
    /// The row stays with `deleted_at` set to the export time; it is cleared when the object is
    /// collected again.
    SoftDelete,
}

/// PostgreSQL settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Secret holding the connection string under `dsn`, `url`, `connectionString` or `DATABASE_URL`.
    pub database_ref: SecretReference,
    /// Table name.
    #[schemars(length(min = 1, max = 63))]
    pub table: String,
    /// Schema name (default `public`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub schema: Option<String>,
}

/// BigQuery settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BigquerySpec {
    /// Project id.
    #[schemars(regex(pattern = r"\S"))]
    pub project: String,
    /// Dataset.
    #[schemars(regex(pattern = r"\S"))]
    pub dataset: String,
    /// Table.
    #[schemars(regex(pattern = r"\S"))]
    pub table: String,
    /// Job location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Secret with `credentials.json`; absent means application default credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
}

/// MongoDB settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MongodbSpec {
    /// Secret holding the URI under `uri`, `url`, `connectionString` or `MONGODB_URI`.
    pub database_ref: SecretReference,
    /// Database name.
    #[schemars(length(min = 1))]
    pub database: String,
    /// Collection name.
    #[schemars(length(min = 1))]
    pub collection: String,
}

// ---------------------------------------------------------------------------------------------
// Event sinks
// ---------------------------------------------------------------------------------------------

/// Event sink backends.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventSinkType {
    /// NATS JetStream.
    Nats,
    /// Apache Kafka.
    Kafka,
}

/// Publishes inventory changes as messages.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kollect.dev",
    version = "v1alpha1",
    kind = "KollectEventSink",
    plural = "kollecteventsinks",
    shortname = "kevt",
    namespaced,
    status = "FamilySinkStatus",
    doc = "KollectEventSink publishes inventory snapshots and row changes to NATS JetStream or Kafka."
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type != 'nats' || has(self.nats)", "message": "spec.nats is required for type nats"},
    {"rule": "self.type != 'kafka' || has(self.kafka)", "message": "spec.kafka is required for type kafka"},
    {"rule": "!has(self.nats) || self.type == 'nats'", "message": "spec.nats is only allowed for type nats"},
    {"rule": "!has(self.kafka) || self.type == 'kafka'", "message": "spec.kafka is only allowed for type kafka"},
    {"rule": "!has(self.layout)", "message": "spec.layout is only allowed for snapshot sinks"},
    {"rule": "!has(self.serialization) || !has(self.serialization.format) || self.serialization.format == 'json'", "message": "event sinks support serialization.format json only"},
    {"rule": "self.type != 'nats' || (has(self.nats) && has(self.nats.url)) || has(self.endpoint)", "message": "nats sinks need spec.nats.url or spec.endpoint"},
]))]
pub struct KollectEventSinkSpec {
    /// Backend type.
    #[serde(rename = "type")]
    pub type_: EventSinkType,
    /// Settings shared by all sinks.
    #[serde(flatten)]
    pub common: SinkCommonSpec,
    /// Kafka settings (type kafka).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSpec>,
    /// NATS settings (type nats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSpec>,
}

/// Kafka settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Bootstrap brokers as `host:port`.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"), length(min = 1, max = 64))]
    pub brokers: Vec<String>,
    /// Topic.
    #[schemars(length(min = 1, max = 249))]
    pub topic: String,
    /// Secret overriding `spec.secretRef` (`username`, `password`, `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
}

/// NATS settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatsSpec {
    /// Server URL, e.g. `nats://nats:4222`; falls back to `spec.endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Subject (template) messages are published to.
    #[schemars(length(min = 1))]
    pub subject: String,
    /// JetStream stream (default `kollect_events`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Secret overriding `spec.secretRef` (`token`, or `username` + `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
}
