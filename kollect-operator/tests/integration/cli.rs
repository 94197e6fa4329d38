//! The `kollect` CLI as a user runs it: golden outputs of the example, exit codes, errors and
//! warnings, offline and cluster collection giving the same rows, and `--watch`.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kollect(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kollect"))
        .args(args)
        .current_dir(repo())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Replaces every `exportedAt` timestamp, the only value that differs between runs.
fn normalize(output: &str) -> String {
    let mut out = String::with_capacity(output.len());
    let mut rest = output;
    while let Some(at) = rest.find("exportedAt") {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let end = tail.find(['\n', ',']).unwrap_or(tail.len());
        let field = &tail[..end];
        let value_start = field.find(|c: char| c.is_ascii_digit()).unwrap_or(field.len());
        let value_end = field.rfind('Z').map_or(field.len(), |i| i + 1);
        out.push_str(&field[..value_start]);
        out.push_str("2026-01-01T00:00:00Z");
        out.push_str(&field[value_end..]);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn example(extra: &[&str]) -> Output {
    let mut args = vec![
        "collect",
        "--config",
        "examples/first-inventory",
        "--source",
        "examples/cluster-snapshot",
    ];
    args.extend_from_slice(extra);
    kollect(&args)
}

#[test]
fn version_names_the_release_the_commit_and_the_build_date() {
    let output = kollect(&["--version"]);
    assert!(output.status.success(), "{output:?}");
    let line = text(&output.stdout);
    let rest = line
        .trim_end()
        .strip_prefix(concat!("kollect ", env!("CARGO_PKG_VERSION"), " (commit "))
        .unwrap_or_else(|| panic!("unexpected version line {line:?}"));
    let (commit, date) = rest
        .strip_suffix(')')
        .and_then(|r| r.split_once(", built "))
        .unwrap_or_else(|| panic!("unexpected version line {line:?}"));
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())
        .output()
        .ok()
        .filter(|o| o.status.success());
    match head {
        // Built inside this repository: the commit is HEAD's.
        Some(head) if std::env::var_os("KOLLECT_BUILD_COMMIT").is_none() => {
            assert_eq!(commit, text(&head.stdout).trim(), "{line}");
        }
        _ => assert!(!commit.is_empty(), "{line}"),
    }
    let parts: Vec<&str> = date.split('-').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())) && date.len() == 10,
        "build date {date:?} is not YYYY-MM-DD"
    );
    // Subcommands print the same version after their own name (`kollect-collect 0.1.0 (...)`).
    let subcommand = text(&kollect(&["collect", "--version"]).stdout);
    assert_eq!(
        subcommand.split_once(' ').map(|p| p.1),
        line.split_once(' ').map(|p| p.1)
    );
}

