//! The family-sink controllers: connection probes (`ConnectionVerified`, `Degraded`),
//! `TLSInsecure`, and `status.preview` while `kollect.dev/preview: "true"` is set (see
//! docs/src/operator.md). Sinks have no finalizer.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kollect_core::api::keys::{PREVIEW_ANNOTATION, TEST_CONNECTION_ANNOTATION};
use kollect_core::api::v1alpha1::{
    FamilySinkStatus, KollectDatabaseSink, KollectEventSink, KollectSnapshotSink, SinkPreview,
};
use kollect_core::api::{condition_types as types, reasons};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::target::manages;
use super::watches::{Shared, Watches};
use super::{Context, Error, status};
use kollect_sinks::FamilySink;

/// A healthy sink is probed again this often (connectivity can go away without any event).
const HEALTHY_REPROBE: Duration = Duration::from_secs(300);
/// A failing sink is probed again this often, so that it recovers soon after its backend does.
const FAILING_REPROBE: Duration = Duration::from_secs(15);

/// A family sink kind.
trait SinkKind:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const CONTROLLER: &'static str;
    fn watch(watches: &Watches) -> &Shared<Self>;
    fn family(self) -> FamilySink;
    fn sink_status(&self) -> Option<&FamilySinkStatus>;
}

macro_rules! sink_kind {
    ($ty:ty, $variant:ident, $watch:ident, $controller:literal) => {
        impl SinkKind for $ty {
            const CONTROLLER: &'static str = $controller;
            fn watch(watches: &Watches) -> &Shared<Self> {
                &watches.$watch
            }
            fn family(self) -> FamilySink {
                FamilySink::$variant(self)
            }
            fn sink_status(&self) -> Option<&FamilySinkStatus> {
                self.status.as_ref()
            }
        }
    };
}

sink_kind!(
    KollectSnapshotSink,
    Snapshot,
    snapshot_sinks,
    "kollectsnapshotsink"
);
sink_kind!(
    KollectDatabaseSink,
    Database,
    database_sinks,
    "kollectdatabasesink"
);
sink_kind!(KollectEventSink, Event, event_sinks, "kollecteventsink");

/// Runs the three controllers until the term ends.
pub async fn run(context: Arc<Context>) {
    tokio::join!(
        run_kind::<KollectSnapshotSink>(Arc::clone(&context)),
        run_kind::<KollectDatabaseSink>(Arc::clone(&context)),
        run_kind::<KollectEventSink>(context),
    );
}

async fn run_kind<K: SinkKind>(context: Arc<Context>) {
    let watch = K::watch(&context.watches);
    let results = Controller::for_shared_stream(watch.touched(), watch.store().clone())
        .graceful_shutdown_on(context.term.ended())
        .run(reconcile::<K>, error_policy::<K>, Arc::clone(&context));
    super::triggers::drive(results, K::CONTROLLER).await;
}

fn error_policy<K: SinkKind>(sink: Arc<K>, error: &Error, context: Arc<Context>) -> Action {
    tracing::warn!(%error, controller = K::CONTROLLER, "sink reconcile failed");
    Action::requeue(context.backoff.after_failure(&*sink, FAILING_REPROBE))
}

fn annotation_true<K: Resource>(object: &K, key: &str) -> bool {
    object
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .is_some_and(|v| v == "true")
}

async fn reconcile<K: SinkKind>(object: Arc<K>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    if !manages(&context, &namespace) {
        return Ok(Action::await_change());
    }
    let mut guard = context.metrics.start(K::CONTROLLER);
    let api: Api<K> = Api::namespaced(context.client.clone(), &namespace);
    let generation = object.meta().generation;
    let current = object.sink_status().cloned();
    let mut next = current.clone().unwrap_or_default();
    let one_shot = annotation_true(&*object, TEST_CONNECTION_ANNOTATION);
    let preview = annotation_true(&*object, PREVIEW_ANNOTATION);
    let sink = (*object).clone().family();
    let common = sink.common().clone();

    if common.tls_insecure() {
        status::set_parts(
            &mut next.conditions,
            types::TLS_INSECURE,
            true,
            reasons::INSECURE_SKIP_VERIFY,
            "tls.insecureSkipVerify is set: the server's certificate is not verified",
            generation,
        );
    } else {
        status::remove(&mut next.conditions, types::TLS_INSECURE);
    }

    let probe = common.connection_test_enabled() || one_shot;
    let mut requeue = None;
    let mut probed_ok = false;
    let stack = context.sinks.stack_for(&sink).await;
    match (&stack, probe) {
        (Err(error), _) => {
            unverified(&mut next, error.sink_reason(), &error.to_string(), generation);
            requeue = Some(FAILING_REPROBE);
        }
        (Ok(stack), true) => {
            let result = stack.probe().await;
            context.metrics.probe(stack.sink_type(), result.is_ok());
            match result {
                Ok(report) => {
                    probed_ok = true;
                    status::set_parts(
                        &mut next.conditions,
                        types::CONNECTION_VERIFIED,
                        true,
                        reasons::CONNECTION_OK,
                        &report.message,
                        generation,
                    );
                    status::remove(&mut next.conditions, types::DEGRADED);
                    requeue = common.connection_test_enabled().then_some(HEALTHY_REPROBE);
                }
                Err(error) => {
                    unverified(
                        &mut next,
                        reasons::CONNECTION_TEST_FAILED,
                        error.message(),
                        generation,
                    );
                    requeue = Some(FAILING_REPROBE);
                }
            }
        }
        (Ok(_), false) => {}
    }

    next.preview = match (&stack, preview) {
        (Ok(stack), true) => Some(render_preview(stack.as_ref(), current.as_ref())),
        _ => None,
    };
    status::patch_if_changed(&api, &*object, current.as_ref(), &next, &context.written).await?;

    // A one-shot test on a sink without periodic tests: drop the annotation once it passed.
    if one_shot && probed_ok && !common.connection_test_enabled() {
        let patch = serde_json::json!({"metadata": {"annotations": {TEST_CONNECTION_ANNOTATION: null}}});
        api.patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    guard.succeeded();
    context.backoff.succeeded(&*object);
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// `ConnectionVerified=False` and `Degraded=True`, both with `reason`.
fn unverified(next: &mut FamilySinkStatus, reason: &str, message: &str, generation: Option<i64>) {
    status::set_each(
        &mut next.conditions,
        &[(types::CONNECTION_VERIFIED, false), (types::DEGRADED, true)],
        reason,
        message,
        generation,
    );
}

/// What an export would produce, from a synthetic one-row inventory. `renderedAt` is kept while
/// the rest is unchanged, so a kept annotation does not rewrite the status.
fn render_preview(stack: &dyn kollect_core::sink::Sink, current: Option<&FamilySinkStatus>) -> SinkPreview {
    let request = kollect_sinks::preview::sample_request(Timestamp::now());
    let mut preview = stack.preview(&request);
    let previous = current.and_then(|s| s.preview.as_ref());
    let unchanged = previous.is_some_and(|p| {
        let mut p = p.clone();
        p.rendered_at = None;
        p == preview
    });
    preview.rendered_at = if unchanged {
        previous.and_then(|p| p.rendered_at.clone())
    } else {
        Some(Time(Timestamp::now()))
    };
    preview
}
