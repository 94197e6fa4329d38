//! The `KollectClusterInventory` controller: the rows of the selected cluster targets in the
//! selected namespaces, merged by `spec.dedupe`, summarised per namespace in status and exported
//! to sinks in any namespace through the same export pass as a namespaced inventory.
//!
//! Unlike the Go operator, which polls cluster inventories on their interval, a change of a
//! cluster target's rows triggers the export at once (after the same short debounce as
//! namespaced inventories); and the cluster scope's `minExportInterval` is a floor here too
//! (decision A5).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use kollect_core::GoDuration;
use kollect_core::api::v1alpha1::{
    DedupeMode, KollectClusterInventory, KollectClusterInventoryStatus, KollectClusterScope,
    KollectClusterTarget, NamespaceShardStatus, SinkFamily,
};
use kollect_core::api::{condition_types as types, finalizers, reasons};
use kollect_core::collect::RowOwner;
use kollect_core::export::ExportReport;
use kollect_core::model::{SharedRow, Snapshot};
use kube::api::Api;
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::Event;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::cluster_target::{namespace_changes, static_ref_allowed};
use super::export_pass::{
    Exporting, PASS_POLL, Pass, apply_report, cleanup, error_policy, finish_pass, no_sinks_bound, pass_of,
    start_pass,
};
use super::inventory::{GateTarget, Targets, listing, waiting_for};
use super::target::manages;
use super::triggers::drive;
use super::{Context, Error, finalized, publish, status};

const CONTROLLER: &str = "kollectclusterinventory";

/// How long after creation an inventory that selects no target is only waited for (its targets
/// may be applied after it) before it is `Degraded=True/NoTargets`.
const BOOTSTRAP_WINDOW: Duration = Duration::from_secs(300);

/// How often an inventory without targets looks again.
const NO_TARGETS_REQUEUE: Duration = Duration::from_secs(30);

/// How soon an inventory waiting for its targets' first list looks again.
const UNSYNCED_RETRY: Duration = Duration::from_secs(1);

/// Runs the controller until the term ends (at once in tenant mode, which has no cluster kinds).
pub async fn run(context: Arc<Context>) {
    let Some(cluster) = &context.watches.cluster else {
        return;
    };
    let store = cluster.inventories.store().clone();
    let rows = super::triggers::on_row_changes(
        context.runtime.store(),
        store.clone(),
        context.options.row_change_throttle,
    );
    let (snapshot, database, event) = (store.clone(), store.clone(), store.clone());
    let (by_target, by_cluster_scope, by_scope) = (store.clone(), store.clone(), store.clone());
    let namespaces = namespace_changes(&context, store.clone());
    let results = Controller::for_shared_stream(cluster.inventories.touched_in_spec(), store)
        .with_config(Config::default().concurrency(context.options.max_concurrent_reconciles_inventory))
        .watches_shared_stream(context.watches.snapshot_sinks.touched(), move |s| {
            bound_to(&snapshot, SinkFamily::Snapshot, &*s)
        })
        .watches_shared_stream(context.watches.database_sinks.touched(), move |s| {
            bound_to(&database, SinkFamily::Database, &*s)
        })
        .watches_shared_stream(context.watches.event_sinks.touched(), move |s| {
            bound_to(&event, SinkFamily::Event, &*s)
        })
        // Target selection, the scope and the interval floor may change with any of these.
        .watches_shared_stream(cluster.targets.touched(), move |_| every(&by_target))
        .watches_shared_stream(cluster.scopes.touched(), move |_| every(&by_cluster_scope))
        .watches_shared_stream(context.watches.scopes.touched(), move |scope| {
            let namespace = scope.namespace().unwrap_or_default();
            by_scope
                .state()
                .into_iter()
                .filter(|i| i.spec.sink_namespace == namespace)
                .map(|i| ObjectRef::from_obj(&*i))
                .collect::<Vec<_>>()
        })
        .reconcile_on(rows)
        .reconcile_on(namespaces)
        .graceful_shutdown_on(context.term.ended())
        .run(
            reconcile,
            error_policy::<KollectClusterInventory>,
            Arc::clone(&context),
        );
    drive(results, CONTROLLER).await;
}

