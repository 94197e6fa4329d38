//! The `KollectConnectionTest` controller: one probe of one family sink per generation, an owner
//! reference to the sink (unless `ownerSink: false`), and deletion `ttlSecondsAfterFinished`
//! after completion.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kollect_core::api::v1alpha1::KollectConnectionTest;
use kollect_core::api::{condition_types as types, reasons};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::{Resource, ResourceExt};

use super::target::manages;
use super::{Context, Error, status};
use kollect_sinks::FamilySink;

const CONTROLLER: &str = "kollectconnectiontest";

/// Runs the controller until the term ends.
pub async fn run(context: Arc<Context>) {
    let tests = &context.watches.connection_tests;
    let results = Controller::for_shared_stream(tests.touched(), tests.store().clone())
        .graceful_shutdown_on(context.term.ended())
        .run(reconcile, error_policy, Arc::clone(&context));
    super::triggers::drive(results, CONTROLLER).await;
}

fn error_policy(test: Arc<KollectConnectionTest>, error: &Error, context: Arc<Context>) -> Action {
    tracing::warn!(%error, "connection test reconcile failed");
    Action::requeue(context.backoff.after_failure(&*test, Duration::from_secs(5)))
}

async fn reconcile(test: Arc<KollectConnectionTest>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = test.namespace().unwrap_or_default();
    if !manages(&context, &namespace) || test.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut guard = context.metrics.start(CONTROLLER);
    let api: Api<KollectConnectionTest> = Api::namespaced(context.client.clone(), &namespace);
    let generation = test.meta().generation;
    let current = test.status.clone();
    let ttl = Duration::from_secs(u64::try_from(test.spec.ttl_seconds_after_finished).unwrap_or(0));

    // Done for this generation: only the TTL is left.
    if let Some(status) = &current
        && status.completed == Some(true)
        && status.observed_generation == generation
    {
        let finished = status.completed_at.as_ref().map_or_else(Timestamp::now, |t| t.0);
        let age = Timestamp::now().duration_since(finished).unsigned_abs();
        guard.succeeded();
        context.backoff.succeeded(&*test);
        if age >= ttl {
            api.delete(&test.name_any(), &DeleteParams::default()).await?;
            context.written.forget(&*test);
            return Ok(Action::await_change());
        }
        return Ok(Action::requeue(ttl - age));
    }

    let mut next = current.clone().unwrap_or_default();
    next.observed_generation = generation;
    let outcome = probe(&test, &api, &context).await?;
    match &outcome {
        Ok((latency, message)) => {
            status::set_parts(
                &mut next.conditions,
                types::CONNECTION_VERIFIED,
                true,
                reasons::CONNECTION_OK,
                message,
                generation,
            );
            status::set_parts(
                &mut next.conditions,
                types::READY,
                true,
                reasons::PROBE_SUCCEEDED,
                message,
                generation,
            );
            next.latency_ms = Some(i64::try_from(latency.as_millis()).unwrap_or(i64::MAX));
        }
        Err((reason, message)) => {
            status::set_each(
                &mut next.conditions,
                &[(types::CONNECTION_VERIFIED, false), (types::READY, false)],
                reason,
                message,
                generation,
            );
            next.latency_ms = None;
        }
    }
    next.completed = Some(true);
    next.completed_at = Some(Time(Timestamp::now()));
    status::patch_if_changed(&api, &*test, current.as_ref(), &next, &context.written).await?;
    guard.succeeded();
    context.backoff.succeeded(&*test);
    Ok(Action::requeue(ttl))
}

type Outcome = Result<(Duration, String), (&'static str, String)>;

/// Resolves the sink, adopts the test, and probes.
async fn probe(
    test: &KollectConnectionTest,
    api: &Api<KollectConnectionTest>,
    context: &Context,
) -> Result<Outcome, Error> {
    let namespace = test.namespace().unwrap_or_default();
    let Some((family, name)) = test.spec.sink_ref.target() else {
        return Ok(Err((
            reasons::INVALID_SINK_REF,
            "exactly one of sinkRef.snapshotSinkRef, sinkRef.databaseSinkRef and sinkRef.eventSinkRef must be set".into(),
        )));
    };
    let Some(sink) = context.watches.sink(family, &namespace, name) else {
        return Ok(Err((
            reasons::SINK_NOT_FOUND,
            format!(
                "{} sink \"{name}\" not found in namespace {namespace}",
                family.as_str()
            ),
        )));
    };
    if test.spec.owner_sink.unwrap_or(true) {
        adopt(test, api, &sink).await?;
    }
    let stack = match context.sinks.stack_for(&sink).await {
        Ok(stack) => stack,
        Err(error) => return Ok(Err((error.sink_reason(), error.to_string()))),
    };
    let result = stack.probe().await;
    context.metrics.probe(stack.sink_type(), result.is_ok());
    Ok(match result {
        Ok(report) => Ok((report.latency, report.message)),
        Err(error) => Err((reasons::CONNECTION_TEST_FAILED, error.message().to_owned())),
    })
}

/// Makes the sink the test's controller owner, so deleting the sink deletes its tests.
async fn adopt(
    test: &KollectConnectionTest,
    api: &Api<KollectConnectionTest>,
    sink: &FamilySink,
) -> Result<(), Error> {
    let owner = match sink {
        FamilySink::Snapshot(s) => s.controller_owner_ref(&()),
        FamilySink::Database(s) => s.controller_owner_ref(&()),
        FamilySink::Event(s) => s.controller_owner_ref(&()),
    };
    // Without a uid (never the case for an object read from the API server) there is nothing
    // to own by.
    let Some(owner) = owner else {
        return Ok(());
    };
    if test.owner_references().iter().any(|o| o.uid == owner.uid) {
        return Ok(());
    }
    let mut owners = test.owner_references().to_vec();
    owners.push(owner);
    let patch = serde_json::json!({"metadata": {"ownerReferences": owners}});
    api.patch(&test.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use kollect_core::api::v1alpha1::KollectConnectionTestSpec;

    #[test]
    fn the_default_ttl_is_five_minutes() {
        let spec: KollectConnectionTestSpec =
            serde_json::from_value(serde_json::json!({"sinkRef": {"snapshotSinkRef": "git"}})).expect("spec");
        assert_eq!(spec.ttl_seconds_after_finished, 300);
    }
}
