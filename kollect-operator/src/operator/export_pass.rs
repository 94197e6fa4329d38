//! What the two inventory controllers share: resolving the bound sinks, running an export pass
//! through the export engine (left running when it outlasts its budget), writing the pass into
//! the status, and removing the exported content on deletion (decision X3).
//!
//! [`Exporting`] is the seam: `KollectInventory` and `KollectClusterInventory` differ in which
//! rows they export and where their sink refs resolve, not in how a pass runs.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kollect_core::GoDuration;
use kollect_core::api::v1alpha1::{
    InventorySinkRef, KollectClusterInventory, KollectClusterInventoryStatus, KollectInventory,
    KollectInventoryStatus, SinkExportStatus, SinkFamily,
};
use kollect_core::api::{condition_types as types, reasons};
use kollect_core::error::ErrorClass;
use kollect_core::export::{
    Binding, BindingKey, ConditionSpec, ExportReport, InventoryExporter, SinkOutcome, SinkReport,
    effective_ceiling, effective_interval,
};
use kollect_core::model::{Checksum, Snapshot};
use kollect_core::sink::InventoryRef;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::sinks::ResolveError;
use super::{Context, Error, publish, status};

/// How long a reconcile waits for its export pass before it leaves the pass running and frees
/// its reconcile slot (a slow sink must not delay other inventories).
const PASS_BUDGET: Duration = Duration::from_secs(5);

/// How soon a reconcile looks again at a pass left running.
pub(super) const PASS_POLL: Duration = Duration::from_secs(1);

/// How soon an inventory is looked at again after a pass that exported or a status write. The
/// inventory's own status writes do not trigger reconciles (that made passes run back to back
/// under a steady stream of row changes), so this look records the settled state (its sinks now
/// debounced), from the object as written, instead of leaving it to the watchdog.
const SETTLE: Duration = Duration::from_secs(1);

/// What a reconcile that ran a pass returns: the earliest time a sink is due again, and no later
/// than [`SETTLE`] when anything was exported or the status was written.
fn next_action(report: &ExportReport, wrote_status: bool) -> Action {
    let due = report.requeue_after();
    let due = if wrote_status || report.exported() > 0 {
        Some(due.map_or(SETTLE, |due| due.min(SETTLE)))
    } else {
        due
    };
    due.map_or_else(Action::await_change, Action::requeue)
}

/// What a reconcile whose status write was held back returns: look again when the progress is
/// due, or sooner when a sink is.
fn held_action(report: &ExportReport, wait: Duration) -> Action {
    Action::requeue(report.requeue_after().map_or(wait, |due| due.min(wait)))
}

/// How soon a pending cleanup is retried.
pub(super) const CLEANUP_RETRY: Duration = Duration::from_secs(5);

/// A sink ref of an inventory and the namespace it resolves in.
pub(super) struct BoundRef<'a> {
    /// The family list it is in.
    pub(super) family: SinkFamily,
    /// The ref.
    pub(super) reference: &'a InventorySinkRef,
    /// Where the sink is looked up.
    pub(super) namespace: String,
}

/// The export part of an inventory status, the same in both kinds.
pub(super) trait ExportStatus: Default + Clone + PartialEq + Serialize {
    /// `status.conditions`.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// `status.sinkExports[]`.
    fn sink_exports(&self) -> &[SinkExportStatus];
    /// `status.sinkExports[]`, to rewrite.
    fn sink_exports_mut(&mut self) -> &mut Vec<SinkExportStatus>;
    /// `status.lastExportTime`.
    fn last_export_time_mut(&mut self) -> &mut Option<Time>;
    /// `status.observedGeneration`.
    fn observed_generation(&self) -> Option<i64>;
    /// `status.lastExportTime`.
    fn last_export_time(&self) -> Option<&Time>;
    /// `status.itemCount`.
    fn item_count(&self) -> Option<i64>;
    /// `status.itemCount`, to rewrite.
    fn item_count_mut(&mut self) -> &mut Option<i64>;
    /// `status.conditions`.
    fn conditions(&self) -> &[Condition];

