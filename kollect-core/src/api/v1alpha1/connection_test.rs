//! `KollectConnectionTest`: a one-shot probe of one family sink.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{conditions_schema, local_name_schema};
use super::inventory::SinkFamily;

fn default_ttl() -> i32 {
    300
}

// Several `printcolumn(...)` entries repeat the same keys by design.
#[allow(clippy::duplicated_attributes)]
/// Probes one sink once per generation and is deleted `ttlSecondsAfterFinished` after completion.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "kollect.dev",
    version = "v1alpha1",
    kind = "KollectConnectionTest",
    plural = "kollectconnectiontests",
    shortname = "kconntest",
    namespaced,
    status = "KollectConnectionTestStatus",
    doc = "KollectConnectionTest runs a one-shot connection probe against a family sink.",
    printcolumn(name = "Sink", type_ = "string", json_path = ".spec.sinkRef"),
    printcolumn(
        name = "Verified",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ConnectionVerified\")].status"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KollectConnectionTestSpec {
    /// The sink to probe (exactly one of the three refs).
    pub sink_ref: ConnectionTestSinkRef,
    /// Reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "local_name_schema")]
    pub profile_ref: Option<String>,
    /// Give the test an owner reference to the sink (absent means true), so deleting the sink
    /// deletes the test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_sink: Option<bool>,
    /// Seconds after completion until the test deletes itself.
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: i32,
}

/// Exactly one sink of the test's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.snapshotSinkRef), has(self.databaseSinkRef), has(self.eventSinkRef)].filter(x, x).size() == 1",
    "message": "exactly one of snapshotSinkRef, databaseSinkRef and eventSinkRef must be set",
}]))]
pub struct ConnectionTestSinkRef {
    /// Name of a `KollectSnapshotSink`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "local_name_schema")]
    pub snapshot_sink_ref: Option<String>,
    /// Name of a `KollectDatabaseSink`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "local_name_schema")]
    pub database_sink_ref: Option<String>,
    /// Name of a `KollectEventSink`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "local_name_schema")]
    pub event_sink_ref: Option<String>,
}

impl ConnectionTestSinkRef {
    /// The referenced sink, when exactly one ref is set.
    pub fn target(&self) -> Option<(SinkFamily, &str)> {
        match (
            &self.snapshot_sink_ref,
            &self.database_sink_ref,
            &self.event_sink_ref,
        ) {
            (Some(n), None, None) => Some((SinkFamily::Snapshot, n)),
            (None, Some(n), None) => Some((SinkFamily::Database, n)),
            (None, None, Some(n)) => Some((SinkFamily::Event, n)),
            _ => None,
        }
    }
}

/// Observed state of a `KollectConnectionTest`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KollectConnectionTestStatus {
    /// `ConnectionVerified` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Generation the probe ran for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Probe latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// Whether the probe finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<bool>,
    /// When the probe finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_ref_is_a_target() {
        let mut r = ConnectionTestSinkRef {
            database_sink_ref: Some("pg".into()),
            ..Default::default()
        };
        assert_eq!(r.target(), Some((SinkFamily::Database, "pg")));
        r.event_sink_ref = Some("bus".into());
        assert_eq!(r.target(), None);
        assert_eq!(ConnectionTestSinkRef::default().target(), None);
    }
}
