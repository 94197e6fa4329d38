//! Offline collection: the profiles and targets of `examples/first-inventory` applied to the
//! objects of `examples/cluster-snapshot` (kubectl dumps), with no cluster. The same extraction
//! and target matching the operator runs, over files.
//!
//! Run it with `cargo run -p kollect-examples --example offline_snapshot`.

use std::collections::BTreeMap;
use std::path::Path;

use kollect_collect::offline;
use kollect_collect::target::TargetRegistration;
use kollect_core::api::v1alpha1::{KollectProfile, KollectTarget};
use serde_json::Value;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Manifests load like any other objects; profiles and targets are picked out by kind.
    let manifests = offline::load_objects(&examples.join("first-inventory"))?;
    let of_kind = |kind: &'static str| manifests.iter().filter(move |m| m["kind"] == kind).cloned();
    let profiles: BTreeMap<String, KollectProfile> = of_kind("KollectProfile")
        .map(serde_json::from_value::<KollectProfile>)
        .map(|p| p.map(|p| (p.metadata.name.clone().unwrap_or_default(), p)))
        .collect::<Result<_, _>>()?;
    let mut targets = Vec::new();
    for target in of_kind("KollectTarget").map(serde_json::from_value::<KollectTarget>) {
        let target = target?;
        let profile = profiles
            .get(&target.spec.profile_ref)
            .ok_or_else(|| format!("no profile {}", target.spec.profile_ref))?;
        let namespace = target.metadata.namespace.as_deref().unwrap_or("default");
        let name = target.metadata.name.as_deref().unwrap_or_default();
        targets.push(TargetRegistration::new(namespace, name, profile, &target.spec)?);
    }

    let objects = offline::load_objects(&examples.join("cluster-snapshot"))?;
    let collected = offline::collect(&targets, &objects);
    for (owner, rows) in &collected.rows {
        println!("{owner}: {} rows", rows.len());
        for row in rows {
            let attributes = row.attributes.clone().map_or(Value::Null, Value::Object);
            println!("  {}/{} {attributes}", row.namespace, row.name);
        }
    }
    for (owner, failures) in &collected.failures {
        println!("{owner}: {} objects failed: {}", failures.len(), failures.join("; "));
    }
    Ok(())
}
