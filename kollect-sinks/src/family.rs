//! The inputs a backend is built from: a family sink custom resource ([`FamilySink`]) and the
//! configuration handed to a builder ([`SinkConfig`]), which also covers the CLI-only `local`
//! and `stdout` sinks that no CRD admits.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kollect_core::api::v1alpha1::{
    KollectDatabaseSink, KollectDatabaseSinkSpec, KollectEventSink, KollectEventSinkSpec,
    KollectSnapshotSink, KollectSnapshotSinkSpec, SinkCommonSpec, SinkFamily,
};
use kollect_core::sink::SinkError;

/// One family sink custom resource.
#[derive(Debug, Clone)]
pub enum FamilySink {
    /// A `KollectSnapshotSink`.
    Snapshot(KollectSnapshotSink),
    /// A `KollectDatabaseSink`.
    Database(KollectDatabaseSink),
    /// A `KollectEventSink`.
    Event(KollectEventSink),
}

impl From<KollectSnapshotSink> for FamilySink {
    fn from(sink: KollectSnapshotSink) -> Self {
        Self::Snapshot(sink)
    }
}

impl From<KollectDatabaseSink> for FamilySink {
    fn from(sink: KollectDatabaseSink) -> Self {
        Self::Database(sink)
    }
}

impl From<KollectEventSink> for FamilySink {
    fn from(sink: KollectEventSink) -> Self {
        Self::Event(sink)
    }
}

impl FamilySink {
    /// The family.
    pub fn family(&self) -> SinkFamily {
        match self {
            Self::Snapshot(_) => SinkFamily::Snapshot,
            Self::Database(_) => SinkFamily::Database,
            Self::Event(_) => SinkFamily::Event,
        }
    }

    /// The kind (`KollectSnapshotSink`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Snapshot(_) => "KollectSnapshotSink",
            Self::Database(_) => "KollectDatabaseSink",
            Self::Event(_) => "KollectEventSink",
        }
    }

    /// Object metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::Snapshot(s) => &s.metadata,
            Self::Database(s) => &s.metadata,
            Self::Event(s) => &s.metadata,
        }
    }

    /// The fields every family shares.
    pub fn common(&self) -> &SinkCommonSpec {
        match self {
            Self::Snapshot(s) => &s.spec.common,
            Self::Database(s) => &s.spec.common,
            Self::Event(s) => &s.spec.common,
        }
    }

    /// Status conditions.
    pub fn conditions(&self) -> &[Condition] {
        let status = match self {
            Self::Snapshot(s) => s.status.as_ref(),
            Self::Database(s) => s.status.as_ref(),
            Self::Event(s) => s.status.as_ref(),
        };
        status.map(|s| s.conditions.as_slice()).unwrap_or_default()
    }

    /// The backend configuration.
    pub fn config(&self) -> SinkConfig {
        match self {
            Self::Snapshot(s) => SinkConfig::Snapshot(Box::new(s.spec.clone())),
            Self::Database(s) => SinkConfig::Database(Box::new(s.spec.clone())),
            Self::Event(s) => SinkConfig::Event(Box::new(s.spec.clone())),
        }
    }

    /// The backend type (`spec.type`).
    pub fn type_name(&self) -> String {
        match self {
            Self::Snapshot(s) => api_spelling(&s.spec.type_),
            Self::Database(s) => api_spelling(&s.spec.type_),
            Self::Event(s) => api_spelling(&s.spec.type_),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        let meta = self.metadata();
        format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        )
    }
}

/// What a backend is built from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SinkConfig {
    /// A `KollectSnapshotSink` spec.
    Snapshot(Box<KollectSnapshotSinkSpec>),
    /// A `KollectDatabaseSink` spec.
    Database(Box<KollectDatabaseSinkSpec>),
    /// A `KollectEventSink` spec.
    Event(Box<KollectEventSinkSpec>),
    /// A local directory (CLI only; no CRD admits it).
    #[cfg(feature = "local")]
    Local(crate::local::LocalConfig),
    /// Standard output records (CLI only).
    #[cfg(feature = "stdout")]
    Stdout(crate::format::Format),
}