fn every(store: &Store<KollectClusterInventory>) -> Vec<ObjectRef<KollectClusterInventory>> {
    store
        .state()
        .into_iter()
        .map(|i| ObjectRef::from_obj(&*i))
        .collect()
}

/// The cluster inventories binding the sink `sink` of `family` (where their refs resolve).
fn bound_to<S: Resource>(
    store: &Store<KollectClusterInventory>,
    family: SinkFamily,
    sink: &S,
) -> Vec<ObjectRef<KollectClusterInventory>> {
    let namespace = sink.meta().namespace.clone().unwrap_or_default();
    let name = sink.meta().name.clone().unwrap_or_default();
    store
        .state()
        .into_iter()
        .filter(|i| {
            i.bound_refs()
                .iter()
                .any(|b| b.family == family && b.reference.name == name && b.namespace == namespace)
        })
        .map(|i| ObjectRef::from_obj(&*i))
        .collect()
}

async fn reconcile(inventory: Arc<KollectClusterInventory>, context: Arc<Context>) -> Result<Action, Error> {
    tracing::debug!(inventory = %inventory.name_any(), "reconcile");
    let api: Api<KollectClusterInventory> = Api::all(context.client.clone());
    finalized(
        &context,
        CONTROLLER,
        &api,
        finalizers::CLUSTER_INVENTORY,
        inventory,
        |event| async {
            match event {
                Event::Apply(inventory) => apply(&inventory, &api, &context).await,
                Event::Cleanup(inventory) => cleanup(&*inventory, &api, &context).await,
            }
        },
    )
    .await
}

/// A reason the inventory does not export: `Degraded=True/<reason>`.
struct Refusal {
    reason: &'static str,
    message: String,
}

