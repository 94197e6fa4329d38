//! The sink registry: the descriptors of every backend in this build, and the one place that
//! turns a family sink spec plus resolved Secret material into a boxed
//! [`Sink`](kollect_core::sink::Sink).
//!
//! Adding a backend is one folder (`src/<backend>/`, which declares a `BACKEND` descriptor) and
//! one line in the list of built-in backends at the top of this module. Everything else (supported types, the CLI's `validate`, the
//! operator's Secret reads and endpoint checks) asks the registry.
//!
//! ```
//! use kollect_sinks::registry::Registry;
//!
//! let registry = Registry::builtin();
//! assert!(registry.supported_types().contains(&"local"));
//! let error = registry.backend("frobnicate").unwrap_err();
//! assert!(error.to_string().starts_with("unknown sink type \"frobnicate\" (supported: "));
//! ```

use std::collections::BTreeMap;
use std::sync::LazyLock;

use kollect_core::netguard::NetPolicy;
use kollect_core::sink::{BoxSink, ProbeReport, SinkError};

use crate::backend::{Backend, EndpointError, SecretRefs};
use crate::context::BuildContext;
use crate::family::{FamilySink, SinkConfig};

/// The condition reason for a sink type the CRDs admit but this build has no backend for.
pub use kollect_core::api::reasons::SINK_TYPE_UNSUPPORTED;

/// The backends of this build: one registration line each.
const BUILTIN: &[Backend] = &[
    #[cfg(feature = "bigquery")]
    crate::bigquery::BACKEND,
    #[cfg(feature = "git")]
    crate::git::BACKEND,
    #[cfg(feature = "gitlab")]
    crate::gitlab::BACKEND,
    #[cfg(feature = "kafka")]
    crate::kafka::BACKEND,
    #[cfg(feature = "local")]
    crate::local::BACKEND,
    #[cfg(feature = "mongodb")]
    crate::mongodb::BACKEND,
    #[cfg(feature = "nats")]
    crate::nats::BACKEND,
    #[cfg(feature = "object")]
    crate::object::S3_BACKEND,
    #[cfg(feature = "object")]
    crate::object::GCS_BACKEND,
    #[cfg(feature = "object")]
    crate::object::AZURE_BACKEND,
    #[cfg(feature = "postgres")]
    crate::postgres::BACKEND,
    #[cfg(feature = "stdout")]
    crate::stdout::BACKEND,
];

static BUILTIN_REGISTRY: LazyLock<Registry> =
    LazyLock::new(|| BUILTIN.iter().copied().fold(Registry::empty(), Registry::with));

/// A sink type that this build does not include. Terminal: nothing but a build with that
/// backend (or a different `spec.type`) can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sink type \"{type_name}\" (supported: {supported})")]
pub struct UnsupportedType {
    /// The type asked for.
    pub type_name: String,
    /// The supported types, sorted and comma-separated.
    pub supported: String,
}

impl UnsupportedType {
    /// The condition reason reported for it everywhere ([`SINK_TYPE_UNSUPPORTED`]).
    pub fn reason(&self) -> &'static str {
        SINK_TYPE_UNSUPPORTED
    }
}

impl From<UnsupportedType> for SinkError {
    fn from(error: UnsupportedType) -> Self {
        SinkError::terminal(error.to_string())
    }
}

/// A set of backends by type name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    backends: BTreeMap<&'static str, Backend>,
}

impl Registry {
    /// The backends compiled into this build (see the crate's cargo features).
    pub fn builtin() -> &'static Registry {
        &BUILTIN_REGISTRY
    }

    /// A registry without backends (embedders add their own with [`Registry::with`]).
    pub fn empty() -> Self {
        Self::default()
    }

    /// The same registry with `backend` (replacing one of the same type name).
    pub fn with(mut self, backend: Backend) -> Self {
        self.backends.insert(backend.type_name, backend);
        self
    }

    /// The same registry without the backend of `type_name` (a build that leaves a type out).
    pub fn without(mut self, type_name: &str) -> Self {
        self.backends.remove(type_name);
        self
    }

    /// The supported type names, sorted.
    pub fn supported_types(&self) -> Vec<&'static str> {
        self.backends.keys().copied().collect()
    }

    /// The backend of `type_name`.
    pub fn backend(&self, type_name: &str) -> Result<&Backend, UnsupportedType> {
        self.backends.get(type_name).ok_or_else(|| UnsupportedType {
            type_name: type_name.to_owned(),
            supported: self.supported_types().join(", "),
        })
    }

    /// The backend of a sink resource.
    pub fn backend_of(&self, sink: &FamilySink) -> Result<&Backend, UnsupportedType> {
        self.backend(&sink.type_name())
    }

    /// The Secret references `sink` reads.
    pub fn secret_refs(&self, sink: &FamilySink) -> Result<SecretRefs, UnsupportedType> {
        self.backend_of(sink).map(|b| b.secret_refs(sink))
    }

    /// Checks the endpoint fields of `config` against `policy`.
    pub fn check_endpoints(&self, config: &SinkConfig, policy: &NetPolicy) -> Result<(), CheckError> {
        let backend = self.backend(&config.type_name())?;
        backend.check_endpoints(config, policy)?;
        Ok(())
    }

    /// Builds the backend for `config`. Construction does not connect: the first export or
    /// probe does, so a registry call never blocks on the network.
    ///
    /// ```
    /// use kollect_core::api::v1alpha1::KollectSnapshotSinkSpec;
    /// use kollect_core::netguard::NetPolicy;
    /// use kollect_sinks::family::SinkConfig;
    /// use kollect_sinks::{BuildContext, Registry};
    ///
    /// // A Git sink as a KollectSnapshotSink declares it; the credentials Secret would be
    /// // resolved into the context by the caller.
    /// let spec: KollectSnapshotSinkSpec = serde_json::from_value(serde_json::json!({
    ///     "type": "git",
    ///     "endpoint": "https://git.example.com/platform/inventory.git",
    ///     "git": { "branch": "main" }
    /// }))?;
    /// let context = BuildContext::new("team-a/inventory-git", NetPolicy::new(false));
    /// let sink = Registry::builtin().build(&SinkConfig::Snapshot(Box::new(spec)), context)?;
    /// assert_eq!(sink.sink_type(), "git");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(&self, config: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
        self.backend(&config.type_name())?.build(config, context)
    }

    /// Builds the backend for `config` and probes it.
    pub async fn probe(&self, config: &SinkConfig, context: BuildContext) -> Result<ProbeReport, SinkError> {
        self.backend(&config.type_name())?.probe(config, context).await
    }
}

