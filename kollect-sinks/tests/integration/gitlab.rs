//! The gitlab sink against a real Gitea server (the Gitea/Forgejo API the sink falls back to,
//! and real Git over HTTP): direct mode with the conformance suite, merge-request mode end to
//! end. GitLab's own `/api/v4` calls are checked by the unit tests of `gitlab::forge` against a
//! recorded contract of GitLab's documentation; no GitLab server runs in these tests.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::jiff::Timestamp;
use kollect_core::api::v1alpha1::KollectSnapshotSinkSpec;
use kollect_core::model::Snapshot;
use kollect_core::netguard::NetPolicy;
use kollect_core::sink::{ErrorClass, ExportRequest, InventoryRef, RemoveRequest, Sink};
use kollect_sinks::gitlab::{GitlabConfig, GitlabSink};
use kollect_sinks::{BuildContext, SecretData};
use kollect_testkit::backends::{self, GITEA_USER, Gitea};
use kollect_testkit::conformance::sample_row;
use serde_json::{Value, json};

use super::git::Bare;

fn server() -> Option<&'static Gitea> {
    static SERVER: OnceLock<Option<Gitea>> = OnceLock::new();
    SERVER
        .get_or_init(|| backends::start_for_test(Gitea::start))
        .as_ref()
}

async fn next_repo(gitea: &Gitea, prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    gitea.create_repo(&name).await.unwrap();
    name
}

fn spec(endpoint: &str, extra: Value) -> KollectSnapshotSinkSpec {
    let mut spec = json!({"type": "gitlab", "endpoint": endpoint});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(spec).unwrap()
}

fn context(token: &str) -> BuildContext {
    BuildContext::new("team-a/gitlab", NetPolicy::permissive_for_tests()).with_secret(SecretData::new([
        ("username".to_owned(), GITEA_USER.as_bytes().to_vec()),
        ("token".to_owned(), token.as_bytes().to_vec()),
    ]))
}

fn sink_with(endpoint: &str, extra: Value, token: &str) -> GitlabSink {
    let mut config = GitlabConfig::from_spec(&spec(endpoint, extra), context(token)).unwrap();
    // Each sink gets its own mirror directory.
    config.git = config.git.with_mirror_root(tempfile::tempdir().unwrap().keep());
    GitlabSink::new(config).unwrap()
}

fn request(inventory: &InventoryRef, names: &[&str], version: i64) -> ExportRequest {
    ExportRequest::full(
        inventory.clone(),
        3,
        Timestamp::from_second(1_800_000_000).unwrap(),
        Snapshot::new(names.iter().map(|n| sample_row(inventory, n, version)).collect()),
    )
}

/// Direct mode: JSON documents under a per-cluster path template on `main`.
async fn conformance_setup() -> (GitlabSink, Bare) {
    let gitea = server().expect("gitea (run hack/setup.sh)");
    let repo = next_repo(gitea, "conformance").await;
    let sink = sink_with(
        &gitea.repo_url(&repo),
        json!({"pathTemplate": "{cluster}/inventory/{namespace}/{name}{extension}", "serialization": {"format": "json"}}),
        gitea.token(),
    );
    (sink, Bare::main(gitea.repo_path(&repo)))
}

kollect_testkit::sink_conformance_tests!(conformance_setup());

