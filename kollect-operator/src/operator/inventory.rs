//! The `KollectInventory` controller: every row collected by the targets of the inventory's
//! namespace, exported to every bound sink through the export engine (coalescing, partitioning,
//! deltas, retries, breakers), with status as docs/src/operator.md describes it (decisions A11, A12, X3 and X7).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kollect_collect::runtime::Partition;
use kollect_core::api::v1alpha1::{
    KollectInventory, KollectInventoryStatus, KollectScope, SinkExportStatus, SinkFamily,
};
use kollect_core::api::{condition_types as types, finalizers, reasons};
use kollect_core::collect::RowOwner;
use kollect_core::error::ErrorClass;
use kollect_core::export::{
    Binding, BindingKey, ConditionSpec, ExportReport, InventoryExporter, SinkOutcome, SinkReport,
    effective_ceiling, effective_interval,
};
use kollect_core::model::Checksum;
use kollect_core::sink::InventoryRef;
use kube::api::Api;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::sinks::ResolveError;
use super::target::manages;
use super::triggers::{drive, in_namespace};
use super::{Context, Error, publish, status};

const CONTROLLER: &str = "kollectinventory";
const KIND: &str = "KollectInventory";

/// Rows in one inventory at which splitting it is suggested (`ExportShardWarning`).
pub const SHARD_WARNING_ROWS: usize = 1800;

/// How soon an inventory waiting for its targets' first list looks again.
const UNSYNCED_RETRY: Duration = Duration::from_secs(1);

/// How long a reconcile waits for its export pass before it leaves the pass running and frees
/// its reconcile slot (a slow sink must not delay other inventories).
const PASS_BUDGET: Duration = Duration::from_secs(5);

/// How soon a reconcile looks again at a pass left running.
const PASS_POLL: Duration = Duration::from_secs(1);

/// How soon a pending cleanup is retried.
const CLEANUP_RETRY: Duration = Duration::from_secs(5);

/// Runs the controller until the term ends.
pub async fn run(context: Arc<Context>) {
    let watches = &context.watches;
    let store = watches.inventories.store().clone();
    let rows = super::triggers::on_row_changes(
        context.runtime.store(),
        store.clone(),
        context.options.row_change_debounce,
    );
    let (snapshot, database, event) = (store.clone(), store.clone(), store.clone());
    let (by_scope, by_target) = (store.clone(), store.clone());
    let results = Controller::for_shared_stream(watches.inventories.touched(), store)
        .with_config(Config::default().concurrency(context.options.max_concurrent_reconciles_inventory))
        .watches_shared_stream(watches.snapshot_sinks.touched(), move |s| {
            bound_to(&snapshot, SinkFamily::Snapshot, &*s)
        })
        .watches_shared_stream(watches.database_sinks.touched(), move |s| {
            bound_to(&database, SinkFamily::Database, &*s)
        })
        .watches_shared_stream(watches.event_sinks.touched(), move |s| {
            bound_to(&event, SinkFamily::Event, &*s)
        })
        .watches_shared_stream(watches.scopes.touched(), move |s| {
            in_namespace(&by_scope, s.namespace().as_deref())
        })
        // A target that lists, fails or goes away changes what the inventory may export.
        .watches_shared_stream(watches.targets.touched(), move |t| {
            in_namespace(&by_target, t.namespace().as_deref())
        })
        .reconcile_on(rows)
        .graceful_shutdown_on(context.term.ended())
        .run(reconcile, error_policy, Arc::clone(&context));
    drive(results, CONTROLLER).await;
}

/// The inventories binding the sink `sink` of `family`.
fn bound_to<S: Resource>(
    store: &Store<KollectInventory>,
    family: SinkFamily,
    sink: &S,
) -> Vec<ObjectRef<KollectInventory>> {
    let namespace = sink.meta().namespace.clone();
    let name = sink.meta().name.clone().unwrap_or_default();
    store
        .state()
        .into_iter()
        .filter(|i| {
            i.namespace() == namespace && i.spec.sinks.iter().any(|(f, r)| f == family && r.name == name)
        })
        .map(|i| ObjectRef::from_obj(&*i))
        .collect()
}

