//! The sink registry: a family sink spec plus resolved secret material in, a boxed [`Sink`](kollect_core::sink::Sink) out.
//! Backends never read Kubernetes Secrets; the caller resolves them into a [`BuildContext`].

use kollect_core::api::v1alpha1::{KollectDatabaseSinkSpec, KollectEventSinkSpec, KollectSnapshotSinkSpec};
use kollect_core::netguard::NetPolicy;
use kollect_core::sink::{BoxSink, SinkError};

use crate::secret::SecretData;

/// What to build.
#[derive(Debug, Clone)]
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
    Stdout(crate::stdout::RecordFormat),
}

fn type_name<T: serde::Serialize>(type_: &T) -> String {
    serde_json::to_value(type_)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl SinkConfig {
    /// The backend type (`git`, `postgres`, `local`, ...).
    pub fn type_name(&self) -> String {
        match self {
            SinkConfig::Snapshot(spec) => type_name(&spec.type_),
            SinkConfig::Database(spec) => type_name(&spec.type_),
            SinkConfig::Event(spec) => type_name(&spec.type_),
            #[cfg(feature = "local")]
            SinkConfig::Local(_) => "local".into(),
            #[cfg(feature = "stdout")]
            SinkConfig::Stdout(_) => "stdout".into(),
        }
    }
}

/// Resolved material a backend may need.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// `<namespace>/<name>` of the sink, for messages.
    pub name: String,
    /// The Secret of `spec.secretRef` (or the family block's own ref), resolved.
    pub secret: SecretData,
    /// The database Secret (`postgres.databaseRef`, `mongodb.databaseRef`, ...), resolved.
    pub database_secret: SecretData,
    /// CA bundle PEM (`spec.tls.caBundle` or the CA Secret's value).
    pub ca_pem: Option<String>,
    /// The SSRF policy every connection is checked against.
    pub net_policy: NetPolicy,
}

impl BuildContext {
    /// A context with no secrets, under `policy`.
    pub fn new(name: impl Into<String>, policy: NetPolicy) -> Self {
        Self {
            name: name.into(),
            secret: SecretData::default(),
            database_secret: SecretData::default(),
            ca_pem: None,
            net_policy: policy,
        }
    }
}

/// The backend types this build supports, sorted.
pub fn supported_types() -> Vec<&'static str> {
    let mut types = vec![
        #[cfg(feature = "git")]
        "git",
        #[cfg(feature = "local")]
        "local",
        #[cfg(feature = "postgres")]
        "postgres",
        #[cfg(feature = "stdout")]
        "stdout",
    ];
    types.sort_unstable();
    types
}

fn unknown(type_name: &str) -> SinkError {
    SinkError::terminal(format!(
        "unknown sink type \"{type_name}\" (supported: {})",
        supported_types().join(", ")
    ))
}

/// Builds the backend for `config`. Construction does not connect: the first export or probe
/// does, so a registry call never blocks on the network.
pub fn build(config: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
    let _ = &context;
    match config {
        #[cfg(feature = "local")]
        SinkConfig::Local(local) => Ok(Box::new(crate::local::LocalSink::new(local.clone())?)),
        #[cfg(feature = "stdout")]
        SinkConfig::Stdout(format) => Ok(Box::new(crate::stdout::StdoutSink::stdout(*format))),
        #[cfg(feature = "postgres")]
        SinkConfig::Database(spec)
            if spec.type_ == kollect_core::api::v1alpha1::DatabaseSinkType::Postgres =>
        {
            Ok(Box::new(crate::postgres::PostgresSink::from_spec(spec, context)?))
        }
        #[cfg(feature = "git")]
        SinkConfig::Snapshot(spec) if spec.type_ == kollect_core::api::v1alpha1::SnapshotSinkType::Git => {
            Ok(Box::new(crate::git::SharedGitSink::new(
                crate::git::GitSink::from_spec(spec, context)?,
            )))
        }
        other => Err(unknown(&other.type_name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kollect_core::api::v1alpha1::SnapshotSinkType;

    #[test]
    fn an_unknown_type_is_terminal_and_lists_the_supported_ones() {
        let spec: KollectSnapshotSinkSpec = serde_json::from_value(serde_json::json!({
            "type": "s3", "endpoint": "s3://bucket"
        }))
        .unwrap();
        assert_eq!(spec.type_, SnapshotSinkType::S3);
        let error = build(
            &SinkConfig::Snapshot(Box::new(spec)),
            BuildContext::new("ns/s3", NetPolicy::new(false)),
        )
        .err()
        .unwrap();
        assert_eq!(error.class(), kollect_core::sink::ErrorClass::Terminal);
        assert!(
            error
                .message()
                .starts_with("unknown sink type \"s3\" (supported: "),
            "{error}"
        );
        assert!(error.message().contains("local"), "{error}");
    }
}
