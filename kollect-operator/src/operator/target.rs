//! The `KollectTarget` controller: resolves the profile and the scope, registers the target with
//! the collection runtime, and reports what it collects .

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kollect_collect::extract::validate::validate_profile;
use kollect_collect::runtime::{TargetRegistration, TargetReport};
use kollect_collect::select::{FilterSpec, TargetFilter};
use kollect_core::api::v1alpha1::{
    CollectionFilter, GroupVersionKind, KollectProfile, KollectScope, KollectTarget, KollectTargetStatus,
    ScopeCeilingSpec, SinkFamily,
};
use kollect_core::api::{condition_types as types, finalizers, reasons};
use kollect_core::collect::RowOwner;
use kube::api::Api;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::Event;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::status;
use super::triggers::{drive, in_namespace};
use super::{Context, Error, finalized, publish};

const CONTROLLER: &str = "kollecttarget";

/// While a target's first list has not finished, its status is refreshed this often.
const UNSYNCED_REQUEUE: Duration = Duration::from_secs(2);

/// Runs the controller until the term ends.
pub async fn run(context: Arc<Context>) {
    let watches = &context.watches;
    let store = watches.targets.store().clone();
    let (by_profile, by_scope, by_inventory) = (store.clone(), store.clone(), store.clone());
    let (by_snapshot, by_database, by_event) = (store.clone(), store.clone(), store.clone());
    let rows = super::triggers::on_row_changes(
        context.runtime.store(),
        store.clone(),
        context.options.row_change_throttle,
    );
    let results = Controller::for_shared_stream(watches.targets.touched(), store)
        .with_config(Config::default().concurrency(context.options.max_concurrent_reconciles_target))
        .watches_shared_stream(watches.profiles.touched(), move |profile: Arc<KollectProfile>| {
            let namespace = profile.namespace();
            let name = profile.name_any();
            by_profile
                .state()
                .into_iter()
                .filter(|t| t.namespace() == namespace && t.spec.profile_ref == name)
                .map(|t| ObjectRef::from_obj(&*t))
                .collect::<Vec<_>>()
        })
        // A target reports whether the sinks of its namespace's inventories exist and answer.
        .watches_shared_stream(watches.scopes.touched(), move |o| {
            in_namespace(&by_scope, o.namespace().as_deref())
        })
        .watches_shared_stream(watches.inventories.touched(), move |o| {
            in_namespace(&by_inventory, o.namespace().as_deref())
        })
        .watches_shared_stream(watches.snapshot_sinks.touched(), move |o| {
            in_namespace(&by_snapshot, o.namespace().as_deref())
        })
        .watches_shared_stream(watches.database_sinks.touched(), move |o| {
            in_namespace(&by_database, o.namespace().as_deref())
        })
        .watches_shared_stream(watches.event_sinks.touched(), move |o| {
            in_namespace(&by_event, o.namespace().as_deref())
        })
        .reconcile_on(rows)
        .graceful_shutdown_on(context.term.ended())
        .run(reconcile, error_policy, Arc::clone(&context));
    drive(results, CONTROLLER).await;
}

/// Whether this operator manages objects in `namespace` (`--watch-namespaces`).
pub(super) fn manages(context: &Context, namespace: &str) -> bool {
    let watched = &context.options.watch_namespaces;
    watched.is_empty() || watched.iter().any(|w| w == namespace)
}

fn error_policy(target: Arc<KollectTarget>, error: &Error, context: Arc<Context>) -> Action {
    tracing::warn!(%error, "target reconcile failed");
    context
        .collect_metrics
        .reconcile_error("KollectTarget", "transient");
    Action::requeue(context.backoff.after_failure(&*target, Duration::from_secs(5)))
}