#[tokio::test]
async fn direct_mode_force_pushes_the_go_subject_unless_told_otherwise() {
    let Some(gitea) = server() else { return };
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let repo = next_repo(gitea, "direct").await;
    let sink = sink_with(&gitea.repo_url(&repo), json!({}), gitea.token());
    sink.export(&request(&inventory, &["web"], 1)).await.unwrap();
    let bare = Bare::main(gitea.repo_path(&repo));
    assert_eq!(bare.head_message().trim(), "kollect: export inventory");
    assert!(
        bare.files()
            .iter()
            .any(|(p, _)| p == "inventory/team-a/apps.yaml")
    );

    let custom = next_repo(gitea, "custom").await;
    let sink = sink_with(
        &gitea.repo_url(&custom),
        json!({"git": {"pushPolicy": "Commit", "commitMessage": "inventory {namespace}/{name}: {itemCount} items",
            "author": {"name": "Inventory Bot", "email": "bot@example.com"}}}),
        gitea.token(),
    );
    sink.export(&request(&inventory, &["web", "api"], 1))
        .await
        .unwrap();
    let bare = Bare::main(gitea.repo_path(&custom));
    assert_eq!(
        bare.head_message().lines().next(),
        Some("inventory team-a/apps: 2 items")
    );
    let repo = git2::Repository::open_bare(gitea.repo_path(&custom)).unwrap();
    let tip = repo
        .find_commit(repo.refname_to_id("refs/heads/main").unwrap())
        .unwrap();
    assert_eq!(tip.author().name(), Some("Inventory Bot"));
    assert_eq!(tip.parent_count(), 1, "Commit appends to the branch's history");
}

#[tokio::test]
async fn merge_request_mode_proposes_each_inventory_on_its_own_branch_with_one_pull_request() {
    let Some(gitea) = server() else { return };
    let repo = next_repo(gitea, "proposals").await;
    let endpoint = gitea.repo_url(&repo);
    let mode = json!({"gitlab": {"mergeRequest": {"mode": "merge_request", "targetBranch": "main", "titleTemplate": "Inventory {namespace}/{name}"}}});
    let sink = sink_with(&endpoint, mode.clone(), gitea.token());
    let apps = InventoryRef::namespaced("team-a", "apps");
    let jobs = InventoryRef::namespaced("team-a", "jobs").with_cluster("east");
    sink.export(&request(&apps, &["web"], 1)).await.unwrap();
    sink.export(&request(&jobs, &["nightly"], 1)).await.unwrap();
    let mut pulls = gitea.open_pulls(&repo).await.unwrap();
    pulls.sort_by(|a, b| a.1.cmp(&b.1));
    let summary: Vec<(String, String, String)> = pulls
        .iter()
        .map(|p| (p.1.clone(), p.2.clone(), p.3.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "kollect/east/team-a/jobs".to_owned(),
                "main".to_owned(),
                "Inventory team-a/jobs".to_owned()
            ),
            (
                "kollect/team-a/apps".to_owned(),
                "main".to_owned(),
                "Inventory team-a/apps".to_owned()
            ),
        ]
    );
    let main = Bare::main(gitea.repo_path(&repo));
    assert!(
        !main.files().iter().any(|(p, _)| p.starts_with("inventory/")),
        "main is never pushed to"
    );
    let feature = Bare {
        path: gitea.repo_path(&repo),
        branch: "kollect/team-a/apps".to_owned(),
    };
    assert!(
        feature
            .files()
            .iter()
            .any(|(p, _)| p == "inventory/team-a/apps.yaml")
    );
    assert_eq!(feature.commits(), 2, "one commit on top of the target branch");

    // A change updates the same branch and pull request; the same content again pushes nothing.
    sink.export(&request(&apps, &["web", "api"], 2)).await.unwrap();
    let receipt = sink.export(&request(&apps, &["web", "api"], 2)).await.unwrap();
    assert!(receipt.unchanged, "the feature branch already holds this export");
    assert_eq!(gitea.open_pulls(&repo).await.unwrap().len(), 2);
    assert_eq!(feature.commits(), 2, "force-pushed on top of the target again");
    let document = feature
        .files()
        .into_iter()
        .find(|(p, _)| p == "inventory/team-a/apps.yaml")
        .unwrap()
        .1;
    assert!(document.contains("api:2"), "{document}");

    // A restarted operator (a new sink) finds the open pull request instead of opening another.
    let again = sink_with(&endpoint, mode, gitea.token());
    again.export(&request(&apps, &["web"], 3)).await.unwrap();
    assert_eq!(gitea.open_pulls(&repo).await.unwrap().len(), 2);

    // Removing an inventory whose files reached the target branch proposes their removal.
    let direct = sink_with(&endpoint, json!({}), gitea.token());
    direct.export(&request(&apps, &["web"], 3)).await.unwrap();
    again
        .remove(&RemoveRequest {
            inventory: apps.clone(),
            generation: 3,
        })
        .await
        .unwrap();
    assert!(
        !feature
            .files()
            .iter()
            .any(|(p, _)| p.starts_with("inventory/team-a/apps")),
        "the feature branch removes the inventory's files"
    );
    assert!(
        main.files()
            .iter()
            .any(|(p, _)| p == "inventory/team-a/apps.yaml"),
        "main is untouched until merged"
    );

    // Removing an inventory that never reached the target branch withdraws its proposal.
    again
        .remove(&RemoveRequest {
            inventory: jobs.clone(),
            generation: 1,
        })
        .await
        .unwrap();
    let open: Vec<String> = gitea
        .open_pulls(&repo)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(open, ["kollect/team-a/apps"], "the jobs pull request is closed");
}