impl SinkConfig {
    /// The backend type (`git`, `postgres`, `local`, ...).
    pub fn type_name(&self) -> String {
        match self {
            SinkConfig::Snapshot(spec) => api_spelling(&spec.type_),
            SinkConfig::Database(spec) => api_spelling(&spec.type_),
            SinkConfig::Event(spec) => api_spelling(&spec.type_),
            #[cfg(feature = "local")]
            SinkConfig::Local(_) => "local".into(),
            #[cfg(feature = "stdout")]
            SinkConfig::Stdout(_) => "stdout".into(),
        }
    }
}

/// The spelling of an API enum value as the CRD writes it (`s3`, `perResource`).
pub(crate) fn api_spelling<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A shared-spec field a backend has no use for: its path, whether the spec sets it, and what
/// to do instead.
#[cfg_attr(
    not(any(
        feature = "kafka",
        feature = "nats",
        feature = "postgres",
        feature = "mongodb",
        feature = "bigquery",
        feature = "git",
        feature = "gitlab",
        feature = "object"
    )),
    allow(dead_code)
)]
pub(crate) struct Unused<'a> {
    field: &'static str,
    set: bool,
    hint: &'a str,
}

// Each helper serves some backends: a build with only some of them leaves others unused.
#[cfg_attr(
    not(all(
        feature = "kafka",
        feature = "nats",
        feature = "postgres",
        feature = "mongodb",
        feature = "bigquery",
        feature = "git",
        feature = "gitlab",
        feature = "object"
    )),
    allow(dead_code)
)]
impl<'a> Unused<'a> {
    /// Any field: `set` says whether the spec sets it.
    pub(crate) fn field(field: &'static str, set: bool, hint: &'a str) -> Self {
        Self { field, set, hint }
    }

    /// `spec.endpoint`.
    pub(crate) fn endpoint(common: &SinkCommonSpec, hint: &'a str) -> Self {
        Self::field("spec.endpoint", common.endpoint.is_some(), hint)
    }

    /// `spec.secretRef`.
    pub(crate) fn secret_ref(common: &SinkCommonSpec, hint: &'a str) -> Self {
        Self::field("spec.secretRef", common.secret_ref.is_some(), hint)
    }

    /// `spec.pathTemplate`.
    pub(crate) fn path_template(common: &SinkCommonSpec, hint: &'a str) -> Self {
        Self::field("spec.pathTemplate", common.path_template.is_some(), hint)
    }

    /// `spec.provisioning.naming` (no backend names what it provisions after it).
    pub(crate) fn naming(common: &SinkCommonSpec, hint: &'a str) -> Self {
        let set = common.provisioning.as_ref().is_some_and(|p| p.naming.is_some());
        Self::field("spec.provisioning.naming", set, hint)
    }

    /// `spec.options`.
    pub(crate) fn options(common: &SinkCommonSpec, hint: &'a str) -> Self {
        Self::field("spec.options", !common.options.is_empty(), hint)
    }
}

/// Refuses the first of `fields` that is set. Shared-spec fields a backend has no use for are
/// refused by name, never ignored.
#[cfg_attr(
    not(any(
        feature = "kafka",
        feature = "nats",
        feature = "postgres",
        feature = "mongodb",
        feature = "bigquery",
        feature = "git",
        feature = "gitlab",
        feature = "object"
    )),
    allow(dead_code)
)]
pub(crate) fn refuse_unused(type_name: &str, fields: &[Unused<'_>]) -> Result<(), SinkError> {
    match fields.iter().find(|f| f.set) {
        Some(f) => Err(SinkError::terminal(format!(
            "{} is not used by {type_name} sinks: {}",
            f.field, f.hint
        ))),
        None => Ok(()),
    }
}