#[test]
fn the_example_prints_golden_records_in_each_format() {
    for format in ["ndjson", "yaml", "json"] {
        let output = example(&["--output", "-", "--format", format]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert!(
            output.stderr.is_empty(),
            "stderr is for terminals only: {}",
            text(&output.stderr)
        );
        kollect_testkit::golden::assert_golden(
            repo().join(format!("kollect-operator/tests/golden/example.{format}")),
            &normalize(&text(&output.stdout)),
        );
    }
    // The default format is NDJSON.
    let default = example(&["--output", "-"]);
    let ndjson = example(&["--output", "-", "--format", "ndjson"]);
    assert_eq!(
        normalize(&text(&default.stdout)),
        normalize(&text(&ndjson.stdout))
    );
}

#[test]
fn the_example_writes_documents_into_a_directory_and_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = example(&["--output", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let document = std::fs::read(out.join("inventory/kollect-system/deployments.json")).unwrap();
    let items = kollect_core::model::decode_items(&document).unwrap();
    assert_eq!(items.len(), 7);
    assert!(out.join("inventory/kollect-system/helm-releases.json").is_file());

    let dry = dir.path().join("dry");
    let output = example(&["--output", dry.to_str().unwrap(), "--dry-run"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!dry.exists());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("dry-run: would write export target=kollect-system/deployments path=inventory/kollect-system/deployments.json bytes="), "{stderr}");
}

/// A configuration directory with the given files.
fn config(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

const PROFILE: &str = r#"apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {name: deployments, namespace: kollect-system}
spec:
  targetGVK: {group: apps, version: v1, kind: Deployment}
  attributes:
    - {name: ready, path: "$.status.readyReplicas"}
"#;

const TARGET: &str = r#"apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {name: deployments, namespace: kollect-system}
spec:
  profileRef: deployments
"#;

fn collect(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["collect", "--config", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let snapshot = repo().join("examples/cluster-snapshot");
    args.extend_from_slice(&["--source", snapshot.to_str().unwrap()]);
    kollect(&args)
}

#[test]
fn exit_codes() {
    // 0: everything collected (the example).
    assert_eq!(example(&["--output", "-"]).status.code(), Some(0));

    // 1: a required attribute fails on some objects (a Deployment without status.readyReplicas
    // is fine: missing values are null; a CEL error is not), but others are exported.
    let failing = PROFILE.replace("$.status.readyReplicas", "cel: object.status.readyReplicas > 0");
    let dir = config(&[("profile.yaml", &failing), ("target.yaml", TARGET)]);
    let output = collect(dir.path(), &["--output", "-"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("attribute \"ready\""),
        "{}",
        text(&output.stderr)
    );
    assert!(!output.stdout.is_empty());

    // 2: flags, configuration and references.
    let dir = config(&[("profile.yaml", PROFILE), ("target.yaml", TARGET)]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--format", "yaml"], "--format needs --output"),
        (
            vec!["--output", "-", "--dry-run"],
            "--output - and --dry-run cannot be combined",
        ),
        (
            vec!["--output", "-", "--format", "xml"],
            "--format: unknown format \"xml\" (supported: json, ndjson, yaml)",
        ),
        (
            vec![],
            "no KollectSnapshotSink, KollectDatabaseSink or KollectEventSink",
        ),
        (vec!["--output", "-", "--watch"], "--watch needs a cluster"),
    ];
    for (flags, message) in cases {
        let output = collect(dir.path(), &flags);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{flags:?}: {}",
            text(&output.stderr)
        );
        assert!(
            text(&output.stderr).contains(message),
            "{flags:?}: {}",
            text(&output.stderr)
        );
    }
    let orphan = config(&[("target.yaml", TARGET)]);
    let output = collect(orphan.path(), &["--output", "-"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("profileRef \"deployments\" is not a KollectProfile"),
        "{}",
        text(&output.stderr)
    );
    let output = kollect(&["collect", "--config", "/nonexistent/kollect", "--output", "-"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("/nonexistent/kollect"),
        "{}",
        text(&output.stderr)
    );
    // An unknown clap flag is a usage error (2).
    assert_eq!(kollect(&["collect", "--bogus"]).status.code(), Some(2));
    // Cluster mode with a kubeconfig that does not exist.
    let output = kollect(&[
        "collect",
        "--config",
        dir.path().to_str().unwrap(),
        "--output",
        "-",
        "--kubeconfig",
        "/nonexistent/config",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("kubeconfig /nonexistent/config"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn malformed_files_and_unknown_kinds_are_reported() {
    let dir = config(&[
        ("a-profile.yaml", PROFILE),
        (
            "b-broken.yaml",
            "apiVersion: kollect.dev/v1alpha1\nkind: KollectTarget\n---\nkind: [unclosed\n",
        ),
    ]);
    let output = collect(dir.path(), &["--output", "-"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("b-broken.yaml (document 1): KollectTarget: missing field `metadata`"),
        "{stderr}"
    );

    let dir = config(&[
        ("profile.yaml", PROFILE),
        ("target.yaml", TARGET),
        (
            "extra.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated}\n",
        ),
    ]);
    let output = collect(dir.path(), &["--output", "-"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        text(&output.stderr).contains("warning: ")
            && text(&output.stderr).contains("skipping v1 ConfigMap unrelated"),
        "{}",
        text(&output.stderr)
    );

    let output = kollect(&["validate", "--config", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        text(&output.stdout).ends_with(": valid (1 profile(s), 1 target(s), 0 sink(s))\n"),
        "{}",
        text(&output.stdout)
    );
    let bad = config(&[
        (
            "profile.yaml",
            &PROFILE.replace("$.status.readyReplicas", "$.status["),
        ),
        ("target.yaml", TARGET),
    ]);
    let output = kollect(&["validate", "--config", bad.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("invalid: KollectProfile \"deployments\" is invalid: "),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("1 config object(s) failed validation\n"),
        "{stderr}"
    );
}

#[test]
fn an_unset_env_secret_names_secret_key_and_variable() {
    let sink = r#"apiVersion: kollect.dev/v1alpha1
kind: KollectSnapshotSink
metadata: {name: git, namespace: kollect-system}
spec:
  type: git
  endpoint: https://git.example.com/inventory.git
  secretRef: {name: git-credentials}
---
apiVersion: v1
kind: Secret
metadata: {name: git-credentials, namespace: kollect-system}
stringData:
  token: ${env:KOLLECT_TEST_UNSET_TOKEN}
"#;
    let dir = config(&[
        ("profile.yaml", PROFILE),
        ("target.yaml", TARGET),
        ("sink.yaml", sink),
    ]);
    let output = collect(dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr).trim_end(),
        "error: secret kollect-system/git-credentials key token: environment variable KOLLECT_TEST_UNSET_TOKEN is not set (the value is ${env:KOLLECT_TEST_UNSET_TOKEN})"
    );
}

/// The snapshot's objects, without server-owned fields, as YAML for the control plane, and the
/// statuses to set through the status subresource.
fn snapshot_for_cluster() -> (String, Vec<Value>) {
    let objects = kollect_collect::offline::load_objects(&repo().join("examples/cluster-snapshot")).unwrap();
    let mut yaml = String::new();
    let mut statuses = Vec::new();
    for mut object in objects {
        let metadata = object["metadata"].as_object_mut().unwrap();
        for field in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
            metadata.remove(field);
        }
        if let Some(status) = object.as_object_mut().unwrap().remove("status")
            && object["kind"] == "Deployment"
        {
            statuses.push(json!({
                "name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"], "status": status
            }));
        }
        if object["kind"] == "Service" {
            object["spec"].as_object_mut().unwrap().remove("clusterIP");
        }
        yaml.push_str("---\n");
        yaml.push_str(&serde_norway::to_string(&object).unwrap());
    }
    (yaml, statuses)
}

/// Rows of the records on stdout, without uids (they differ between the dump and the cluster).
fn rows_without_uids(stdout: &[u8]) -> Vec<Value> {
    let mut rows = Vec::new();
    for line in text(stdout).lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        for item in record["envelope"]["items"].as_array().unwrap() {
            let mut item = item.clone();
            item.as_object_mut().unwrap().remove("uid");
            rows.push(item);
        }
    }
    rows.sort_by_key(|r| r.to_string());
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_and_cluster_collection_give_the_same_rows_and_watch_exports_changes() {
    use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
    let Some(plane) = kollect_testkit::ControlPlane::start_for_test().await else {
        return;
    };
    let (yaml, statuses) = snapshot_for_cluster();
    plane.apply_yaml(&yaml, "default").await.unwrap();
    let client = plane.client().await.unwrap();
    let deployments = ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        plural: "deployments".into(),
    };
    for entry in statuses {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), entry["namespace"].as_str().unwrap(), &deployments);
        api.patch_status(
            entry["name"].as_str().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": entry["status"]})),
        )
        .await
        .unwrap();
    }
    let kubeconfig = plane.kubeconfig_path().to_str().unwrap().to_owned();
    let offline = example(&["--output", "-"]);
    let cluster = kollect(&[
        "collect",
        "--config",
        "examples/first-inventory",
        "--output",
        "-",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert_eq!(cluster.status.code(), Some(0), "{}", text(&cluster.stderr));
    let (offline_rows, cluster_rows) = (
        rows_without_uids(&offline.stdout),
        rows_without_uids(&cluster.stdout),
    );
    assert_eq!(offline_rows.len(), 10);
    assert_eq!(offline_rows, cluster_rows);

    // --watch: a new Deployment in an opted-in namespace reaches the output directory.
    let out = tempfile::tempdir().unwrap();
    let watch = Command::new(env!("CARGO_BIN_EXE_kollect"))
        .args([
            "collect",
            "--config",
            "examples/first-inventory",
            "--kubeconfig",
            &kubeconfig,
            "--watch",
            "--output",
        ])
        .arg(out.path())
        .current_dir(repo())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut watch = KillOnDrop(watch);
    // Documents go under the context's name: <context>/inventory/<namespace>/<name>.json.
    let context = kube::config::Kubeconfig::read_from(&kubeconfig)
        .unwrap()
        .current_context
        .unwrap();
    let document = out
        .path()
        .join(context)
        .join("inventory/kollect-system/deployments.json");
    let names = |path: &Path| -> Vec<String> {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| kollect_core::model::decode_items(&bytes).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect()
    };
    let eventually = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !check() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    eventually("the first export", &|| names(&document).len() == 7);
    plane
        .apply_yaml(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: newcomer, namespace: shop}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: newcomer}}\n  template:\n    metadata: {labels: {app: newcomer}}\n    spec: {containers: [{name: app, image: registry.example.com/shop/newcomer:1.0.0}]}\n",
            "shop",
        )
        .await
        .unwrap();
    eventually("the change to be exported", &|| {
        names(&document).contains(&"newcomer".to_owned())
    });
    // Ctrl-C stops it cleanly.
    let status = Command::new("kill")
        .args(["-INT", &watch.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = watch.0.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
}

/// Kills a child process when the test ends, also on failure.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `validate` decodes strictly, checks inventories' sink refs, and treats a sink type this
/// build has no backend for as invalid (not a warning).
#[test]
fn validate_is_strict_about_fields_inventories_and_sink_types() {
    let example = repo().join("examples/first-inventory");
    let output = kollect(&["validate", "--config", example.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));

    let unknown_field = config(&[
        ("profile.yaml", PROFILE),
        ("target.yaml", &format!("{TARGET}  suspnd: true\n")),
    ]);
    let output = kollect(&["validate", "--config", unknown_field.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "target.yaml (document 1): KollectTarget: strict decoding error: unknown field \"spec.suspnd\""
        ),
        "{stderr}"
    );

    let inventory = r#"apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {name: apps, namespace: kollect-system}
spec:
  snapshotSinkRefs: [{name: archive}]
  databaseSinkRefs: [{name: missing}]
"#;
    let s3 = r#"apiVersion: kollect.dev/v1alpha1
kind: KollectSnapshotSink
metadata: {name: archive, namespace: kollect-system}
spec:
  type: gitlab
  endpoint: https://gitlab.example.com/platform/inventory.git
  serialization: {format: yaml}
  gitlab: {mergeRequest: {mode: merge_request, targetBranch: main, autoMerge: true}}
"#;
    let dir = config(&[
        ("profile.yaml", PROFILE),
        ("target.yaml", TARGET),
        ("inventory.yaml", inventory),
        ("sink.yaml", s3),
    ]);
    let output = kollect(&["validate", "--config", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "invalid: KollectInventory \"apps\" is invalid: spec.databaseSinkRefs: \"missing\" is not a KollectDatabaseSink in "
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("invalid: KollectSnapshotSink \"archive\" is invalid: ")
            && stderr
                .contains("autoMerge is not supported: the sink opens merge requests and never merges them"),
        "{stderr}"
    );
    assert!(!stderr.contains("warning: KollectSnapshotSink"), "{stderr}");
    assert!(
        stderr.ends_with("2 config object(s) failed validation\n"),
        "{stderr}"
    );
}
