//! The `KollectInventory` controller: every row collected by the targets of the inventory's
//! namespace, exported to every bound sink through the export engine (coalescing, partitioning,
//! deltas, retries, breakers), with status as docs/src/operator.md describes it (decisions A11, A12, X3 and X7).

use std::sync::Arc;
use std::time::Duration;

use kollect_collect::runtime::Partition;
use kollect_core::api::v1alpha1::{KollectInventory, KollectInventoryStatus, KollectScope, SinkFamily};
use kollect_core::api::{condition_types as types, finalizers, reasons};
use kollect_core::collect::RowOwner;
use kollect_core::export::ExportReport;
use kube::api::Api;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::Event;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::export_pass::{
    Exporting, PASS_POLL, Pass, apply_report, cleanup, error_policy, finish_pass, no_sinks_bound, pass_of,
    start_pass,
};
use super::target::manages;
use super::triggers::{drive, in_namespace};
use super::{Context, Error, finalized, publish, status};

const CONTROLLER: &str = "kollectinventory";

/// Rows in one inventory at which splitting it is suggested (`ExportShardWarning`).
pub const SHARD_WARNING_ROWS: usize = 1800;

/// How soon an inventory waiting for its targets' first list looks again.
const UNSYNCED_RETRY: Duration = Duration::from_secs(1);