async fn reconcile(target: Arc<KollectTarget>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = target.namespace().unwrap_or_default();
    if !manages(&context, &namespace) {
        return Ok(Action::await_change());
    }
    tracing::debug!(target = %target.name_any(), %namespace, "reconcile");
    let api: Api<KollectTarget> = Api::namespaced(context.client.clone(), &namespace);
    let owner = RowOwner::target(&namespace, target.name_any());
    finalized(
        &context,
        CONTROLLER,
        &api,
        finalizers::TARGET,
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

/// A deleted target of either kind: its rows are dropped and nothing of it is remembered.
pub(super) fn unregister<K: Resource<DynamicType = ()>>(
    owner: &RowOwner,
    target: &K,
    context: &Context,
) -> Action {
    context.runtime.unregister(owner);
    context.written.forget(target);
    Action::await_change()
}

/// A reason the target cannot collect: `Degraded=True/<reason>`, `Ready` and `Synced` removed.
pub(super) struct Degrade {
    pub(super) reason: &'static str,
    pub(super) message: String,
}

pub(super) fn degrade(reason: &'static str, message: impl Into<String>) -> Degrade {
    Degrade {
        reason,
        message: message.into(),
    }
}

/// What a registered target looks like.
pub(super) struct Collecting {
    /// What the runtime reports.
    pub(super) report: TargetReport,
    /// The compiled filters.
    pub(super) filter: TargetFilter,
    /// How the status names the profile.
    pub(super) profile: String,
    /// The namespaces the target's filters match (before the scope), sorted.
    pub(super) matched: Vec<String>,
}

async fn apply(target: &KollectTarget, api: &Api<KollectTarget>, context: &Context) -> Result<Action, Error> {
    let namespace = target.namespace().unwrap_or_default();
    let owner = RowOwner::target(&namespace, target.name_any());
    let generation = target.meta().generation;
    let current = target.status.clone();
    let mut next = current.clone().unwrap_or_default();
    next.observed_generation = generation;
    let mut requeue = context.options.target_count_resync;

    match register(target, context).await {
        Err(Degrade { reason, message }) => {
            context.runtime.unregister(&owner);
            let scope_denial =
                reason == reasons::SCOPE_GVK_DENIED || reason == reasons::SCOPE_NAMESPACE_DENIED;
            let was = current
                .as_ref()
                .and_then(|s| status::find(&s.conditions, types::DEGRADED));
            if scope_denial && was.is_none_or(|c| c.reason != reason || c.message != message) {
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
            fill_collecting(&mut next, &collecting);
            let verdict = match health(&collecting.report) {
                Some(problem) => Err(problem),
                None => sink_path(&namespace, context),
            };
            match verdict {
                Err(Degrade { reason, message }) => set_degraded(&mut next, reason, &message, generation),
                Ok(sinks) => set_collecting(&mut next, &collecting, sinks, generation),
            }
        }
    }
    let was_forbidden = current
        .as_ref()
        .and_then(|s| status::find(&s.conditions, types::SYNCED))
        .is_some_and(|c| c.reason == reasons::SCOPE_FORBIDDEN);
    if let Some(synced) = status::find(&next.conditions, types::SYNCED)
        && synced.reason == reasons::SCOPE_FORBIDDEN
        && !was_forbidden
    {
        publish(
            context,
            target,
            EventType::Warning,
            reasons::SCOPE_FORBIDDEN,
            &synced.message,
        )
        .await;
    }
    status::patch_if_changed(api, target, current.as_ref(), &next, &context.written).await?;
    Ok(Action::requeue(requeue))
}

/// Resolves the profile and the scope and registers the target.
async fn register(target: &KollectTarget, context: &Context) -> Result<Collecting, Degrade> {
    let namespace = target.namespace().unwrap_or_default();
    let name = target.name_any();
    if target.spec.suspend.unwrap_or(false) {
        return Err(degrade(
            reasons::SUSPENDED,
            "target is suspended; its rows were dropped",
        ));
    }
    let profile_name = target.spec.profile_ref.trim();
    if profile_name.is_empty() {
        return Err(degrade(reasons::MISSING_PROFILE_REF, "spec.profileRef is empty"));
    }
    let Some(profile) = context.watches.profiles.get(&namespace, profile_name) else {
        return Err(degrade(
            reasons::PROFILE_NOT_FOUND,
            format!("KollectProfile \"{profile_name}\" not found in namespace {namespace}"),
        ));
    };
    let scope = context.watches.scope_of(&namespace);
    let checked = Registering {
        owner: RowOwner::target(&namespace, &name),
        generation: target.meta().generation,
        spec: (&target.spec).into(),
        profile: &profile,
        profile_name,
        label: profile_name.to_owned(),
        scope: scope.as_deref().map(|s| ScopeRef {
            kind: "KollectScope",
            name: s.name_any(),
            ceiling: &s.spec.ceiling,
            version: s.meta().resource_version.clone(),
        }),
    };
    checked.register(context, |filter, matched| match &scope {
        Some(scope) => scope_namespaces(filter, matched, scope, &namespace),
        None => Ok(()),
    })
}

/// The scope a target is checked against, as its messages name it.
pub(super) struct ScopeRef<'a> {
    /// `KollectScope` or `KollectClusterScope`.
    pub(super) kind: &'static str,
    /// Its name.
    pub(super) name: String,
    /// Its ceiling.
    pub(super) ceiling: &'a ScopeCeilingSpec,
    /// Its resourceVersion: an edit re-registers the target.
    pub(super) version: Option<String>,
}

/// A target of either kind whose profile was found, about to be checked and registered.
pub(super) struct Registering<'a> {
    /// Who owns its rows.
    pub(super) owner: RowOwner,
    /// The target's generation.
    pub(super) generation: Option<i64>,
    /// Its filters.
    pub(super) spec: FilterSpec<'a>,
    /// The profile.
    pub(super) profile: &'a KollectProfile,
    /// The profile's name.
    pub(super) profile_name: &'a str,
    /// How the status names the profile.
    pub(super) label: String,
    /// The scope in force.
    pub(super) scope: Option<ScopeRef<'a>>,
}

impl Registering<'_> {
    /// Refuses an invalid profile (the admission webhook refuses it too; a cluster without it,
    /// or a profile admitted before it ran, is refused here, above all Secret data without the
    /// opt-in) and kinds the scope does not allow, compiles the filters, runs `gate` over the
    /// matched namespaces and registers the target with the runtime.
    pub(super) fn register(
        self,
        context: &Context,
        gate: impl FnOnce(&TargetFilter, &[String]) -> Result<(), Degrade>,
    ) -> Result<Collecting, Degrade> {
        let validation = validate_profile(self.profile, &context.extract);
        if let Some(message) = validation.message("KollectProfile", self.profile_name) {
            return Err(degrade(reasons::PROFILE_INVALID, message));
        }
        let gvk = &self.profile.spec.target_gvk;
        if let Some(scope) = &self.scope {
            gvks_allowed(scope.ceiling, self.spec.filter, gvk, scope.kind, &scope.name)?;
        }
        let filter = TargetFilter::compile(
            self.spec,
            &context.defaults,
            self.scope.as_ref().map(|s| s.ceiling),
            &context.extract.cel,
        )
        .map_err(|e| degrade(reasons::INFORMER_REGISTRATION_FAILED, e.to_string()))?;
        let matched: Vec<String> = context
            .runtime
            .namespaces()
            .all()
            .into_iter()
            .filter(|(ns, meta)| filter.namespace_matched(ns, Some(meta)))
            .map(|(ns, _)| ns)
            .collect();
        gate(&filter, &matched)?;
        let fingerprint = format!(
            "{:?}/{:?}/{:?}",
            self.generation,
            self.profile.meta().generation,
            self.scope.as_ref().and_then(|s| s.version.clone())
        );
        context.runtime.register(TargetRegistration {
            owner: self.owner.clone(),
            profile_name: self.profile_name.to_owned(),
            gvk: gvk.clone(),
            profile: context.profiles.get(self.profile),
            filter: filter.clone(),
            fingerprint,
        });
        let report = context.runtime.report(&self.owner).unwrap_or_default();
        Ok(Collecting {
            report,
            filter,
            profile: self.label,
            matched,
        })
    }
}