    /// Replaces what healthy exports move on every pass (see [`held_progress`]) with `other`'s.
    fn take_progress_from(&mut self, other: &Self) {
        *self.last_export_time_mut() = other.last_export_time().cloned();
        *self.item_count_mut() = other.item_count();
        keep_healthy(self.conditions_mut(), other.conditions());
        for export in self.sink_exports_mut() {
            if let Some(old) = other.sink_exports().iter().find(|o| o.name == export.name) {
                export.last_export_time.clone_from(&old.last_export_time);
                export.last_checksum.clone_from(&old.last_checksum);
                keep_healthy(&mut export.conditions, &old.conditions);
            }
        }
    }
}

/// An inventory kind the export pass serves.
pub(super) trait Exporting:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug + Send + Sync + 'static
{
    /// Its status type.
    type Status: ExportStatus + Send + Sync;
    /// The kind, for metrics and logs.
    const KIND: &'static str;
    /// The current status.
    fn export_status(&self) -> Option<&Self::Status>;
    /// Who the sinks see.
    fn inventory_ref(&self) -> InventoryRef;
    /// The key of its exporter and its pass (`<namespace>/<name>`, or `cluster:<name>`).
    fn pass_key(&self) -> String;
    /// Every sink ref, in binding order, with where it resolves.
    fn bound_refs(&self) -> Vec<BoundRef<'_>>;
    /// `spec.exportMinInterval`.
    fn export_min_interval(&self) -> GoDuration;
    /// `spec.maxExportBytes`, where the kind has one.
    fn max_export_bytes(&self) -> Option<i64>;
    /// Whether `status.sinkExports[].namespace` names where each sink was found.
    const EXPORTS_NAME_NAMESPACE: bool;
}

/// Both status types carry the export fields under the same names.
macro_rules! export_status {
    ($($status:ty),*) => {$(
        impl ExportStatus for $status {
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.conditions
            }
            fn sink_exports(&self) -> &[SinkExportStatus] {
                &self.sink_exports
            }
            fn sink_exports_mut(&mut self) -> &mut Vec<SinkExportStatus> {
                &mut self.sink_exports
            }
            fn last_export_time_mut(&mut self) -> &mut Option<Time> {
                &mut self.last_export_time
            }
            fn observed_generation(&self) -> Option<i64> {
                self.observed_generation
            }
            fn last_export_time(&self) -> Option<&Time> {
                self.last_export_time.as_ref()
            }
            fn item_count(&self) -> Option<i64> {
                self.item_count
            }
            fn item_count_mut(&mut self) -> &mut Option<i64> {
                &mut self.item_count
            }
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
        }
    )*};
}

export_status!(KollectInventoryStatus, KollectClusterInventoryStatus);

impl Exporting for KollectInventory {
    type Status = KollectInventoryStatus;
    const KIND: &'static str = "KollectInventory";
    const EXPORTS_NAME_NAMESPACE: bool = false;

    fn export_status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    fn inventory_ref(&self) -> InventoryRef {
        InventoryRef::namespaced(self.namespace().unwrap_or_default(), self.name_any())
    }
    fn pass_key(&self) -> String {
        format!("{}/{}", self.namespace().unwrap_or_default(), self.name_any())
    }
    fn bound_refs(&self) -> Vec<BoundRef<'_>> {
        let namespace = self.namespace().unwrap_or_default();
        self.spec
            .sinks
            .iter()
            .map(|(family, reference)| BoundRef {
                family,
                reference,
                namespace: namespace.clone(),
            })
            .collect()
    }
    fn export_min_interval(&self) -> GoDuration {
        self.spec.export_min_interval
    }
    fn max_export_bytes(&self) -> Option<i64> {
        self.spec.max_export_bytes
    }
}

impl Exporting for KollectClusterInventory {
    type Status = KollectClusterInventoryStatus;
    const KIND: &'static str = "KollectClusterInventory";
    const EXPORTS_NAME_NAMESPACE: bool = true;

