//! The Git sink against a real Git smart-HTTP server (git http-backend with basic auth).

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::OnceLock;

use async_trait::async_trait;
use kollect_core::api::v1alpha1::KollectSnapshotSinkSpec;
use kollect_core::model::{Row, Snapshot};
use kollect_core::netguard::NetPolicy;
use kollect_core::sink::{ErrorClass, ExportRequest, InventoryRef, Sink};
use kollect_sinks::git::{GitConfig, GitSink};
use kollect_sinks::{BuildContext, SecretData};
use kollect_testkit::GitServer;
use kollect_testkit::backends;
use kollect_testkit::conformance::{Inspect, sample_row};
use serde_json::json;

const USER: &str = "kollect";
const PASSWORD: &str = "s3cret-token-value";

fn server() -> Option<&'static GitServer> {
    static SERVER: OnceLock<Option<GitServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| backends::start_for_test(|| GitServer::start(USER, PASSWORD)))
        .as_ref()
}

fn next_repo(server: &GitServer, prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "{prefix}-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    server.create_repo(&name).unwrap();
    name
}

fn sink(server: &GitServer, repo: &str, spec: serde_json::Value, password: &str) -> GitSink {
    GitSink::new(git_config(server, repo, spec, password))
}

fn git_config(server: &GitServer, repo: &str, spec: serde_json::Value, password: &str) -> GitConfig {
    let mut spec = spec;
    spec["type"] = "git".into();
    spec["endpoint"] = server.url(repo).into();
    let spec: KollectSnapshotSinkSpec = serde_json::from_value(spec).unwrap();
    let mut context = BuildContext::new("team-a/git", NetPolicy::permissive_for_tests());
    context.secret = SecretData::new([
        ("username".to_owned(), USER.as_bytes().to_vec()),
        ("password".to_owned(), password.as_bytes().to_vec()),
    ]);
    // Each test gets its own mirror directory.
    let mirrors = tempfile::tempdir().unwrap().keep();
    GitConfig::from_spec(&spec, context)
        .unwrap()
        .with_mirror_root(mirrors)
}

/// Reads a branch tip of a bare repository (`main` unless said otherwise).
pub(crate) struct Bare {
    pub(crate) path: std::path::PathBuf,
    pub(crate) branch: String,
}

impl Bare {
    pub(crate) fn main(path: std::path::PathBuf) -> Self {
        Self {
            path,
            branch: "main".to_owned(),
        }
    }

    fn tip(&self, repo: &git2::Repository) -> Option<git2::Oid> {
        repo.refname_to_id(&format!("refs/heads/{}", self.branch)).ok()
    }

    fn repo(&self) -> git2::Repository {
        git2::Repository::open_bare(&self.path).unwrap()
    }

    pub(crate) fn files(&self) -> Vec<(String, String)> {
        let repo = self.repo();
        let Some(tip) = self.tip(&repo) else {
            return Vec::new();
        };
        let tree = repo.find_commit(tip).unwrap().tree().unwrap();
        let mut files = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(git2::ObjectType::Blob) {
                let blob = repo.find_blob(entry.id()).unwrap();
                files.push((
                    format!("{dir}{}", entry.name().unwrap()),
                    String::from_utf8_lossy(blob.content()).into_owned(),
                ));
            }
            git2::TreeWalkResult::Ok
        })
        .unwrap();
        files
    }

    pub(crate) fn commits(&self) -> usize {
        let repo = self.repo();
        let Some(tip) = self.tip(&repo) else {
            return 0;
        };
        let mut walk = repo.revwalk().unwrap();
        walk.push(tip).unwrap();
        walk.count()
    }

    pub(crate) fn head_message(&self) -> String {
        let repo = self.repo();
        let tip = self.tip(&repo).unwrap();
        repo.find_commit(tip).unwrap().message().unwrap().to_owned()
    }
}

#[async_trait]
impl Inspect for Bare {
    async fn rows(&self, inventory: &InventoryRef) -> Result<Option<Vec<Row>>, String> {
        let cluster = if inventory.cluster.is_empty() {
            "default"
        } else {
            &inventory.cluster
        };
        let prefix = format!(
            "{cluster}/inventory/{}/{}.",
            inventory.path_namespace(),
            inventory.name
        );
        let mut rows = Vec::new();
        let mut found = false;
        for (path, content) in self.files() {
            if path.starts_with(&prefix) && path.ends_with(".json") {
                found = true;
                rows.extend(
                    kollect_core::model::decode_items(content.as_bytes()).map_err(|e| e.to_string())?,
                );
            }
        }
        Ok(found.then_some(rows))
    }
}