fn refuse(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

async fn apply(
    inventory: &KollectClusterInventory,
    api: &Api<KollectClusterInventory>,
    context: &Context,
) -> Result<Action, Error> {
    let generation = inventory.meta().generation;
    let current = inventory.status.clone();
    let mut next = current.clone().unwrap_or_default();
    next.observed_generation = generation;
    let cluster = context.watches.cluster.as_ref();
    let scope = cluster.and_then(|c| c.scope());

    let checked = if inventory.spec.suspend.unwrap_or(false) {
        Err(refuse(reasons::SUSPENDED, "cluster inventory is suspended"))
    } else {
        check_references(inventory, scope.as_deref(), context)
    };
    if let Err(Refusal { reason, message }) = checked {
        if reason != reasons::SUSPENDED {
            publish(context, inventory, EventType::Warning, reason, &message).await;
        }
        set_degraded(&mut next, reason, &message, generation);
        status::patch_if_changed(api, inventory, current.as_ref(), &next, &context.written).await?;
        return Ok(Action::await_change());
    }

    let selection = match select(inventory, context) {
        Ok(selection) => selection,
        Err(Refusal { reason, message }) => {
            set_degraded(&mut next, reason, &message, generation);
            status::patch_if_changed(api, inventory, current.as_ref(), &next, &context.written).await?;
            return Ok(Action::await_change());
        }
    };
    next.target_count = Some(i64::try_from(selection.targets.len()).unwrap_or(i64::MAX));
    if selection.targets.is_empty() {
        return no_targets(inventory, api, context, next).await;
    }

    let finished = match pass_of(inventory, context) {
        Pass::Running => return Ok(Action::requeue(PASS_POLL)),
        Pass::Finished(pass) => Some(pass),
        Pass::Idle => None,
    };
    let gate = selection.targets.iter().map(|t| {
        GateTarget::new(
            t.name_any(),
            RowOwner::cluster_target(t.name_any()),
            t.spec.is_suspended(),
            t.meta(),
            t.status.as_ref().map(|s| s.conditions.as_slice()),
        )
    });
    let failing = match listing(gate, context) {
        Targets::Waiting(waiting, why) => {
            // As for namespaced inventories: never export before every target has listed.
            if let Some(why) = why {
                waiting_for(
                    &mut next.conditions,
                    "KollectClusterTarget",
                    &waiting,
                    &why,
                    generation,
                );
                status::patch_if_changed(api, inventory, current.as_ref(), &next, &context.written).await?;
            }
            return Ok(Action::requeue(UNSYNCED_RETRY));
        }
        Targets::Listed { failing } => failing,
    };

    // The rows are read after the gate: a target that finished its list meanwhile is complete.
    let owned: Vec<(String, Vec<SharedRow>)> = selection
        .targets
        .iter()
        .map(|t| {
            let owner = RowOwner::cluster_target(t.name_any());
            (
                t.name_any(),
                context.runtime.store().snapshot_of(&[owner]).rows().to_vec(),
            )
        })
        .collect();
    let rolled = rollup(owned, &selection.namespaces, inventory.spec.dedupe);
    next.item_count = Some(i64::try_from(rolled.snapshot.len()).unwrap_or(i64::MAX));
    next.namespace_shard_count = Some(i64::try_from(rolled.shards.len()).unwrap_or(i64::MAX));
    next.namespace_shards = rolled.shards;

    if inventory.spec.sinks.is_empty() {
        let message = format!(
            "rolled up {} item(s) from {} target(s); no sinks are bound",
            rolled.snapshot.len(),
            selection.targets.len()
        );
        status::set_each(
            &mut next.conditions,
            &[(types::READY, true), (types::SYNCED, true)],
            reasons::ROLLED_UP,
            &message,
            generation,
        );
        no_sinks_bound(&mut next, generation);
        status::remove(&mut next.conditions, types::EXPORT_SUCCEEDED);
        status::patch_if_changed(api, inventory, current.as_ref(), &next, &context.written).await?;
        return Ok(Action::await_change());
    }

    let joined = match finished {
        Some(pass) => pass.await,
        None => match start_pass(
            inventory,
            rolled.snapshot,
            floor(inventory, scope.as_deref(), context),
            context,
        )
        .await
        {
            Some(joined) => joined,
            None => return Ok(Action::requeue(PASS_POLL)),
        },
    };
    let outcome = match joined {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::warn!(inventory = %inventory.name_any(), %error, "export pass ended without a report");
            return Ok(Action::requeue(PASS_POLL));
        }
    };
    apply_report(inventory, &mut next, &outcome, generation);
    export_succeeded(&mut next, &outcome.report, generation);
    if status::find(&next.conditions, types::DEGRADED).is_none() {
        let degraded: Vec<String> = selection
            .targets
            .iter()
            .filter(|t| {
                t.status
                    .as_ref()
                    .and_then(|s| status::find(&s.conditions, types::DEGRADED))
                    .is_some_and(|c| c.status == "True" && c.reason != reasons::SUSPENDED)
            })
            .map(|t| t.name_any())
            .collect();
        let problem = failing
            .first()
            .map(|(target, why)| format!("KollectClusterTarget \"{target}\" cannot list its objects: {why}"))
            .or_else(|| {
                (!degraded.is_empty()).then(|| {
                    format!(
                        "KollectClusterTarget(s) {} are degraded and hold no rows",
                        degraded.join(", ")
                    )
                })
            });
        if let Some(message) = problem {
            status::set_parts(
                &mut next.conditions,
                types::DEGRADED,
                true,
                reasons::TARGET_DEGRADED,
                &message,
                generation,
            );
        }
    }
    finish_pass(context, inventory, api, current.as_ref(), next, &outcome).await
}

