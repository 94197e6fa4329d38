//! `kollect init` as a user runs it: in a pseudo-terminal against the local control plane, and
//! without a terminal.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use nix::sys::wait::WaitStatus;
use rexpect::session::PtySession;

/// How long one expected prompt may take to appear before the test reports a hang. Generous:
/// this guards against a stuck wizard, it does not measure anything.
const PROMPT_TIMEOUT_MS: u64 = 120_000;

fn wizard(kubeconfig: &Path, output_dir: &Path) -> PtySession {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kollect"));
    command
        .args(["init", "--kubeconfig"])
        .arg(kubeconfig)
        .arg("--output-dir")
        .arg(output_dir)
        .env("NO_COLOR", "1")
        .env("TERM", "xterm");
    rexpect::session::spawn_command(command, Some(PROMPT_TIMEOUT_MS)).unwrap()
}

fn exit_code(session: &mut PtySession) -> i32 {
    session.exp_eof().unwrap();
    match session.process().wait().unwrap() {
        WaitStatus::Exited(_, code) => code,
        other => panic!("kollect init did not exit normally: {other:?}"),
    }
}

/// Answers the questions for a ConfigMap profile over the namespaces matching `pattern`.
fn answer_configmap_questions(session: &mut PtySession, pattern: &str) {
    session.exp_string("Kind to collect").unwrap();
    session.send_line("configmaps").unwrap();
    session.exp_string("Name of the profile and target").unwrap();
    session.send_line("app-config").unwrap();
    session.exp_string("Namespaces").unwrap();
    session.send_line(pattern).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wizard_writes_files_that_collect_the_sampled_objects() {
    let Some(plane) = kollect_testkit::ControlPlane::start_for_test().await else {
        return;
    };
    let namespace = plane.create_namespace("initwizard").await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(plane.client().await.unwrap(), &namespace);
    let mut settings = ConfigMap::default();
    settings.metadata.name = Some("settings".into());
    settings.metadata.labels = Some([("team".to_owned(), "checkout".to_owned())].into());
    configmaps
        .create(&PostParams::default(), &settings)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let output_dir = dir.path().join("collect-config");
    let kubeconfig = plane.kubeconfig_path().to_owned();

    let (dir_for_wizard, kubeconfig_for_wizard) = (output_dir.clone(), kubeconfig.clone());
    let pattern = format!("{}*", &namespace[..namespace.len() - 3]);
    let code = tokio::task::spawn_blocking(move || {
        let mut session = wizard(&kubeconfig_for_wizard, &dir_for_wizard);
        answer_configmap_questions(&mut session, &pattern);
        session.exp_string("today's namespaces").unwrap();
        session.exp_string("Read one ConfigMap from the cluster").unwrap();
        session.send_line("y").unwrap();
        session.exp_string("Attributes of one ConfigMap:").unwrap();
        session.exp_string("\"team\": \"checkout\"").unwrap();
        session.exp_string("Wrote").unwrap();
        exit_code(&mut session)
    })
    .await
    .unwrap();
    assert_eq!(code, 0);

    let target = std::fs::read_to_string(output_dir.join("target.yaml")).unwrap();
    assert!(
        target.contains(&format!("includedNamespaces:\n  - {namespace}\n")),
        "the pattern expands to the namespace:\n{target}"
    );
    let profile = std::fs::read_to_string(output_dir.join("profile.yaml")).unwrap();
    assert!(
        profile.contains("name: app-config\n  namespace: kollect-system\n"),
        "{profile}"
    );
    assert!(
        profile.contains("    version: v1\n    kind: ConfigMap\n"),
        "{profile}"
    );

    // The written configuration is valid and collects the object that was previewed.
    let validate = Command::new(env!("CARGO_BIN_EXE_kollect"))
        .args(["validate", "--config"])
        .arg(&output_dir)
        .output()
        .unwrap();
    assert_eq!(
        validate.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );
    let collect = Command::new(env!("CARGO_BIN_EXE_kollect"))
        .args(["collect", "--output", "-", "--config"])
        .arg(&output_dir)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        collect.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&collect.stderr)
    );
    let record: serde_json::Value = serde_json::from_slice(&collect.stdout).unwrap();
    let items = record["envelope"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{record:#}");
    assert_eq!(items[0]["attributes"]["name"], "settings");
    assert_eq!(items[0]["attributes"]["namespace"], namespace.as_str());
    assert_eq!(items[0]["attributes"]["labels"]["team"], "checkout");

    // A second run asks before replacing the files; declining cancels with exit 2 and keeps them.
    let (dir_for_wizard, kubeconfig_for_wizard) = (output_dir.clone(), kubeconfig.clone());
    let pattern = namespace.clone();
    let code = tokio::task::spawn_blocking(move || {
        let mut session = wizard(&kubeconfig_for_wizard, &dir_for_wizard);
        answer_configmap_questions(&mut session, &pattern);
        session.exp_string("Read one ConfigMap").unwrap();
        session.send_line("n").unwrap();
        session.exp_string("Overwrite").unwrap();
        session.send_line("n").unwrap();
        session.exp_string("cancelled; nothing was written").unwrap();
        exit_code(&mut session)
    })
    .await
    .unwrap();
    assert_eq!(code, 2);
    assert_eq!(
        std::fs::read_to_string(output_dir.join("target.yaml")).unwrap(),
        target
    );

    // Ctrl-C at a prompt cancels with exit 2.
    let code = tokio::task::spawn_blocking(move || {
        let mut session = wizard(&kubeconfig, &output_dir);
        session.exp_string("Kind to collect").unwrap();
        session.send_control('c').unwrap();
        session.exp_string("cancelled").unwrap();
        exit_code(&mut session)
    })
    .await
    .unwrap();
    assert_eq!(code, 2);
}

#[test]
fn without_a_terminal_init_points_at_the_samples_and_exits_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_kollect"))
        .arg("init")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs a terminal"), "{stderr}");
    assert!(stderr.contains("examples/first-inventory/"), "{stderr}");
    assert!(output.stdout.is_empty());
}
