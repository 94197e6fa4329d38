//! The `KollectClusterTarget` controller: one namespaced profile collected across every
//! namespace the target's selector matches, under the cluster scope's ceiling.
//!
//! A cluster target is one registration with the collection runtime, owned by
//! [`RowOwner::ClusterTarget`]: its rows live apart from every namespaced target's (decision
//! A7), so a namespaced inventory never exports them and a namespaced target of the same name
//! cannot collide with it. Namespaces that start or stop matching need no re-registration: the
//! runtime evaluates the filter against the namespace cache on every event and relabel.

use std::sync::Arc;
use std::time::Duration;

use kollect_core::api::v1alpha1::{
    KollectClusterScope, KollectClusterTarget, KollectClusterTargetStatus, KollectProfile,
};
use kollect_core::api::{condition_types as types, finalizers, reasons};
use kollect_core::collect::RowOwner;
use kube::api::Api;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::Event;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::target::{
    Collecting, Degrade, Registering, ScopeRef, degrade, health, manages, synced_of, unregister,
};
use super::triggers::drive;
use super::{Context, Error, finalized, publish, status};

const CONTROLLER: &str = "kollectclustertarget";
const KIND: &str = "KollectClusterTarget";

/// While a target's first list has not finished, its status is refreshed this often.
const UNSYNCED_REQUEUE: Duration = Duration::from_secs(2);

/// Runs the controller until the term ends (at once in tenant mode, which has no cluster kinds).
pub async fn run(context: Arc<Context>) {
    let Some(cluster) = &context.watches.cluster else {
        return;
    };
    let store = cluster.targets.store().clone();
    let (by_profile, by_scope, by_namespace) = (store.clone(), store.clone(), store.clone());
    let namespaces = namespace_changes(&context, by_namespace);
    let results = Controller::for_shared_stream(cluster.targets.touched(), store)
        .with_config(Config::default().concurrency(context.options.max_concurrent_reconciles_target))
        .watches_shared_stream(
            context.watches.profiles.touched(),
            move |profile: Arc<KollectProfile>| {
                let namespace = profile.namespace().unwrap_or_default();
                let name = profile.name_any();
                by_profile
                    .state()
                    .into_iter()
                    .filter(|t| {
                        t.spec.profile_ref.name == name
                            && t.spec.profile_ref.namespace.as_deref() == Some(namespace.as_str())
                    })
                    .map(|t| ObjectRef::from_obj(&*t))
                    .collect::<Vec<_>>()
            },
        )
        // The scope in force may change with any scope: every target is looked at again.
        .watches_shared_stream(cluster.scopes.touched(), move |_| {
            by_scope
                .state()
                .into_iter()
                .map(|t| ObjectRef::from_obj(&*t))
                .collect::<Vec<_>>()
        })
        .reconcile_on(namespaces)
        .graceful_shutdown_on(context.term.ended())
        .run(reconcile, error_policy, Arc::clone(&context));
    drive(results, CONTROLLER).await;
}

/// Every object of `store` once per namespace change (created, relabelled, deleted): the
/// matched and effective namespaces in their status follow at once.
pub(super) fn namespace_changes<K>(
    context: &Context,
    store: kube::runtime::reflector::Store<K>,
) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let changes = context.runtime.namespaces().subscribe();
    use futures::StreamExt;
    futures::stream::unfold((changes, store), |(mut changes, store)| async move {
        match changes.recv().await {
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
            // A change, or missed ones: every object is looked at again either way.
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                let all: Vec<ObjectRef<K>> =
                    store.state().iter().map(|o| ObjectRef::from_obj(&**o)).collect();
                Some((all, (changes, store)))
            }
        }
    })
    .flat_map(futures::stream::iter)
}

fn error_policy(target: Arc<KollectClusterTarget>, error: &Error, context: Arc<Context>) -> Action {
    tracing::warn!(%error, "cluster target reconcile failed");
    context.collect_metrics.reconcile_error(KIND, "transient");
    Action::requeue(context.backoff.after_failure(&*target, Duration::from_secs(5)))
}

async fn reconcile(target: Arc<KollectClusterTarget>, context: Arc<Context>) -> Result<Action, Error> {
    tracing::debug!(target = %target.name_any(), "reconcile");
    let api: Api<KollectClusterTarget> = Api::all(context.client.clone());
    let owner = RowOwner::cluster_target(target.name_any());
    finalized(
        &context,
        CONTROLLER,
        &api,
        finalizers::CLUSTER_TARGET,
        target,
        |event| async {
            match event {
                Event::Apply(target) => apply(&target, &api, &context).await,
                Event::Cleanup(target) => Ok(unregister(&owner, &*target, &context)),
            }
        },
    )
    .await
}

