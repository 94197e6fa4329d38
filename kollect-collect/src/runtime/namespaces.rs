//! Namespace labels and annotations, kept current by a metadata-only watch. A change of a
//! namespace's labels or annotations is announced so the runtime can re-evaluate the objects in
//! it (relabelling a namespace moves rows in and out).

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{broadcast, watch};

use crate::select::NamespaceMeta;

/// Where the namespace cache reads namespaces from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NamespaceSource {
    /// A list and watch of every namespace (needs cluster-wide read access to namespaces).
    #[default]
    Watch,
    /// A GET of each named namespace, repeated every `every` (needs only namespaced rights; a
    /// label change is seen within `every`).
    Poll {
        /// The namespaces.
        names: Vec<String>,
        /// How often each is read again.
        every: Duration,
    },
}

/// The namespace cache.
#[derive(Debug)]
pub struct NamespaceCache {
    map: RwLock<BTreeMap<String, NamespaceMeta>>,
    ready: watch::Sender<bool>,
    changes: broadcast::Sender<String>,
}

impl Default for NamespaceCache {
    fn default() -> Self {
        Self::new()
    }
}

fn meta_of(object: &PartialObjectMeta<Namespace>) -> (String, NamespaceMeta) {
    let metadata = &object.metadata;
    (
        metadata.name.clone().unwrap_or_default(),
        NamespaceMeta {
            labels: metadata.labels.clone().unwrap_or_default(),
            annotations: metadata.annotations.clone().unwrap_or_default(),
        },
    )
}

impl NamespaceCache {
    /// An empty cache, not yet ready.
    pub fn new() -> Self {
        let (ready, _) = watch::channel(false);
        let (changes, _) = broadcast::channel(256);
        Self {
            map: RwLock::default(),
            ready,
            changes,
        }
    }

    /// The labels and annotations of `namespace`, when it exists.
    pub fn get(&self, namespace: &str) -> Option<NamespaceMeta> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .cloned()
    }

    /// Every known namespace with its metadata.
    pub fn all(&self) -> BTreeMap<String, NamespaceMeta> {
        self.map.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Names of namespaces whose labels or annotations changed (or that appeared or went away).
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// Waits until the first full list has been applied (or the watch reported that it cannot
    /// list namespaces, in which case every namespace is unknown).
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        // An error only means the sender is gone, which cannot happen while `self` lives.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// Sets or removes one namespace; announces a change.
    pub fn set(&self, name: &str, meta: Option<NamespaceMeta>) {
        let changed = {
            let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
            match meta {
                Some(meta) => map.insert(name.to_owned(), meta.clone()).as_ref() != Some(&meta),
                None => map.remove(name).is_some(),
            }
        };
        if changed {
            let _ = self.changes.send(name.to_owned());
        }
    }

    fn replace_all(&self, fresh: BTreeMap<String, NamespaceMeta>) {
        let changed: Vec<String> = {
            let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
            let changed = fresh
                .iter()
                .filter(|(name, meta)| map.get(*name) != Some(meta))
                .map(|(name, _)| name.clone())
                .chain(map.keys().filter(|n| !fresh.contains_key(*n)).cloned())
                .collect();
            *map = fresh;
            changed
        };
        let was_ready = *self.ready.borrow();
        self.ready.send_replace(true);
        if was_ready {
            for name in changed {
                let _ = self.changes.send(name);
            }
        }
    }

    /// Marks the cache ready without data (used when namespaces cannot be listed).
    pub fn mark_ready(&self) {
        self.ready.send_replace(true);
    }

    /// Keeps the cache current from `source` until the returned future is dropped.
    pub async fn run(&self, client: kube::Client, source: &NamespaceSource) {
        match source {
            NamespaceSource::Watch => self.watch(client).await,
            NamespaceSource::Poll { names, every } => self.poll(client, names, *every).await,
        }
    }

    /// Reads each of `names` with a GET every `every`. A GET of one namespace needs only a
    /// RoleBinding in that namespace (the API server authorizes a namespace's own object in
    /// it), where listing or watching namespaces needs a ClusterRole.
    async fn poll(&self, client: kube::Client, names: &[String], every: Duration) {
        let api: Api<Namespace> = Api::all(client);
        loop {
            for name in names {
                match api.get_metadata_opt(name).await {
                    Ok(Some(object)) => {
                        let (name, meta) = meta_of(&object);
                        self.set(&name, Some(meta));
                    }
                    Ok(None) => self.set(name, None),
                    Err(error) => {
                        tracing::warn!(namespace = %name, %error, "read namespace failed; its labels are kept as they were");
                    }
                }
            }
            self.mark_ready();
            tokio::time::sleep(every).await;
        }
    }

    /// Lists and watches every namespace.
    async fn watch(&self, client: kube::Client) {
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut buffer: Option<BTreeMap<String, NamespaceMeta>> = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => buffer = Some(BTreeMap::new()),
                Ok(watcher::Event::InitApply(object)) => {
                    let (name, meta) = meta_of(&object);
                    buffer.get_or_insert_default().insert(name, meta);
                }
                Ok(watcher::Event::InitDone) => {
                    self.replace_all(buffer.take().unwrap_or_default());
                }
                Ok(watcher::Event::Apply(object)) => {
                    let (name, meta) = meta_of(&object);
                    self.set(&name, Some(meta));
                }
                Ok(watcher::Event::Delete(object)) => {
                    let (name, _) = meta_of(&object);
                    self.set(&name, None);
                }
                Err(error) => {
                    tracing::warn!(%error, "namespace watch failed; namespace labels are unknown until it recovers");
                    self.mark_ready();
                }
            }
        }
    }
}
