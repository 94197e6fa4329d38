//! Row changes as reconcile triggers: partitions whose rows changed are collected until the
//! store has been quiet for a short while (a trailing debounce, bounded so a busy namespace still
//! exports), then every object of the kind in those namespaces is enqueued (every cluster-scoped
//! object for the cluster partition).

use std::collections::BTreeSet;
use std::time::Duration;

use futures::Stream;
use kollect_collect::runtime::{Partition, RowStore};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{broadcast, mpsc};

/// The longest a change waits for the store to become quiet.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Enqueues every object of `store` in a namespace whose rows changed.
pub(super) fn on_row_changes<K>(
    rows: &RowStore,
    store: Store<K>,
    quiet: Duration,
) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let mut changes = rows.subscribe();
    let (sender, receiver) = mpsc::channel::<ObjectRef<K>>(1024);
    tokio::spawn(async move {
        let mut pending = BTreeSet::new();
        loop {
            let first = match changes.recv().await {
                Ok(change) => Some(change.partition),
                // Missed notifications: every namespace may have changed.
                Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let mut all = first.is_none();
            pending.extend(first);
            let deadline = tokio::time::Instant::now() + MAX_DELAY;
            loop {
                let wait = quiet.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                match tokio::time::timeout(wait, changes.recv()).await {
                    Ok(Ok(change)) => {
                        pending.insert(change.partition);
                    }
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => all = true,
                    Ok(Err(broadcast::error::RecvError::Closed)) => return,
                    Err(_) => break,
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            let mut cluster = false;
            let namespaces: BTreeSet<String> = std::mem::take(&mut pending)
                .into_iter()
                .filter_map(|p| match p {
                    Partition::Namespace(ns) => Some(ns),
                    Partition::Cluster => {
                        cluster = true;
                        None
                    }
                })
                .collect();
            for object in store.state() {
                // Cluster-scoped objects (cluster inventories) export the cluster partition.
                let concerned = match &object.meta().namespace {
                    Some(namespace) => namespaces.contains(namespace),
                    None => cluster,
                };
                if (all || concerned) && sender.send(ObjectRef::from_obj(&object)).await.is_err() {
                    return;
                }
            }
        }
    });
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

/// Every object of `store` in `namespace` (a change there concerns all of them).
pub(super) fn in_namespace<K>(store: &Store<K>, namespace: Option<&str>) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .state()
        .into_iter()
        .filter(|object| object.meta().namespace.as_deref() == namespace)
        .map(|object| ObjectRef::from_obj(&*object))
        .collect()
}

/// Drives a controller's result stream until it ends; failed reconciles were already handled
/// by the error policy, so they are only traced here.
pub(super) async fn drive<T, E: std::fmt::Display>(
    results: impl Stream<Item = Result<T, E>>,
    controller: &str,
) {
    use futures::StreamExt;
    results
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, controller, "reconcile");
            }
        })
        .await;
}
