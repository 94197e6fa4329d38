//! One shared watch per GVK, fanned out to every target registered for it, and the workers that
//! turn watch events into rows.
//!
//! A watch task resolves its GVK by discovery (retrying until a CRD that does not exist yet
//! appears), lists and watches either all namespaces or a small set of namespaces, and sends
//! each object to a worker chosen by uid (so events of one object stay ordered) over a bounded
//! queue: a slow consumer slows the watch down instead of growing memory. After every full list
//! (`InitDone`) it waits until the workers have caught up and removes the rows of objects that
//! were not listed, so rows converge to exactly the objects that exist after a reconnect.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use futures::stream::{self, BoxStream, StreamExt};
use kollect_core::api::v1alpha1::GroupVersionKind;
use kollect_core::collect::RowOwner;
use kube::api::{Api, ApiResource, ListParams};
use kube::discovery::Scope;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{mpsc, oneshot};

use super::access::Access;
use super::metrics::ResourceLabels;
use super::object::WatchedObject;
use super::{Shared, TargetEntry};
use crate::select::Skip;

/// Watch events tagged with the namespace the stream covers (`""`: all namespaces).
type TaggedEvents = BoxStream<'static, (String, Result<watcher::Event<WatchedObject>, watcher::Error>)>;

/// Which namespaces a watch covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchScope {
    /// All namespaces (and cluster-scoped resources).
    All,
    /// Only these namespaces, one watch each.
    Namespaces(BTreeSet<String>),
}

impl WatchScope {
    /// The narrowest scope covering `targets`: their fixed namespace sets when all have one and
    /// the union is at most `threshold` namespaces, otherwise all namespaces.
    pub(crate) fn for_targets(targets: &[Arc<TargetEntry>], threshold: usize) -> Self {
        let mut union = BTreeSet::new();
        for target in targets {
            match target.filter.static_namespaces() {
                Some(set) => union.extend(set),
                None => return WatchScope::All,
            }
        }
        if union.len() > threshold {
            WatchScope::All
        } else {
            WatchScope::Namespaces(union)
        }
    }
}

/// What the workers need to know about the watch an event came from.
#[derive(Debug)]
pub(crate) struct WatchContext {
    pub(crate) gvk: GroupVersionKind,
    pub(crate) resource: ApiResource,
    pub(crate) namespaced: bool,
    pub(crate) targets: Arc<RwLock<Arc<Vec<Arc<TargetEntry>>>>>,
    pub(crate) epoch: Arc<AtomicU64>,
    pub(crate) labels: ResourceLabels,
}

