//! Family sinks as the operator sees them: reading the CR and its Secrets (direct GETs, same
//! namespace unless allowed: decision A10), building the backend through the registry, wrapping
//! it in the middleware stack, and caching the stack while nothing it was built from changes
//! (so circuit breakers and connections survive between passes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Secret;
use kollect_core::api::v1alpha1::{
    KollectDatabaseSink, KollectEventSink, KollectSnapshotSink, SecretReference, SinkFamily,
};
use kollect_core::export::{StackConfig, build_stack};
use kollect_core::middleware::ExportMetrics;
use kollect_core::netguard::NetPolicy;
use kollect_core::sink::Sink;
use kollect_sinks::{BuildContext, FamilySink, Registry, SecretData};
use kube::api::Api;

/// Reads the sink `namespace/name` of `family`; `None` when it does not exist.
pub async fn fetch_sink(
    client: &kube::Client,
    family: SinkFamily,
    namespace: &str,
    name: &str,
) -> Result<Option<FamilySink>, kube::Error> {
    Ok(match family {
        SinkFamily::Snapshot => Api::<KollectSnapshotSink>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(FamilySink::from),
        SinkFamily::Database => Api::<KollectDatabaseSink>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(FamilySink::from),
        SinkFamily::Event => Api::<KollectEventSink>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(FamilySink::from),
    })
}

/// Why a sink could not be made ready for export. The messages name the object and never carry
/// Secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The sink CR does not exist.
    #[error("{family} sink \"{name}\" not found in namespace {namespace}")]
    NotFound {
        /// Family.
        family: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A referenced Secret could not be read or is not allowed.
    #[error("{0}")]
    Secret(String),
    /// The operator may not read the sink.
    #[error("{0}")]
    Forbidden(String),
    /// The API server could not be asked.
    #[error("{0}")]
    Lookup(String),
    /// The backend rejected the configuration.
    #[error("{0}")]
    Build(String),
    /// The sink's type has no backend in this build (terminal).
    #[error("{0}")]
    Unsupported(String),
}

impl ResolveError {
    /// The condition reason an inventory reports for this failure.
    pub fn inventory_reason(&self) -> &'static str {
        use kollect_core::api::reasons;
        match self {
            Self::NotFound { .. } => reasons::SINK_NOT_FOUND,
            Self::Forbidden(_) => reasons::SINK_FORBIDDEN,
            Self::Unsupported(_) => reasons::SINK_TYPE_UNSUPPORTED,
            Self::Secret(_) | Self::Lookup(_) | Self::Build(_) => reasons::SINK_LOOKUP_FAILED,
        }
    }

    /// The reason a sink's own conditions (and connection tests) report for this failure.
    pub fn sink_reason(&self) -> &'static str {
        use kollect_core::api::reasons;
        match self {
            Self::Unsupported(_) => reasons::SINK_TYPE_UNSUPPORTED,
            Self::Secret(_) => reasons::SECRET_RESOLVE_FAILED,
            _ => reasons::CONNECTION_TEST_FAILED,
        }
    }

    /// How an export to a sink that failed this way is classified.
    pub fn class(&self) -> kollect_core::error::ErrorClass {
        use kollect_core::error::ErrorClass;
        match self {
            Self::Build(_) | Self::Unsupported(_) => ErrorClass::Terminal,
            Self::Forbidden(_) => ErrorClass::Forbidden,
            _ => ErrorClass::Transient,
        }
    }
}

fn api_error(what: String, error: kube::Error) -> ResolveError {
    match &error {
        kube::Error::Api(status) if status.code == 403 => {
            ResolveError::Forbidden(format!("{what}: forbidden"))
        }
        _ => ResolveError::Lookup(format!("{what}: {error}")),
    }
}

struct Cached {
    fingerprint: String,
    sink: Arc<dyn Sink>,
}

/// Builds and caches sink stacks.
pub struct SinkResolver {
    client: kube::Client,
    allow_cross_namespace_secrets: bool,
    net_policy: NetPolicy,
    stack: StackConfig,
    metrics: ExportMetrics,
    cache: Mutex<HashMap<(SinkFamily, String), Cached>>,
}

impl std::fmt::Debug for SinkResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkResolver")
            .field(
                "allow_cross_namespace_secrets",
                &self.allow_cross_namespace_secrets,
            )
            .field("net_policy", &self.net_policy)
            .finish_non_exhaustive()
    }
}

/// A resolved sink: its CR and the stack to export through.
pub struct Resolved {
    /// The custom resource.
    pub cr: FamilySink,
    /// The backend behind metrics, retry, breaker and timeout.
    pub sink: Arc<dyn Sink>,
}