/// Conformance: JSON documents under a per-cluster path template.
async fn conformance_setup() -> (GitSink, Bare) {
    let server = server().expect("git server (run hack/setup.sh)");
    let repo = next_repo(server, "conformance");
    let sink = sink(
        server,
        &repo,
        json!({"pathTemplate": "{cluster}/inventory/{namespace}/{name}{extension}", "serialization": {"format": "json"}}),
        PASSWORD,
    );
    (sink, Bare::main(server.repo_path(&repo)))
}

kollect_testkit::sink_conformance_tests!(conformance_setup());

fn request(inventory: &InventoryRef, names: &[&str], version: i64) -> ExportRequest {
    ExportRequest::full(
        inventory.clone(),
        7,
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        Snapshot::new(names.iter().map(|n| sample_row(inventory, n, version)).collect()),
    )
}

fn paths(bare: &Bare) -> Vec<String> {
    bare.files().into_iter().map(|(p, _)| p).collect()
}

#[tokio::test]
async fn document_yaml_with_commit_templates_and_no_commit_when_unchanged() {
    let Some(server) = server() else { return };
    let repo = next_repo(server, "document");
    let sink = sink(
        server,
        &repo,
        json!({"git": {
            "commitMessage": "inventory {namespace}/{name}: {itemCount} items",
            "commitBody": "generation {generation} via {sink}",
            "commitTrailers": ["Kollect-Checksum: {checksumShort}"],
            "author": {"name": "Inventory Bot", "email": "bot@example.com"}
        }}),
        PASSWORD,
    );
    let bare = Bare::main(server.repo_path(&repo));
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let first = sink
        .export(&request(&inventory, &["web", "api"], 1))
        .await
        .unwrap();
    assert!(!first.unchanged);
    assert_eq!(paths(&bare), ["inventory/team-a/apps.yaml"]);
    let (_, yaml) = &bare.files()[0];
    assert!(yaml.starts_with("- attributes:\n"), "{yaml}");
    let message = bare.head_message();
    assert!(
        message.starts_with(
            "inventory team-a/apps: 2 items\n\ngeneration 7 via team-a/git\n\nKollect-Checksum: "
        ),
        "{message}"
    );
    let repo_handle = bare.repo();
    let tip = repo_handle.refname_to_id("refs/heads/main").unwrap();
    let author = repo_handle
        .find_commit(tip)
        .unwrap()
        .author()
        .name()
        .unwrap()
        .to_owned();
    assert_eq!(author, "Inventory Bot");

    // The same content again: no commit.
    let again = sink
        .export(&request(&inventory, &["web", "api"], 1))
        .await
        .unwrap();
    assert!(again.unchanged);
    assert_eq!(bare.commits(), 1);
}

#[tokio::test]
async fn per_resource_writes_only_changed_files_and_prunes_gone_resources() {
    let Some(server) = server() else { return };
    let repo = next_repo(server, "per-resource");
    let sink = sink(
        server,
        &repo,
        json!({"layout": {"mode": "perResource", "content": "attributes"}, "serialization": {"format": "json"}}),
        PASSWORD,
    );
    let bare = Bare::main(server.repo_path(&repo));
    let inventory = InventoryRef::namespaced("team-a", "apps");
    sink.export(&request(&inventory, &["web", "api", "db"], 1))
        .await
        .unwrap();
    assert_eq!(
        paths(&bare),
        [
            ".kollect/inventories/default/team-a/apps.paths",
            "default/shop/deployment/api.json",
            "default/shop/deployment/db.json",
            "default/shop/deployment/web.json",
        ]
    );
    let blob = |path: &str| {
        let repo = bare.repo();
        let tip = repo.refname_to_id("refs/heads/main").unwrap();
        repo.find_commit(tip)
            .unwrap()
            .tree()
            .unwrap()
            .get_path(Path::new(path))
            .unwrap()
            .id()
    };
    let api_before = blob("default/shop/deployment/api.json");

    // web changes, db disappears: one file rewritten, one pruned, api untouched.
    let mut rows: Vec<Row> = ["web", "api"]
        .iter()
        .map(|n| sample_row(&inventory, n, 1))
        .collect();
    rows[0] = sample_row(&inventory, "web", 2);
    let changed = ExportRequest::full(
        inventory.clone(),
        7,
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_100).unwrap(),
        Snapshot::new(rows),
    );
    sink.export(&changed).await.unwrap();
    assert_eq!(
        paths(&bare),
        [
            ".kollect/inventories/default/team-a/apps.paths",
            "default/shop/deployment/api.json",
            "default/shop/deployment/web.json",
        ]
    );
    assert_eq!(blob("default/shop/deployment/api.json"), api_before);
    assert!(
        bare.files()
            .iter()
            .any(|(p, c)| p.ends_with("web.json") && c.contains(":2"))
    );

    // Deleting the inventory removes exactly its files.
    sink.remove(&kollect_core::sink::RemoveRequest {
        inventory: inventory.clone(),
        generation: 7,
    })
    .await
    .unwrap();
    assert!(paths(&bare).is_empty(), "{:?}", paths(&bare));
}