async fn apply(
    target: &KollectClusterTarget,
    api: &Api<KollectClusterTarget>,
    context: &Context,
) -> Result<Action, Error> {
    let owner = RowOwner::cluster_target(target.name_any());
    let generation = target.meta().generation;
    let current = target.status.clone();
    let mut next = current.clone().unwrap_or_default();
    next.observed_generation = generation;
    let mut requeue = context.options.target_count_resync;
    match register(target, context) {
        Err(Degrade { reason, message }) => {
            context.runtime.unregister(&owner);
            let was = current
                .as_ref()
                .and_then(|s| status::find(&s.conditions, types::DEGRADED));
            if reason != reasons::SUSPENDED && was.is_none_or(|c| c.reason != reason || c.message != message)
            {
                publish(context, target, EventType::Warning, reason, &message).await;
            }
            set_degraded(&mut next, reason, &message, generation);
            next.matched_namespaces.clear();
            next.effective_namespaces.clear();
        }
        Ok(collecting) => {
            if !collecting.report.synced {
                requeue = UNSYNCED_REQUEUE;
            }
            next.effective_namespaces = collecting
                .matched
                .iter()
                .filter(|ns| collecting.filter.scope_allows(ns))
                .cloned()
                .collect();
            next.matched_namespaces = collecting.matched.clone();
            next.active_resource_rules =
                Some(i64::try_from(collecting.filter.active_rules()).unwrap_or(i64::MAX));
            match health(&collecting.report) {
                Some(Degrade { reason, message }) => set_degraded(&mut next, reason, &message, generation),
                None => set_collecting(&mut next, &collecting, generation),
            }
        }
    }
    status::patch_if_changed(api, target, current.as_ref(), &next, &context.written).await?;
    Ok(Action::requeue(requeue))
}

/// Resolves the profile and the cluster scope and registers the target.
fn register(target: &KollectClusterTarget, context: &Context) -> Result<Collecting, Degrade> {
    let name = target.name_any();
    if target.spec.is_suspended() {
        return Err(degrade(
            reasons::SUSPENDED,
            "cluster target is suspended; its rows were dropped",
        ));
    }
    let reference = &target.spec.profile_ref;
    let (profile_namespace, profile_name) = (
        reference.namespace.as_deref().unwrap_or_default().trim(),
        reference.name.trim(),
    );
    if profile_name.is_empty() || profile_namespace.is_empty() {
        return Err(degrade(
            reasons::MISSING_PROFILE_REF,
            "spec.profileRef needs both name and namespace",
        ));
    }
    let scope = context.watches.cluster.as_ref().and_then(|c| c.scope());
    if let Some(scope) = &scope {
        static_ref_allowed(scope, profile_namespace, "profile")
            .map_err(|message| degrade(reasons::SCOPE_NAMESPACE_DENIED, message))?;
    }
    if !manages(context, profile_namespace) {
        return Err(degrade(
            reasons::PROFILE_FORBIDDEN,
            format!(
                "KollectProfile \"{profile_namespace}/{profile_name}\" is in a namespace this operator does not watch \
                 (--watch-namespaces)"
            ),
        ));
    }
    let Some(profile) = context.watches.profiles.get(profile_namespace, profile_name) else {
        return Err(degrade(
            reasons::PROFILE_NOT_FOUND,
            format!("KollectProfile \"{profile_name}\" not found in namespace {profile_namespace}"),
        ));
    };
    Registering {
        owner: RowOwner::cluster_target(&name),
        generation: target.meta().generation,
        spec: (&target.spec).into(),
        profile: &profile,
        profile_name,
        label: format!("{profile_namespace}/{profile_name}"),
        scope: scope.as_deref().map(|s| ScopeRef {
            kind: "KollectClusterScope",
            name: s.name_any(),
            ceiling: &s.spec.ceiling,
            version: s.meta().resource_version.clone(),
        }),
    }
    // Denied namespaces are filtered out of the effective ones, not a reason to degrade.
    .register(context, |_, _| Ok(()))
}

/// Whether the cluster scope lets cluster kinds reference objects (a profile, a sink) in
/// `namespace` (`allowedStaticRefNamespaces`; empty allows any).
pub(super) fn static_ref_allowed(
    scope: &KollectClusterScope,
    namespace: &str,
    what: &str,
) -> Result<(), String> {
    let allowed = &scope.spec.allowed_static_ref_namespaces;
    if allowed.is_empty() || allowed.iter().any(|a| a == namespace) {
        return Ok(());
    }
    Err(format!(
        "KollectClusterScope \"{}\" does not allow {what} references to namespace {namespace} \
         (allowedStaticRefNamespaces: {})",
        scope.name_any(),
        allowed.join(", ")
    ))
}

fn set_degraded(
    next: &mut KollectClusterTargetStatus,
    reason: &'static str,
    message: &str,
    generation: Option<i64>,
) {
    status::set_parts(
        &mut next.conditions,
        types::DEGRADED,
        true,
        reason,
        message,
        generation,
    );
    status::remove(&mut next.conditions, types::READY);
    status::remove(&mut next.conditions, types::SYNCED);
}

fn set_collecting(next: &mut KollectClusterTargetStatus, collecting: &Collecting, generation: Option<i64>) {
    let report = &collecting.report;
    let message = format!(
        "profileRef \"{}\" resolved; collecting {} resource(s) in {} namespace(s)",
        collecting.profile,
        report.rows,
        next.effective_namespaces.len()
    );
    status::set_parts(
        &mut next.conditions,
        types::READY,
        true,
        reasons::COLLECTING,
        &message,
        generation,
    );
    let (reason, synced) = synced_of(report, message.clone());
    status::set_parts(
        &mut next.conditions,
        types::SYNCED,
        true,
        reason,
        &synced,
        generation,
    );
    status::remove(&mut next.conditions, types::DEGRADED);
}
