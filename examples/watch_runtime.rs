//! The watch runtime against a live API server: the Deployments of namespace `shop` collected
//! into the row store, then a change to one of them arriving as a new row.
//!
//! It needs a cluster holding the objects of `examples/cluster-snapshot` in the current
//! kubeconfig. The testkit starts one (a real kube-apiserver and etcd) without a container
//! runtime; `hack/examples.sh` does exactly this:
//!
//! ```sh
//! cargo run -p kollect-testkit --bin kollect-control-plane -- \
//!     --kubeconfig /tmp/kollect.kubeconfig --apply examples/cluster-snapshot &
//! KUBECONFIG=/tmp/kollect.kubeconfig cargo run -p kollect-examples --example watch_runtime
//! ```

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kollect_collect::runtime::{Runtime, RuntimeConfig};
use kollect_collect::target::TargetRegistration;
use kollect_core::api::v1alpha1::{
    AttributeSpec, GroupVersionKind, KollectProfile, KollectProfileSpec, KollectTargetSpec,
};
use kollect_core::collect::RowOwner;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

fn replicas_of(runtime: &Runtime, owner: &RowOwner, name: &str) -> Option<i64> {
    let snapshot = runtime.store().snapshot_of(std::slice::from_ref(owner));
    let row = snapshot.rows().iter().find(|row| row.name() == name)?;
    row.attributes()?.get("replicas")?.as_i64()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = kube::Client::try_default().await?;
    let runtime = Runtime::start(client.clone(), RuntimeConfig::default());

    let profile = KollectProfile::new(
        "deployments",
        KollectProfileSpec {
            target_gvk: GroupVersionKind::new("apps", "v1", "Deployment"),
            attributes: vec![
                AttributeSpec::new("images", "$.spec.template.spec.containers[*].image"),
                AttributeSpec::new("replicas", "$.spec.replicas"),
            ],
            ..Default::default()
        },
    );
    let mut target = KollectTargetSpec::default();
    target.filter.included_namespaces = vec!["shop".into()];
    let registration = TargetRegistration::new("team-a", "shop-deployments", &profile, &target)?;
    let owner = registration.owner.clone();
    runtime.register(registration);
    if !runtime.wait_synced(&owner, Duration::from_secs(60)).await {
        return Err("the runtime did not list namespace shop within a minute".into());
    }
    let snapshot = runtime.store().snapshot_of(std::slice::from_ref(&owner));
    println!("listed {} Deployments in shop:", snapshot.rows().len());
    for row in snapshot.rows() {
        let attributes = row.attributes().map_or(Value::Null, Value::Object);
        println!("  {} {attributes}", row.name());
    }

    // Scale one Deployment through the API server; the watch turns the event into a new row.
    let mut changes = runtime.store().subscribe();
    let before = replicas_of(&runtime, &owner, "storefront").ok_or("storefront was not collected")?;
    let deployments: Api<Deployment> = Api::namespaced(client, "shop");
    let patch = json!({ "spec": { "replicas": before + 1 } });
    deployments.patch("storefront", &PatchParams::default(), &Patch::Merge(&patch)).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while replicas_of(&runtime, &owner, "storefront") != Some(before + 1) {
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Ok(Ok(change)) => println!("row store changed: partition version {}", change.version),
            // Missed notifications only mean the store moved on; the loop reads it again.
            Ok(Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) => return Err("the runtime stopped".into()),
            Err(_) => return Err("no row change within 30 s of the patch".into()),
        }
    }
    println!("storefront: replicas {before} -> {} (from the watch)", before + 1);
    Ok(())
}