#[tokio::test]
async fn split_layout_writes_an_index_and_resources() {
    let Some(server) = server() else { return };
    let repo = next_repo(server, "split");
    let sink = sink(server, &repo, json!({"layout": {"mode": "split"}}), PASSWORD);
    let bare = Bare::main(server.repo_path(&repo));
    let inventory = InventoryRef::namespaced("team-a", "apps").with_cluster("prod");
    sink.export(&request(&inventory, &["web"], 1)).await.unwrap();
    let files = bare.files();
    let index = files
        .iter()
        .find(|(p, _)| p == "inventory/team-a/apps.yaml")
        .map(|(_, c)| c.clone())
        .unwrap();
    assert!(index.contains("itemCount: 1"), "{index}");
    assert!(index.contains("- prod/shop/deployment/web.yaml"), "{index}");
    assert!(
        files
            .iter()
            .any(|(p, c)| p == "prod/shop/deployment/web.yaml" && c.contains("kind: Deployment"))
    );
}

/// Commits a README directly into the bare repository, as another writer would.
fn push_by_someone_else(path: &Path) {
    let repo = git2::Repository::open_bare(path).unwrap();
    let tip = repo.refname_to_id("refs/heads/main").unwrap();
    let parent = repo.find_commit(tip).unwrap();
    let blob = repo.blob(b"hand-written\n").unwrap();
    let mut builder = repo.treebuilder(Some(&parent.tree().unwrap())).unwrap();
    builder.insert("README.md", blob, 0o100_644).unwrap();
    let tree = repo.find_tree(builder.write().unwrap()).unwrap();
    let someone = git2::Signature::now("someone", "someone@example.com").unwrap();
    repo.commit(
        Some("refs/heads/main"),
        &someone,
        &someone,
        "docs",
        &tree,
        &[&parent],
    )
    .unwrap();
}

#[tokio::test]
async fn a_concurrent_push_by_someone_else_is_recovered() {
    let Some(server) = server() else { return };
    let repo = next_repo(server, "concurrent");
    let bare = Bare::main(server.repo_path(&repo));
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let config = git_config(server, &repo, json!({}), PASSWORD);
    // Between the sink's fetch and its push, someone else pushes (once).
    let raced = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (path, counter) = (bare.path.clone(), std::sync::Arc::clone(&raced));
    let sink = GitSink::new(config.with_before_push(std::sync::Arc::new(move || {
        // The first push creates the branch; race the second one.
        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            push_by_someone_else(&path);
        }
    })));
    sink.export(&request(&inventory, &["web"], 1)).await.unwrap();
    sink.export(&request(&inventory, &["web", "api"], 1))
        .await
        .unwrap();
    assert_eq!(sink.rejected_pushes(), 1, "the push was rejected once");
    let files = paths(&bare);
    assert!(files.contains(&"README.md".to_owned()), "{files:?}");
    assert_eq!(bare.commits(), 3);
    assert!(
        bare.files()
            .iter()
            .any(|(p, c)| p == "inventory/team-a/apps.yaml" && c.contains("api"))
    );
}

#[tokio::test]
async fn a_wrong_password_is_terminal_and_never_echoed() {
    let Some(server) = server() else { return };
    let repo = next_repo(server, "auth");
    let sink = sink(server, &repo, json!({}), "wrong-password-value");
    let inventory = InventoryRef::namespaced("team-a", "apps");
    let error = sink.export(&request(&inventory, &["web"], 1)).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal, "{error}");
    assert!(!error.message().contains("wrong-password-value"), "{error}");
    let error = sink.probe().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal, "{error}");
    let ok = self::sink(server, &repo, json!({}), PASSWORD)
        .probe()
        .await
        .unwrap();
    assert_eq!(ok.message, "TLS and git remote reachability verified");
}

