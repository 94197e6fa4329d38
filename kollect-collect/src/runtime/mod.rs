//! The collection runtime: the engine behind the operator and the CLI's watch mode.
//!
//! Targets are registered with their compiled profile and filters. The runtime keeps one shared
//! watch per GVK (narrowed to a few namespaces when every target on it has a fixed namespace
//! set), a namespace-label cache, an access-review cache, and a [`RowStore`] that holds rows
//! only. Changing a target or its profile relists the affected GVK instead of keeping source
//! objects in memory.
//!
//! ```no_run
//! # async fn example(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use kollect_collect::extract::{CompiledProfile, ExtractOptions};
//! use kollect_collect::runtime::{Runtime, RuntimeConfig, TargetRegistration};
//! use kollect_collect::select::{NamespaceDefaults, TargetFilter};
//! use kollect_core::api::v1alpha1::{AttributeSpec, GroupVersionKind, KollectProfileSpec, KollectTargetSpec};
//! use kollect_core::collect::RowOwner;
//!
//! let runtime = Runtime::start(client, RuntimeConfig::default());
//! let profile = KollectProfileSpec {
//!     target_gvk: GroupVersionKind::new("apps", "v1", "Deployment"),
//!     attributes: vec![AttributeSpec::new("image", "$.spec.template.spec.containers[*].image")],
//!     ..Default::default()
//! };
//! let target = KollectTargetSpec { profile_ref: "deployments".into(), ..Default::default() };
//! runtime.register(TargetRegistration {
//!     owner: RowOwner::target("team-a", "deployments"),
//!     profile_name: "deployments".into(),
//!     gvk: profile.target_gvk.clone(),
//!     profile: Arc::new(CompiledProfile::compile(&profile, &ExtractOptions::default())),
//!     filter: TargetFilter::compile((&target).into(), &NamespaceDefaults::default(), None, &Default::default())?,
//!     fingerprint: "generation-1".into(),
//! });
//! # Ok(()) }
//! ```

mod access;
mod domain;
mod list;
pub mod metrics;
mod namespaces;
mod object;
mod split;
pub mod store;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use kollect_core::api::v1alpha1::GroupVersionKind;
use kollect_core::collect::RowOwner;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use self::access::Access;
pub use self::metrics::CollectMetrics;
pub use self::namespaces::{NamespaceCache, NamespaceSource};
pub use self::store::{Partition, RowStore, StoreChange, View};
pub use crate::target::TargetRegistration;

use self::watch::WatchScope;

/// Tuning of the runtime. The defaults suit an operator watching a large cluster.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Watch individual namespaces instead of the whole cluster when every target on a GVK has a
    /// fixed namespace set and together they name at most this many namespaces.
    pub narrow_threshold: usize,
    /// Capacity of each worker's queue; a full queue makes the watch wait (backpressure).
    pub queue_capacity: usize,
    /// Workers turning events into rows.
    pub workers: usize,
    /// How long an event may wait for a full queue before the wait counts as backpressure
    /// (`kollect_collect_dispatch_backpressure_total`); zero counts every wait.
    pub enqueue_wait: Duration,
    /// How long an access review result is reused.
    pub access_ttl: Duration,
    /// How often a kind that discovery does not know is looked up again.
    pub rediscovery_interval: Duration,
    /// Objects per page of a list.
    pub page_size: u32,
    /// List by streaming: one watch that sends the current objects before the changes
    /// (Kubernetes streaming lists) instead of pages of `page_size` fetched one after the other.
    /// An API server that refuses it (the `WatchList` feature is off) is listed in pages from then
    /// on.
    pub streaming_lists: bool,
    /// List every kind once and do not watch it: rows are the objects at the time of the list
    /// and do not follow later changes (a one-shot collection, `kollect collect` without
    /// `--watch`). Each list is one unpaginated response whose items are turned into rows while
    /// it is still arriving. `streaming_lists`, `page_size` and `resync_period` do not apply.
    pub list_only: bool,
    /// Pause before a (re)started watch lists, so bursts of registrations cost one list.
    pub settle: Duration,
    /// How often every watch lists everything again (evaluating every object anew and sweeping
    /// rows of objects that are gone); `None` never does.
    pub resync_period: Option<Duration>,
    /// Where namespace labels come from.
    pub namespaces: NamespaceSource,
    /// How often the domain series of the targets' rows are refreshed
    /// (`kollect_custom_resource_series`); zero never computes them.
    pub metrics_sample_interval: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            narrow_threshold: 8,
            queue_capacity: 512,
            workers: 4,
            enqueue_wait: Duration::from_millis(25),
            access_ttl: Duration::from_secs(30),
            rediscovery_interval: Duration::from_secs(10),
            page_size: 500,
            streaming_lists: true,
            list_only: false,
            settle: Duration::from_millis(100),
            resync_period: Some(Duration::from_secs(12 * 3600)),
            namespaces: NamespaceSource::Watch,
            metrics_sample_interval: Duration::from_secs(30),
        }
    }
}

