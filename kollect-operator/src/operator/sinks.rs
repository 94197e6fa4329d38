//! Family sinks as the operator sees them: the CR (from the term's watch), its Secrets (direct
//! GETs, same namespace unless allowed: decision A10), the backend built through the registry
//! and wrapped in the middleware stack. The stack is cached per CR generation, so circuit
//! breakers and connections survive between passes, and a pass that sends nothing makes no
//! request. The Secrets are read again right before each send (`FreshSecrets`), so rotated
//! credentials are used from the next send on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kollect_core::api::v1alpha1::{SecretReference, SinkFamily, SinkPreview};
use kollect_core::export::{StackConfig, build_stack};
use kollect_core::middleware::ExportMetrics;
use kollect_core::netguard::NetPolicy;
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, ProbeReport, RemoveRequest, Sink, SinkError,
};
use kollect_sinks::{BuildContext, FamilySink, Registry, SecretData};
use kube::api::Api;

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
            Self::Unsupported(_) => reasons::SINK_TYPE_UNSUPPORTED,
            Self::Secret(_) | Self::Build(_) => reasons::SINK_LOOKUP_FAILED,
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
            _ => ErrorClass::Transient,
        }
    }
}

impl ResolveError {
    /// The same failure as a send error, for a Secret that went wrong between sends.
    fn into_sink_error(self) -> SinkError {
        SinkError::new(self.class(), self.to_string())
    }
}

/// The Secrets a sink CR references, as read for one build.
struct Material {
    credentials: Option<Secret>,
    database: Option<Secret>,
    ca: Option<Secret>,
}

impl Material {
    /// The resource versions of the Secrets: the backend is rebuilt when they change.
    fn versions(&self) -> String {
        format!(
            "{}/{}/{}",
            version(&self.credentials),
            version(&self.database),
            version(&self.ca)
        )
    }
}

/// Reads the Secrets of sink CRs with direct GETs (Secrets are never listed or watched).
struct SecretReader {
    client: kube::Client,
    allow_cross_namespace_secrets: bool,
    net_policy: NetPolicy,
    registry: &'static Registry,
}

impl SecretReader {
    async fn material(&self, cr: &FamilySink) -> Result<Material, ResolveError> {
        // An unsupported type is reported as such before any Secret is read: a missing Secret
        // would otherwise hide that no backend could use it.
        let refs = self.registry.secret_refs(cr).map_err(|e| {
            ResolveError::Unsupported(format!("{} sink {}: {e}", cr.family().as_str(), cr.key()))
        })?;
        Ok(Material {
            credentials: self.read(cr, refs.credentials).await?,
            database: self.read(cr, refs.database).await?,
            ca: self.read(cr, refs.ca).await?,
        })
    }

    async fn read(
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

    /// Builds the backend of `cr` from `material` through the registry.
    fn build(&self, cr: &FamilySink, material: &Material) -> Result<Arc<dyn Sink>, ResolveError> {
        let ca_pem = match cr.common().tls.as_ref().and_then(|t| t.ca_bundle.as_ref()) {
            Some(bundle) => Some(String::from_utf8_lossy(&bundle.0).into_owned()),
            None => data(&material.ca).first_text(&["ca.crt", "tls.crt", "ca.pem"]),
        };
        let context = BuildContext::new(cr.key(), self.net_policy)
            .with_secret(data(&material.credentials))
            .with_database_secret(data(&material.database))
            .with_ca_pem(ca_pem);
        let backend = self.registry.build(&cr.config(), context).map_err(|e| {
            ResolveError::Build(format!(
                "{} sink {}: {}",
                cr.family().as_str(),
                cr.key(),
                e.message()
            ))
        })?;
        Ok(Arc::<dyn Sink>::from(backend))
    }
}

/// The backend of one sink CR, rebuilt when one of its Secrets changed. Every export, removal
/// and probe reads the Secrets again first, so a sink that sends nothing reads nothing and a
/// sink that sends uses the credentials of now. It sits under the middleware stack, whose
/// breaker and retry state therefore survive a rotation.
struct FreshSecrets {
    cr: FamilySink,
    reader: Arc<SecretReader>,
    sink_type: String,
    capabilities: Capabilities,
    /// The Secret versions the backend was built from, and the backend.
    current: Mutex<(String, Arc<dyn Sink>)>,
}

impl FreshSecrets {
    fn current(&self) -> Arc<dyn Sink> {
        Arc::clone(&self.current.lock().unwrap_or_else(PoisonError::into_inner).1)
    }