#[tokio::test]
async fn force_push_overwrites_a_diverged_branch() {
    let Some(server) = server() else { return };
    let repo = next_repo(server, "force");
    let bare = Bare::main(server.repo_path(&repo));
    let config = git_config(
        server,
        &repo,
        json!({"git": {"pushPolicy": "ForcePush"}}),
        PASSWORD,
    );
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (path, counter) = (bare.path.clone(), std::sync::Arc::clone(&calls));
    let sink = GitSink::new(config.with_before_push(std::sync::Arc::new(move || {
        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            push_by_someone_else(&path);
        }
    })));
    let inventory = InventoryRef::namespaced("team-a", "apps");
    sink.export(&request(&inventory, &["web"], 1)).await.unwrap();
    sink.export(&request(&inventory, &["api"], 1)).await.unwrap();
    assert_eq!(sink.rejected_pushes(), 0);
    let files = paths(&bare);
    assert_eq!(
        files,
        ["inventory/team-a/apps.yaml"],
        "the other commit was overwritten"
    );
    assert!(bare.files().iter().any(|(_, c)| c.contains("api")));
}

fn tls_sink(server: &GitServer, repo: &str, tls: serde_json::Value, ca_pem: Option<&str>) -> GitSink {
    let spec: KollectSnapshotSinkSpec = serde_json::from_value(json!({
        "type": "git", "endpoint": server.url(repo), "tls": tls,
    }))
    .unwrap();
    let mut context = BuildContext::new("team-a/git", NetPolicy::permissive_for_tests());
    context.secret = SecretData::new([
        ("username".to_owned(), USER.as_bytes().to_vec()),
        ("password".to_owned(), PASSWORD.as_bytes().to_vec()),
    ]);
    context.ca_pem = ca_pem.map(str::to_owned);
    GitSink::new(
        GitConfig::from_spec(&spec, context)
            .unwrap()
            .with_mirror_root(tempfile::tempdir().unwrap().keep()),
    )
}

#[tokio::test]
async fn https_with_a_private_ca_bundle_or_insecure_skip_verify() {
    let Some(server) = backends::start_for_test(|| GitServer::start_tls(USER, PASSWORD)) else {
        return;
    };
    server.create_repo("tls").unwrap();
    let inventory = InventoryRef::namespaced("team-a", "apps");
    assert!(server.url("tls").starts_with("https://"));

    // Without the CA the certificate is not trusted: a terminal error naming the problem.
    let error = tls_sink(&server, "tls", json!({}), None)
        .export(&request(&inventory, &["web"], 1))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal, "{error}");
    assert!(error.message().to_lowercase().contains("certificate"), "{error}");

    // With the CA bundle it works.
    let trusted = tls_sink(&server, "tls", json!({}), server.ca_pem());
    trusted.export(&request(&inventory, &["web"], 1)).await.unwrap();
    assert_eq!(
        trusted.probe().await.unwrap().message,
        "TLS and git remote reachability verified"
    );
    // A CA that did not sign the certificate is refused.
    let other_ca = kollect_testkit::pki::serving_pki("other").unwrap().ca_pem;
    let error = tls_sink(&server, "tls", json!({}), Some(&other_ca))
        .probe()
        .await
        .unwrap_err();
    assert!(
        error.message().contains("not trusted by spec.tls CA bundle"),
        "{error}"
    );
    // insecureSkipVerify accepts any certificate.
    tls_sink(&server, "tls", json!({"insecureSkipVerify": true}), None)
        .export(&request(&inventory, &["web", "api"], 1))
        .await
        .unwrap();
    let bare = Bare::main(server.repo_path("tls"));
    assert_eq!(bare.commits(), 2);
}

#[tokio::test]
async fn ssh_with_a_private_key_and_known_hosts() {
    use kollect_testkit::SshGitServer;
    let Some(server) = backends::start_for_test(SshGitServer::start) else {
        return;
    };
    let url = server.create_repo("ssh").unwrap();
    let build = |known_hosts: Option<&str>, insecure: bool| {
        let spec: KollectSnapshotSinkSpec = serde_json::from_value(json!({
            "type": "git", "endpoint": url, "tls": {"insecureSkipVerify": insecure},
        }))
        .unwrap();
        let mut context = BuildContext::new("team-a/git", NetPolicy::permissive_for_tests());
        let mut secret = vec![(
            "ssh-privatekey".to_owned(),
            server.private_key().as_bytes().to_vec(),
        )];
        if let Some(known_hosts) = known_hosts {
            secret.push(("known_hosts".to_owned(), known_hosts.as_bytes().to_vec()));
        }
        context.secret = SecretData::new(secret);
        GitConfig::from_spec(&spec, context)
            .map(|config| GitSink::new(config.with_mirror_root(tempfile::tempdir().unwrap().keep())))
    };
    // known_hosts is required unless insecureSkipVerify.
    let error = build(None, false).unwrap_err();
    assert!(error.message().contains("known_hosts"), "{error}");

    let inventory = InventoryRef::namespaced("team-a", "apps");
    let sink = build(Some(server.known_hosts()), false).unwrap();
    sink.export(&request(&inventory, &["web"], 1)).await.unwrap();
    assert_eq!(
        sink.probe().await.unwrap().message,
        "TLS and git remote reachability verified"
    );
    let bare = Bare::main(server.repo_path("ssh"));
    assert_eq!(paths(&bare), ["inventory/team-a/apps.yaml"]);

    // A host key that is not the server's is refused.
    let wrong_hosts = server
        .known_hosts()
        .split(' ')
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
        + " AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n";
    let error = build(Some(&wrong_hosts), false)
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal, "{error}");
    assert!(error.message().contains("not in known_hosts"), "{error}");
}

