//! The backend descriptor: everything the operator, the CLI and admission need to know about
//! one sink type, declared next to the backend's code.
//!
//! A descriptor names the type and family, the endpoint fields the backend dials (checked
//! against the SSRF policy before anything is built), the Secret references it reads, what it
//! needs from the export engine, and its builder. The registry is made of descriptors only, so
//! the list of supported types, the builder and the checks cannot disagree. A backend's probe is
//! the built sink's [`Sink::probe`](kollect_core::sink::Sink::probe), reached through
//! [`Backend::probe`].

use kollect_core::api::v1alpha1::{KollectDatabaseSinkSpec, SecretReference, SinkFamily};
use kollect_core::netguard::{EndpointKind, NetError, NetPolicy};
use kollect_core::sink::{BoxSink, Capabilities, ProbeReport, SinkError};
use serde_json::Value;

use crate::context::BuildContext;
use crate::family::{FamilySink, SinkConfig};

/// Which kind of resource configures a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendFamily {
    /// A `KollectSnapshotSink`, `KollectDatabaseSink` or `KollectEventSink`.
    Crd(SinkFamily),
    /// The command line only (`local`, `stdout`); no CRD admits the type.
    Cli,
}

/// One field of a spec that holds an address the backend connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointField {
    /// Field path as users write it, e.g. `spec.endpoint` or `spec.kafka.brokers` (a list of
    /// strings is checked element by element).
    pub path: &'static str,
    /// How the value is parsed to find its host.
    pub kind: EndpointKind,
}

impl EndpointField {
    /// A field at `path` parsed as `kind`.
    pub const fn new(path: &'static str, kind: EndpointKind) -> Self {
        Self { path, kind }
    }
}

/// The Secret references a sink reads, resolved by the caller (backends never read Secrets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecretRefs {
    /// Credentials (`spec.secretRef`, or the family block's own reference).
    pub credentials: Option<SecretReference>,
    /// A database connection string (`postgres.databaseRef`, ...).
    pub database: Option<SecretReference>,
    /// A CA bundle (`spec.tls.caSecretRef`, unless `spec.tls.caBundle` is inline).
    pub ca: Option<SecretReference>,
}

impl SecretRefs {
    /// The references every family shares: `spec.secretRef` and `spec.tls.caSecretRef` (the
    /// latter only when no inline `caBundle` wins over it).
    pub fn common(sink: &FamilySink) -> Self {
        let common = sink.common();
        Self {
            credentials: common.secret_ref.clone(),
            database: None,
            ca: common
                .tls
                .as_ref()
                .filter(|t| t.ca_bundle.is_none())
                .and_then(|t| t.ca_secret_ref.clone()),
        }
    }

    /// The same references with the family block's own credentials reference winning over
    /// `spec.secretRef` when it is set.
    pub fn with_credentials_override(mut self, own: Option<SecretReference>) -> Self {
        if own.is_some() {
            self.credentials = own;
        }
        self
    }

    /// The same references with a database Secret.
    pub fn with_database(mut self, database: Option<SecretReference>) -> Self {
        self.database = database;
        self
    }

    /// The references of a database sink: the common ones and the database Secret that `pick`
    /// finds in the backend's block of the spec.
    #[cfg_attr(not(any(feature = "postgres", feature = "mongodb")), allow(dead_code))]
    pub(crate) fn of_database(
        sink: &FamilySink,
        pick: fn(&KollectDatabaseSinkSpec) -> Option<&SecretReference>,
    ) -> Self {
        let database = match sink {
            FamilySink::Database(s) => pick(&s.spec).cloned(),
            _ => None,
        };
        Self::common(sink).with_database(database)
    }

    /// Every reference with what it is for (`credentials`, `database`, `ca`).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &SecretReference)> {
        [
            ("credentials", self.credentials.as_ref()),
            ("database", self.database.as_ref()),
            ("ca", self.ca.as_ref()),
        ]
        .into_iter()
        .filter_map(|(what, reference)| reference.map(|r| (what, r)))
    }
}

/// Builds a backend from its configuration and resolved material, without connecting.
pub type BuildFn = fn(&SinkConfig, BuildContext) -> Result<BoxSink, SinkError>;

/// Names the Secret references a sink of this type reads.
pub type SecretsFn = fn(&FamilySink) -> SecretRefs;