fn error_policy(inventory: Arc<KollectInventory>, error: &Error, context: Arc<Context>) -> Action {
    if error.is_terminal() {
        context.collect_metrics.reconcile_error(KIND, "terminal");
        return Action::await_change();
    }
    tracing::warn!(%error, "inventory reconcile failed");
    context.collect_metrics.reconcile_error(KIND, "transient");
    Action::requeue(context.backoff.after_failure(&*inventory, CLEANUP_RETRY))
}

async fn reconcile(inventory: Arc<KollectInventory>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = inventory.namespace().unwrap_or_default();
    if !manages(&context, &namespace) {
        return Ok(Action::await_change());
    }
    let mut guard = context.metrics.start(CONTROLLER);
    tracing::debug!(inventory = %key_of(&inventory), "reconcile");
    let api: Api<KollectInventory> = Api::namespaced(context.client.clone(), &namespace);
    let subject = Arc::clone(&inventory);
    let result = finalizer(&api, finalizers::INVENTORY, inventory, |event| async {
        match event {
            Event::Apply(inventory) => apply(&inventory, &api, &context).await,
            Event::Cleanup(inventory) => cleanup(&inventory, &api, &context).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        guard.succeeded();
        context.backoff.succeeded(&*subject);
    }
    result
}

fn key_of(inventory: &KollectInventory) -> String {
    format!(
        "{}/{}",
        inventory.namespace().unwrap_or_default(),
        inventory.name_any()
    )
}

/// The inventory's exporter, seeded from `status.sinkExports[]` when this process has none yet
/// (decision X7: a restarted operator does not re-export unchanged content).
fn exporter_of(
    inventory: &KollectInventory,
    context: &Context,
) -> Arc<tokio::sync::Mutex<InventoryExporter>> {
    context.exporter(&key_of(inventory), || {
        let reference =
            InventoryRef::namespaced(inventory.namespace().unwrap_or_default(), inventory.name_any());
        let mut exporter = InventoryExporter::new(reference, KIND, context.export_metrics.clone());
        if let Some(status) = &inventory.status {
            let generation = status.observed_generation.unwrap_or_default();
            for export in &status.sink_exports {
                if let (Some(key), Some(time), Some(checksum)) = (
                    parse_export_key(&export.name),
                    &export.last_export_time,
                    &export.last_checksum,
                ) {
                    exporter.seed(key, time.0, Checksum::from_hex(checksum.clone()), generation);
                }
            }
        }
        exporter
    })
}

/// `snapshot/inventory-git` → the binding key.
fn parse_export_key(name: &str) -> Option<BindingKey> {
    let (family, sink) = name.split_once('/')?;
    let family = match family {
        "snapshot" => SinkFamily::Snapshot,
        "database" => SinkFamily::Database,
        "event" => SinkFamily::Event,
        _ => return None,
    };
    Some(BindingKey::new(family, sink))
}

/// A binding that could not be resolved this pass: it fails on its own; the others export.
struct Unresolved {
    index: usize,
    report: SinkReport,
    reason: &'static str,
    message: String,
}

/// Resolves every bound sink. Scope denials stop the pass (`Err`); sinks that cannot be built
/// become failed bindings.
async fn bindings(
    inventory: &KollectInventory,
    scope: Option<&KollectScope>,
    exporter: &InventoryExporter,
    context: &Context,
) -> Result<(Vec<(usize, Binding)>, Vec<Unresolved>), (&'static str, String)> {
    let namespace = inventory.namespace().unwrap_or_default();
    let floor = scope.and_then(|s| s.spec.ceiling.min_export_interval);
    let mut resolved = Vec::new();
    let mut unresolved = Vec::new();
    for (index, (family, reference)) in inventory.spec.sinks.iter().enumerate() {
        if let Some(scope) = scope {
            let allowed = match family {
                SinkFamily::Snapshot => &scope.spec.ceiling.snapshot_sink_refs,
                SinkFamily::Database => &scope.spec.ceiling.database_sink_refs,
                SinkFamily::Event => &scope.spec.ceiling.event_sink_refs,
            };
            if !allowed.is_empty() && !allowed.contains(&reference.name) {
                return Err((
                    reasons::SCOPE_SINK_DENIED,
                    format!(
                        "{} sink \"{}\" is not allowed by KollectScope \"{}\"",
                        family.as_str(),
                        reference.name,
                        scope.name_any()
                    ),
                ));
            }
        }
        let key = BindingKey::new(family, &reference.name);
        let interval_of = |sink_interval| {
            effective_interval(
                reference.export_min_interval,
                sink_interval,
                Some(inventory.spec.export_min_interval),
                floor,
            )
        };
        match context.resolve_sink(family, &namespace, &reference.name).await {
            Ok(resolved_sink) => resolved.push((
                index,
                Binding {
                    key,
                    interval: interval_of(resolved_sink.cr.common().export_min_interval),
                    ceiling: effective_ceiling(
                        reference.max_export_bytes,
                        inventory.spec.max_export_bytes,
                        context.options.max_export_bytes,
                    ),
                    sink: resolved_sink.sink,
                },
            )),
            Err(error) => {
                let state = exporter.state(&key);
                let class = error.class();
                unresolved.push(Unresolved {
                    index,
                    reason: error.inventory_reason(),
                    message: error.to_string(),
                    report: SinkReport {
                        interval: interval_of(None),
                        last_export: state.map(|s| s.last_export),
                        last_checksum: state.map(|s| s.last_checksum.clone()),
                        outcome: SinkOutcome::Failed {
                            class,
                            message: error.to_string(),
                        },
                        key,
                    },
                });
            }
        }
    }
    Ok((resolved, unresolved))
}

async fn apply(
    inventory: &KollectInventory,
    api: &Api<KollectInventory>,
    context: &Context,
) -> Result<Action, Error> {
    let namespace = inventory.namespace().unwrap_or_default();
    let generation = inventory.meta().generation;
    let current = inventory.status.clone();
    let mut next = current.clone().unwrap_or_default();
    next.observed_generation = generation;
    let partition = Partition::Namespace(namespace.clone());
    let rows = context.runtime.store().partition_len(&partition);
    next.item_count = Some(i64::try_from(rows).unwrap_or(i64::MAX));

    if inventory.spec.is_suspended() {
        set_degraded(
            &mut next,
            reasons::SUSPENDED,
            "inventory is suspended",
            generation,
        );
        status::patch_if_changed(api, inventory, current.as_ref(), &next, &context.written).await?;
        return Ok(Action::await_change());
    }
    let scope = context.watches.scope_of(&namespace);
    if inventory.spec.sinks.is_empty() {
        shard_warning(inventory, &mut next, rows, context).await;
        status::set(
            &mut next.conditions,
            &ExportReport::no_sinks_condition(),
            generation,
        );
        status::set_parts(
            &mut next.conditions,
            types::SINK_REACHABLE,
            true,
            reasons::NO_SINKS_CONFIGURED,
            "no sinks are bound",
            generation,
        );
        status::remove(&mut next.conditions, types::DEGRADED);
        next.sink_exports.clear();
        status::patch_if_changed(api, inventory, current.as_ref(), &next, &context.written).await?;
        return Ok(Action::await_change());
    }

    let key = key_of(inventory);
    let finished = match context.passes.take(&key) {
        Some(pass) if !pass.is_finished() => {
            context.passes.keep(key, pass);
            return Ok(Action::requeue(PASS_POLL));
        }
        finished => finished,
    };
    let failing = match targets_of(&namespace, context) {
        Targets::Waiting(waiting, why) => {
            // Exporting before the rows are listed would send a partial (after a restart:
            // empty) inventory and delete what the sinks hold, so nothing is exported until the
            // lists finish. A first list normally takes moments and is not worth a status
            // write; one that keeps failing is named, with its error.
            tracing::debug!(inventory = %key, target = %waiting, "waiting for the target's first list");
            if let Some(why) = why {
                status::set_parts(
                    &mut next.conditions,
                    types::SYNCED,
                    false,
                    reasons::PROGRESSING,
                    &format!(
                        "waiting for the first list of KollectTarget \"{waiting}\", which is retried: {why}"
                    ),
                    generation,
                );
                status::patch_if_changed(api, inventory, current.as_ref(), &next, &context.written).await?;
            }
            return Ok(Action::requeue(UNSYNCED_RETRY));
        }
        Targets::Listed { failing } => failing,
    };
    // The rows are read after the gate: a target that finished its list meanwhile is complete.
    let view = context.runtime.store().snapshot(&partition);
    let rows = view.snapshot.len();
    next.item_count = Some(i64::try_from(rows).unwrap_or(i64::MAX));
    shard_warning(inventory, &mut next, rows, context).await;
    let joined = match finished {
        Some(pass) => pass.await,
        None => {
            let exporter = exporter_of(inventory, context).lock_owned().await;
            let (resolved, unresolved) = match bindings(inventory, scope.as_deref(), &exporter, context).await
            {
                Ok(found) => found,
                Err((reason, message)) => {
                    publish(context, inventory, EventType::Warning, reason, &message).await;
                    set_degraded(&mut next, reason, &message, generation);
                    status::patch_if_changed(api, inventory, current.as_ref(), &next, &context.written)
                        .await?;
                    return Ok(Action::await_change());
                }
            };
            let mut pass = tokio::spawn(run_pass(
                exporter,
                inventory.clone(),
                view.snapshot.clone(),
                resolved,
                unresolved,
            ));
            match tokio::time::timeout(PASS_BUDGET, &mut pass).await {
                Ok(joined) => joined,
                Err(_) => {
                    // A slow sink: leave the pass running and free this reconcile slot.
                    tracing::debug!(inventory = %key, "export pass outlasts its budget; left running");
                    context.passes.keep(key, pass);
                    return Ok(Action::requeue(PASS_POLL));
                }
            }
        }
    };
    let PassOutcome { report, unresolved } = match joined {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::warn!(inventory = %key, %error, "export pass ended without a report");
            return Ok(Action::requeue(PASS_POLL));
        }
    };
    apply_report(&mut next, &report, current.as_ref(), generation);
    if let Some((reason, message)) = &unresolved
        && report.exported() == 0
        && report.debounced() == 0
    {
        // Nothing went out and a sink could not even be resolved: name that reason.
        status::set_each(
            &mut next.conditions,
            &[(types::DEGRADED, true), (types::SINK_REACHABLE, false)],
            reason,
            message,
            generation,
        );
    }
    if let Some((target, why)) = failing.first()
        && status::find(&next.conditions, types::DEGRADED).is_none()
    {
        // The rows of the targets that listed went out; say which target has none and why.
        status::set_parts(
            &mut next.conditions,
            types::DEGRADED,
            true,
            reasons::TARGET_DEGRADED,
            &format!(
                "KollectTarget \"{target}\" cannot list its objects, so the export holds no rows of it: {why}"
            ),
            generation,
        );
    }
    record_outcome(context, inventory, &report).await;
    status::patch_if_changed(api, inventory, current.as_ref(), &next, &context.written).await?;
    Ok(report
        .requeue_after()
        .map_or_else(Action::await_change, Action::requeue))
}

/// What an export pass hands back to the reconcile that applies it.
#[derive(Debug)]
pub(crate) struct PassOutcome {
    /// Every binding's outcome in binding order, unresolved sinks included.
    report: ExportReport,
    /// The reason and message of the first sink that could not be resolved.
    unresolved: Option<(&'static str, String)>,
}

/// Runs one export pass of `snapshot` to the resolved bindings, holding the inventory's
/// exporter for the whole pass (passes of one inventory never overlap).
async fn run_pass(
    mut exporter: tokio::sync::OwnedMutexGuard<InventoryExporter>,
    inventory: KollectInventory,
    snapshot: kollect_core::model::Snapshot,
    resolved: Vec<(usize, Binding)>,
    unresolved: Vec<Unresolved>,
) -> PassOutcome {
    let keys: Vec<BindingKey> = inventory
        .spec
        .sinks
        .iter()
        .map(|(family, r)| BindingKey::new(family, &r.name))
        .collect();
    exporter.retain_bindings(&keys);
    let (indices, bound): (Vec<usize>, Vec<Binding>) = resolved.into_iter().unzip();
    let key = key_of(&inventory);
    tracing::debug!(inventory = %key, rows = snapshot.len(), sinks = bound.len(), "export pass");
    let generation = inventory.meta().generation.unwrap_or_default();
    let passed = exporter
        .export(&snapshot, generation, &bound, Timestamp::now())
        .await;
    tracing::debug!(
        inventory = %key,
        exported = passed.exported(),
        debounced = passed.debounced(),
        failed = passed.failed(),
        "export pass finished"
    );
    // Reassemble the pass in binding order, unresolved sinks included.
    let mut ordered: Vec<(usize, SinkReport)> = indices.into_iter().zip(passed.sinks).collect();
    ordered.extend(unresolved.iter().map(|u| (u.index, u.report.clone())));
    ordered.sort_by_key(|(index, _)| *index);
    PassOutcome {
        report: ExportReport {
            sinks: ordered.into_iter().map(|(_, r)| r).collect(),
            item_count: passed.item_count,
        },
        unresolved: unresolved.first().map(|u| (u.reason, u.message.clone())),
    }
}

/// Where the targets of a namespace stand before an export.
enum Targets {
    /// A target's rows are not listed yet: registered but its first list has not finished (and
    /// has not failed), or not registered although its status does not say it cannot collect
    /// (the target controller has not seen it yet in this leadership term); with the error of a
    /// list that is being retried.
    Waiting(String, Option<String>),
    /// Every target has listed or is in a known state; `failing` names the targets whose list
    /// is forbidden, with why. They hold no rows, so exporting the others loses nothing.
    Listed {
        /// `(target, reason)` pairs.
        failing: Vec<(String, String)>,
    },
}

/// Suspended, deleted and degraded targets hold no rows and never make an inventory wait.
fn targets_of(namespace: &str, context: &Context) -> Targets {
    let mut failing = Vec::new();
    for target in context.watches.targets.in_namespace(namespace) {
        if target.spec.suspend.unwrap_or(false) || target.meta().deletion_timestamp.is_some() {
            continue;
        }
        let name = target.name_any();
        match context.runtime.report(&RowOwner::target(namespace, &name)) {
            Some(report) if report.synced || report.unresolved.is_some() => {}
            // Forbidden is a known state (it needs a change of permissions); a list that fails
            // otherwise is retried, and exporting before it succeeds could delete rows the
            // sinks hold for the target.
            Some(report) => match report.forbidden_namespaces.values().next() {
                Some(why) => failing.push((name, why.clone())),
                None => return Targets::Waiting(name, report.watch_error.clone()),
            },
            None => {
                let degraded = target
                    .status
                    .as_ref()
                    .and_then(|s| status::find(&s.conditions, types::DEGRADED))
                    .is_some_and(|c| c.status == "True");
                if !degraded {
                    return Targets::Waiting(name, None);
                }
            }
        }
    }
    Targets::Listed { failing }
}

/// Warns (condition, event, metric) when the namespace holds enough rows to warrant splitting.
async fn shard_warning(
    inventory: &KollectInventory,
    next: &mut KollectInventoryStatus,
    rows: usize,
    context: &Context,
) {
    let generation = inventory.meta().generation;
    if rows >= SHARD_WARNING_ROWS {
        let message = format!(
            "{rows} rows in namespace {}; consider splitting it (warning at {SHARD_WARNING_ROWS})",
            inventory.namespace().unwrap_or_default()
        );
        let newly = status::find(&next.conditions, types::EXPORT_SHARD_WARNING).is_none();
        status::set_parts(
            &mut next.conditions,
            types::EXPORT_SHARD_WARNING,
            true,
            reasons::APPROACHING_EXPORT_CAP,
            &message,
            generation,
        );
        if newly {
            context.metrics.shard_warning();
            publish(
                context,
                inventory,
                EventType::Warning,
                reasons::APPROACHING_EXPORT_CAP,
                &message,
            )
            .await;
        }
    } else {
        status::remove(&mut next.conditions, types::EXPORT_SHARD_WARNING);
    }
}

/// Writes the pass outcome into the status (conditions, `sinkExports[]`, `lastExportTime`).
fn apply_report(
    next: &mut KollectInventoryStatus,
    report: &ExportReport,
    current: Option<&KollectInventoryStatus>,
    generation: Option<i64>,
) {
    status::set(&mut next.conditions, &report.synced(), generation);
    if let Some(ready) = report.ready() {
        status::set(&mut next.conditions, &ready, generation);
    }
    match report.degraded() {
        Some(degraded) => status::set(&mut next.conditions, &degraded, generation),
        None => status::remove(&mut next.conditions, types::DEGRADED),
    }
    status::set(&mut next.conditions, &report.sink_reachable(), generation);
    let previous = current.map(|s| s.sink_exports.as_slice()).unwrap_or_default();
    next.sink_exports = report
        .sinks
        .iter()
        .map(|sink| {
            let name = sink.key.export_name();
            let mut conditions = previous
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.conditions.clone())
                .unwrap_or_default();
            status::set(&mut conditions, &sink.synced_condition(), generation);
            SinkExportStatus {
                name,
                namespace: None,
                last_export_time: sink.last_export.map(Time),
                last_checksum: sink.last_checksum.as_ref().map(|c| c.as_str().to_owned()),
                conditions,
            }
        })
        .collect();
    if let Some(time) = report.last_export_time() {
        next.last_export_time = Some(Time(time));
    }
}

/// Events and error metrics of a pass.
async fn record_outcome(context: &Context, inventory: &KollectInventory, report: &ExportReport) {
    for sink in &report.sinks {
        if let SinkOutcome::Failed { class, .. } = &sink.outcome {
            let class = match class {
                ErrorClass::Terminal => "terminal",
                ErrorClass::Forbidden => "forbidden",
                _ => "transient",
            };
            context.collect_metrics.reconcile_error(KIND, class);
        }
    }
    if report.failed() > 0 {
        let ConditionSpec { message, .. } = report.sink_reachable();
        publish(
            context,
            inventory,
            EventType::Warning,
            reasons::EXPORT_FAILED,
            &message,
        )
        .await;
    }
    if report.exported() > 0 {
        let message = format!(
            "exported {} item(s) to {} sink(s)",
            report.item_count,
            report.exported()
        );
        publish(
            context,
            inventory,
            EventType::Normal,
            reasons::EXPORT_SUCCEEDED,
            &message,
        )
        .await;
    }
}

fn set_degraded(
    next: &mut KollectInventoryStatus,
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
    if reason != reasons::SUSPENDED {
        status::set_parts(
            &mut next.conditions,
            types::SINK_REACHABLE,
            false,
            reason,
            message,
            generation,
        );
    }
}

/// Removes what the inventory exported from every bound sink (decision X3). A pending sink keeps
/// the finalizer and retries; a terminal failure keeps it until someone intervenes.
async fn cleanup(
    inventory: &KollectInventory,
    api: &Api<KollectInventory>,
    context: &Context,
) -> Result<Action, Error> {
    let namespace = inventory.namespace().unwrap_or_default();
    let generation = inventory.meta().generation;
    // A pass still running would hold the exporter (and write to the sinks) while we remove.
    context.passes.abort(&key_of(inventory));
    let mut bound = Vec::new();
    let mut pending = Vec::new();
    let mut unsupported = Vec::new();
    for (family, reference) in inventory.spec.sinks.iter() {
        match context.resolve_sink(family, &namespace, &reference.name).await {
            Ok(resolved) => bound.push(Binding {
                key: BindingKey::new(family, &reference.name),
                sink: resolved.sink,
                interval: Duration::ZERO,
                ceiling: context.options.max_export_bytes,
            }),
            // No backend of this build ever wrote to it, so there is nothing of ours to
            // remove; waiting would block the deletion for ever.
            Err(error @ ResolveError::Unsupported(_)) => unsupported.push(error.to_string()),
            Err(error) => pending.push(error.to_string()),
        }
    }
    let exporter = exporter_of(inventory, context);
    let report = exporter
        .lock()
        .await
        .remove(&bound, generation.unwrap_or_default())
        .await;
    let failures: Vec<String> = report
        .results
        .iter()
        .filter_map(|(key, result)| {
            result
                .as_ref()
                .err()
                .map(|e| format!("{}: {}", key.export_name(), e.message()))
        })
        .collect();
    if report.has_terminal_failure() {
        let message = format!("could not remove the exported content: {}", failures.join("; "));
        publish(
            context,
            inventory,
            EventType::Warning,
            reasons::CLEANUP_TERMINAL,
            &message,
        )
        .await;
        let current = inventory.status.clone();
        let mut next = current.clone().unwrap_or_default();
        status::set_parts(
            &mut next.conditions,
            types::DEGRADED,
            true,
            reasons::CLEANUP_TERMINAL,
            &message,
            generation,
        );
        status::patch_if_changed(api, inventory, current.as_ref(), &next, &context.written).await?;
        return Err(Error::CleanupTerminal(message));
    }
    pending.extend(failures);
    if !pending.is_empty() {
        return Err(Error::CleanupPending(pending.join("; ")));
    }
    if !unsupported.is_empty() {
        let message = format!(
            "inventory deleted without removing anything from sinks this build does not support: {}",
            unsupported.join("; ")
        );
        publish(
            context,
            inventory,
            EventType::Warning,
            reasons::SINK_TYPE_UNSUPPORTED,
            &message,
        )
        .await;
    }
    context.forget_exporter(&key_of(inventory));
    context.written.forget(inventory);
    Ok(Action::await_change())
}
