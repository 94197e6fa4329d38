//! Scale harness (not a test): the `kollect` binary as a separate process against the local
//! control plane and PostgreSQL, with N objects in one inventory.
//!
//! `hack/perf.sh [objects] [configmap|deployment]` runs it (needs `hack/setup.sh`). It loads N
//! ConfigMaps (about 1.2 KiB each) or Deployments (about 4 KiB each) into one namespace, times a
//! bare paginated LIST of them and a bare streaming list, starts `kollect run` and measures, from outside the process:
//! the time until PostgreSQL holds every row, peak and steady RSS, CPU seconds of the sync, the
//! change→row latency of single changes, CPU per change, a sustained churn, and the operator's
//! API requests and status writes at idle (from the API server's own request counter). It prints
//! one Markdown table.
//!
//! Settings (environment): `KOLLECT_PERF_OBJECTS` (10000), `KOLLECT_PERF_KIND` (configmap),
//! `KOLLECT_PERF_CHANGES` (200), `KOLLECT_PERF_CHURN_RATE` (100 per second),
//! `KOLLECT_PERF_CHURN_SECONDS` (60), `KOLLECT_PERF_IDLE_SECONDS` (60), `KOLLECT_PERF_ADDRESS`
//! (a non-loopback address of this machine for PostgreSQL; default: the first of `hostname -I`,
//! since the binary's network policy refuses loopback sinks), `KOLLECT_PERF_PROFILE` (a path
//! prefix: `perf record` call graphs of the operator during the sync, the single changes and the
//! churn).

// A harness may panic on a broken setup: that is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kollect_testkit::ControlPlane;
use kollect_testkit::backends::Postgres;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use support::{CONFIGMAP_PROFILE, configmap, env_or, mib, ticks_per_second, usage};

const INVENTORY: &str = "scale";
const TARGET: &str = "scale";

/// What is loaded and how a change is made to it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    ConfigMap,
    Deployment,
}

impl Kind {
    fn resource(self) -> ApiResource {
        match self {
            Kind::ConfigMap => ApiResource {
                group: String::new(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                plural: "configmaps".into(),
            },
            Kind::Deployment => ApiResource {
                group: "apps".into(),
                version: "v1".into(),
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                plural: "deployments".into(),
            },
        }
    }

    fn object(self, i: usize) -> Value {
        let name = format!("obj-{i:06}");
        match self {
            Kind::ConfigMap => configmap(i),
            Kind::Deployment => {
                let env: Vec<Value> = (0..40)
                    .map(|e| json!({"name": format!("SETTING_{e:02}"), "value": format!("value-{i}-{e}")}))
                    .collect();
                json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {
                        "name": name,
                        "labels": {"app": name, "team": format!("team-{}", i % 10)},
                        "annotations": {"kollect.dev/scale": "x".repeat(900)},
                    },
                    "spec": {
                        "replicas": 1 + i % 3,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {
                            "metadata": {"labels": {"app": name}},
                            "spec": {"containers": [{
                                "name": "main", "image": format!("registry.example/app:{}", i % 50),
                                "env": env,
                                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                            }]},
                        },
                    },
                })
            }
        }
    }

    /// The profile: two JSONPath attributes and one CEL attribute; the first is the one a
    /// change sets.
    fn profile(self) -> &'static str {
        match self {
            Kind::ConfigMap => CONFIGMAP_PROFILE,
            Kind::Deployment => {
                "targetGVK: {group: apps, version: v1, kind: Deployment}
  attributes:
    - {name: value, path: '$.spec.template.spec.containers[0].image'}
    - {name: replicas, path: '$.spec.replicas'}
    - {name: containers, path: 'cel:size(object.spec.template.spec.containers)'}"
            }
        }
    }

    fn change(self, value: &str) -> (Patch<Value>, PatchParams) {
        match self {
            Kind::ConfigMap => (
                Patch::Merge(json!({"data": {"color": value}})),
                PatchParams::default(),
            ),
            Kind::Deployment => (
                Patch::Strategic(
                    json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": value}]}}}}),
                ),
                PatchParams::default(),
            ),
        }
    }
}

fn machine_address() -> IpAddr {
    if let Ok(address) = std::env::var("KOLLECT_PERF_ADDRESS") {
        return address.parse().expect("KOLLECT_PERF_ADDRESS is an IP address");
    }
    let output = Command::new("hostname")
        .arg("-I")
        .output()
        .expect("run hostname -I");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|a| a.is_ipv4() && !a.is_loopback())
        .expect(
            "this machine has no non-loopback IPv4 address for PostgreSQL (the kollect binary refuses loopback sinks); set KOLLECT_PERF_ADDRESS",
        )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

