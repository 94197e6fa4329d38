//! One watch per kind for a whole leadership term, shared by every controller that needs it.
//!
//! Each kind the controllers read is listed and watched once into a reflector store. Reconciles
//! read targets, profiles, scopes, inventories and sink CRs from these stores instead of asking
//! the API server, so an idle operator makes no requests beyond its watches and lease renewals
//! (Secrets are the exception: they are never watched, only read when a sink is built or sends).
//!
//! Every change, deletions included, is also broadcast as the object touched, so that a
//! controller can map changes of one kind to reconciles of another. kube's own shared streams
//! do not carry deletions, and a deleted sink or scope must reach the inventories that use it.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kollect_core::api::v1alpha1::{
    KollectClusterInventory, KollectClusterScope, KollectClusterTarget, KollectDatabaseSink,
    KollectEventSink, KollectInventory, KollectProfile, KollectScope, KollectSnapshotSink, KollectTarget,
    SinkFamily,
};
use kollect_sinks::FamilySink;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tokio::task::JoinSet;

/// Changes a slow subscriber may fall behind by before it is told to look at everything.
const BROADCAST_BUFFER: usize = 1024;

/// How often the start of a term logs which kind it still waits for.
const WAITING_LOG: Duration = Duration::from_secs(10);

/// The store of one kind and the broadcast of every object it touches.
pub(super) struct Shared<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    touched: broadcast::Sender<Arc<K>>,
}

impl<K> Shared<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts the watch of `api` on `tasks`; `on_delete` sees every deleted object.
    fn start(api: Api<K>, tasks: &mut JoinSet<()>, on_delete: impl Fn(&K) + Send + 'static) -> Self {
        let (store, mut writer) = reflector::store();
        let (touched, _) = broadcast::channel(BROADCAST_BUFFER);
        let sender = touched.clone();
        let reader = store.clone();
        tasks.spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(error) => {
                        // The backoff retries; the store keeps what it had meanwhile.
                        tracing::warn!(kind = %K::kind(&()), %error, "watch failed; retrying");
                        continue;
                    }
                };
                writer.apply_watcher_event(&event);
                // Nobody listening (yet) is not an error: subscribers start from the store.
                match event {
                    watcher::Event::Apply(object) => {
                        let _ = sender.send(Arc::new(object));
                    }
                    watcher::Event::Delete(object) => {
                        on_delete(&object);
                        let _ = sender.send(Arc::new(object));
                    }
                    watcher::Event::InitDone => {
                        for object in reader.state() {
                            let _ = sender.send(object);
                        }
                    }
                    watcher::Event::Init | watcher::Event::InitApply(_) => {}
                }
            }
        });
        Self { store, touched }
    }

    /// Resolves once the store holds its first complete list.
    fn ready(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            // The writer lives as long as the term's watch task; if it is gone the term is ending.
            let _ = self.store.wait_until_ready().await;
        })
    }

    /// The store (read it only after [`Watches::wait_ready`]).
    pub(super) fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Every object in the store now, then every object touched from now on (a deleted object
    /// arrives as it last was). A subscriber that falls behind gets the whole store again
    /// rather than missing a change.
    pub(super) fn touched(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let receiver = self.touched.subscribe();
        let store = self.store.clone();
        let current = futures::stream::iter(self.store.state());
        let changes = futures::stream::unfold((receiver, store), |(mut receiver, store)| async move {
            let touched = match receiver.recv().await {
                Ok(object) => vec![object],
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(kind = %K::kind(&()), missed, "fell behind the watch; looking at every object");
                    store.state()
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((touched, (receiver, store)))
        })
        .flat_map(futures::stream::iter);
        current.chain(changes)
    }

    /// The object `namespace/name`, if the store holds it.
    pub(super) fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.store.get(&ObjectRef::new(name).within(namespace))
    }

    /// Every stored object.
    pub(super) fn all(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    /// Every stored object of `namespace`.
    pub(super) fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.store
            .state()
            .into_iter()
            .filter(|object| object.namespace().as_deref() == Some(namespace))
            .collect()
    }
}

/// The watches of the cluster-scoped kinds.
pub(super) struct ClusterWatches {
    /// `KollectClusterTarget`s.
    pub targets: Shared<KollectClusterTarget>,
    /// `KollectClusterInventory`s.
    pub inventories: Shared<KollectClusterInventory>,
    /// `KollectClusterScope`s.
    pub scopes: Shared<KollectClusterScope>,
}

impl ClusterWatches {
    /// The cluster scope in force: the `KollectClusterScope` with the smallest name, if any.
    pub(super) fn scope(&self) -> Option<Arc<KollectClusterScope>> {
        self.scopes.all().into_iter().min_by_key(|scope| scope.name_any())
    }
}

/// The watches of one leadership term.
pub(super) struct Watches {
    /// `KollectTarget`s.
    pub targets: Shared<KollectTarget>,
    /// `KollectProfile`s.
    pub profiles: Shared<KollectProfile>,
    /// `KollectScope`s.
    pub scopes: Shared<KollectScope>,
    /// `KollectInventory`s.
    pub inventories: Shared<KollectInventory>,
    /// `KollectSnapshotSink`s.
    pub snapshot_sinks: Shared<KollectSnapshotSink>,
    /// `KollectDatabaseSink`s.
    pub database_sinks: Shared<KollectDatabaseSink>,
    /// `KollectEventSink`s.
    pub event_sinks: Shared<KollectEventSink>,
    /// The cluster kinds; `None` in tenant mode, which never reads cluster-scoped objects.
    pub cluster: Option<ClusterWatches>,
    /// The tasks driving the watches; dropped (aborted) with the term.
    _tasks: JoinSet<()>,
}