    fn export_status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }
    fn inventory_ref(&self) -> InventoryRef {
        InventoryRef::cluster_scoped(self.name_any())
    }
    fn pass_key(&self) -> String {
        // A namespace name cannot contain ':', so this never equals a namespaced inventory's key.
        format!("cluster:{}", self.name_any())
    }
    fn bound_refs(&self) -> Vec<BoundRef<'_>> {
        self.spec
            .sinks
            .iter()
            .map(|(family, reference)| BoundRef {
                family,
                namespace: reference
                    .namespace
                    .clone()
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or_else(|| self.spec.sink_namespace.clone()),
                reference,
            })
            .collect()
    }
    fn export_min_interval(&self) -> GoDuration {
        self.spec.export_min_interval
    }
    fn max_export_bytes(&self) -> Option<i64> {
        None
    }
}

/// Retries a failed reconcile with the per-object backoff; a terminal cleanup failure waits for
/// a change instead.
pub(super) fn error_policy<I: Exporting>(inventory: Arc<I>, error: &Error, context: Arc<Context>) -> Action {
    if error.is_terminal() {
        context.collect_metrics.reconcile_error(I::KIND, "terminal");
        return Action::await_change();
    }
    tracing::warn!(kind = I::KIND, %error, "inventory reconcile failed");
    context.collect_metrics.reconcile_error(I::KIND, "transient");
    Action::requeue(context.backoff.after_failure(&*inventory, CLEANUP_RETRY))
}