/// Refuses a target when its scope does not allow a kind it collects: its rules' kinds, else its
/// profile's, compared case-insensitively with `core` naming the core group, as the Go operator
/// compares them.
pub(super) fn gvks_allowed(
    ceiling: &ScopeCeilingSpec,
    filter: &CollectionFilter,
    profile_gvk: &GroupVersionKind,
    scope_kind: &str,
    scope_name: &str,
) -> Result<(), Degrade> {
    let collected: Vec<&GroupVersionKind> = if filter.resource_rules.is_empty() {
        vec![profile_gvk]
    } else {
        filter.resource_rules.iter().map(|r| &r.gvk).collect()
    };
    match collected.into_iter().find(|g| !ceiling.allows_gvk(g)) {
        Some(denied) => Err(degrade(
            reasons::SCOPE_GVK_DENIED,
            format!(
                "{scope_kind} \"{scope_name}\" does not allow {}/{}/{}",
                denied.group, denied.version, denied.kind
            ),
        )),
        None => Ok(()),
    }
}

/// A target asks for the namespaces it matches (its own namespace when it matches none); when
/// the scope refuses any of them the target does not collect at all, rather than collecting a
/// part of what it asked for without saying so.
fn scope_namespaces(
    filter: &TargetFilter,
    matched: &[String],
    scope: &KollectScope,
    namespace: &str,
) -> Result<(), Degrade> {
    let mut intent: Vec<&str> = matched.iter().map(String::as_str).collect();
    if intent.is_empty() {
        intent.push(namespace);
    }
    let refused: Vec<&str> = intent.into_iter().filter(|ns| !filter.scope_allows(ns)).collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(degrade(
        reasons::SCOPE_NAMESPACE_DENIED,
        format!(
            "KollectScope \"{}\" does not allow namespace(s) {} that the target matches; narrow the \
             target (includedNamespaces, excludedNamespaces, namespaceSelector) to the scope",
            scope.name_any(),
            refused.join(", ")
        ),
    ))
}

