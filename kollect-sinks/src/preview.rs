//! The synthetic sample every `status.preview` is rendered from: inventory `team-a/api` at
//! generation 1 holding four Deployments, so previews show real paths and messages without
//! reading the cluster or writing anywhere.

use k8s_openapi::jiff::Timestamp;
use kollect_core::model::{Row, Snapshot};
use kollect_core::sink::{ExportRequest, InventoryRef};
use serde_json::json;

/// Namespace of the sample inventory.
pub const SAMPLE_NAMESPACE: &str = "team-a";
/// Name of the sample inventory.
pub const SAMPLE_NAME: &str = "api";

/// The sample export request (`exported_at` is `now`).
pub fn sample_request(now: Timestamp) -> ExportRequest {
    let rows = ["api", "web", "worker", "cache"]
        .iter()
        .enumerate()
        .map(|(index, name)| Row {
            target_namespace: SAMPLE_NAMESPACE.into(),
            target_name: "deployments".into(),
            namespace: SAMPLE_NAMESPACE.into(),
            name: (*name).into(),
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            uid: format!("00000000-0000-4000-8000-{:012}", index + 1),
            attributes: json!({"image": format!("registry.example.com/{SAMPLE_NAMESPACE}/{name}:1.0.0"), "replicas": 2})
                .as_object()
                .cloned(),
        })
        .collect();
    ExportRequest::full(
        InventoryRef::namespaced(SAMPLE_NAMESPACE, SAMPLE_NAME),
        1,
        now,
        Snapshot::new(rows),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_holds_four_deployments_of_team_a_api() {
        let request = sample_request(Timestamp::UNIX_EPOCH);
        assert_eq!(request.inventory.to_string(), "team-a/api");
        assert_eq!(request.generation, 1);
        let names: Vec<_> = request.rows().map(|r| r.name()).collect();
        assert_eq!(names.len(), 4);
        let uids: std::collections::BTreeSet<_> = request.rows().map(|r| r.uid()).collect();
        assert_eq!(uids.len(), 4, "uids are distinct");
    }
}