/// The inventory's exporter, seeded from `status.sinkExports[]` when this process has none yet
/// (decision X7: a restarted operator does not re-export unchanged content).
pub(super) fn exporter_of<I: Exporting>(
    inventory: &I,
    context: &Context,
) -> Arc<tokio::sync::Mutex<InventoryExporter>> {
    context.exporter(&inventory.pass_key(), || {
        let mut exporter =
            InventoryExporter::new(inventory.inventory_ref(), I::KIND, context.export_metrics.clone());
        if let Some(status) = inventory.export_status() {
            let generation = status.observed_generation().unwrap_or_default();
            for export in status.sink_exports() {
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

/// Resolves every bound sink; sinks that cannot be built become failed bindings. `floor` is the
/// scope's interval floor.
async fn bindings<I: Exporting>(
    inventory: &I,
    floor: Option<GoDuration>,
    exporter: &InventoryExporter,
    context: &Context,
) -> (Vec<(usize, Binding)>, Vec<Unresolved>) {
    let mut resolved = Vec::new();
    let mut unresolved = Vec::new();
    for (index, bound) in inventory.bound_refs().into_iter().enumerate() {
        let reference = bound.reference;
        let key = BindingKey::new(bound.family, &reference.name);
        let interval_of = |sink_interval| {
            effective_interval(
                reference.export_min_interval,
                sink_interval,
                Some(inventory.export_min_interval()),
                floor,
            )
        };
        match context
            .resolve_sink(bound.family, &bound.namespace, &reference.name)
            .await
        {
            Ok(resolved_sink) => resolved.push((
                index,
                Binding {
                    key,
                    interval: interval_of(resolved_sink.cr.common().export_min_interval),
                    ceiling: effective_ceiling(
                        reference.max_export_bytes,
                        inventory.max_export_bytes(),
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
    (resolved, unresolved)
}

/// What an export pass hands back to the reconcile that applies it.
#[derive(Debug)]
pub(crate) struct PassOutcome {
    /// Every binding's outcome in binding order, unresolved sinks included.
    pub(super) report: ExportReport,
    /// The reason and message of the first sink that could not be resolved.
    pub(super) unresolved: Option<(&'static str, String)>,
}

/// Where the inventory's export pass stands.
pub(super) enum Pass {
    /// A pass is running; look again after [`PASS_POLL`].
    Running,
    /// No pass is running; start one.
    Idle,
    /// A pass left running by an earlier reconcile has finished.
    Finished(tokio::task::JoinHandle<PassOutcome>),
}

/// The pass an earlier reconcile of `inventory` left running, if any.
pub(super) fn pass_of<I: Exporting>(inventory: &I, context: &Context) -> Pass {
    let key = inventory.pass_key();
    match context.passes.take(&key) {
        Some(pass) if !pass.is_finished() => {
            context.passes.keep(key, pass);
            Pass::Running
        }
        Some(pass) => Pass::Finished(pass),
        None => Pass::Idle,
    }
}

/// Starts an export pass of `snapshot` to every bound sink and waits for it up to the budget:
/// `None` when it was left running.
pub(super) async fn start_pass<I: Exporting>(
    inventory: &I,
    snapshot: Snapshot,
    floor: Option<GoDuration>,
    context: &Context,
) -> Option<Result<PassOutcome, tokio::task::JoinError>> {
    let key = inventory.pass_key();
    let exporter = exporter_of(inventory, context).lock_owned().await;
    let (resolved, unresolved) = bindings(inventory, floor, &exporter, context).await;
    let keys: Vec<BindingKey> = inventory
        .bound_refs()
        .iter()
        .map(|b| BindingKey::new(b.family, &b.reference.name))
        .collect();
    let generation = inventory.meta().generation.unwrap_or_default();
    let mut pass = tokio::spawn(run_pass(
        exporter,
        key.clone(),
        keys,
        generation,
        snapshot,
        resolved,
        unresolved,
    ));
    match tokio::time::timeout(PASS_BUDGET, &mut pass).await {
        Ok(joined) => Some(joined),
        Err(_) => {
            // A slow sink: leave the pass running and free this reconcile slot.
            tracing::debug!(inventory = %key, "export pass outlasts its budget; left running");
            context.passes.keep(key, pass);
            None
        }
    }
}

/// Runs one export pass of `snapshot` to the resolved bindings, holding the inventory's
/// exporter for the whole pass (passes of one inventory never overlap).
async fn run_pass(
    mut exporter: tokio::sync::OwnedMutexGuard<InventoryExporter>,
    key: String,
    keys: Vec<BindingKey>,
    generation: i64,
    snapshot: Snapshot,
    resolved: Vec<(usize, Binding)>,
    unresolved: Vec<Unresolved>,
) -> PassOutcome {
    exporter.retain_bindings(&keys);
    let (indices, bound): (Vec<usize>, Vec<Binding>) = resolved.into_iter().unzip();
    tracing::debug!(inventory = %key, rows = snapshot.len(), sinks = bound.len(), "export pass");
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

/// An inventory without sink refs: `SinkReachable=True/NoSinksConfigured`, not degraded, no
/// `sinkExports[]`.
pub(super) fn no_sinks_bound<S: ExportStatus>(next: &mut S, generation: Option<i64>) {
    let conditions = next.conditions_mut();
    status::set_parts(
        conditions,
        types::SINK_REACHABLE,
        true,
        reasons::NO_SINKS_CONFIGURED,
        "no sinks are bound",
        generation,
    );
    status::remove(conditions, types::DEGRADED);
    next.sink_exports_mut().clear();
}

/// Writes the pass outcome into the status (conditions, `sinkExports[]`, `lastExportTime`).
pub(super) fn apply_report<I: Exporting>(
    inventory: &I,
    next: &mut I::Status,
    outcome: &PassOutcome,
    generation: Option<i64>,
) {
    let report = &outcome.report;
    let conditions = next.conditions_mut();
    status::set(conditions, &report.synced(), generation);
    if let Some(ready) = report.ready() {
        status::set(conditions, &ready, generation);
    }
    match report.degraded() {
        Some(degraded) => status::set(conditions, &degraded, generation),
        None => status::remove(conditions, types::DEGRADED),
    }
    status::set(conditions, &report.sink_reachable(), generation);
    if let Some((reason, message)) = &outcome.unresolved
        && report.exported() == 0
        && report.debounced() == 0
    {
        // Nothing went out and a sink could not even be resolved: name that reason.
        status::set_each(
            conditions,
            &[(types::DEGRADED, true), (types::SINK_REACHABLE, false)],
            reason,
            message,
            generation,
        );
    }
    let namespaces: Vec<(BindingKey, String)> = inventory
        .bound_refs()
        .into_iter()
        .map(|b| (BindingKey::new(b.family, &b.reference.name), b.namespace))
        .collect();
    let previous = inventory
        .export_status()
        .map(|s| s.sink_exports().to_vec())
        .unwrap_or_default();
    *next.sink_exports_mut() = report
        .sinks
        .iter()
        .map(|sink| {
            let name = sink.key.export_name();
            let previous_entry = previous.iter().find(|p| p.name == name);
            let mut conditions = previous_entry.map(|p| p.conditions.clone()).unwrap_or_default();
            status::set(&mut conditions, &sink.synced_condition(), generation);
            // A digest not computed yet is filled in by `fill_checksums` when the status is
            // written; until then the previous one stands in, so comparing statuses hashes
            // nothing.
            let last_checksum = match &sink.last_checksum {
                Some(checksum) => checksum
                    .peek()
                    .map(|c| c.as_str().to_owned())
                    .or_else(|| previous_entry.and_then(|p| p.last_checksum.clone())),
                None => None,
            };
            SinkExportStatus {
                name,
                namespace: namespaces
                    .iter()
                    .find(|(key, _)| *key == sink.key)
                    .filter(|_| I::EXPORTS_NAME_NAMESPACE)
                    .map(|(_, ns)| ns.clone()),
                last_export_time: sink.last_export.map(status::time),
                last_checksum,
                conditions,
            }
        })
        .collect();
    if let Some(time) = report.last_export_time() {
        *next.last_export_time_mut() = Some(status::time(time));
    }
}

/// Puts the digest of every sink's last export into `next` (computing those still pending: for a
/// sink that takes deltas this is where a changed inventory is hashed, once per version).
fn fill_checksums<S: ExportStatus>(next: &mut S, report: &ExportReport) {
    for export in next.sink_exports_mut() {
        let checksum = report
            .sinks
            .iter()
            .find(|sink| sink.key.export_name() == export.name)
            .and_then(|sink| sink.last_checksum.as_ref());
        if let Some(checksum) = checksum {
            export.last_checksum = Some(checksum.get().as_str().to_owned());
        }
    }
}

/// Whether writing `next` can wait: it differs from `current` only by the progress of healthy
/// exports (export times, checksums, the item count, and `Synced`/`Ready` moving between
/// exported and up to date), and `current` recorded an export less than `refresh` before `now`.
/// Returns how long the progress may wait. Anything else (a failure, a recovery, a spec change,
/// a sink bound or unbound) is written at once.
fn held_progress<S: ExportStatus>(
    current: Option<&S>,
    next: &S,
    refresh: Duration,
    now: Timestamp,
) -> Option<Duration> {
    let current = current?;
    if current == next {
        // Nothing to write, so nothing to hold.
        return None;
    }
    let written = current.last_export_time()?.0;
    let age = Duration::try_from(now.duration_since(written)).unwrap_or(Duration::ZERO);
    let wait = refresh.checked_sub(age).filter(|wait| !wait.is_zero())?;
    let mut progress_only = next.clone();
    progress_only.take_progress_from(current);
    (progress_only == *current).then_some(wait)
}

/// Reasons of a healthy `Synced`/`Ready` condition: exported now, or already up to date.
fn healthy(condition: &Condition) -> bool {
    condition.reason == reasons::EXPORTED || condition.reason == reasons::DEBOUNCED
}

/// Copies `from`'s version of each healthy progress condition into `into` when both are healthy.
fn keep_healthy(into: &mut [Condition], from: &[Condition]) {
    for condition in into.iter_mut() {
        if condition.type_ != types::SYNCED && condition.type_ != types::READY {
            continue;
        }
        if let Some(old) = from.iter().find(|c| c.type_ == condition.type_)
            && healthy(old)
            && healthy(condition)
        {
            condition.clone_from(old);
        }
    }
}

/// Ends a reconcile that ran a pass: records its events and metrics, then writes `next` (the
/// pass applied to the status) unless it only records progress that may wait, with pending
/// digests computed just before the write.
pub(super) async fn finish_pass<I: Exporting>(
    context: &Context,
    inventory: &I,
    api: &Api<I>,
    current: Option<&I::Status>,
    mut next: I::Status,
    outcome: &PassOutcome,
) -> Result<Action, Error> {
    record_outcome(context, inventory, &outcome.report).await;
    let refresh = context.options.inventory_status_refresh;
    if let Some(wait) = held_progress(current, &next, refresh, Timestamp::now()) {
        return Ok(held_action(&outcome.report, wait));
    }
    fill_checksums(&mut next, &outcome.report);
    let wrote = status::patch_if_changed(api, inventory, current, &next, &context.written).await?;
    Ok(next_action(&outcome.report, wrote))
}

/// Events and error metrics of a pass.
async fn record_outcome<I: Exporting>(context: &Context, inventory: &I, report: &ExportReport) {
    for sink in &report.sinks {
        if let SinkOutcome::Failed { class, .. } = &sink.outcome {
            let class = match class {
                ErrorClass::Terminal => "terminal",
                ErrorClass::Forbidden => "forbidden",
                _ => "transient",
            };
            context.collect_metrics.reconcile_error(I::KIND, class);
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

/// Removes what the inventory exported from every bound sink (decision X3). A pending sink keeps
/// the finalizer and retries; a terminal failure keeps it until someone intervenes.
pub(super) async fn cleanup<I: Exporting>(
    inventory: &I,
    api: &Api<I>,
    context: &Context,
) -> Result<Action, Error> {
    let generation = inventory.meta().generation;
    let key = inventory.pass_key();
    // A pass still running would hold the exporter (and write to the sinks) while we remove.
    context.passes.abort(&key);
    let mut bound = Vec::new();
    let mut pending = Vec::new();
    let mut unsupported = Vec::new();
    for reference in inventory.bound_refs() {
        let name = &reference.reference.name;
        match context
            .resolve_sink(reference.family, &reference.namespace, name)
            .await
        {
            Ok(resolved) => bound.push(Binding {
                key: BindingKey::new(reference.family, name),
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
        let current = inventory.export_status().cloned();
        let mut next = current.clone().unwrap_or_default();
        status::set_parts(
            next.conditions_mut(),
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
    context.forget_exporter(&key);
    context.written.forget(inventory);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::SignedDuration;
    use kollect_core::model::{ContentChecksum, Row};

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn condition(type_: &str, status: bool, reason: &str, message: &str) -> Condition {
        let mut conditions = Vec::new();
        status::set_parts(&mut conditions, type_, status, reason, message, Some(1));
        conditions.remove(0)
    }

    /// The status right after an export at `second` of `items` rows.
    fn exported(second: i64, items: i64, checksum: &str) -> KollectInventoryStatus {
        KollectInventoryStatus {
            conditions: vec![
                condition(types::SYNCED, true, reasons::EXPORTED, "exported to 1 sink(s)"),
                condition(
                    types::READY,
                    true,
                    reasons::EXPORTED,
                    &format!("exported {items} item(s) across 1 sink(s)"),
                ),
            ],
            observed_generation: Some(1),
            item_count: Some(items),
            last_export_time: Some(Time(at(second))),
            sink_exports: vec![SinkExportStatus {
                name: "database/pg".into(),
                namespace: None,
                last_export_time: Some(Time(at(second))),
                last_checksum: Some(checksum.into()),
                conditions: vec![condition(
                    types::SYNCED,
                    true,
                    reasons::EXPORTED,
                    "export completed",
                )],
            }],
        }
    }

    /// The same export once a later pass found it up to date.
    fn settled(second: i64, items: i64, checksum: &str) -> KollectInventoryStatus {
        let mut status = exported(second, items, checksum);
        status.conditions[0] = condition(
            types::SYNCED,
            true,
            reasons::EXPORTED,
            "content unchanged; 1 sink(s) already up to date",
        );
        status.sink_exports[0].conditions = vec![condition(
            types::SYNCED,
            false,
            reasons::DEBOUNCED,
            "checksum unchanged; next export at ...",
        )];
        status
    }

    const REFRESH: Duration = Duration::from_secs(10);

    #[test]
    fn progress_of_healthy_exports_waits_for_the_refresh() {
        let current = exported(0, 3, "aaa");
        // A later export, and the settled state after it: progress only.
        for next in [exported(3, 4, "bbb"), settled(3, 4, "bbb")] {
            assert_eq!(
                held_progress(Some(&current), &next, REFRESH, at(3)),
                Some(Duration::from_secs(7))
            );
            assert_eq!(held_progress(Some(&current), &next, REFRESH, at(10)), None, "due");
            assert_eq!(held_progress(Some(&current), &next, Duration::ZERO, at(3)), None);
        }
        // Settling after the written export is held as well.
        assert!(held_progress(Some(&current), &settled(0, 3, "aaa"), REFRESH, at(1)).is_some());
        // Nothing written yet, or nothing exported yet: written at once.
        assert_eq!(held_progress(None, &current, REFRESH, at(1)), None);
        let never = KollectInventoryStatus {
            last_export_time: None,
            ..current.clone()
        };
        assert_eq!(held_progress(Some(&never), &current, REFRESH, at(1)), None);
    }

    #[test]
    fn anything_but_progress_is_written_at_once() {
        let current = exported(0, 3, "aaa");
        let mut failed = exported(3, 3, "aaa");
        failed.sink_exports[0].conditions = vec![condition(
            types::SYNCED,
            false,
            reasons::EXPORT_FAILED,
            "connection refused",
        )];
        failed.conditions[0] = condition(
            types::SYNCED,
            false,
            reasons::PROGRESSING,
            "1 sink(s) failed export",
        );
        let mut respec = exported(3, 4, "bbb");
        respec.observed_generation = Some(2);
        let mut unbound = exported(3, 4, "bbb");
        unbound.sink_exports.clear();
        let mut degraded = exported(3, 4, "bbb");
        degraded.conditions.push(condition(
            types::DEGRADED,
            true,
            reasons::TARGET_DEGRADED,
            "KollectTarget \"t\" cannot list its objects",
        ));
        for next in [failed, respec, unbound, degraded] {
            assert_eq!(
                held_progress(Some(&current), &next, REFRESH, at(3)),
                None,
                "{next:?}"
            );
        }
        // A recovery is written at once too.
        let mut broken = exported(0, 3, "aaa");
        broken.conditions[0] = condition(
            types::SYNCED,
            false,
            reasons::PROGRESSING,
            "1 sink(s) failed export",
        );
        assert_eq!(
            held_progress(Some(&broken), &exported(3, 3, "aaa"), REFRESH, at(3)),
            None
        );
    }

    #[test]
    fn pending_checksums_are_computed_when_the_status_is_written() {
        let snapshot = kollect_core::model::Snapshot::new(vec![Row {
            name: "web".into(),
            uid: "u1".into(),
            ..Row::default()
        }]);
        let key = BindingKey::new(SinkFamily::Database, "pg");
        let report = ExportReport {
            sinks: vec![SinkReport {
                key,
                outcome: SinkOutcome::Debounced {
                    next_due: Duration::from_secs(1),
                },
                interval: Duration::from_secs(30),
                last_export: Some(at(0).checked_add(SignedDuration::from_secs(1)).unwrap()),
                last_checksum: Some(ContentChecksum::of(&snapshot)),
            }],
            item_count: 1,
        };
        let mut next = exported(1, 1, "stand-in");
        assert!(snapshot.cached_fingerprint().is_none());
        fill_checksums(&mut next, &report);
        assert_eq!(
            next.sink_exports[0].last_checksum.as_deref(),
            Some(snapshot.fingerprint().as_str())
        );
    }
}