/// Collection problems the runtime reports.
pub(super) fn health(report: &TargetReport) -> Option<Degrade> {
    if let Some(error) = &report.transient_error {
        return Some(degrade(reasons::ACCESS_CHECK_FAILED, error.clone()));
    }
    if let Some(unresolved) = &report.unresolved {
        return Some(degrade(reasons::INFORMER_REGISTRATION_FAILED, unresolved.clone()));
    }
    if let Some(error) = &report.watch_error {
        return Some(degrade(reasons::INFORMER_REGISTRATION_FAILED, error.clone()));
    }
    if !report.extraction_failures.is_empty() {
        return Some(degrade(
            reasons::EXTRACTION_FAILED,
            format!(
                "{} resource(s) failed attribute extraction: {}",
                report.extraction_failures.len(),
                report.last_extraction_error.clone().unwrap_or_default()
            ),
        ));
    }
    None
}

/// Whether every sink the namespace's inventories bind exists and is not known to be
/// unreachable: `Ok(reason)` for `SinkReachable=True`, `Err` to degrade.
fn sink_path(namespace: &str, context: &Context) -> Result<&'static str, Degrade> {
    let mut any = false;
    let mut all_verified = true;
    for inventory in context.watches.inventories.in_namespace(namespace) {
        for (family, reference) in inventory.spec.sinks.iter() {
            any = true;
            let Some(sink) = context.watches.sink(family, namespace, &reference.name) else {
                return Err(degrade(
                    reasons::SINK_NOT_FOUND,
                    format!(
                        "KollectInventory \"{}\" references {} sink \"{}\", which does not exist",
                        inventory.name_any(),
                        family.as_str(),
                        reference.name
                    ),
                ));
            };
            match status::find(sink.conditions(), types::CONNECTION_VERIFIED) {
                Some(c) if c.status == "False" => {
                    return Err(degrade(
                        reasons::SINK_UNREACHABLE,
                        format!(
                            "{}: {}",
                            SinkFamily::export_key(family, &reference.name),
                            c.message
                        ),
                    ));
                }
                Some(_) => {}
                None => all_verified = false,
            }
        }
    }
    Ok(match (any, all_verified) {
        (false, _) => reasons::NO_SINKS_IN_NAMESPACE,
        (true, true) => reasons::CONNECTION_VERIFIED,
        (true, false) => reasons::SINK_RESOLVED,
    })
}

