//! CLI harness (not a test): `kollect collect` as a separate process against the local control
//! plane, next to a raw unpaginated LIST and a raw streaming list of the same objects.
//!
//! `hack/perf-cli.sh [objects]` runs it (needs `hack/setup.sh`). It loads N ConfigMaps (about
//! 1.2 KiB each, default 10,000) into one namespace, writes a configuration with a 3-attribute
//! profile (two JSONPath, one CEL) and one target, then runs, each as its own process and
//! `KOLLECT_PERF_ROUNDS` (3) times in turn: this harness's own `list` mode (one unpaginated LIST
//! through kube's client, every object decoded, then exit), its `stream` mode (the same objects
//! as one streaming list, how `kollect collect` lists them) and `kollect collect --output -` in
//! NDJSON and in JSON, output to a file whose lines and rows are checked. It prints one Markdown
//! table of medians: wall time from spawn to exit, peak RSS (VmHWM) and CPU seconds.

// A harness may panic on a broken setup: that is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::process::{Command, Stdio};
use std::time::Instant;

use futures::StreamExt;
use kollect_testkit::ControlPlane;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use support::{CONFIGMAP_PROFILE, Measured, configmap, env_or, measure, mib, ticks_per_second};

fn configmaps() -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        plural: "configmaps".into(),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `collect_cli list <namespace>`: the baseline, in its own process.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("list") {
        let namespace = args.get(2).expect("list <namespace>").clone();
        let count = runtime.block_on(list_unpaginated(&namespace));
        println!("{count}");
        return;
    }
    // `collect_cli stream <namespace>`: the same objects as a streaming list.
    if args.get(1).map(String::as_str) == Some("stream") {
        let namespace = args.get(2).expect("stream <namespace>").clone();
        let count = runtime.block_on(async {
            let client = kube::Client::try_default().await.expect("a kubeconfig");
            let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &configmaps());
            kollect_testkit::control_plane::count_streamed(&api)
                .await
                .expect("streaming list")
        });
        println!("{count}");
        return;
    }
    runtime.block_on(run());
}

/// One LIST without a limit, every object decoded into a `DynamicObject`.
async fn list_unpaginated(namespace: &str) -> usize {
    let client = kube::Client::try_default().await.expect("a kubeconfig");
    let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &configmaps());
    api.list(&ListParams::default()).await.expect("list").items.len()
}

struct Case {
    name: &'static str,
    runs: Vec<Measured>,
}

impl Case {
    fn median<T: PartialOrd + Copy>(&self, of: impl Fn(&Measured) -> T) -> T {
        let mut values: Vec<T> = self.runs.iter().map(of).collect();
        values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        values[values.len() / 2]
    }
}

async fn run() {
    let objects: usize = env_or("KOLLECT_PERF_OBJECTS", 10_000);
    let rounds: usize = env_or("KOLLECT_PERF_ROUNDS", 3).max(1);
    let ticks = ticks_per_second();

    let plane = ControlPlane::start().await.expect("local control plane");
    let client = plane.client().await.unwrap();
    let ns = plane.create_namespace("cli").await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &configmaps());
    let started = Instant::now();
    futures::stream::iter(0..objects)
        .map(|i| {
            let api = api.clone();
            async move {
                let object: DynamicObject = serde_json::from_value(configmap(i)).unwrap();
                api.create(&PostParams::default(), &object).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    eprintln!("loaded {objects} ConfigMaps in {:.1?}", started.elapsed());

    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("inventory.yaml"),
        format!(
            "apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {{name: scale, namespace: {ns}}}
spec:
  {CONFIGMAP_PROFILE}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {{name: scale, namespace: {ns}}}
spec: {{profileRef: scale, includedNamespaces: [{ns}]}}
"
        ),
    )
    .unwrap();
    let output = tempfile::NamedTempFile::new().unwrap();

    let mut cases = [
        Case {
            name: "raw unpaginated LIST (kube client, objects decoded)",
            runs: Vec::new(),
        },
        Case {
            name: "raw streaming list (one watch, objects decoded)",
            runs: Vec::new(),
        },
        Case {
            name: "`kollect collect --output - --format ndjson`",
            runs: Vec::new(),
        },
        Case {
            name: "`kollect collect --output - --format json`",
            runs: Vec::new(),
        },
    ];
    for _ in 0..rounds {
        let listed = measure(
            Command::new(std::env::current_exe().unwrap())
                .args(["list", &ns])
                .env("KUBECONFIG", plane.kubeconfig_path())
                .stdout(Stdio::null()),
            ticks,
        );
        assert!(listed.success, "the baseline LIST failed");
        cases[0].runs.push(listed);
        let streamed = measure(
            Command::new(std::env::current_exe().unwrap())
                .args(["stream", &ns])
                .env("KUBECONFIG", plane.kubeconfig_path())
                .stdout(Stdio::null()),
            ticks,
        );
        assert!(streamed.success, "the streaming list failed");
        cases[1].runs.push(streamed);
        for (index, format) in [(2, "ndjson"), (3, "json")] {
            let collected = measure(
                Command::new(env!("CARGO_BIN_EXE_kollect"))
                    .args(["collect", "--output", "-", "--format", format, "--config"])
                    .arg(config.path())
                    .env("KUBECONFIG", plane.kubeconfig_path())
                    .stdout(std::fs::File::create(output.path()).unwrap())
                    .stderr(Stdio::null()),
                ticks,
            );
            assert!(collected.success, "kollect collect --format {format} failed");
            check_output(output.path(), format, objects);
            cases[index].runs.push(collected);
        }
    }

    let list_wall = cases[0].median(|m| m.wall);
    let list_peak = cases[0].median(|m| m.usage.peak_kib);
    println!(
        "{objects} ConfigMaps of about {} bytes, {rounds} rounds, medians:",
        serde_json::to_vec(&configmap(0)).unwrap().len()
    );
    println!();
    println!("| Process | Wall time | vs LIST | Peak RSS | vs LIST | CPU seconds |");
    println!("|---|---|---|---|---|---|");
    for case in &cases {
        let wall = case.median(|m| m.wall);
        let peak = case.median(|m| m.usage.peak_kib);
        println!(
            "| {} | {:.2} s | {:.2}× | {} | {:.2}× | {:.2} |",
            case.name,
            wall.as_secs_f64(),
            wall.as_secs_f64() / list_wall.as_secs_f64().max(f64::EPSILON),
            mib(peak),
            peak as f64 / list_peak.max(1) as f64,
            case.median(|m| m.usage.cpu_seconds),
        );
    }
}

/// The output holds one row per object: records (one NDJSON line each, or the elements of one
/// JSON array) whose envelopes carry the rows.
fn check_output(path: &std::path::Path, format: &str, objects: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let records: Vec<serde_json::Value> = match format {
        "ndjson" => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {:.300}", l)))
            .collect(),
        _ => serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {:.300}", text)),
    };
    let rows: usize = records
        .iter()
        .map(|r| r["envelope"]["items"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(
        rows, objects,
        "kollect collect --format {format} wrote {rows} rows"
    );
}