    async fn backend(&self) -> Result<Arc<dyn Sink>, SinkError> {
        let material = self
            .reader
            .material(&self.cr)
            .await
            .map_err(ResolveError::into_sink_error)?;
        let versions = material.versions();
        {
            let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            if current.0 == versions {
                return Ok(Arc::clone(&current.1));
            }
        }
        tracing::info!(sink = %self.cr.key(), "a Secret of the sink changed; rebuilding its backend");
        let backend = self
            .reader
            .build(&self.cr, &material)
            .map_err(ResolveError::into_sink_error)?;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = (versions, Arc::clone(&backend));
        Ok(backend)
    }
}

#[async_trait]
impl Sink for FreshSecrets {
    fn sink_type(&self) -> &str {
        &self.sink_type
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        self.backend().await?.export(request).await
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        self.backend().await?.remove(request).await
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        self.backend().await?.probe().await
    }

    fn preview(&self, request: &ExportRequest) -> SinkPreview {
        self.current().preview(request)
    }
}

struct Cached {
    /// The CR the stack was built for: uid and generation.
    built_for: String,
    sink: Arc<dyn Sink>,
}

type Cache = Arc<Mutex<HashMap<(SinkFamily, String), Cached>>>;

/// Builds and caches sink stacks.
pub struct SinkResolver {
    reader: Arc<SecretReader>,
    stack: StackConfig,
    metrics: ExportMetrics,
    cache: Cache,
}

impl std::fmt::Debug for SinkResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkResolver")
            .field(
                "allow_cross_namespace_secrets",
                &self.reader.allow_cross_namespace_secrets,
            )
            .field("net_policy", &self.reader.net_policy)
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
    /// A resolver reading Secrets through `client`, building backends from `registry`.
    pub fn new(
        client: kube::Client,
        allow_cross_namespace_secrets: bool,
        net_policy: NetPolicy,
        registry: &'static Registry,
        stack: StackConfig,
        metrics: ExportMetrics,
    ) -> Self {
        Self {
            reader: Arc::new(SecretReader {
                client,
                allow_cross_namespace_secrets,
                net_policy,
                registry,
            }),
            stack,
            metrics,
            cache: Arc::default(),
        }
    }

    /// The stack of `cr`. The first call for a generation of the CR reads its Secrets and
    /// builds the backend, so that a missing Secret or a rejected configuration is reported
    /// before anything is sent; later calls return the cached stack without any request.
    pub async fn stack_for(&self, cr: &FamilySink) -> Result<Arc<dyn Sink>, ResolveError> {
        let meta = cr.metadata();
        let built_for = format!("{:?}/{:?}", meta.uid, meta.generation);
        let key = (cr.family(), cr.key());
        if let Some(cached) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            && cached.built_for == built_for
        {
            return Ok(Arc::clone(&cached.sink));
        }
        let material = self.reader.material(cr).await?;
        let backend = self.reader.build(cr, &material)?;
        let fresh = FreshSecrets {
            cr: cr.clone(),
            reader: Arc::clone(&self.reader),
            sink_type: backend.sink_type().to_owned(),
            capabilities: backend.capabilities(),
            current: Mutex::new((material.versions(), backend)),
        };
        let sink = build_stack(&cr.key(), Arc::new(fresh), &self.stack, &self.metrics);
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).insert(
            key,
            Cached {
                built_for,
                sink: Arc::clone(&sink),
            },
        );
        Ok(sink)
    }

    /// A handle that drops the cached stack of a deleted sink (and with it its connections).
    pub fn forgetter(&self) -> impl Fn(SinkFamily, &str, &str) + Clone + Send + 'static {
        let cache = Arc::clone(&self.cache);
        move |family, namespace, name| {
            cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&(family, format!("{namespace}/{name}")));
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
