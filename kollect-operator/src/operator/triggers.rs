//! Row changes as reconcile triggers, throttled: a change that arrives when no trigger went out
//! for a quiet period is passed on at once (a single change is exported without waiting); the
//! changes that follow within the period are gathered and go out together when it ends, so a
//! busy namespace triggers at most one pass per period and no change waits longer than one
//! period. Each batch enqueues every object of the kind in the namespaces that changed (every
//! cluster-scoped object for the cluster partition). The controller adds its own batching on
//! top: triggers for an object whose reconcile is running wait as one for it to finish.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::Stream;
use kollect_collect::runtime::{Partition, RowStore, StoreChange};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

/// Partitions whose rows changed, gathered for one batch of triggers.
#[derive(Default)]
struct Changed {
    partitions: BTreeSet<Partition>,
    /// Notifications were missed: every partition may have changed.
    all: bool,
}

impl Changed {
    /// Takes one notification in: a changed partition, or a gap in the notifications.
    fn add(&mut self, received: Result<StoreChange, broadcast::error::RecvError>) {
        match received {
            Ok(change) => {
                self.partitions.insert(change.partition);
            }
            Err(_) => self.all = true,
        }
    }

    /// True when an object in `namespace` (`None`: cluster-scoped) exports a changed partition.
    fn concerns(&self, namespace: Option<&str>) -> bool {
        self.all
            || match namespace {
                Some(namespace) => self
                    .partitions
                    .contains(&Partition::Namespace(namespace.to_owned())),
                None => self.partitions.contains(&Partition::Cluster),
            }
    }
}

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
        // When the period that began with the last trigger ends.
        let mut period_end: Option<Instant> = None;
        loop {
            let mut changed = Changed::default();
            match changes.recv().await {
                Err(broadcast::error::RecvError::Closed) => return,
                received => changed.add(received),
            }
            if let Some(end) = period_end.filter(|end| *end > Instant::now()) {
                loop {
                    match tokio::time::timeout_at(end, changes.recv()).await {
                        Ok(Err(broadcast::error::RecvError::Closed)) => return,
                        Ok(received) => changed.add(received),
                        Err(_) => break,
                    }
                }
            }
            // Notifications already waiting join this batch rather than open the next period.
            loop {
                match changes.try_recv() {
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Closed) => return,
                    Ok(change) => changed.add(Ok(change)),
                    Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                        changed.add(Err(broadcast::error::RecvError::Lagged(missed)));
                    }
                }
            }
            period_end = Some(Instant::now() + quiet);
            if !send(&store, &sender, &changed).await {
                return;
            }
        }
    });
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

