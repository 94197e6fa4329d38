//! The container images of every Deployment in the cluster of the current kubeconfig, as a Vec.
use kollect_collect::runtime::{Runtime, RuntimeConfig};
use kollect_collect::target::TargetRegistration;
use kollect_core::api::v1alpha1::{AttributeSpec, GroupVersionKind, KollectProfile, KollectProfileSpec};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = KollectProfileSpec {
        target_gvk: GroupVersionKind::new("apps", "v1", "Deployment"),
        attributes: vec![AttributeSpec::new("images", "$.spec.template.spec.containers[*].image")],
        ..Default::default()
    };
    let profile = KollectProfile::new("images", spec);
    let target = TargetRegistration::new("default", "images", &profile, &Default::default())?;
    let owner = target.owner.clone();
    let runtime = Runtime::start(kube::Client::try_default().await?, RuntimeConfig::default());
    runtime.register(target);
    if !runtime.wait_synced(&owner, std::time::Duration::from_secs(60)).await {
        return Err("the Deployments were not listed within a minute".into());
    }
    let rows = runtime.store().snapshot_of(&[owner]);
    let images: Vec<(&str, _)> = rows.rows().iter().map(|r| (r.name(), r.attributes())).collect();
    println!("{}", serde_json::to_string_pretty(&images)?);
    Ok(())
}