#[tokio::test]
async fn a_wrong_token_is_terminal_and_never_quoted() {
    let Some(gitea) = server() else { return };
    let repo = next_repo(gitea, "denied").await;
    let wrong = "0123456789abcdef0123456789abcdef01234567";
    let sink = sink_with(&gitea.repo_url(&repo), json!({}), wrong);
    let error = sink
        .export(&request(&InventoryRef::namespaced("team-a", "apps"), &["web"], 1))
        .await
        .unwrap_err();
    assert_ne!(error.class(), ErrorClass::Transient, "{error}");
    assert!(!error.to_string().contains(wrong), "{error}");
    assert!(!error.to_string().contains(gitea.token()), "{error}");
}

#[tokio::test]
async fn the_server_down_then_back_converges() {
    let Some(_) = server() else { return };
    // A server of its own, so stopping it does not disturb other tests.
    let mut gitea = Gitea::start().unwrap();
    let repo = next_repo(&gitea, "outage").await;
    let sink = sink_with(
        &gitea.repo_url(&repo),
        json!({"gitlab": {"mergeRequest": {"mode": "merge_request", "targetBranch": "main"}}}),
        gitea.token(),
    );
    let inventory = InventoryRef::namespaced("team-a", "apps");
    gitea.stop();
    let error = sink.export(&request(&inventory, &["web"], 1)).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    gitea.resume().unwrap();
    sink.export(&request(&inventory, &["web"], 1)).await.unwrap();
    sink.export(&request(&inventory, &["web"], 1)).await.unwrap();
    let pulls = gitea.open_pulls(&repo).await.unwrap();
    assert_eq!(pulls.len(), 1, "one pull request, no duplicates: {pulls:?}");
}

#[tokio::test]
async fn a_missing_target_branch_is_a_clear_error() {
    let Some(gitea) = server() else { return };
    let repo = next_repo(gitea, "no-target").await;
    let sink = sink_with(
        &gitea.repo_url(&repo),
        json!({"gitlab": {"mergeRequest": {"mode": "merge_request", "targetBranch": "release"}}}),
        gitea.token(),
    );
    let error = sink
        .export(&request(&InventoryRef::namespaced("team-a", "apps"), &["web"], 1))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert!(
        error.to_string().contains("git branch release does not exist"),
        "{error}"
    );
    assert!(gitea.open_pulls(&repo).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_probe_reaches_the_target_branch() {
    let Some(gitea) = server() else { return };
    let repo = next_repo(gitea, "probe").await;
    let sink = sink_with(
        &gitea.repo_url(&repo),
        json!({"gitlab": {"mergeRequest": {"mode": "merge_request", "targetBranch": "main"}}}),
        gitea.token(),
    );
    let report = sink.probe().await.unwrap();
    assert_eq!(report.message, "TLS and GitLab remote reachability verified");
}