/// Two clusters writing the same inventory to one repository: each sink's `spec.cluster` names
/// its files, so neither overwrites nor prunes the other's; a cluster named by the export
/// request wins over the spec.
#[tokio::test]
async fn clusters_sharing_a_repository_keep_their_own_files() {
    let Some(server) = server() else { return };
    let repo = next_repo(server, "fleet");
    let bare = Bare::main(server.repo_path(&repo));
    let per_resource = |cluster: &str| {
        json!({"cluster": cluster, "layout": {"mode": "perResource", "content": "attributes"},
               "serialization": {"format": "json"}, "git": {"prune": true}})
    };
    let east = sink(server, &repo, per_resource("east"), PASSWORD);
    let west = sink(server, &repo, per_resource("west"), PASSWORD);
    let inventory = InventoryRef::namespaced("team-a", "apps");
    east.export(&request(&inventory, &["web"], 1)).await.unwrap();
    west.export(&request(&inventory, &["api"], 1)).await.unwrap();
    assert_eq!(
        paths(&bare),
        [
            ".kollect/inventories/east/team-a/apps.paths",
            ".kollect/inventories/west/team-a/apps.paths",
            "east/shop/deployment/web.json",
            "west/shop/deployment/api.json",
        ]
    );
    // Removing east's inventory leaves west's files alone.
    east.remove(&kollect_core::sink::RemoveRequest {
        inventory: inventory.clone(),
        generation: 7,
    })
    .await
    .unwrap();
    assert_eq!(
        paths(&bare),
        [
            ".kollect/inventories/west/team-a/apps.paths",
            "west/shop/deployment/api.json",
        ]
    );
    // The request's cluster identity wins over spec.cluster.
    let named = InventoryRef::namespaced("team-a", "apps").with_cluster("north");
    west.export(&request(&named, &["db"], 1)).await.unwrap();
    assert!(
        paths(&bare).contains(&"north/shop/deployment/db.json".to_owned()),
        "{:?}",
        paths(&bare)
    );
}

/// The preview names layout values as the API spells them.
#[tokio::test]
async fn the_preview_uses_api_spellings() {
    let Some(server) = server() else { return };
    let repo = next_repo(server, "preview");
    let sink = sink(
        server,
        &repo,
        json!({"layout": {"mode": "perResource", "content": "attributes"}}),
        PASSWORD,
    );
    let inventory = InventoryRef::namespaced("team-a", "api");
    let preview = sink.preview(&request(&inventory, &["web"], 1));
    let layout = preview.layout.expect("layout preview");
    assert_eq!(layout.mode.as_deref(), Some("perResource"));
    assert_eq!(layout.content.as_deref(), Some("attributes"));
}

#[tokio::test]
async fn existing_mode_never_creates_the_branch() {
    let Some(server) = server() else { return };
    let repo = next_repo(server, "existing");
    let sink = sink(
        server,
        &repo,
        json!({"provisioning": {"mode": "existing"}}),
        PASSWORD,
    );
    let error = sink
        .export(&request(&InventoryRef::namespaced("team-a", "apps"), &["web"], 1))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert!(
        error
            .to_string()
            .contains("git branch main does not exist and provisioning.mode is existing"),
        "{error}"
    );
    assert_eq!(
        Bare::main(server.repo_path(&repo)).commits(),
        0,
        "no branch was created"
    );
    // ensure (the default) creates it.
    let ensure = self::sink(server, &repo, json!({}), PASSWORD);
    ensure
        .export(&request(&InventoryRef::namespaced("team-a", "apps"), &["web"], 1))
        .await
        .unwrap();
    assert_eq!(Bare::main(server.repo_path(&repo)).commits(), 1);
}