impl WatchContext {
    pub(crate) fn targets(&self) -> Arc<Vec<Arc<TargetEntry>>> {
        Arc::clone(&self.targets.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Work for a worker.
pub(crate) enum Job {
    /// An object was added, changed, or listed.
    Apply {
        context: Arc<WatchContext>,
        epoch: u64,
        object: Box<WatchedObject>,
    },
    /// An object was deleted.
    Delete {
        context: Arc<WatchContext>,
        epoch: u64,
        uid: String,
    },
    /// Answer once every job queued before this one is done.
    Barrier(oneshot::Sender<()>),
}

/// Sends `job` to the worker for `uid`. A full queue is waited for: past the enqueue wait the
/// wait counts as backpressure, and it goes on until a slot frees (events are never dropped).
pub(crate) async fn enqueue(shared: &Shared, uid: &str, job: Job) {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let hasher = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let index = (hasher.hash_one(uid) as usize) % shared.workers.len().max(1);
    let Some(worker) = shared.workers.get(index) else {
        return;
    };
    shared.metrics.queue_depth().inc();
    let job = match worker.try_send(job) {
        Ok(()) => return,
        Err(mpsc::error::TrySendError::Full(job)) => job,
        Err(mpsc::error::TrySendError::Closed(_)) => {
            shared.metrics.queue_depth().dec();
            return;
        }
    };
    // A queue that frees a slot within the grace period is a blip, not backpressure. Without a
    // grace period, every wait on a full queue counts.
    let grace = shared.config.enqueue_wait;
    let job = if grace.is_zero() {
        job
    } else {
        match tokio::time::timeout(grace, worker.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(job);
                return;
            }
            Ok(Err(_)) => {
                shared.metrics.queue_depth().dec();
                return;
            }
            Err(_) => job,
        }
    };
    shared.metrics.backpressure();
    if worker.send(job).await.is_err() {
        shared.metrics.queue_depth().dec();
    }
}

/// Waits until every worker has processed everything queued so far.
async fn barrier(shared: &Shared) {
    let mut waits = Vec::with_capacity(shared.workers.len());
    for worker in &shared.workers {
        let (tx, rx) = oneshot::channel();
        shared.metrics.queue_depth().inc();
        if worker.send(Job::Barrier(tx)).await.is_ok() {
            waits.push(rx);
        } else {
            shared.metrics.queue_depth().dec();
        }
    }
    for wait in waits {
        let _ = wait.await;
    }
}

/// A worker: processes jobs until the queue closes.
pub(crate) async fn run_worker(shared: Arc<Shared>, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.recv().await {
        shared.metrics.queue_depth().dec();
        let started = Instant::now();
        match job {
            Job::Apply {
                context,
                epoch,
                object,
            } => {
                if context.epoch.load(Ordering::Acquire) == epoch {
                    apply(&shared, &context, *object).await;
                }
            }
            Job::Delete { context, epoch, uid } => {
                if context.epoch.load(Ordering::Acquire) == epoch {
                    for target in context.targets().iter() {
                        remove_row(&shared, target, &uid);
                    }
                }
            }
            Job::Barrier(done) => {
                let _ = done.send(());
                continue;
            }
        }
        shared.metrics.observe_dispatch(started.elapsed().as_secs_f64());
    }
}

fn remove_row(shared: &Shared, target: &TargetEntry, uid: &str) {
    if shared.store.remove(&target.owner, uid) {
        shared.after_change(target);
    }
    shared.report(&target.owner, |report| {
        report.extraction_failures.remove(uid);
    });
}

/// Turns one object into rows for every target of its watch.
async fn apply(shared: &Shared, context: &WatchContext, object: WatchedObject) {
    let uid = object.uid().to_owned();
    if uid.is_empty() {
        return;
    }
    let namespace = if context.namespaced {
        object.namespace().to_owned()
    } else {
        String::new()
    };
    let name = object.name().to_owned();
    let value = object.into_value(&context.resource);
    let meta = if namespace.is_empty() {
        None
    } else {
        shared.namespaces.get(&namespace)
    };
    let mut access: Option<Access> = None;
    for target in context.targets().iter() {
        match target
            .filter
            .select(&target.gvk, &context.gvk, &value, &namespace, meta.as_ref())
        {
            Ok(()) => {}
            Err(skip) => {
                if skip == Skip::Namespace {
                    shared.metrics.namespace_mismatch(&context.labels);
                }
                remove_row(shared, target, &uid);
                continue;
            }
        }
        if access.is_none() {
            access = Some(
                shared
                    .access
                    .check(&context.resource.group, &context.resource.plural, &namespace)
                    .await,
            );
        }
        match access.as_ref() {
            Some(Access::Denied(reason)) => {
                remove_row(shared, target, &uid);
                shared.metrics.target_error("forbidden");
                shared.report(&target.owner, |report| {
                    report
                        .forbidden_namespaces
                        .insert(namespace.clone(), reason.clone());
                });
                continue;
            }
            Some(Access::Unknown(error)) => {
                shared.metrics.target_error("transient");
                shared.report(&target.owner, |report| {
                    report.transient_error = Some(format!("access review failed: {error}"));
                });
                continue;
            }
            _ => {
                shared.report(&target.owner, |report| {
                    report.forbidden_namespaces.remove(&namespace);
                    report.transient_error = None;
                });
            }
        }
        match crate::target::build_row(target, &value, &namespace, &name, &uid) {
            Ok(row) => {
                if shared.store.upsert(&target.owner, row) {
                    shared.after_change(target);
                }
                shared.report(&target.owner, |report| {
                    report.extraction_failures.remove(&uid);
                });
            }
            Err(error) => {
                remove_row(shared, target, &uid);
                shared.metrics.target_error("terminal");
                let message = format!("{}/{name}: {error}", display_ns(&namespace));
                shared.report(&target.owner, |report| {
                    report.extraction_failures.insert(uid.clone(), message.clone());
                    report.last_extraction_error = Some(message);
                });
            }
        }
    }
}

fn display_ns(namespace: &str) -> &str {
    if namespace.is_empty() {
        "(cluster)"
    } else {
        namespace
    }
}

/// Runs the watch of one GVK until aborted.
pub(crate) async fn run_watch(
    shared: Arc<Shared>,
    gvk: GroupVersionKind,
    targets: Arc<RwLock<Arc<Vec<Arc<TargetEntry>>>>>,
    epoch: Arc<AtomicU64>,
    my_epoch: u64,
) {
    // Registrations tend to arrive in bursts (operator start, profile edits): let them settle so
    // a burst costs one list, not one per target.
    tokio::time::sleep(shared.config.settle).await;
    let owners = || -> Vec<RowOwner> {
        targets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|t| t.owner.clone())
            .collect()
    };

    // Discovery, retried until the kind exists (a CRD created after the target), while the
    // namespace cache lists the namespaces.
    let kube_gvk = kube::api::GroupVersionKind::gvk(&gvk.group, &gvk.version, &gvk.kind);
    let discovered = async {
        loop {
            match kube::discovery::pinned_kind(&shared.client, &kube_gvk).await {
                Ok(found) => break found,
                Err(error) => {
                    let message = format!(
                        "kind {}/{} {} is not served by the API server (discovery: {error}); collection starts when it appears",
                        if gvk.group.is_empty() { "core" } else { &gvk.group },
                        gvk.version,
                        gvk.kind
                    );
                    for owner in owners() {
                        shared.report(&owner, |report| report.unresolved = Some(message.clone()));
                    }
                    tokio::time::sleep(shared.config.rediscovery_interval).await;
                }
            }
        }
    };
    let ((resource, capabilities), ()) = tokio::join!(discovered, shared.namespaces.wait_ready());
    for owner in owners() {
        shared.report(&owner, |report| report.unresolved = None);
    }
    let namespaced = capabilities.scope == Scope::Namespaced;
    let current_targets = Arc::clone(&targets.read().unwrap_or_else(PoisonError::into_inner));
    let scope = if namespaced {
        WatchScope::for_targets(&current_targets, shared.config.narrow_threshold)
    } else {
        WatchScope::All
    };
    if let WatchScope::Namespaces(covered) = &scope {
        // Rows from namespaces the narrowed watch no longer covers cannot be swept by its lists.
        for target in current_targets.iter() {
            let removed = shared
                .store
                .remove_where(&target.owner, |row| !covered.contains(row.namespace()));
            if removed > 0 {
                shared.after_change(target);
            }
        }
    }
    let labels = ResourceLabels {
        group: resource.group.clone(),
        version: resource.version.clone(),
        resource: resource.plural.clone(),
    };
    let context = Arc::new(WatchContext {
        gvk: gvk.clone(),
        resource: resource.clone(),
        namespaced,
        targets: Arc::clone(&targets),
        epoch: Arc::clone(&epoch),
        labels: labels.clone(),
    });
    if shared.config.list_only {
        list_scope(&shared, &context, my_epoch, &scope).await;
        return;
    }
    // Each stream is tagged with the namespace it covers ("" for all).
    let start_streams = |streaming: bool| -> stream::SelectAll<TaggedEvents> {
        let config = watcher::Config::default().page_size(shared.config.page_size);
        let config = if streaming {
            config.streaming_lists()
        } else {
            config
        };
        let streams: Vec<TaggedEvents> = match &scope {
            WatchScope::All => {
                let api: Api<WatchedObject> = Api::all_with(shared.client.clone(), &resource);
                vec![
                    watcher(api, config.clone())
                        .default_backoff()
                        .map(|event| (String::new(), event))
                        .boxed(),
                ]
            }
            WatchScope::Namespaces(namespaces) => namespaces
                .iter()
                .map(|ns| {
                    let api: Api<WatchedObject> = Api::namespaced_with(shared.client.clone(), ns, &resource);
                    let tag = ns.clone();
                    watcher(api, config.clone())
                        .default_backoff()
                        .map(move |event| (tag.clone(), event))
                        .boxed()
                })
                .collect(),
        };
        stream::select_all(streams)
    };
    let mut streaming = shared.streaming_lists.load(Ordering::Relaxed);
    let mut events = start_streams(streaming);
    // The periodic full relist (`resync_period`): every object is evaluated again and rows of
    // objects that are gone are swept, whatever was missed in between.
    let resync_period = shared.config.resync_period.filter(|p| !p.is_zero());
    let mut resync =
        resync_period.map(|period| tokio::time::interval_at(tokio::time::Instant::now() + period, period));
    let mut namespace_changes = shared.namespaces.subscribe();
    let mut listing: std::collections::HashMap<String, HashSet<String>> = Default::default();
    tracing::debug!(gvk = %crate::runtime::metrics::gvk_label(&gvk), ?scope, "watch started");

    loop {
        tokio::select! {
            next = events.next() => {
                let Some((tag, event)) = next else { break };
                match event {
                    Ok(watcher::Event::Init) => {
                        listing.insert(tag, HashSet::new());
                    }
                    Ok(watcher::Event::InitApply(object)) | Ok(watcher::Event::Apply(object)) => {
                        let uid = object.uid().to_owned();
                        if let Some(seen) = listing.get_mut(&tag) {
                            seen.insert(uid.clone());
                        }
                        enqueue(&shared, &uid, Job::Apply {
                            context: Arc::clone(&context),
                            epoch: my_epoch,
                            object: Box::new(object),
                        }).await;
                    }
                    Ok(watcher::Event::Delete(object)) => {
                        let uid = object.uid().to_owned();
                        let job = Job::Delete {
                            context: Arc::clone(&context),
                            epoch: my_epoch,
                            uid: uid.clone(),
                        };
                        enqueue(&shared, &uid, job).await;
                    }
                    Ok(watcher::Event::InitDone) => {
                        let seen = listing.remove(&tag).unwrap_or_default();
                        shared.metrics.informer(&labels, seen.len(), scope == WatchScope::All);
                        barrier(&shared).await;
                        sweep(&shared, &context, &tag, &seen);
                        shared.mark_synced(&owners(), |report| {
                            report.watch_error = None;
                            report.forbidden_namespaces.remove(&tag);
                        });
                    }
                    Err(error) if streaming && refuses_streaming_lists(&error) => {
                        if shared.streaming_lists.swap(false, Ordering::Relaxed) {
                            tracing::info!(%error, "the API server does not stream lists; listing in pages");
                        }
                        listing.clear();
                        streaming = false;
                        events = start_streams(streaming);
                    }
                    Err(error) => watch_failed(&shared, &context, &tag, &error),
                }
            }
            _ = async { match resync.as_mut() { Some(timer) => { timer.tick().await; } None => std::future::pending().await } } => {
                tracing::debug!(gvk = %crate::runtime::metrics::gvk_label(&gvk), "resync: relisting");
                listing.clear();
                streaming = shared.streaming_lists.load(Ordering::Relaxed);
                events = start_streams(streaming);
            }
            changed = namespace_changes.recv() => {
                let namespaces: Vec<String> = match changed {
                    Ok(namespace) => vec![namespace],
                    // Missed notifications: re-evaluate every namespace in scope.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        shared.namespaces.all().into_keys().collect()
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                if !namespaced {
                    continue;
                }
                for namespace in namespaces {
                    let covered = match &scope {
                        WatchScope::All => true,
                        WatchScope::Namespaces(set) => set.contains(&namespace),
                    };
                    if covered {
                        relist_namespace(&shared, &context, my_epoch, &namespace).await;
                    }
                }
            }
        }
    }
}

/// True for the answer of an API server without streaming lists (the `WatchList` feature off)
/// to a watch that asks for the current objects first: the request is invalid there. Only the
/// start of such a watch is refused; a later watch error is an ordinary failure.
fn refuses_streaming_lists(error: &watcher::Error) -> bool {
    matches!(
        error,
        watcher::Error::WatchStartFailed(kube::Error::Api(status)) if status.code == 400 || status.code == 422
    )
}

/// Lists every namespace of `scope` once ([`super::RuntimeConfig::list_only`]), then marks the
/// targets synced. A failing list is retried with backoff until it succeeds; a denial is final
/// for its namespace.
async fn list_scope(shared: &Shared, context: &Arc<WatchContext>, epoch: u64, scope: &WatchScope) {
    use backon::{ExponentialBuilder, Retryable};
    let tags: Vec<String> = match scope {
        WatchScope::All => vec![String::new()],
        WatchScope::Namespaces(namespaces) => namespaces.iter().cloned().collect(),
    };
    let lists = tags.iter().map(|tag| async move {
        let namespace = (!tag.is_empty()).then_some(tag.as_str());
        let backoff = ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(500))
            .with_max_delay(std::time::Duration::from_secs(30))
            .without_max_times();
        let listed = (|| super::list::list_once(shared, context, epoch, namespace))
            .retry(backoff)
            .when(|error| error.status().is_none_or(|status| status.code != 403))
            .notify(|error, _| record_failure(shared, context, tag, error.status(), error))
            .await;
        match listed {
            Ok(seen) => Some((tag, seen)),
            Err(error) => {
                record_failure(shared, context, tag, error.status(), &error);
                None
            }
        }
    });
    let listed: Vec<(&String, HashSet<String>)> = futures::future::join_all(lists)
        .await
        .into_iter()
        .flatten()
        .collect();
    barrier(shared).await;
    let mut objects = 0;
    for (tag, seen) in &listed {
        objects += seen.len();
        sweep(shared, context, tag, seen);
    }
    shared
        .metrics
        .informer(&context.labels, objects, *scope == WatchScope::All);
    let owners: Vec<RowOwner> = context.targets().iter().map(|t| t.owner.clone()).collect();
    shared.mark_synced(&owners, |report| {
        report.watch_error = None;
        for (tag, _) in &listed {
            report.forbidden_namespaces.remove(*tag);
        }
    });
}

/// Records a failed watch or list (see [`record_failure`]).
fn watch_failed(shared: &Shared, context: &WatchContext, tag: &str, error: &watcher::Error) {
    let status = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => Some(&**status),
        watcher::Error::WatchError(status) => Some(&**status),
        _ => None,
    };
    record_failure(shared, context, tag, status, error);
}

