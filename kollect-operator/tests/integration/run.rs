//! `kollect run` as a process: flag errors, the controllers reconciling against the local
//! control plane, and a clean exit on SIGTERM.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use kollect_core::api::v1alpha1::KollectTarget;
use kube::api::Api;

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_kollect"))
        .args(["run", "--leader-elect-renew-deadline", "90s"])
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--leader-elect-renew-deadline must be less than --leader-elect-lease-duration"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reconciles_and_stops_cleanly_on_sigterm() {
    let Some(plane) = kollect_testkit::ControlPlane::start_for_test().await else {
        return;
    };
    let ns = plane.create_namespace("binary").await.unwrap();
    plane
        .apply_yaml(
            "apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {name: configmaps}
spec:
  targetGVK: {version: v1, kind: ConfigMap}
  attributes: [{name: name, path: '$.metadata.name'}]
---
apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {name: configmaps}
spec: {profileRef: configmaps}
",
            &ns,
        )
        .await
        .unwrap();
    let port = kollect_testkit::control_plane::free_port().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kollect"))
        .args([
            "run",
            "--validating-webhooks-enabled=false",
            "--log-format",
            "json",
        ])
        .arg("--health-probe-bind-address")
        .arg(format!("127.0.0.1:{port}"))
        .env("KUBECONFIG", plane.kubeconfig_path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let targets: Api<KollectTarget> = Api::namespaced(plane.client().await.unwrap(), &ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let ready = loop {
        let target = targets.get("configmaps").await.unwrap();
        let ready = target
            .status
            .iter()
            .flat_map(|s| s.conditions.iter())
            .find(|c| c.type_ == "Ready")
            .map(|c| (c.status.clone(), c.reason.clone()));
        if ready.is_some() {
            let finalizers = target.metadata.finalizers.clone().unwrap_or_default();
            break (ready, finalizers);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the target was not reconciled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ready.0, Some(("True".to_owned(), "Collecting".to_owned())));
    assert_eq!(ready.1, ["kollect.dev/target-cleanup"]);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || {
        let mut stderr = String::new();
        use std::io::Read;
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        (child.wait().unwrap(), stderr)
    })
    .await
    .unwrap();
    assert_eq!(output.0.code(), Some(0), "{}", output.1);
    let first = output.1.lines().next().unwrap_or_default();
    let log: serde_json::Value = serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(
        log["fields"]["message"].is_string(),
        "structured log lines: {first}"
    );
    assert!(output.1.contains("shutting down"), "{}", output.1);
}
