//! Perf harness (not a test): collects 10,000 ConfigMaps from the local control plane with a
//! 3-attribute profile and reports the time to a full store and the process RSS, next to the time
//! of a bare paginated LIST of the same objects.
//!
//! `cargo bench -p kollect-collect --bench collect_cluster` (needs `hack/setup.sh`). Set
//! `KOLLECT_PERF_OBJECTS` to change the object count.

// A harness may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kollect_collect::extract::{CompiledProfile, ExtractOptions};
use kollect_collect::runtime::{Runtime, RuntimeConfig, TargetRegistration};
use kollect_collect::select::{NamespaceDefaults, TargetFilter};
use kollect_core::api::v1alpha1::{
    AttributeSpec, CollectionFilter, GroupVersionKind, KollectProfileSpec, KollectTargetSpec,
};
use kollect_core::collect::RowOwner;
use kollect_testkit::ControlPlane;
use kube::api::{Api, PostParams};
use serde_json::json;

/// `VmRSS` and `VmHWM` of this process, in MiB.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() {
    let objects: usize = std::env::var("KOLLECT_PERF_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(objects));
}

async fn run(objects: usize) {
    let plane = ControlPlane::start().await.expect("local control plane");
    let client = plane.client().await.unwrap();
    let ns = plane.create_namespace("perf").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);

    // ~1.2 KiB of data per object, so that object size and row size differ clearly.
    let payload = "x".repeat(1024);
    let started = Instant::now();
    futures::stream::iter(0..objects)
        .map(|i| {
            let cms = cms.clone();
            let payload = payload.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": format!("cm-{i:05}"), "labels": {"app": "perf", "shard": (i % 10).to_string()}},
                    "data": {"color": if i % 2 == 0 { "red" } else { "blue" }, "payload": payload},
                }))
                .unwrap();
                cms.create(&PostParams::default(), &cm).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<()>()
        .await;
    println!("created {objects} ConfigMaps in {:.1?}", started.elapsed());

    // Bare paginated LIST, for comparison (pages of 500, objects decoded and dropped).
    let started = Instant::now();
    let listed = kollect_testkit::control_plane::count_paginated(&cms, 500)
        .await
        .unwrap();
    let list_time = started.elapsed();
    assert_eq!(listed, objects);
    println!("bare paginated LIST of {listed} objects: {list_time:.2?}");

    let (rss_before, _) = rss_mib();
    let profile = KollectProfileSpec {
        target_gvk: GroupVersionKind::new("", "v1", "ConfigMap"),
        attributes: vec![
            AttributeSpec::new("color", "$.data.color"),
            AttributeSpec::new("app", "$.metadata.labels.app"),
            AttributeSpec::new("keys", "cel:size(object.data)"),
        ],
        ..Default::default()
    };
    let target = KollectTargetSpec {
        profile_ref: "perf".into(),
        filter: CollectionFilter {
            included_namespaces: vec![ns.clone()],
            ..Default::default()
        },
        ..Default::default()
    };
    let runtime = Runtime::start(
        client.clone(),
        RuntimeConfig {
            settle: Duration::ZERO,
            ..RuntimeConfig::default()
        },
    );
    let owner = RowOwner::target(&ns, "perf");
    let started = Instant::now();
    runtime.register(TargetRegistration {
        owner: owner.clone(),
        profile_name: "perf".into(),
        gvk: profile.target_gvk.clone(),
        profile: Arc::new(CompiledProfile::compile(&profile, &ExtractOptions::default())),
        filter: TargetFilter::compile(
            (&target).into(),
            &NamespaceDefaults::default(),
            None,
            &Default::default(),
        )
        .unwrap(),
        fingerprint: "1".into(),
    });
    while runtime.store().count(&owner) < objects {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let collect_time = started.elapsed();
    let (rss_after, peak) = rss_mib();
    println!(
        "runtime: {objects} rows in {collect_time:.2?} ({:.0} rows/s)",
        objects as f64 / collect_time.as_secs_f64()
    );
    println!(
        "RSS: {rss_before:.1} MiB before the runtime, {rss_after:.1} MiB with {objects} rows (+{:.1} MiB), peak {peak:.1} MiB",
        rss_after - rss_before
    );
}
