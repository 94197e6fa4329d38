//! The operator (`kollect run`): kube-runtime controllers over the library crates.
//!
//! - [`target`]: `KollectTarget` → registrations with the collection runtime, target status;
//! - [`inventory`]: `KollectInventory` → export passes through the export engine, inventory
//!   status, removal on deletion;
//! - [`cluster_target`] and [`cluster_inventory`]: the cluster-scoped counterparts, whose rows
//!   are kept apart from the namespaced targets' (decision A7);
//! - [`sink_probe`]: family sinks → connection probes, `TLSInsecure`, previews;
//! - [`connection_test`]: `KollectConnectionTest` → one probe per generation, then TTL deletion;
//! - [`leader`]: Lease-based leader election that steps down instead of exiting;
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`.
//!
//! Everything that writes (collection, exports, status) runs only while this process leads; a
//! lost lease stops it, and a re-acquired one starts it afresh, seeded from status (decision
//! X7), so that nothing is exported twice.

mod backoff;
pub mod cluster_inventory;
pub mod cluster_target;
pub mod connection_test;
mod export_pass;
pub mod http;
pub mod inventory;
pub mod leader;
pub mod metrics_auth;
pub mod options;
mod passes;
pub mod sink_probe;
pub mod sinks;
pub mod status;
pub mod target;
mod triggers;
mod watches;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kollect_collect::extract::{ExtractOptions, ProfileCache};
use kollect_collect::runtime::{CollectMetrics, Runtime};
use kollect_collect::select::NamespaceDefaults;
use kollect_core::export::{InventoryExporter, StackConfig};
use kollect_core::middleware::ExportMetrics;
use kube::Resource;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub use options::OperatorOptions;

use self::http::ControllerMetrics;
use self::leader::LeaderElector;
use self::sinks::SinkResolver;

/// Why a reconcile failed; the controllers retry with backoff unless the error is terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed (adding/removing the finalizer, or the cleanup).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Cleanup could not finish yet; retried.
    #[error("cleanup pending: {0}")]
    CleanupPending(String),
    /// Cleanup failed for good; the finalizer stays until someone intervenes.
    #[error("cleanup failed: {0}")]
    CleanupTerminal(String),
}

impl Error {
    fn is_terminal(&self) -> bool {
        match self {
            Error::CleanupTerminal(_) => true,
            Error::Finalizer(inner) => matches!(
                inner.as_ref(),
                kube::runtime::finalizer::Error::CleanupFailed(Error::CleanupTerminal(_))
            ),
            _ => false,
        }
    }
}

/// What the controllers share.
pub struct Context {
    /// The API client.
    pub client: kube::Client,
    /// The collection runtime.
    pub runtime: Runtime,
    /// Compiled profiles per generation.
    pub profiles: ProfileCache,
    /// Extraction settings (scrub keys, CEL limits).
    pub extract: ExtractOptions,
    /// `--default-included-namespaces` / `--default-excluded-namespaces`.
    pub defaults: NamespaceDefaults,
    /// Family sinks → stacks.
    pub sinks: SinkResolver,
    /// Export metrics (the sink stacks share them).
    pub export_metrics: ExportMetrics,
    /// Collection metrics (reconcile errors are counted there too).
    pub collect_metrics: CollectMetrics,
    /// Controller metrics.
    pub metrics: ControllerMetrics,
    /// Event recorder.
    pub recorder: Recorder,
    /// The options.
    pub options: OperatorOptions,
    /// Statuses written by this process (decision A11).
    pub written: status::Written,
    exporters: Mutex<HashMap<String, Arc<tokio::sync::Mutex<InventoryExporter>>>>,
    /// Export passes left running by their reconcile.
    passes: passes::Passes<export_pass::PassOutcome>,
    /// The term's watches: what reconciles read instead of asking the API server.
    watches: watches::Watches,
    /// The end of the leadership term, on which every controller drains.
    term: TermEnd,
    /// Retry delays of failed reconciles (`--reconcile-rate-limit`).
    backoff: backoff::FailureBackoff,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The exporter of inventory `key` (`namespace/name`), created by `create` on first use.
    fn exporter(
        &self,
        key: &str,
        create: impl FnOnce() -> InventoryExporter,
    ) -> Arc<tokio::sync::Mutex<InventoryExporter>> {
        let mut exporters = self.exporters.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            exporters
                .entry(key.to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(create()))),
        )
    }

    /// The sink `namespace/name` of `family` from the term's watch, with its stack.
    async fn resolve_sink(
        &self,
        family: kollect_core::api::v1alpha1::SinkFamily,
        namespace: &str,
        name: &str,
    ) -> Result<sinks::Resolved, sinks::ResolveError> {
        let cr = self
            .watches
            .sink(family, namespace, name)
            .ok_or_else(|| sinks::ResolveError::NotFound {
                family: family.as_str(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })?;
        let sink = self.sinks.stack_for(&cr).await?;
        Ok(sinks::Resolved { cr, sink })
    }

    fn forget_exporter(&self, key: &str) {
        self.exporters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// Runs one reconcile of `object` through kube's finalizer helper (`finalizer_name`): counts it in
/// the controller metrics and resets the object's failure backoff when it succeeds.
async fn finalized<K, F, Fut>(
    context: &Context,
    controller: &'static str,
    api: &kube::Api<K>,
    finalizer_name: &str,
    object: Arc<K>,
    reconcile: F,
) -> Result<kube::runtime::controller::Action, Error>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: FnOnce(kube::runtime::finalizer::Event<K>) -> Fut,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, Error>>,
{
    let mut guard = context.metrics.start(controller);
    let subject = Arc::clone(&object);
    let result = kube::runtime::finalizer(api, finalizer_name, object, reconcile)
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        guard.succeeded();
        context.backoff.succeeded(&*subject);
    }
    result
}

/// Emits an event; failures to publish are logged, never fatal.
async fn publish<K>(context: &Context, object: &K, type_: EventType, reason: &str, message: &str)
where
    K: Resource<DynamicType = ()>,
{
    let event = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(message.chars().take(1024).collect()),
        action: reason.to_owned(),
        secondary: None,
    };
    if let Err(error) = context.recorder.publish(&event, &object.object_ref(&())).await {
        tracing::debug!(%error, "publish event");
    }
}

/// The metric families of one operator process, registered once and shared by every
/// leadership term.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Collection metrics.
    pub collect: CollectMetrics,
    /// Export metrics.
    pub export: ExportMetrics,
    /// Controller metrics.
    pub controllers: ControllerMetrics,
}

impl Metrics {
    /// Registers every family in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            collect: CollectMetrics::register(registry),
            export: ExportMetrics::register(registry),
            controllers: ControllerMetrics::register(registry),
        }
    }
}

/// Runs the operator until `shutdown` becomes true: endpoints, leader election (when enabled)
/// and, while leading, the runtime and the controllers.
pub async fn run(
    client: kube::Client,
    options: OperatorOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));
    let (metrics_addr, health_addr) = http::serve(
        Arc::new(registry),
        Arc::clone(&ready),
        options.metrics_bind_address,
        options.health_probe_bind_address,
        options.metrics_tls.clone().map(|tls| http::Secure {
            tls,
            auth: metrics_auth::MetricsAuth::new(client.clone()),
        }),
    )
    .await
    .map_err(|e| format!("serve the HTTP endpoints: {e}"))?;
    if let Some(address) = metrics_addr {
        tracing::info!(%address, "serving /metrics");
    }
    if let Some(address) = health_addr {
        tracing::info!(%address, "serving /healthz and /readyz");
    }
    // Every replica answers admission, leading or not.
    let _webhook = match &options.webhook {
        Some(webhook) => Some(
            crate::admission::server::serve(
                crate::admission::Admission::new(client.clone(), options.admission_settings()),
                webhook,
            )
            .await?,
        ),
        None => None,
    };
    ready.store(true, Ordering::Relaxed);

    // Without election this process always leads; the sender lives as long as `run`.
    let (leading_tx, mut leading) = watch::channel(!options.leader_elect);
    let election = options.leader_elect.then(|| {
        let elector = LeaderElector::new(
            client.clone(),
            &options.leader_election_namespace,
            &options.leader_election_id,
            &options.identity,
            options.lease,
        );
        tokio::spawn(elector.run(leading_tx.clone(), shutdown.clone()))
    });

    loop {
        // Wait to lead (or for shutdown).
        while !*leading.borrow_and_update() {
            tokio::select! {
                changed = leading.changed() => if changed.is_err() { break; },
                _ = stopped(&mut shutdown) => break,
            }
        }
        if is_stopping(&shutdown) || !*leading.borrow() {
            break;
        }
        tracing::info!("leading: starting collection and controllers");
        metrics.controllers.set_leader(true);
        let (end_term, term_end) = watch::channel(false);
        let mut term = tokio::spawn(lead(
            client.clone(),
            options.clone(),
            metrics.clone(),
            TermEnd(term_end),
        ));
        let mut restart = false;
        tokio::select! {
            _ = async { while *leading.borrow_and_update() { if leading.changed().await.is_err() { break; } } } => {
                tracing::warn!("leadership lost: stopping collection and exports; this process keeps running");
            }
            _ = stopped(&mut shutdown) => {}
            result = &mut term => {
                match result {
                    Ok(Ok(())) => tracing::error!("the controllers stopped; starting them again"),
                    Ok(Err(message)) => return Err(message),
                    Err(error) => tracing::error!(%error, "the controllers failed; starting them again"),
                }
                restart = true;
            }
        }
        if restart {
            tokio::time::sleep(Duration::from_secs(1)).await;
        } else {
            // Reconciles in flight finish (each writes at most its status); nothing new starts.
            end_term.send_replace(true);
            let budget = drain_budget(&options);
            if tokio::time::timeout(budget, &mut term).await.is_err() {
                tracing::warn!(?budget, "the controllers did not stop in time; aborting them");
                term.abort();
            }
        }
        metrics.controllers.set_leader(false);
        if is_stopping(&shutdown) {
            break;
        }
    }
    if let Some(election) = election {
        // The elector releases the lease when it sees the shutdown.
        let _ = tokio::time::timeout(Duration::from_secs(10), election).await;
    }
    Ok(())
}

/// How long a term's controllers may take to finish the reconciles in flight. With election,
/// the time between stepping down (the renew deadline) and the lease expiring for the other
/// candidates: a drained term never overlaps the next leader's.
fn drain_budget(options: &OperatorOptions) -> Duration {
    if options.leader_elect {
        options
            .lease
            .lease_duration
            .saturating_sub(options.lease.renew_deadline)
    } else {
        UNELECTED_DRAIN
    }
}

/// The drain budget of a process that leads without election (it only drains on shutdown).
const UNELECTED_DRAIN: Duration = Duration::from_secs(10);

/// The end of a leadership term, as a signal every controller can drain on.
#[derive(Clone)]
struct TermEnd(watch::Receiver<bool>);

impl TermEnd {
    /// Resolves once the term ends (or whoever could end it is gone).
    fn ended(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        let mut ended = self.0.clone();
        async move {
            let _ = ended.wait_for(|ended| *ended).await;
        }
    }
}

/// Whether shutdown was requested (or whoever could request it is gone).
fn is_stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Resolves once shutdown is requested.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    while !is_stopping(shutdown) {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// One leadership term: the runtime, the watches and every controller, until `term` ends and
/// the controllers have drained.
async fn lead(
    client: kube::Client,
    options: OperatorOptions,
    metrics: Metrics,
    term: TermEnd,
) -> Result<(), String> {
    let runtime =
        Runtime::start_with_metrics(client.clone(), options.runtime_config(), metrics.collect.clone());
    runtime.namespaces().wait_ready().await;
    let sinks = SinkResolver::new(
        client.clone(),
        options.allow_cross_namespace_secret_refs,
        options.net_policy,
        options.sink_registry,
        StackConfig::default(),
        metrics.export.clone(),
    );
    let watches = watches::Watches::start(
        &client,
        &options.watch_namespaces,
        options.tenant_mode,
        sinks.forgetter(),
    );
    watches.wait_ready().await;
    let extract = options.extract_options();
    let backoff = backoff::FailureBackoff::new(options.reconcile_rate_limit);
    let context = Arc::new(Context {
        client: client.clone(),
        runtime,
        profiles: ProfileCache::new(extract.clone()),
        extract,
        defaults: NamespaceDefaults {
            included: options.default_included_namespaces.clone(),
            excluded: options.default_excluded_namespaces.clone(),
            boundary: options.watch_namespaces.clone(),
        },
        sinks,
        export_metrics: metrics.export.clone(),
        collect_metrics: metrics.collect.clone(),
        metrics: metrics.controllers.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "kollect-operator".into(),
                instance: Some(options.identity.clone()),
            },
        ),
        options,
        written: status::Written::default(),
        exporters: Mutex::new(HashMap::new()),
        passes: passes::Passes::default(),
        watches,
        term,
        backoff,
    });
    tokio::join!(
        target::run(Arc::clone(&context)),
        inventory::run(Arc::clone(&context)),
        cluster_target::run(Arc::clone(&context)),
        cluster_inventory::run(Arc::clone(&context)),
        sink_probe::run(Arc::clone(&context)),
        connection_test::run(Arc::clone(&context)),
    );
    tracing::info!("the controllers stopped");
    Ok(())
}