/// The operator's requests as the API server counts them: (all resource requests except
/// leases, status writes).
async fn request_counts(client: &kube::Client) -> (f64, f64) {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(request).await.unwrap();
    let (mut all, mut status) = (0.0, 0.0);
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        if labels.contains("resource=\"\"") || labels.contains("resource=\"leases\"") {
            continue;
        }
        all += value;
        if labels.contains("subresource=\"status\"")
            && (labels.contains("verb=\"PATCH\"") || labels.contains("verb=\"UPDATE\""))
        {
            status += value;
        }
    }
    (all, status)
}

struct Rows {
    client: tokio_postgres::Client,
    namespace: String,
}

impl Rows {
    async fn count(&self) -> i64 {
        self.client
            .query_one(
                "SELECT count(*) FROM inventory WHERE inventory_namespace = $1 AND inventory_name = $2",
                &[&self.namespace, &INVENTORY],
            )
            .await
            .map(|row| row.get(0))
            .unwrap_or(0)
    }

    /// The exported `value` attribute of the given uids.
    async fn values(&self, uids: &[String]) -> HashMap<String, String> {
        self.client
            .query(
                "SELECT source_uid, payload->'attributes'->>'value' FROM inventory \
                 WHERE cluster = '' AND inventory_namespace = $1 AND inventory_name = $2 \
                 AND target_name = $3 AND source_uid = ANY($4)",
                &[&self.namespace, &INVENTORY, &TARGET, &uids],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get::<_, Option<String>>(1).unwrap_or_default()))
            .collect()
    }
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    let objects: usize = env_or("KOLLECT_PERF_OBJECTS", 10_000);
    let kind = match std::env::var("KOLLECT_PERF_KIND").as_deref() {
        Ok("deployment") => Kind::Deployment,
        Ok("configmap") | Err(_) => Kind::ConfigMap,
        Ok(other) => panic!("KOLLECT_PERF_KIND is configmap or deployment, not {other}"),
    };
    let changes: usize = env_or("KOLLECT_PERF_CHANGES", 200);
    let churn_rate: u64 = env_or("KOLLECT_PERF_CHURN_RATE", 100);
    let churn_seconds: u64 = env_or("KOLLECT_PERF_CHURN_SECONDS", 60);
    let idle_seconds: u64 = env_or("KOLLECT_PERF_IDLE_SECONDS", 60);
    let ticks = ticks_per_second();

    let plane = ControlPlane::start().await.expect("local control plane");
    let pg = Postgres::start_listening_on(machine_address()).expect("PostgreSQL");
    let client = plane.client().await.unwrap();
    let ns = plane.create_namespace("scale").await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &kind.resource());

    // Load the objects.
    let started = Instant::now();
    let mut uids: Vec<(String, String)> = futures::stream::iter(0..objects)
        .map(|i| {
            let api = api.clone();
            async move {
                let object: DynamicObject = serde_json::from_value(kind.object(i)).unwrap();
                let created = api.create(&PostParams::default(), &object).await.unwrap();
                (created.metadata.name.unwrap(), created.metadata.uid.unwrap())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    uids.sort();
    let object_bytes = serde_json::to_vec(&kind.object(0)).unwrap().len();
    eprintln!(
        "loaded {objects} objects of about {object_bytes} bytes in {:.1?}",
        started.elapsed()
    );

    // A bare paginated LIST of the same objects (pages of 500, decoded and dropped).
    let started = Instant::now();
    let listed = kollect_testkit::control_plane::count_paginated(&api, 500)
        .await
        .unwrap();
    let list_time = started.elapsed();
    assert_eq!(listed, objects);
    // The same objects as a streaming list (one watch), which is how `kollect run` lists them
    // on an API server that has streaming lists.
    let started = Instant::now();
    let streamed = kollect_testkit::control_plane::count_streamed(&api)
        .await
        .unwrap();
    let stream_time = started.elapsed();
    assert_eq!(streamed, objects);

    plane
        .apply_yaml(
            &format!(
                "apiVersion: v1
kind: Secret
metadata: {{name: pg}}
stringData: {{dsn: \"{dsn}\"}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectDatabaseSink
metadata: {{name: pg}}
spec:
  type: postgres
  postgres: {{databaseRef: {{name: pg}}, table: inventory}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {{name: scale}}
spec:
  {profile}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {{name: {TARGET}}}
spec: {{profileRef: scale}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {{name: {INVENTORY}}}
spec:
  exportMinInterval: 1h
  databaseSinkRefs: [{{name: pg}}]
",
                dsn = pg.dsn("postgres"),
                profile = kind.profile(),
            ),
            &ns,
        )
        .await
        .unwrap();
    let (pg_client, connection) = tokio_postgres::connect(&pg.dsn("postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = Rows {
        client: pg_client,
        namespace: ns.clone(),
    };

    // The operator, as its own process.
    let log = tempfile::NamedTempFile::new().unwrap();
    let health = kollect_testkit::control_plane::free_port().unwrap();
    let started = Instant::now();
    let mut operator: Child = Command::new(env!("CARGO_BIN_EXE_kollect"))
        .args([
            "run",
            "--validating-webhooks-enabled=false",
            "--allow-private-sinks",
            "--log-format",
            "json",
        ])
        .arg("--health-probe-bind-address")
        .arg(format!("127.0.0.1:{health}"))
        .arg("--watch-namespaces")
        .arg(&ns)
        .env("KUBECONFIG", plane.kubeconfig_path())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("start kollect run");
    let pid = operator.id();

    // Peak RSS is VmHWM; the sampler keeps the highest RSS seen per phase as well.
    let sampled_peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let sampled_peak = Arc::clone(&sampled_peak);
        tokio::spawn(async move {
            loop {
                let now = usage(pid, ticks).rss_kib;
                sampled_peak.fetch_max(now, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let profiler = profile(pid, "sync");
    let expected = i64::try_from(objects).unwrap();
    let deadline = Instant::now() + Duration::from_secs(1800);
    while rows.count().await < expected {
        assert!(
            Instant::now() < deadline && matches!(operator.try_wait(), Ok(None)),
            "the rows did not reach PostgreSQL; operator log: {}",
            log.path().display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sync_time = started.elapsed();
    let synced = usage(pid, ticks);
    stop_profile(profiler);

    tokio::time::sleep(Duration::from_secs(15)).await;
    let steady = usage(pid, ticks);

    // Single changes, one after another.
    let profiler = profile(pid, "changes");
    let mut latencies = Vec::with_capacity(changes);
    let before = usage(pid, ticks);
    for i in 0..changes {
        let (name, uid) = &uids[(i * 7919) % uids.len()];
        let value = format!("single-{i:06}");
        let (patch, params) = kind.change(&value);
        let started = Instant::now();
        api.patch(name, &params, &patch).await.unwrap();
        let wanted = [uid.clone()];
        loop {
            if rows.values(&wanted).await.get(uid) == Some(&value) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "change {i} never reached PostgreSQL"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(started.elapsed());
    }
    let after = usage(pid, ticks);
    stop_profile(profiler);
    latencies.sort();
    let cpu_per_change = (after.cpu_seconds - before.cpu_seconds) / changes.max(1) as f64;

    // Sustained churn: `churn_rate` changes per second, round robin over the objects.
    sampled_peak.store(0, Ordering::Relaxed);
    let profiler = profile(pid, "churn");
    let churn_before = usage(pid, ticks);
    let mut pending: HashMap<String, (String, Instant)> = HashMap::new();
    let mut max_backlog = 0usize;
    let mut max_age = Duration::ZERO;
    let total = churn_rate * churn_seconds;
    let interval = Duration::from_secs_f64(1.0 / churn_rate.max(1) as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
    let mut last_check = Instant::now();
    let churn_started = Instant::now();
    for seq in 0..total {
        ticker.tick().await;
        let (name, uid) = uids[usize::try_from(seq).unwrap() % uids.len()].clone();
        let value = format!("churn-{seq:08}");
        pending.insert(uid, (value.clone(), Instant::now()));
        let permit = Arc::clone(&in_flight).acquire_owned().await.unwrap();
        let api = api.clone();
        tokio::spawn(async move {
            let (patch, params) = kind.change(&value);
            api.patch(&name, &params, &patch).await.unwrap();
            drop(permit);
        });
        if last_check.elapsed() >= Duration::from_secs(1) {
            last_check = Instant::now();
            settle(&rows, &mut pending).await;
            max_backlog = max_backlog.max(pending.len());
            max_age = max_age.max(
                pending
                    .values()
                    .map(|(_, at)| at.elapsed())
                    .max()
                    .unwrap_or_default(),
            );
        }
    }
    let churn_elapsed = churn_started.elapsed();
    let churn_end = usage(pid, ticks);
    stop_profile(profiler);
    let churn_peak = sampled_peak.load(Ordering::Relaxed);
    let drain_started = Instant::now();
    while !pending.is_empty() {
        assert!(
            drain_started.elapsed() < Duration::from_secs(300),
            "the churn's backlog did not drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        settle(&rows, &mut pending).await;
    }
    let drain = drain_started.elapsed();

    // Idle: nothing changes; count what the operator still asks of the API server.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (requests_before, status_before) = request_counts(&client).await;
    let idle_before = usage(pid, ticks);
    tokio::time::sleep(Duration::from_secs(idle_seconds)).await;
    let (requests_after, status_after) = request_counts(&client).await;
    let idle_after = usage(pid, ticks);
    let per_minute = |delta: f64| delta * 60.0 / idle_seconds.max(1) as f64;
    sampler.abort();
    let _ = operator.kill();
    let _ = operator.wait();

    let kind_name = match kind {
        Kind::ConfigMap => "ConfigMaps",
        Kind::Deployment => "Deployments",
    };
    println!("| Measurement ({objects} {kind_name} of about {object_bytes} bytes, one inventory) | Result |");
    println!("|---|---|");
    println!(
        "| bare paginated LIST (pages of 500) | {:.2} s |",
        list_time.as_secs_f64()
    );
    println!(
        "| bare streaming list (one watch) | {:.2} s |",
        stream_time.as_secs_f64()
    );
    println!(
        "| `kollect run` start to every row in PostgreSQL | {:.2} s ({:.2}× the LIST, {:.2}× the streaming list) |",
        sync_time.as_secs_f64(),
        sync_time.as_secs_f64() / list_time.as_secs_f64(),
        sync_time.as_secs_f64() / stream_time.as_secs_f64()
    );
    println!("| CPU seconds to sync | {:.2} s |", synced.cpu_seconds);
    println!(
        "| peak RSS (VmHWM) by the end of the sync | {} |",
        mib(synced.peak_kib)
    );
    println!(
        "| steady RSS 15 s after the sync | {} ({:.0} bytes per row) |",
        mib(steady.rss_kib),
        steady.rss_kib as f64 * 1024.0 / objects as f64
    );
    println!(
        "| change→row latency over {changes} single changes: p50 / p99 / max | {:.0} / {:.0} / {:.0} ms |",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!("| CPU per single change | {:.1} ms |", cpu_per_change * 1e3);
    println!(
        "| churn: {total} changes at {churn_rate}/s (issued in {:.1} s) | {:.2} CPU s, backlog at most {max_backlog} objects (oldest {:.1} s), drained {:.1} s after the last |",
        churn_elapsed.as_secs_f64(),
        churn_end.cpu_seconds - churn_before.cpu_seconds,
        max_age.as_secs_f64(),
        drain.as_secs_f64()
    );
    println!(
        "| RSS during the churn: start / highest / end | {} / {} / {} |",
        mib(churn_before.rss_kib),
        mib(churn_peak),
        mib(churn_end.rss_kib)
    );
    println!(
        "| idle for {idle_seconds} s: API requests per minute / status writes per minute / CPU | {:.1} / {:.1} / {:.2} s |",
        per_minute(requests_after - requests_before),
        per_minute(status_after - status_before),
        idle_after.cpu_seconds - idle_before.cpu_seconds
    );
    println!(
        "| peak RSS (VmHWM) over the whole run | {} |",
        mib(idle_after.peak_kib)
    );
}

/// `perf record` with call graphs of the operator during a phase, into
/// `$KOLLECT_PERF_PROFILE-<phase>.data`, when that variable is set.
fn profile(pid: u32, phase: &str) -> Option<Child> {
    let prefix = std::env::var("KOLLECT_PERF_PROFILE").ok()?;
    let output = format!("{prefix}-{phase}.data");
    let child = Command::new("perf")
        .args([
            "record",
            "--call-graph",
            "dwarf,32768",
            "-F",
            "199",
            "-o",
            &output,
            "-p",
        ])
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start perf record (KOLLECT_PERF_PROFILE)");
    Some(child)
}

fn stop_profile(profiler: Option<Child>) {
    if let Some(mut profiler) = profiler {
        // perf writes its file on SIGINT.
        let _ = Command::new("kill")
            .args(["-INT", &profiler.id().to_string()])
            .status();
        let _ = profiler.wait();
    }
}

/// Drops the pending changes PostgreSQL now shows (or that a later change superseded).
async fn settle(rows: &Rows, pending: &mut HashMap<String, (String, Instant)>) {
    if pending.is_empty() {
        return;
    }
    let uids: Vec<String> = pending.keys().cloned().collect();
    let values = rows.values(&uids).await;
    // Churn values are zero-padded, so a later change compares greater.
    pending.retain(|uid, (value, _)| {
        !values
            .get(uid)
            .is_some_and(|exported| exported.starts_with("churn-") && exported.as_str() >= value.as_str())
    });
}