/// One sink type. Backends declare theirs as a `const` in their own module; see
/// [`crate::registry`] for how they are registered.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct Backend {
    /// `spec.type` (`git`, `postgres`, ...).
    pub type_name: &'static str,
    /// Which resource configures it.
    pub family: BackendFamily,
    /// The fields it dials.
    pub endpoints: &'static [EndpointField],
    /// The Secrets it reads.
    pub secrets: SecretsFn,
    /// What it needs from the export engine (the built sink reports the same).
    pub capabilities: Capabilities,
    /// Its builder.
    pub build: BuildFn,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("type_name", &self.type_name)
            .field("family", &self.family)
            .field("endpoints", &self.endpoints)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

/// A failed endpoint check, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {error}")]
pub struct EndpointError {
    /// The field path (`spec.endpoint`).
    pub path: &'static str,
    /// What is wrong with its value.
    pub error: NetError,
}

impl Backend {
    /// A backend of `type_name` in `family`, built by `build`, dialling nothing and reading
    /// only the common Secret references until told otherwise.
    pub const fn new(
        type_name: &'static str,
        family: BackendFamily,
        capabilities: Capabilities,
        build: BuildFn,
    ) -> Self {
        Self {
            type_name,
            family,
            endpoints: &[],
            secrets: SecretRefs::common,
            capabilities,
            build,
        }
    }

    /// The same backend dialling `endpoints`.
    pub const fn with_endpoints(mut self, endpoints: &'static [EndpointField]) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// The same backend reading the Secrets `secrets` names.
    pub const fn with_secrets(mut self, secrets: SecretsFn) -> Self {
        self.secrets = secrets;
        self
    }

    /// Builds the backend. Construction does not connect: the first export or probe does.
    pub fn build(&self, config: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
        (self.build)(config, context)
    }

    /// Builds the backend and probes it (reachability and credentials, without writing).
    pub async fn probe(&self, config: &SinkConfig, context: BuildContext) -> Result<ProbeReport, SinkError> {
        self.build(config, context)?.probe().await
    }

    /// The Secret references `sink` reads.
    pub fn secret_refs(&self, sink: &FamilySink) -> SecretRefs {
        (self.secrets)(sink)
    }

    /// Checks every endpoint field of `config` against `policy` (literal addresses and names;
    /// what names resolve to is checked again when the backend dials).
    pub fn check_endpoints(&self, config: &SinkConfig, policy: &NetPolicy) -> Result<(), EndpointError> {
        let spec = match config {
            SinkConfig::Snapshot(spec) => serde_json::to_value(spec),
            SinkConfig::Database(spec) => serde_json::to_value(spec),
            SinkConfig::Event(spec) => serde_json::to_value(spec),
            #[allow(unreachable_patterns)]
            _ => return Ok(()),
        }
        .unwrap_or(Value::Null);
        for field in self.endpoints {
            for value in field_values(&spec, field.path) {
                // A NATS URL field may hold a comma-separated server list.
                let values: Vec<&str> = match field.kind {
                    EndpointKind::NatsUrl => value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .collect(),
                    _ => vec![value.as_str()],
                };
                for value in values {
                    policy
                        .check_endpoint(value, field.kind)
                        .map_err(|error| EndpointError {
                            path: field.path,
                            error,
                        })?;
                }
            }
        }
        Ok(())
    }
}

/// The string values at `path` (`spec.a.b`) of a serialized spec; a list yields each string.
fn field_values(spec: &Value, path: &str) -> Vec<String> {
    let mut value = spec;
    for segment in path.strip_prefix("spec.").unwrap_or(path).split('.') {
        match value.get(segment) {
            Some(inner) => value = inner,
            None => return Vec::new(),
        }
    }
    match value {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The error of a builder handed a configuration of another family (a registry defect, not a
/// user error, but reported as a terminal error rather than a panic).
#[cfg(any(
    feature = "local",
    feature = "stdout",
    feature = "git",
    feature = "postgres",
    feature = "mongodb",
    feature = "bigquery",
    feature = "gitlab",
    feature = "object",
    feature = "kafka",
    feature = "nats"
))]
pub(crate) fn wrong_family(type_name: &str, config: &SinkConfig) -> SinkError {
    SinkError::terminal(format!(
        "the {type_name} backend cannot be built from a {} configuration",
        config.type_name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values_walk_objects_and_lists() {
        let spec = serde_json::json!({"endpoint": "https://x", "kafka": {"brokers": ["a:1", "b:2"]}});
        assert_eq!(field_values(&spec, "spec.endpoint"), ["https://x"]);
        assert_eq!(field_values(&spec, "spec.kafka.brokers"), ["a:1", "b:2"]);
        assert!(field_values(&spec, "spec.nats.url").is_empty());
    }
}