/// A registered target (the registration, shared with the workers).
pub(crate) type TargetEntry = TargetRegistration;

/// What the runtime knows about one target, for its status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetReport {
    /// Rows currently collected.
    pub rows: usize,
    /// Objects whose required attributes failed to extract, by uid, with the error.
    pub extraction_failures: BTreeMap<String, String>,
    /// The most recent extraction error.
    pub last_extraction_error: Option<String>,
    /// Namespaces where access is denied (`""`: cluster-wide), with the reason; rows there were
    /// removed.
    pub forbidden_namespaces: BTreeMap<String, String>,
    /// A failing access review (rows kept).
    pub transient_error: Option<String>,
    /// A failing watch or list that is being retried (rows kept).
    pub watch_error: Option<String>,
    /// The kind is not served by the API server (yet).
    pub unresolved: Option<String>,
    /// The initial list has completed at least once.
    pub synced: bool,
}

/// State shared by the watch tasks and the workers.
pub(crate) struct Shared {
    pub(crate) client: kube::Client,
    pub(crate) config: RuntimeConfig,
    pub(crate) store: Arc<RowStore>,
    pub(crate) namespaces: Arc<NamespaceCache>,
    pub(crate) access: access::AccessCache,
    pub(crate) metrics: CollectMetrics,
    pub(crate) workers: Vec<mpsc::Sender<watch::Job>>,
    /// Lists stream (cleared when the API server refuses streaming lists).
    pub(crate) streaming_lists: AtomicBool,
    reports: Mutex<HashMap<RowOwner, TargetReport>>,
    /// Woken whenever a target's initial list completes (for [`Runtime::wait_synced`]).
    synced: tokio::sync::Notify,
    registered: Mutex<HashMap<RowOwner, Arc<TargetEntry>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("rows", &self.store.len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Updates the report of `owner` (ignored for targets no longer registered).
    pub(crate) fn report(&self, owner: &RowOwner, update: impl FnOnce(&mut TargetReport)) {
        let mut reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(report) = reports.get_mut(owner) {
            update(report);
        }
    }

    /// Marks the targets of `owners` synced: their initial list has completed.
    pub(crate) fn mark_synced<'a>(
        &self,
        owners: impl IntoIterator<Item = &'a RowOwner>,
        update: impl Fn(&mut TargetReport),
    ) {
        for owner in owners {
            self.report(owner, |report| {
                report.synced = true;
                update(report);
            });
        }
        self.synced.notify_waiters();
    }