impl SinkResolver {
    /// A resolver reading through `client`.
    pub fn new(
        client: kube::Client,
        allow_cross_namespace_secrets: bool,
        net_policy: NetPolicy,
        stack: StackConfig,
        metrics: ExportMetrics,
    ) -> Self {
        Self {
            client,
            allow_cross_namespace_secrets,
            net_policy,
            stack,
            metrics,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Reads the sink, its Secrets, and returns the (cached) stack.
    pub async fn resolve(
        &self,
        family: SinkFamily,
        namespace: &str,
        name: &str,
    ) -> Result<Resolved, ResolveError> {
        let what = format!("{} sink {namespace}/{name}", family.as_str());
        let cr = fetch_sink(&self.client, family, namespace, name)
            .await
            .map_err(|e| api_error(what.clone(), e))?
            .ok_or_else(|| ResolveError::NotFound {
                family: family.as_str(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })?;
        let sink = self.stack_for(&cr).await?;
        Ok(Resolved { cr, sink })
    }

    /// Builds (or reuses) the stack of `cr`.
    pub async fn stack_for(&self, cr: &FamilySink) -> Result<Arc<dyn Sink>, ResolveError> {
        // An unsupported type is reported as such before any Secret is read: a missing Secret
        // would otherwise hide that no backend could use it.
        let refs = Registry::builtin().secret_refs(cr).map_err(|e| {
            ResolveError::Unsupported(format!("{} sink {}: {e}", cr.family().as_str(), cr.key()))
        })?;
        let credentials = self.read_secret(cr, refs.credentials).await?;
        let database = self.read_secret(cr, refs.database).await?;
        let tls = cr.common().tls.as_ref();
        let ca_secret = self.read_secret(cr, refs.ca).await?;
        let meta = cr.metadata();
        let fingerprint = format!(
            "{:?}/{:?}/{}/{}/{}",
            meta.uid,
            meta.generation,
            version(&credentials),
            version(&database),
            version(&ca_secret)
        );
        let key = (cr.family(), cr.key());
        if let Some(cached) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            && cached.fingerprint == fingerprint
        {
            return Ok(Arc::clone(&cached.sink));
        }
        let ca_pem = match tls.and_then(|t| t.ca_bundle.as_ref()) {
            Some(bundle) => Some(String::from_utf8_lossy(&bundle.0).into_owned()),
            None => data(&ca_secret).first_text(&["ca.crt", "tls.crt", "ca.pem"]),
        };
        let context = BuildContext::new(cr.key(), self.net_policy)
            .with_secret(data(&credentials))
            .with_database_secret(data(&database))
            .with_ca_pem(ca_pem);
        let backend = Registry::builtin().build(&cr.config(), context).map_err(|e| {
            ResolveError::Build(format!(
                "{} sink {}: {}",
                cr.family().as_str(),
                cr.key(),
                e.message()
            ))
        })?;
        let sink = build_stack(
            &cr.key(),
            Arc::<dyn Sink>::from(backend),
            &self.stack,
            &self.metrics,
        );
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).insert(
            key,
            Cached {
                fingerprint,
                sink: Arc::clone(&sink),
            },
        );
        Ok(sink)
    }

    /// Drops the cached stack of a deleted sink.
    pub fn forget(&self, family: SinkFamily, namespace: &str, name: &str) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(family, format!("{namespace}/{name}")));
    }

    async fn read_secret(
        &self,
        cr: &FamilySink,
        reference: Option<SecretReference>,
    ) -> Result<Option<Secret>, ResolveError> {
        let Some(reference) = reference else {
            return Ok(None);
        };
        let own = cr.metadata().namespace.clone().unwrap_or_default();
        let namespace = reference.namespace.clone().unwrap_or_else(|| own.clone());
        if namespace != own && !self.allow_cross_namespace_secrets {
            return Err(ResolveError::Secret(format!(
                "sink {} references Secret {namespace}/{} in another namespace; run the operator with \
                 --allow-cross-namespace-secret-refs to allow this",
                cr.key(),
                reference.name
            )));
        }
        let secret = Api::<Secret>::namespaced(self.client.clone(), &namespace)
            .get_opt(&reference.name)
            .await
            .map_err(|e| match e {
                kube::Error::Api(status) if status.code == 403 => ResolveError::Secret(format!(
                    "sink {}: reading Secret {namespace}/{} is forbidden",
                    cr.key(),
                    reference.name
                )),
                other => ResolveError::Secret(format!(
                    "sink {}: read Secret {namespace}/{}: {other}",
                    cr.key(),
                    reference.name
                )),
            })?;
        match secret {
            Some(secret) => Ok(Some(secret)),
            None => Err(ResolveError::Secret(format!(
                "sink {}: Secret {namespace}/{} not found",
                cr.key(),
                reference.name
            ))),
        }
    }
}

fn version(secret: &Option<Secret>) -> String {
    secret
        .as_ref()
        .and_then(|s| s.metadata.resource_version.clone())
        .unwrap_or_default()
}

fn data(secret: &Option<Secret>) -> SecretData {
    SecretData::new(
        secret
            .iter()
            .flat_map(|s| s.data.iter().flatten())
            .map(|(key, value)| (key.clone(), value.0.clone())),
    )
}