/// Runs the controller until the term ends.
pub async fn run(context: Arc<Context>) {
    let watches = &context.watches;
    let store = watches.inventories.store().clone();
    let rows = super::triggers::on_row_changes(
        context.runtime.store(),
        store.clone(),
        context.options.row_change_throttle,
    );
    let (snapshot, database, event) = (store.clone(), store.clone(), store.clone());
    let (by_scope, by_target) = (store.clone(), store.clone());
    let results = Controller::for_shared_stream(watches.inventories.touched_in_spec(), store)
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
        .run(reconcile, error_policy::<KollectInventory>, Arc::clone(&context));
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

async fn reconcile(inventory: Arc<KollectInventory>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = inventory.namespace().unwrap_or_default();
    if !manages(&context, &namespace) {
        return Ok(Action::await_change());
    }
    tracing::debug!(inventory = %key_of(&inventory), "reconcile");
    let api: Api<KollectInventory> = Api::namespaced(context.client.clone(), &namespace);
    finalized(
        &context,
        CONTROLLER,
        &api,
        finalizers::INVENTORY,
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

fn key_of(inventory: &KollectInventory) -> String {
    inventory.pass_key()
}

/// The scope's sink allowlists: a ref to a sink the scope does not list stops the pass.
fn scope_denial(inventory: &KollectInventory, scope: &KollectScope) -> Option<(&'static str, String)> {
    inventory.spec.sinks.iter().find_map(|(family, reference)| {
        let allowed = match family {
            SinkFamily::Snapshot => &scope.spec.ceiling.snapshot_sink_refs,
            SinkFamily::Database => &scope.spec.ceiling.database_sink_refs,
            SinkFamily::Event => &scope.spec.ceiling.event_sink_refs,
        };
        (!allowed.is_empty() && !allowed.contains(&reference.name)).then(|| {
            (
                reasons::SCOPE_SINK_DENIED,
                format!(
                    "{} sink \"{}\" is not allowed by KollectScope \"{}\"",
                    family.as_str(),
                    reference.name,
                    scope.name_any()
                ),
            )
        })
    })
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
        no_sinks_bound(&mut next, generation);
        status::patch_if_changed(api, inventory, current.as_ref(), &next, &context.written).await?;
        return Ok(Action::await_change());
    }

    let key = key_of(inventory);
    let finished = match pass_of(inventory, context) {
        Pass::Running => return Ok(Action::requeue(PASS_POLL)),
        Pass::Finished(pass) => Some(pass),
        Pass::Idle => None,
    };
    let failing = match targets_of(&namespace, context) {
        Targets::Waiting(waiting, why) => {
            // Exporting before the rows are listed would send a partial (after a restart:
            // empty) inventory and delete what the sinks hold, so nothing is exported until the
            // lists finish. A first list normally takes moments and is not worth a status
            // write; one that keeps failing is named, with its error.
            tracing::debug!(inventory = %key, target = %waiting, "waiting for the target's first list");
            if let Some(why) = why {
                waiting_for(&mut next.conditions, "KollectTarget", &waiting, &why, generation);
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
            if let Some((reason, message)) = scope.as_deref().and_then(|s| scope_denial(inventory, s)) {
                publish(context, inventory, EventType::Warning, reason, &message).await;
                set_degraded(&mut next, reason, &message, generation);
                status::patch_if_changed(api, inventory, current.as_ref(), &next, &context.written).await?;
                return Ok(Action::await_change());
            }
            let floor = scope.as_ref().and_then(|s| s.spec.ceiling.min_export_interval);
            match start_pass(inventory, view.snapshot.clone(), floor, context).await {
                Some(joined) => joined,
                None => return Ok(Action::requeue(PASS_POLL)),
            }
        }
    };
    let outcome = match joined {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::warn!(inventory = %key, %error, "export pass ended without a report");
            return Ok(Action::requeue(PASS_POLL));
        }
    };
    apply_report(inventory, &mut next, &outcome, generation);
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
    finish_pass(context, inventory, api, current.as_ref(), next, &outcome).await
}

/// Where the targets of a namespace stand before an export.
pub(super) enum Targets {
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

/// `Synced=False/Progressing` naming the `kind` target whose first list keeps failing, with why.
pub(super) fn waiting_for(
    conditions: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    kind: &str,
    target: &str,
    why: &str,
    generation: Option<i64>,
) {
    status::set_parts(
        conditions,
        types::SYNCED,
        false,
        reasons::PROGRESSING,
        &format!("waiting for the first list of {kind} \"{target}\", which is retried: {why}"),
        generation,
    );
}

/// A target as the listing gate sees it.
pub(super) struct GateTarget {
    /// Its name (for messages).
    pub(super) name: String,
    /// Its rows' owner.
    pub(super) owner: RowOwner,
    /// Suspended or being deleted: it holds no rows and is not waited for.
    pub(super) idle: bool,
    /// Its status says `Degraded=True`.
    pub(super) degraded: bool,
}

impl GateTarget {
    /// The gate's view of a target with `name`, `owner`, `suspend`, `metadata` and `conditions`.
    pub(super) fn new(
        name: String,
        owner: RowOwner,
        suspended: bool,
        meta: &kube::api::ObjectMeta,
        conditions: Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]>,
    ) -> Self {
        Self {
            name,
            owner,
            idle: suspended || meta.deletion_timestamp.is_some(),
            degraded: conditions
                .and_then(|c| status::find(c, types::DEGRADED))
                .is_some_and(|c| c.status == "True"),
        }
    }
}

/// Where `targets` stand. Suspended, deleted and degraded targets hold no rows and never make
/// an inventory wait.
pub(super) fn listing(targets: impl IntoIterator<Item = GateTarget>, context: &Context) -> Targets {
    let mut failing = Vec::new();
    for target in targets {
        if target.idle {
            continue;
        }
        match context.runtime.report(&target.owner) {
            Some(report) if report.synced || report.unresolved.is_some() => {}
            // Forbidden is a known state (it needs a change of permissions); a list that fails
            // otherwise is retried, and exporting before it succeeds could delete rows the
            // sinks hold for the target.
            Some(report) => match report.forbidden_namespaces.values().next() {
                Some(why) => failing.push((target.name, why.clone())),
                None => return Targets::Waiting(target.name, report.watch_error.clone()),
            },
            None if !target.degraded => return Targets::Waiting(target.name, None),
            None => {}
        }
    }
    Targets::Listed { failing }
}

fn targets_of(namespace: &str, context: &Context) -> Targets {
    let targets = context.watches.targets.in_namespace(namespace);
    listing(
        targets.iter().map(|t| {
            GateTarget::new(
                t.name_any(),
                RowOwner::target(namespace, t.name_any()),
                t.spec.suspend.unwrap_or(false),
                t.meta(),
                t.status.as_ref().map(|s| s.conditions.as_slice()),
            )
        }),
        context,
    )
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