impl Watches {
    /// Starts every watch over the watched namespaces (`api_for`), and of the cluster kinds
    /// unless `tenant_mode`; `sink_deleted` sees every sink that goes away.
    pub(super) fn start(
        client: &kube::Client,
        watch_namespaces: &[String],
        tenant_mode: bool,
        sink_deleted: impl Fn(SinkFamily, &str, &str) + Clone + Send + 'static,
    ) -> Self {
        let mut tasks = JoinSet::new();
        let deleted = |family: SinkFamily| {
            let sink_deleted = sink_deleted.clone();
            move |meta: &kube::api::ObjectMeta| {
                sink_deleted(
                    family,
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.name.as_deref().unwrap_or_default(),
                );
            }
        };
        let snapshot = deleted(SinkFamily::Snapshot);
        let database = deleted(SinkFamily::Database);
        let event = deleted(SinkFamily::Event);
        Self {
            targets: Shared::start(api_for(client, watch_namespaces), &mut tasks, ignore),
            profiles: Shared::start(api_for(client, watch_namespaces), &mut tasks, ignore),
            scopes: Shared::start(api_for(client, watch_namespaces), &mut tasks, ignore),
            inventories: Shared::start(api_for(client, watch_namespaces), &mut tasks, ignore),
            snapshot_sinks: Shared::start(
                api_for(client, watch_namespaces),
                &mut tasks,
                move |s: &KollectSnapshotSink| snapshot(&s.metadata),
            ),
            database_sinks: Shared::start(
                api_for(client, watch_namespaces),
                &mut tasks,
                move |s: &KollectDatabaseSink| database(&s.metadata),
            ),
            event_sinks: Shared::start(
                api_for(client, watch_namespaces),
                &mut tasks,
                move |s: &KollectEventSink| event(&s.metadata),
            ),
            cluster: (!tenant_mode).then(|| ClusterWatches {
                targets: Shared::start(Api::all(client.clone()), &mut tasks, ignore),
                inventories: Shared::start(Api::all(client.clone()), &mut tasks, ignore),
                scopes: Shared::start(Api::all(client.clone()), &mut tasks, ignore),
            }),
            _tasks: tasks,
        }
    }

    /// Waits until every store holds its first complete list: before that, a reconcile would
    /// see a namespace without targets and export an empty inventory.
    pub(super) async fn wait_ready(&self) {
        let mut kinds: Vec<(&str, futures::future::BoxFuture<'_, ()>)> = vec![
            ("KollectTarget", self.targets.ready()),
            ("KollectProfile", self.profiles.ready()),
            ("KollectScope", self.scopes.ready()),
            ("KollectInventory", self.inventories.ready()),
            ("KollectSnapshotSink", self.snapshot_sinks.ready()),
            ("KollectDatabaseSink", self.database_sinks.ready()),
            ("KollectEventSink", self.event_sinks.ready()),
        ];
        if let Some(cluster) = &self.cluster {
            kinds.push(("KollectClusterTarget", cluster.targets.ready()));
            kinds.push(("KollectClusterInventory", cluster.inventories.ready()));
            kinds.push(("KollectClusterScope", cluster.scopes.ready()));
        }
        for (kind, mut listed) in kinds {
            loop {
                match tokio::time::timeout(WAITING_LOG, &mut listed).await {
                    Ok(()) => break,
                    Err(_) => tracing::warn!(kind, "waiting for the first list of the kind"),
                }
            }
        }
    }

    /// The sink `namespace/name` of `family`, if it exists.
    pub(super) fn sink(&self, family: SinkFamily, namespace: &str, name: &str) -> Option<FamilySink> {
        match family {
            SinkFamily::Snapshot => self
                .snapshot_sinks
                .get(namespace, name)
                .map(|s| FamilySink::from((*s).clone())),
            SinkFamily::Database => self
                .database_sinks
                .get(namespace, name)
                .map(|s| FamilySink::from((*s).clone())),
            SinkFamily::Event => self
                .event_sinks
                .get(namespace, name)
                .map(|s| FamilySink::from((*s).clone())),
        }
    }

    /// The scope of a namespace: the `KollectScope` with the smallest name, if any.
    pub(super) fn scope_of(&self, namespace: &str) -> Option<Arc<KollectScope>> {
        self.scopes
            .in_namespace(namespace)
            .into_iter()
            .min_by_key(|scope| scope.name_any())
    }
}

/// For kinds whose deletions need no cleanup here.
fn ignore<K>(_: &K) {}

/// An API over all namespaces, or the single watched one.
pub(super) fn api_for<K>(client: &kube::Client, watch_namespaces: &[String]) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match watch_namespaces {
        [one] => Api::namespaced(client.clone(), one),
        _ => Api::all(client.clone()),
    }
}