/// Enqueues the objects `changed` concerns; false once the controller is gone.
async fn send<K>(store: &Store<K>, sender: &mpsc::Sender<ObjectRef<K>>, changed: &Changed) -> bool
where
    K: Resource<DynamicType = ()> + Clone,
{
    for object in store.state() {
        if changed.concerns(object.meta().namespace.as_deref())
            && sender.send(ObjectRef::from_obj(&*object)).await.is_err()
        {
            return false;
        }
    }
    true
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kollect_core::collect::RowOwner;
    use kollect_core::model::Row;
    use kube::runtime::{reflector, watcher};
    use tokio::time::Instant;

    use super::*;

    fn object(namespace: &str, name: &str) -> ConfigMap {
        let mut object = ConfigMap::default();
        object.metadata.namespace = Some(namespace.into());
        object.metadata.name = Some(name.into());
        object
    }

    fn change(rows: &RowStore, namespace: &str, uid: &str) {
        let owner = RowOwner::target(namespace, "t");
        let row = Row {
            target_namespace: namespace.into(),
            target_name: "t".into(),
            uid: uid.into(),
            name: uid.into(),
            attributes: serde_json::json!({ "at": Instant::now().elapsed().as_nanos() as u64 })
                .as_object()
                .cloned(),
            ..Row::default()
        };
        assert!(rows.upsert(&owner, row));
    }

    const QUIET: Duration = Duration::from_millis(100);

    type Triggers = std::pin::Pin<Box<dyn futures::Stream<Item = ObjectRef<ConfigMap>> + Send>>;

    /// A row store, an object per `(namespace, name)`, and the triggers of the store's changes.
    async fn triggers_for(objects: &[(&str, &str)]) -> (Arc<RowStore>, Triggers) {
        let rows = Arc::new(RowStore::new());
        let (store, mut writer) = reflector::store::<ConfigMap>();
        for (namespace, name) in objects {
            writer.apply_watcher_event(&watcher::Event::Apply(object(namespace, name)));
        }
        let triggers = Box::pin(on_row_changes(&rows, store, QUIET));
        tokio::task::yield_now().await;
        (rows, triggers)
    }

    /// Virtual time (paused clock): the timings below are exact, not measured.
    #[tokio::test(start_paused = true)]
    async fn a_change_after_quiet_goes_out_at_once_and_the_changes_within_the_period_after_it_together() {
        let (rows, mut triggers) = triggers_for(&[("team-a", "inventory"), ("team-b", "other")]).await;

        let start = Instant::now();
        change(&rows, "team-a", "u1");
        let first = triggers.next().await.expect("a trigger");
        assert_eq!(first.name, "inventory");
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the first change waits for nothing"
        );

        // Two more changes within the period: one trigger when it ends, not a quiet period
        // after the last of them.
        tokio::time::sleep(Duration::from_millis(10)).await;
        change(&rows, "team-a", "u2");
        tokio::time::sleep(Duration::from_millis(70)).await;
        change(&rows, "team-a", "u3");
        let batched = triggers.next().await.expect("a trigger");
        assert_eq!(batched.name, "inventory");
        assert_eq!(start.elapsed(), QUIET);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), triggers.next())
                .await
                .is_err(),
            "the two changes went out as one trigger"
        );

        // Quiet again: the next change is immediate, and only its namespace is enqueued.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let again = Instant::now();
        change(&rows, "team-b", "u4");
        let other = triggers.next().await.expect("a trigger");
        assert_eq!(other.name, "other");
        assert_eq!(again.elapsed(), Duration::ZERO);
        // Nothing else is pending.
        assert!(
            tokio::time::timeout(Duration::from_secs(10), triggers.next())
                .await
                .is_err()
        );
    }

    /// A change just after a period ended is not held for another one.
    #[tokio::test(start_paused = true)]
    async fn a_change_after_the_period_goes_out_at_once() {
        let (rows, mut triggers) = triggers_for(&[("team-a", "inventory")]).await;
        let start = Instant::now();
        change(&rows, "team-a", "u1");
        triggers.next().await.expect("a trigger");
        tokio::time::sleep(Duration::from_millis(101)).await;
        change(&rows, "team-a", "u2");
        triggers.next().await.expect("a trigger");
        assert_eq!(start.elapsed(), Duration::from_millis(101));
    }

    /// A steady stream never goes quiet: one trigger per period, the first at once.
    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_triggers_once_per_period() {
        let (rows, mut triggers) = triggers_for(&[("team-a", "inventory")]).await;
        let start = Instant::now();
        let producer = {
            let rows = Arc::clone(&rows);
            tokio::spawn(async move {
                for i in 0..300 {
                    change(&rows, "team-a", &format!("u{i}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let mut at = Vec::new();
        while at.len() < 4 {
            triggers.next().await.expect("a trigger");
            at.push(start.elapsed());
        }
        producer.abort();
        assert_eq!(at, [Duration::ZERO, QUIET, QUIET * 2, QUIET * 3]);
    }

    /// Missed notifications (a lagging subscriber) enqueue every object: any partition may
    /// have changed.
    #[tokio::test(start_paused = true)]
    async fn missed_notifications_trigger_every_object() {
        let (rows, mut triggers) = triggers_for(&[("team-a", "inventory"), ("team-b", "other")]).await;
        change(&rows, "team-a", "first");
        triggers.next().await.expect("a trigger");
        // Far more changes in one namespace than the notification buffer holds, all within
        // the period: the subscriber lags behind.
        for i in 0..10_000 {
            change(&rows, "team-a", &format!("u{i}"));
        }
        let mut names = vec![
            triggers.next().await.expect("a trigger").name,
            triggers.next().await.expect("a trigger").name,
        ];
        names.sort();
        assert_eq!(names, ["inventory", "other"]);
    }
}