/// Records a failed watch or list of `tag`'s namespace: a 403 marks the namespace forbidden for
/// every target and removes their rows there; anything else is transient and keeps the rows.
fn record_failure(
    shared: &Shared,
    context: &WatchContext,
    tag: &str,
    status: Option<&kube::core::Status>,
    error: &dyn std::fmt::Display,
) {
    let forbidden = status.is_some_and(|s| s.code == 403);
    // A denial is reported in the API server's words (which name the verb, the resource and the
    // account), without the client's wrapping.
    let message = match status {
        Some(status) if forbidden && !status.message.is_empty() => status.message.clone(),
        _ => error.to_string(),
    };
    for target in context.targets().iter() {
        if forbidden {
            let removed = shared
                .store
                .remove_where(&target.owner, |row| tag.is_empty() || row.namespace() == tag);
            if removed > 0 {
                shared.after_change(target);
            }
            shared.metrics.target_error("forbidden");
            shared.report(&target.owner, |report| {
                report
                    .forbidden_namespaces
                    .insert(tag.to_owned(), message.clone());
            });
        } else {
            shared.metrics.target_error("transient");
            shared.report(&target.owner, |report| {
                report.watch_error = Some(message.clone());
            });
        }
    }
}

/// Removes rows of objects in the listed scope (`tag`: a namespace, or "" for all) that the
/// list did not return.
fn sweep(shared: &Shared, context: &WatchContext, tag: &str, seen: &HashSet<String>) {
    for target in context.targets().iter() {
        let removed = shared.store.remove_where(&target.owner, |row| {
            (tag.is_empty() || row.namespace() == tag) && !seen.contains(row.uid())
        });
        if removed > 0 {
            shared.after_change(target);
        }
    }
}