/// The scope checks on what the inventory references: every static-ref namespace (its profile
/// and each sink) allowed by the cluster scope and watched by this operator, every sink name in
/// the cluster scope's family allowlist.
fn check_references(
    inventory: &KollectClusterInventory,
    scope: Option<&KollectClusterScope>,
    context: &Context,
) -> Result<(), Refusal> {
    if let (Some(scope), Some(profile)) = (scope, &inventory.spec.profile_ref) {
        static_ref_allowed(scope, profile.namespace.as_deref().unwrap_or_default(), "profile")
            .map_err(|m| refuse(reasons::SINK_NAMESPACE_DENIED, m))?;
    }
    for bound in inventory.bound_refs() {
        let name = &bound.reference.name;
        if let Some(scope) = scope {
            static_ref_allowed(scope, &bound.namespace, "sink").map_err(|m| {
                refuse(
                    reasons::SINK_NAMESPACE_DENIED,
                    format!("{} sink \"{name}\": {m}", bound.family.as_str()),
                )
            })?;
            let allowed = match bound.family {
                SinkFamily::Snapshot => &scope.spec.ceiling.snapshot_sink_refs,
                SinkFamily::Database => &scope.spec.ceiling.database_sink_refs,
                SinkFamily::Event => &scope.spec.ceiling.event_sink_refs,
            };
            if !allowed.is_empty() && !allowed.contains(name) {
                return Err(refuse(
                    reasons::SCOPE_SINK_DENIED,
                    format!(
                        "{} sink \"{name}\" is not allowed by KollectClusterScope \"{}\"",
                        bound.family.as_str(),
                        scope.name_any()
                    ),
                ));
            }
        }
        if !manages(context, &bound.namespace) {
            return Err(refuse(
                reasons::SINK_NAMESPACE_DENIED,
                format!(
                    "{} sink \"{name}\" is in namespace {}, which this operator does not watch (--watch-namespaces)",
                    bound.family.as_str(),
                    bound.namespace
                ),
            ));
        }
    }
    Ok(())
}

/// The interval floor: the larger of the `KollectScope` in `sinkNamespace` and the cluster
/// scope's `minExportInterval` (decision A5).
fn floor(
    inventory: &KollectClusterInventory,
    cluster_scope: Option<&KollectClusterScope>,
    context: &Context,
) -> Option<GoDuration> {
    let namespaced = context
        .watches
        .scope_of(&inventory.spec.sink_namespace)
        .and_then(|s| s.spec.ceiling.min_export_interval);
    let cluster = cluster_scope.and_then(|s| s.spec.ceiling.min_export_interval);
    namespaced.max(cluster)
}

/// What the inventory rolls up.
struct Selection {
    /// The selected cluster targets, by name.
    targets: Vec<Arc<KollectClusterTarget>>,
    /// The selected workload namespaces.
    namespaces: BTreeSet<String>,
}

fn selector(field: &str, selector: &LabelSelector) -> Result<Selector, Refusal> {
    Selector::try_from(selector.clone()).map_err(|e| {
        refuse(
            reasons::EXPORT_UNAVAILABLE,
            format!("{field}: invalid label selector: {e}"),
        )
    })
}

/// The namespaces `namespaceSelector` (∩ `namespaces`) selects, and the cluster targets named by
/// `targetRefs` (else matching `targetSelector`, else all) whose own namespace selector matches
/// at least one of them.
fn select(inventory: &KollectClusterInventory, context: &Context) -> Result<Selection, Refusal> {
    let spec = &inventory.spec;
    let namespace_selector = selector("spec.namespaceSelector", &spec.namespace_selector)?;
    let listed: BTreeSet<&str> = spec.namespaces.iter().map(String::as_str).collect();
    let all = context.runtime.namespaces().all();
    let selected: BTreeMap<&String, _> = all
        .iter()
        .filter(|(ns, meta)| {
            (listed.is_empty() || listed.contains(ns.as_str()))
                && manages(context, ns)
                && namespace_selector.matches(&meta.labels)
        })
        .collect();
    let target_selector = spec
        .target_selector
        .as_ref()
        .map(|s| selector("spec.targetSelector", s))
        .transpose()?;
    let mut targets = Vec::new();
    let known = context
        .watches
        .cluster
        .as_ref()
        .map(|c| c.targets.all())
        .unwrap_or_default();
    for target in known {
        let name = target.name_any();
        let chosen = if spec.target_refs.is_empty() {
            target_selector
                .as_ref()
                .is_none_or(|s| s.matches(target.labels()))
        } else {
            spec.target_refs.contains(&name)
        };
        if !chosen {
            continue;
        }
        // A target with an invalid selector collects nothing; its own status says why.
        let Ok(own) = Selector::try_from(target.spec.namespace_selector.clone()) else {
            continue;
        };
        if selected.values().any(|meta| own.matches(&meta.labels)) {
            targets.push(target);
        }
    }
    targets.sort_by_key(|t| t.name_any());
    Ok(Selection {
        targets,
        namespaces: selected.into_keys().cloned().collect(),
    })
}

