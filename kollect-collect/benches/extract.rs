//! Per-object extraction cost: a realistic ~4 KB Deployment with a profile of 3 JSONPath and 2 CEL
//! attributes, and a pool of 128 varied Deployments. Besides criterion's timings, prints the
//! number of heap allocations per object, counted by an instrumented global allocator.
//!
//! Run: `cargo bench -p kollect-collect --bench extract`

// A benchmark may stop on a broken fixture: that is its failure report.
#![allow(clippy::expect_used)]

use std::alloc::System;
use std::hint::black_box;

use criterion::{Criterion, Throughput};
use kollect_collect::extract::{CompiledProfile, ExtractOptions};
use kollect_core::api::v1alpha1::{AttributeSpec, GroupVersionKind, KollectProfileSpec};
use serde_json::Value;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const DEPLOYMENT: &str = include_str!("../tests/fixtures/objects/deployment-storefront.yaml");

fn profile() -> CompiledProfile {
    let spec = KollectProfileSpec {
        target_gvk: GroupVersionKind::new("apps", "v1", "Deployment"),
        attributes: vec![
            AttributeSpec::new("image", "$.spec.template.spec.containers[0].image"),
            AttributeSpec::new("replicas", "$.spec.replicas"),
            AttributeSpec::new("team", "$.metadata.labels.team"),
            AttributeSpec::new("containers", "cel:size(object.spec.template.spec.containers)"),
            AttributeSpec::new(
                "ready",
                "cel:has(object.status.readyReplicas) && object.status.readyReplicas == object.spec.replicas",
            ),
        ],
        ..Default::default()
    };
    CompiledProfile::compile(&spec, &ExtractOptions::default())
}

fn deployment() -> Value {
    serde_norway::from_str(DEPLOYMENT).expect("fixture parses")
}

/// 128 Deployments that differ in name, replicas, labels and number of containers.
fn pool() -> Vec<Value> {
    let base = deployment();
    (0..128)
        .map(|i| {
            let mut d = base.clone();
            d["metadata"]["name"] = Value::from(format!("svc-{i:03}"));
            d["metadata"]["labels"]["team"] = Value::from(["web", "payments", "search", "data"][i % 4]);
            d["spec"]["replicas"] = Value::from(i % 7);
            if let Some(containers) = d["spec"]["template"]["spec"]["containers"].as_array_mut() {
                let keep = 1 + i % containers.len();
                containers.truncate(keep);
                for extra in 0..(i % 3) {
                    let mut c = containers[0].clone();
                    c["name"] = Value::from(format!("extra-{extra}"));
                    containers.push(c);
                }
            }
            if i % 5 == 0 {
                d.as_object_mut().map(|o| o.remove("status"));
            }
            d
        })
        .collect()
}

fn allocations_per_object(profile: &CompiledProfile, objects: &[Value]) -> (f64, f64) {
    let region = Region::new(GLOBAL);
    for object in objects {
        black_box(profile.extract(object).ok());
    }
    let stats = region.change();
    let n = objects.len() as f64;
    (stats.allocations as f64 / n, stats.bytes_allocated as f64 / n)
}

fn main() {
    let profile = profile();
    let single = deployment();
    let pool = pool();
    let bytes = serde_json::to_vec(&single).map(|v| v.len()).unwrap_or(0);

    let (allocs, alloc_bytes) = allocations_per_object(&profile, std::slice::from_ref(&single));
    println!(
        "deployment_4k: object {bytes} bytes of JSON, {allocs:.0} allocations ({alloc_bytes:.0} bytes) per extraction"
    );
    let (allocs, alloc_bytes) = allocations_per_object(&profile, &pool);
    println!("pool_128: {allocs:.1} allocations ({alloc_bytes:.0} bytes) per object");

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("extract");
    group.throughput(Throughput::Elements(1));
    group.bench_function("deployment_4k", |b| {
        b.iter(|| profile.extract(black_box(&single)))
    });
    group.throughput(Throughput::Elements(pool.len() as u64));
    group.bench_function("pool_128", |b| {
        b.iter(|| {
            for object in &pool {
                black_box(profile.extract(black_box(object)).ok());
            }
        })
    });
    group.finish();
    criterion.final_summary();
}