/// Why [`Registry::check_endpoints`] refused a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// No backend for the type.
    #[error(transparent)]
    Unsupported(#[from] UnsupportedType),
    /// An endpoint field is refused.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

/// The backend types of this build, sorted ([`Registry::builtin`]).
pub fn supported_types() -> Vec<&'static str> {
    Registry::builtin().supported_types()
}

/// Builds `config` with the backends of this build ([`Registry::build`]).
pub fn build(config: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
    Registry::builtin().build(config, context)
}

#[cfg(test)]
mod tests {
    use kollect_core::api::v1alpha1::{KollectSnapshotSinkSpec, SnapshotSinkType};

    use super::*;

    #[test]
    fn an_unknown_type_is_terminal_and_lists_the_supported_ones() {
        let spec: KollectSnapshotSinkSpec = serde_json::from_value(serde_json::json!({
            "type": "gitlab", "endpoint": "https://gitlab.example.com/platform/inventory.git"
        }))
        .unwrap();
        assert_eq!(spec.type_, SnapshotSinkType::Gitlab);
        // A build without the gitlab backend (every built-in type has one in the default build).
        let registry = Registry::empty().with(crate::local::BACKEND);
        let error = registry
            .build(
                &SinkConfig::Snapshot(Box::new(spec)),
                BuildContext::new("ns/blob", NetPolicy::new(false)),
            )
            .err()
            .unwrap();
        assert_eq!(error.class(), kollect_core::sink::ErrorClass::Terminal);
        assert_eq!(error.message(), "unknown sink type \"gitlab\" (supported: local)");
    }

    /// A backend added the way a new one is: a descriptor and one registration. Everything
    /// the operator and the CLI ask about it comes from that descriptor.
    #[test]
    fn a_registered_descriptor_is_supported_built_and_checked_everywhere() {
        use kollect_core::api::v1alpha1::{KollectSnapshotSink, SecretReference, SinkFamily};
        use kollect_core::netguard::EndpointKind;
        use kollect_core::sink::Capabilities;

        use crate::backend::{BackendFamily, EndpointField};

        fn build(_: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
            Ok(Box::new(crate::local::LocalSink::new(
                crate::local::LocalConfig::new(
                    std::env::temp_dir().join(context.name),
                    crate::format::Format::Json,
                ),
            )?))
        }
        fn secrets(sink: &FamilySink) -> SecretRefs {
            SecretRefs::common(sink).with_database(Some(SecretReference {
                name: "acme-db".into(),
                namespace: None,
            }))
        }
        // Registered under a type the CRDs admit, so the spec below decodes.
        const ACME: Backend = Backend::new(
            "gitlab",
            BackendFamily::Crd(SinkFamily::Snapshot),
            Capabilities::DOCUMENTS,
            build,
        )
        .with_endpoints(&[EndpointField::new("spec.endpoint", EndpointKind::GitRemote)])
        .with_secrets(secrets);
        let registry = Registry::builtin().clone().with(ACME);
        assert!(registry.supported_types().contains(&"gitlab"));

        let sink: KollectSnapshotSink = serde_json::from_value(serde_json::json!({
            "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectSnapshotSink",
            "metadata": {"name": "acme", "namespace": "team-a"},
            "spec": {"type": "gitlab", "endpoint": "https://127.0.0.1/repo.git", "secretRef": {"name": "token"}}
        }))
        .unwrap();
        let sink = FamilySink::from(sink);
        let refs = registry.secret_refs(&sink).unwrap();
        assert_eq!(refs.credentials.map(|r| r.name).as_deref(), Some("token"));
        assert_eq!(refs.database.map(|r| r.name).as_deref(), Some("acme-db"));
        let refused = registry
            .check_endpoints(&sink.config(), &NetPolicy::new(false))
            .unwrap_err();
        assert!(refused.to_string().starts_with("spec.endpoint: "), "{refused}");
        let built = registry
            .build(
                &sink.config(),
                BuildContext::new("acme-test", NetPolicy::new(false)),
            )
            .unwrap();
        assert_eq!(built.sink_type(), "local");
        // The built-in registry is untouched: its gitlab backend is still its own.
        let own = Registry::builtin().build(
            &sink.config(),
            BuildContext::new("acme-test", NetPolicy::new(false)),
        );
        assert!(!matches!(own, Ok(s) if s.sink_type() == "local"));
    }

    #[test]
    fn supported_types_are_exactly_the_registered_backends() {
        let registry = Registry::builtin();
        for type_name in registry.supported_types() {
            let backend = registry.backend(type_name).unwrap();
            assert_eq!(backend.type_name, type_name);
        }
        let mut sorted = registry.supported_types();
        sorted.sort_unstable();
        assert_eq!(sorted, registry.supported_types());
    }
}