/// No target is selected: waited for during the bootstrap window, `NoTargets` after it. Nothing
/// is exported either way, so the sinks keep what they hold.
async fn no_targets(
    inventory: &KollectClusterInventory,
    api: &Api<KollectClusterInventory>,
    context: &Context,
    mut next: KollectClusterInventoryStatus,
) -> Result<Action, Error> {
    let generation = inventory.meta().generation;
    let created = inventory
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or_else(Timestamp::now, |t| t.0);
    let age = Timestamp::now().duration_since(created);
    let young = age.as_secs() < i64::try_from(BOOTSTRAP_WINDOW.as_secs()).unwrap_or(i64::MAX);
    let message = "no KollectClusterTarget is selected by targetRefs/targetSelector with a namespaceSelector \
                   matching a selected namespace";
    if young {
        status::set_parts(
            &mut next.conditions,
            types::SYNCED,
            false,
            reasons::PROGRESSING,
            &format!("{message}; waiting for targets"),
            generation,
        );
    } else {
        set_degraded(&mut next, reasons::NO_TARGETS, message, generation);
    }
    let current = inventory.status.clone();
    status::patch_if_changed(api, inventory, current.as_ref(), &next, &context.written).await?;
    Ok(Action::requeue(NO_TARGETS_REQUEUE))
}

/// `ExportSucceeded`: true when every sink exported or was debounced, `PartiallySynced` when
/// some failed, false when all failed.
fn export_succeeded(
    next: &mut KollectClusterInventoryStatus,
    report: &ExportReport,
    generation: Option<i64>,
) {
    let (ok, reason, message) = match (report.exported() + report.debounced(), report.failed()) {
        (_, 0) => (
            true,
            reasons::EXPORTED,
            format!(
                "{} item(s) current in {} sink(s)",
                report.item_count,
                report.sinks.len()
            ),
        ),
        (0, failed) => (
            false,
            reasons::EXPORT_FAILED,
            format!("{failed} sink(s) failed export"),
        ),
        (done, failed) => (
            true,
            reasons::PARTIALLY_SYNCED,
            format!("{done}/{} sinks current; {failed} failed", done + failed),
        ),
    };
    status::set_parts(
        &mut next.conditions,
        types::EXPORT_SUCCEEDED,
        ok,
        reason,
        &message,
        generation,
    );
}

/// A degraded cluster inventory: `Degraded=True/<reason>`, `Synced=False`, and `Ready` removed
/// (as the Go operator does for this kind).
fn set_degraded(
    next: &mut KollectClusterInventoryStatus,
    reason: &'static str,
    message: &str,
    generation: Option<i64>,
) {
    status::set_each(
        &mut next.conditions,
        &[(types::DEGRADED, true), (types::SYNCED, false)],
        reason,
        message,
        generation,
    );
    status::remove(&mut next.conditions, types::READY);
}

/// The merged rows and their per-namespace summary.
#[derive(Debug)]
struct Rollup {
    snapshot: Snapshot,
    shards: Vec<NamespaceShardStatus>,
}

