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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kollect_core::api::v1alpha1::{
    KollectClusterInventory, KollectClusterScope, KollectClusterTarget, KollectConnectionTest,
    KollectDatabaseSink, KollectEventSink, KollectInventory, KollectProfile, KollectScope,
    KollectSnapshotSink, KollectTarget, SinkFamily,
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
    /// Starts the watches of `apis` (one per watched namespace, or one over all of them) on
    /// `tasks`, merged into one store; `on_delete` sees every deleted object, including those
    /// found gone when a watch lists again.
    fn start(apis: Vec<Api<K>>, tasks: &mut JoinSet<()>, on_delete: impl Fn(&K) + Send + 'static) -> Self {
        let (store, mut writer) = reflector::store();
        let (touched, _) = broadcast::channel(BROADCAST_BUFFER);
        let sender = touched.clone();
        let reader = store.clone();
        let mut merge = Merge::new(
            apis.iter()
                .map(Api::namespace)
                .map(|ns| ns.unwrap_or_default().to_owned()),
        );
        let streams = apis.into_iter().map(|api| {
            let tag = api.namespace().unwrap_or_default().to_owned();
            watcher(api, watcher::Config::default())
                .default_backoff()
                .map(move |event| (tag.clone(), event))
                .boxed()
        });
        tasks.spawn(async move {
            let mut events = futures::stream::select_all(streams);
            while let Some((tag, event)) = events.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(error) => {
                        // The backoff retries; the store keeps what it had meanwhile.
                        tracing::warn!(kind = %K::kind(&()), %error, "watch failed; retrying");
                        continue;
                    }
                };
                for event in merge.translate(&tag, event, &reader) {
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

    /// [`Shared::touched`] without the updates that change only status and bookkeeping: an
    /// object passes when it is new to the stream or its generation, labels, annotations or
    /// finalizers changed (setting the deletion timestamp bumps the generation), or it was deleted.
    ///
    /// For controllers that write their object's status after work that the status must not
    /// trigger again: an inventory's export pass writes `sinkExports[]`, and reacting to that
    /// write started the next pass at once, so under a steady stream of row changes passes ran
    /// back to back instead of once per debounce window.
    pub(super) fn touched_in_spec(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        use kube::runtime::predicates;
        use kube::runtime::utils::Predicate;
        let intent = predicates::generation
            .combine(predicates::labels)
            .combine(predicates::annotations)
            .combine(predicates::finalizers);
        let store = self.store.clone();
        let mut seen: HashMap<ObjectRef<K>, Option<u64>> = HashMap::new();
        self.touched().filter(move |object| {
            let key = ObjectRef::from_obj(object.as_ref());
            // A deletion always passes (and is forgotten).
            let changed = if store.get(&key).is_none() {
                seen.remove(&key);
                true
            } else {
                let hash = intent.hash_property(object.as_ref());
                seen.insert(key, hash) != Some(hash)
            };
            futures::future::ready(changed)
        })
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

/// Turns the events of several watches (each covering one namespace, or `""` for all) into the
/// events of one store. A watch that lists again is applied object by object, and what it no
/// longer lists is deleted, so the other watches' objects stay; the store becomes ready, once,
/// when every watch has listed.
struct Merge<K: Resource<DynamicType = ()>> {
    /// Watches that have not finished their first list.
    unlisted: BTreeSet<String>,
    /// What each watch listed so far in the list it is running.
    listing: HashMap<String, HashSet<ObjectRef<K>>>,
    ready: bool,
}

impl<K: Resource<DynamicType = ()> + Clone> Merge<K> {
    fn new(tags: impl IntoIterator<Item = String>) -> Self {
        Self {
            unlisted: tags.into_iter().collect(),
            listing: HashMap::new(),
            ready: false,
        }
    }

    /// The store events for `event` of the watch `tag`, given what `store` holds now (every
    /// returned event must be applied before the next call).
    fn translate(&mut self, tag: &str, event: watcher::Event<K>, store: &Store<K>) -> Vec<watcher::Event<K>> {
        match event {
            watcher::Event::Init => {
                self.listing.insert(tag.to_owned(), HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(object) => {
                self.listing
                    .entry(tag.to_owned())
                    .or_default()
                    .insert(ObjectRef::from_obj(&object));
                vec![watcher::Event::Apply(object)]
            }
            watcher::Event::InitDone => {
                let listed = self.listing.remove(tag).unwrap_or_default();
                let mut out: Vec<watcher::Event<K>> = store
                    .state()
                    .into_iter()
                    .filter(|object| tag.is_empty() || object.meta().namespace.as_deref() == Some(tag))
                    .filter(|object| !listed.contains(&ObjectRef::from_obj(&**object)))
                    .map(|gone| watcher::Event::Delete((*gone).clone()))
                    .collect();
                self.unlisted.remove(tag);
                if self.unlisted.is_empty() && !self.ready {
                    // The store's own protocol marks it ready: relist it from itself.
                    self.ready = true;
                    let gone: HashSet<ObjectRef<K>> = out
                        .iter()
                        .filter_map(|e| match e {
                            watcher::Event::Delete(o) => Some(ObjectRef::from_obj(o)),
                            _ => None,
                        })
                        .collect();
                    out.push(watcher::Event::Init);
                    out.extend(
                        store
                            .state()
                            .into_iter()
                            .filter(|o| !gone.contains(&ObjectRef::from_obj(&**o)))
                            .map(|o| watcher::Event::InitApply((*o).clone())),
                    );
                    out.push(watcher::Event::InitDone);
                }
                out
            }
            event @ (watcher::Event::Apply(_) | watcher::Event::Delete(_)) => vec![event],
        }
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
    /// `KollectConnectionTest`s.
    pub connection_tests: Shared<KollectConnectionTest>,
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
            connection_tests: Shared::start(api_for(client, watch_namespaces), &mut tasks, ignore),
            cluster: (!tenant_mode).then(|| ClusterWatches {
                targets: Shared::start(vec![Api::all(client.clone())], &mut tasks, ignore),
                inventories: Shared::start(vec![Api::all(client.clone())], &mut tasks, ignore),
                scopes: Shared::start(vec![Api::all(client.clone())], &mut tasks, ignore),
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
            ("KollectConnectionTest", self.connection_tests.ready()),
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

/// One API over all namespaces, or one per watched namespace (so that nothing needs the right
/// to list across the cluster).
pub(super) fn api_for<K>(client: &kube::Client, watch_namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    if watch_namespaces.is_empty() {
        return vec![Api::all(client.clone())];
    }
    watch_namespaces
        .iter()
        .map(|namespace| Api::namespaced(client.clone(), namespace))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn map(namespace: &str, name: &str) -> ConfigMap {
        ConfigMap {
            metadata: kube::api::ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(store: &Store<ConfigMap>) -> Vec<String> {
        let mut names: Vec<String> = store
            .state()
            .iter()
            .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn merged_watches_are_ready_once_all_listed_and_a_relist_deletes_only_its_own() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let mut merge = Merge::new(["a".to_owned(), "b".to_owned()]);
        let mut feed = |tag: &str, event: watcher::Event<ConfigMap>| {
            let out = merge.translate(tag, event, &store);
            for event in &out {
                writer.apply_watcher_event(event);
            }
            out
        };
        feed("a", watcher::Event::Init);
        feed("a", watcher::Event::InitApply(map("a", "one")));
        feed("a", watcher::Event::InitApply(map("a", "two")));
        let first = feed("a", watcher::Event::InitDone);
        assert!(first.is_empty(), "not ready while b has not listed");
        feed("b", watcher::Event::Init);
        feed("b", watcher::Event::InitApply(map("b", "three")));
        let ready = feed("b", watcher::Event::InitDone);
        assert!(matches!(ready.last(), Some(watcher::Event::InitDone)));
        assert_eq!(names(&store), ["a/one", "a/two", "b/three"]);

        // Namespace a lists again without `two`: it is deleted, b's object stays.
        feed("a", watcher::Event::Init);
        feed("a", watcher::Event::InitApply(map("a", "one")));
        let relisted = feed("a", watcher::Event::InitDone);
        assert!(
            matches!(relisted.as_slice(), [watcher::Event::Delete(gone)] if gone.name_any() == "two"),
            "{relisted:?}"
        );
        assert_eq!(names(&store), ["a/one", "b/three"]);
        feed("b", watcher::Event::Delete(map("b", "three")));
        assert_eq!(names(&store), ["a/one"]);
    }
}