/// Lists one namespace again and re-evaluates every object in it (after the namespace's
/// labels changed), then removes rows of objects that are gone.
async fn relist_namespace(shared: &Shared, context: &Arc<WatchContext>, epoch: u64, namespace: &str) {
    let api: Api<WatchedObject> = Api::namespaced_with(shared.client.clone(), namespace, &context.resource);
    let mut seen = HashSet::new();
    let mut params = ListParams::default().limit(shared.config.page_size);
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, namespace, "relist after a namespace change failed");
                return;
            }
        };
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        for object in page.items {
            let uid = object.uid().to_owned();
            seen.insert(uid.clone());
            enqueue(
                shared,
                &uid,
                Job::Apply {
                    context: Arc::clone(context),
                    epoch,
                    object: Box::new(object),
                },
            )
            .await;
        }
        match next {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    barrier(shared).await;
    sweep(shared, context, namespace, &seen);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{CompiledProfile, ExtractOptions};
    use crate::select::{NamespaceDefaults, TargetFilter};
    use kollect_core::api::v1alpha1::{CollectionFilter, KollectProfileSpec, KollectTargetSpec};

    fn entry(included: &[&str]) -> Arc<TargetEntry> {
        let spec = KollectTargetSpec {
            filter: CollectionFilter {
                included_namespaces: included.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            },
            ..Default::default()
        };
        Arc::new(TargetEntry {
            owner: RowOwner::target("t", included.join("-")),
            profile_name: "p".into(),
            gvk: GroupVersionKind::new("", "v1", "ConfigMap"),
            profile: Arc::new(CompiledProfile::compile(
                &KollectProfileSpec::default(),
                &ExtractOptions::default(),
            )),
            filter: TargetFilter::compile(
                (&spec).into(),
                &NamespaceDefaults::default(),
                None,
                &Default::default(),
            )
            .unwrap(),
            fingerprint: String::new(),
        })
    }

    #[test]
    fn scope_narrows_to_the_union_of_fixed_namespaces_up_to_the_threshold() {
        let a = entry(&["a", "b"]);
        let b = entry(&["b", "c"]);
        assert_eq!(
            WatchScope::for_targets(&[a.clone(), b.clone()], 3),
            WatchScope::Namespaces(["a", "b", "c"].map(String::from).into())
        );
        assert_eq!(WatchScope::for_targets(&[a.clone(), b], 2), WatchScope::All);
        assert_eq!(WatchScope::for_targets(&[a, entry(&[])], 8), WatchScope::All);
    }

    #[test]
    fn only_an_invalid_start_of_a_watch_refuses_streaming_lists() {
        let status = |code: u16| {
            let mut status = kube::core::Status::failure("refused", "Invalid");
            status.code = code;
            Box::new(status)
        };
        let start = |code| watcher::Error::WatchStartFailed(kube::Error::Api(status(code)));
        assert!(refuses_streaming_lists(&start(422)));
        assert!(refuses_streaming_lists(&start(400)));
        // A denial, an outage or an error once the watch runs are ordinary failures.
        assert!(!refuses_streaming_lists(&start(403)));
        assert!(!refuses_streaming_lists(&start(500)));
        assert!(!refuses_streaming_lists(&watcher::Error::WatchError(status(422))));
        assert!(!refuses_streaming_lists(&watcher::Error::InitialListFailed(
            kube::Error::Api(status(422))
        )));
    }
}