/// Merges the rows of the targets (given in name order) in `namespaces`. `byResourceUID` keeps
/// one row per (namespace, uid): the target that sorts last by name wins, so the choice does not
/// depend on the order rows arrived in. Each shard is summarised with its item and contributing
/// target counts and the items fingerprint of its rows.
fn rollup(
    targets: Vec<(String, Vec<SharedRow>)>,
    namespaces: &BTreeSet<String>,
    dedupe: DedupeMode,
) -> Rollup {
    let mut contributors: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut kept: Vec<SharedRow> = Vec::new();
    let mut by_uid: BTreeMap<(String, String), SharedRow> = BTreeMap::new();
    for (target, rows) in targets {
        for row in rows {
            if !namespaces.contains(row.namespace()) {
                continue;
            }
            contributors
                .entry(row.namespace().to_owned())
                .or_default()
                .insert(target.clone());
            match dedupe {
                DedupeMode::KeepAll => kept.push(row),
                DedupeMode::ByResourceUid => {
                    by_uid.insert((row.namespace().to_owned(), row.uid().to_owned()), row);
                }
            }
        }
    }
    kept.extend(by_uid.into_values());
    let mut per_namespace: BTreeMap<String, Vec<SharedRow>> = BTreeMap::new();
    for row in &kept {
        per_namespace
            .entry(row.namespace().to_owned())
            .or_default()
            .push(row.clone());
    }
    let shards = per_namespace
        .into_iter()
        .map(|(namespace, rows)| {
            let shard = Snapshot::from_shared(rows);
            NamespaceShardStatus {
                target_count: contributors
                    .get(&namespace)
                    .map(|t| i64::try_from(t.len()).unwrap_or(i64::MAX)),
                item_count: Some(i64::try_from(shard.len()).unwrap_or(i64::MAX)),
                checksum: Some(shard.fingerprint().as_str().to_owned()),
                namespace,
            }
        })
        .collect();
    Rollup {
        snapshot: Snapshot::from_shared(kept),
        shards,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kollect_core::model::{Attributes, Row};

    fn row(target: &str, namespace: &str, name: &str, uid: &str, value: &str) -> SharedRow {
        let mut attributes = Attributes::new();
        attributes.insert("v".into(), serde_json::json!(value));
        Row {
            target_namespace: String::new(),
            target_name: target.into(),
            namespace: namespace.into(),
            name: name.into(),
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            uid: uid.into(),
            attributes: Some(attributes),
        }
        .into()
    }

    fn input() -> Vec<(String, Vec<SharedRow>)> {
        vec![
            (
                "a".into(),
                vec![
                    row("a", "team-a", "web", "u1", "from-a"),
                    row("a", "team-b", "api", "u2", "from-a"),
                    row("a", "other", "x", "u9", "from-a"),
                ],
            ),
            ("b".into(), vec![row("b", "team-a", "web", "u1", "from-b")]),
        ]
    }

    fn namespaces() -> BTreeSet<String> {
        ["team-a".to_owned(), "team-b".to_owned()].into()
    }

    #[test]
    fn keep_all_keeps_every_row_in_the_selected_namespaces() {
        let rolled = rollup(input(), &namespaces(), DedupeMode::KeepAll);
        assert_eq!(rolled.snapshot.len(), 3);
        assert!(rolled.snapshot.rows().iter().all(|r| r.namespace() != "other"));
        let team_a = &rolled.shards[0];
        assert_eq!(team_a.namespace, "team-a");
        assert_eq!((team_a.item_count, team_a.target_count), (Some(2), Some(2)));
        assert_eq!(rolled.shards[1].namespace, "team-b");
        assert_eq!(rolled.shards.len(), 2);
    }

    #[test]
    fn by_resource_uid_keeps_one_row_per_object_from_the_last_target_by_name() {
        let rolled = rollup(input(), &namespaces(), DedupeMode::ByResourceUid);
        assert_eq!(rolled.snapshot.len(), 2);
        let web = rolled
            .snapshot
            .rows()
            .iter()
            .find(|r| r.uid() == "u1")
            .expect("the deduplicated row");
        assert_eq!(web.target_name(), "b");
        assert_eq!(rolled.shards[0].item_count, Some(1));
        assert_eq!(rolled.shards[0].target_count, Some(2));
    }

    #[test]
    fn shard_checksums_are_the_items_fingerprints_of_their_rows() {
        let rolled = rollup(input(), &namespaces(), DedupeMode::KeepAll);
        let team_b = Snapshot::from_shared(vec![row("a", "team-b", "api", "u2", "from-a")]);
        assert_eq!(
            rolled.shards[1].checksum.as_deref(),
            Some(team_b.fingerprint().as_str())
        );
        let changed = rollup(
            vec![("a".into(), vec![row("a", "team-b", "api", "u2", "changed")])],
            &namespaces(),
            DedupeMode::KeepAll,
        );
        assert_ne!(changed.shards[0].checksum, rolled.shards[1].checksum);
    }
}