fn set_degraded(
    next: &mut KollectTargetStatus,
    reason: &'static str,
    message: &str,
    generation: Option<i64>,
) {
    status::set_each(
        &mut next.conditions,
        &[(types::DEGRADED, true), (types::SINK_REACHABLE, false)],
        reason,
        message,
        generation,
    );
    status::remove(&mut next.conditions, types::READY);
    status::remove(&mut next.conditions, types::SYNCED);
}

fn fill_collecting(next: &mut KollectTargetStatus, collecting: &Collecting) {
    let report = &collecting.report;
    // Effective = matched and inside the scope (`TargetFilter::namespace_effective`).
    next.effective_namespaces = collecting
        .matched
        .iter()
        .filter(|ns| collecting.filter.scope_allows(ns))
        .cloned()
        .collect();
    next.matched_namespaces = collecting.matched.clone();
    next.active_resource_rules = Some(i64::try_from(collecting.filter.active_rules()).unwrap_or(i64::MAX));
    next.extraction_failures = Some(i64::try_from(report.extraction_failures.len()).unwrap_or(i64::MAX));
    next.last_extraction_error = report.last_extraction_error.clone();
    if report.synced {
        let count = i64::try_from(report.rows).unwrap_or(i64::MAX);
        if next.collected_count != Some(count) {
            next.collected_count = Some(count);
            next.collected_count_updated_at = Some(Time(Timestamp::now()));
        }
    }
}

/// `Synced` of a collecting target: `Collecting` with `message`, or `ScopeForbidden` naming the
/// namespaces where access is denied (the target still collects the rest).
pub(super) fn synced_of(report: &TargetReport, message: String) -> (&'static str, String) {
    if report.forbidden_namespaces.is_empty() {
        return (reasons::COLLECTING, message);
    }
    let denied: Vec<&str> = report
        .forbidden_namespaces
        .keys()
        .map(|ns| if ns.is_empty() { "(cluster)" } else { ns.as_str() })
        .collect();
    // The API server's words for the first denial name the verb, resource and account, which
    // is what the person granting the permission needs.
    let first = report
        .forbidden_namespaces
        .values()
        .next()
        .filter(|reason| !reason.is_empty())
        .map(|reason| format!(" ({reason})"))
        .unwrap_or_default();
    (
        reasons::SCOPE_FORBIDDEN,
        format!(
            "access denied in namespace(s) {}{first}; collecting the rest",
            denied.join(", ")
        ),
    )
}

fn set_collecting(
    next: &mut KollectTargetStatus,
    collecting: &Collecting,
    sinks: &'static str,
    generation: Option<i64>,
) {
    let report = &collecting.report;
    let message = format!(
        "profileRef \"{}\" resolved; collecting {} resource(s)",
        collecting.profile, report.rows
    );
    status::set_parts(
        &mut next.conditions,
        types::READY,
        true,
        reasons::COLLECTING,
        &message,
        generation,
    );
    let (reason, synced) = synced_of(report, message);
    status::set_parts(
        &mut next.conditions,
        types::SYNCED,
        true,
        reason,
        &synced,
        generation,
    );
    let sink_message = match sinks {
        r if r == reasons::NO_SINKS_IN_NAMESPACE => "no inventory in this namespace binds a sink",
        r if r == reasons::CONNECTION_VERIFIED => "every bound sink passed its connection test",
        _ => "every bound sink exists",
    };
    status::set_parts(
        &mut next.conditions,
        types::SINK_REACHABLE,
        true,
        sinks,
        sink_message,
        generation,
    );
    status::remove(&mut next.conditions, types::DEGRADED);
}