    /// Every registered target.
    pub(crate) fn registered(&self) -> Vec<Arc<TargetEntry>> {
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Refreshes the metrics after `target`'s rows changed.
    pub(crate) fn after_change(&self, target: &TargetEntry) {
        self.metrics.set_items(self.store.len());
        self.metrics
            .set_collected(&target.profile_name, &target.gvk, self.store.count(&target.owner));
    }
}

/// The watch of one GVK.
#[derive(Debug)]
struct GvkWatch {
    targets: Arc<RwLock<Arc<Vec<Arc<TargetEntry>>>>>,
    epoch: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl GvkWatch {
    fn list(&self) -> Arc<Vec<Arc<TargetEntry>>> {
        Arc::clone(&self.targets.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn set(&self, targets: Vec<Arc<TargetEntry>>) {
        *self.targets.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(targets);
    }
}

type GvkKey = (String, String, String);

fn gvk_key(gvk: &GroupVersionKind) -> GvkKey {
    let group = if gvk.group.eq_ignore_ascii_case("core") {
        String::new()
    } else {
        gvk.group.clone()
    };
    (group, gvk.version.clone(), gvk.kind.clone())
}

/// The collection runtime. Dropping it (or calling [`Runtime::shutdown`]) stops every watch.
#[derive(Debug)]
pub struct Runtime {
    shared: Arc<Shared>,
    watches: Mutex<HashMap<GvkKey, GvkWatch>>,
    background: Vec<JoinHandle<()>>,
}

impl Runtime {
    /// Starts the namespace watch and the workers; metrics are recorded but not registered.
    pub fn start(client: kube::Client, config: RuntimeConfig) -> Self {
        Self::start_with_metrics(client, config, CollectMetrics::default())
    }

    /// Starts the runtime recording into `metrics` (see [`CollectMetrics::register`]).
    pub fn start_with_metrics(client: kube::Client, config: RuntimeConfig, metrics: CollectMetrics) -> Self {
        let workers = config.workers.max(1);
        let mut senders = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
            senders.push(tx);
            receivers.push(rx);
        }
        let streaming_lists = config.streaming_lists;
        let shared = Arc::new(Shared {
            access: access::AccessCache::new(client.clone(), config.access_ttl, metrics.clone()),
            client: client.clone(),
            config,
            store: Arc::new(RowStore::new()),
            namespaces: Arc::new(NamespaceCache::new()),
            metrics,
            workers: senders,
            streaming_lists: AtomicBool::new(streaming_lists),
            reports: Mutex::default(),
            synced: tokio::sync::Notify::new(),
            registered: Mutex::default(),
        });
        let mut background: Vec<JoinHandle<()>> = receivers
            .into_iter()
            .map(|rx| tokio::spawn(watch::run_worker(Arc::clone(&shared), rx)))
            .collect();
        let namespaces = Arc::clone(&shared.namespaces);
        let source = shared.config.namespaces.clone();
        background.push(tokio::spawn(async move { namespaces.run(client, &source).await }));
        let every = shared.config.metrics_sample_interval;
        if !every.is_zero() {
            background.push(tokio::spawn(domain::run(Arc::clone(&shared), every)));
        }
        Self {
            shared,
            watches: Mutex::default(),
            background,
        }
    }

    /// The row store.
    pub fn store(&self) -> &Arc<RowStore> {
        &self.shared.store
    }

    /// The namespace cache (labels and annotations; for computing status namespaces).
    pub fn namespaces(&self) -> &Arc<NamespaceCache> {
        &self.shared.namespaces
    }

    /// Registers or updates a target. An unchanged fingerprint is a no-op; otherwise the GVK's
    /// watch is (re)started, which relists it and re-evaluates every object for every target on
    /// it.
    pub fn register(&self, registration: TargetRegistration) {
        let owner = registration.owner.clone();
        let key = gvk_key(&registration.gvk);
        let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(watch) = watches.get(&key)
            && watch
                .list()
                .iter()
                .any(|t| t.owner == owner && t.fingerprint == registration.fingerprint)
        {
            return;
        }
        // A target whose profile now names another kind leaves its old watch first.
        let elsewhere: Vec<GvkKey> = watches
            .iter()
            .filter(|(k, w)| **k != key && w.list().iter().any(|t| t.owner == owner))
            .map(|(k, _)| k.clone())
            .collect();
        for other in elsewhere {
            self.detach(&mut watches, &other, &owner);
        }
        // Rows stay while the watch relists: the relist replaces what changed and sweeps what
        // no longer exists or matches, so an edit never empties an inventory in between.
        {
            let mut reports = self.shared.reports.lock().unwrap_or_else(PoisonError::into_inner);
            reports.insert(owner.clone(), TargetReport::default());
        }
        let entry = Arc::new(registration);
        self.shared
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(owner.clone(), Arc::clone(&entry));
        let mut targets: Vec<Arc<TargetEntry>> = watches
            .get(&key)
            .map(|w| w.list().iter().filter(|t| t.owner != owner).cloned().collect())
            .unwrap_or_default();
        targets.push(entry);
        self.restart(&mut watches, key, targets);
    }

    /// Unregisters a target (deleted or suspended) and removes its rows.
    pub fn unregister(&self, owner: &RowOwner) {
        let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        let keys: Vec<GvkKey> = watches
            .iter()
            .filter(|(_, w)| w.list().iter().any(|t| &t.owner == owner))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.detach(&mut watches, &key, owner);
        }
        self.shared
            .reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(owner);
        self.shared
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(owner);
        self.shared.store.remove_owner(owner);
        self.shared.metrics.set_items(self.shared.store.len());
    }

    /// Removes `owner` from the watch of `key`: the watch stops when it was the last target and
    /// is restarted (narrowed) when its scope changes.
    fn detach(&self, watches: &mut HashMap<GvkKey, GvkWatch>, key: &GvkKey, owner: &RowOwner) {
        let Some(watch) = watches.get(key) else {
            return;
        };
        let before = watch.list();
        let after: Vec<Arc<TargetEntry>> = before.iter().filter(|t| &t.owner != owner).cloned().collect();
        if after.is_empty() {
            if let Some(watch) = watches.remove(key) {
                watch.epoch.fetch_add(1, Ordering::AcqRel);
                watch.task.abort();
            }
            return;
        }
        let threshold = self.shared.config.narrow_threshold;
        if WatchScope::for_targets(&before, threshold) == WatchScope::for_targets(&after, threshold) {
            watch.set(after);
        } else {
            self.restart(watches, key.clone(), after);
        }
    }

    /// (Re)starts the watch of `key` with `targets`.
    fn restart(&self, watches: &mut HashMap<GvkKey, GvkWatch>, key: GvkKey, targets: Vec<Arc<TargetEntry>>) {
        let gvk = GroupVersionKind::new(key.0.clone(), key.1.clone(), key.2.clone());
        let (shared_targets, epoch) = match watches.remove(&key) {
            Some(old) => {
                old.task.abort();
                old.set(targets);
                (old.targets, old.epoch)
            }
            None => (
                Arc::new(RwLock::new(Arc::new(targets))),
                Arc::new(AtomicU64::new(0)),
            ),
        };
        // Jobs queued by the old task carry the old epoch and are dropped by the workers.
        let my_epoch = epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let task = tokio::spawn(watch::run_watch(
            Arc::clone(&self.shared),
            gvk,
            Arc::clone(&shared_targets),
            Arc::clone(&epoch),
            my_epoch,
        ));
        watches.insert(
            key,
            GvkWatch {
                targets: shared_targets,
                epoch,
                task,
            },
        );
    }

    /// The report of a registered target (rows counted now).
    pub fn report(&self, owner: &RowOwner) -> Option<TargetReport> {
        let mut report = self
            .shared
            .reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(owner)
            .cloned()?;
        report.rows = self.shared.store.count(owner);
        Some(report)
    }

    /// Whether lists stream ([`RuntimeConfig::streaming_lists`]); false when they were not
    /// configured to or the API server refused a streaming list.
    pub fn streams_lists(&self) -> bool {
        self.shared.streaming_lists.load(Ordering::Relaxed)
    }

    /// Number of running GVK watches.
    pub fn watch_count(&self) -> usize {
        self.watches.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Waits until `owner` has completed its initial list (or `timeout` passes); returns whether
    /// it did.
    pub async fn wait_synced(&self, owner: &RowOwner, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so a list completing in between still wakes it.
            let notified = self.shared.synced.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.report(owner).is_some_and(|r| r.synced) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.report(owner).is_some_and(|r| r.synced);
            }
        }
    }

    /// Stops every watch and worker.
    pub fn shutdown(&mut self) {
        for (_, watch) in self
            .watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            watch.task.abort();
        }
        for task in self.background.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown();
    }
}
