//! The `git` sink (sinks.md §5): inventory files committed to a branch and pushed, over HTTPS
//! (token or basic auth) or SSH (private key and `known_hosts`).
//!
//! Each export fetches the branch into a persistent bare mirror, builds the new tree from the
//! branch tip at the object level (so per-resource layouts only write files whose bytes changed),
//! and commits and pushes only when the tree changed. With `pushPolicy: Commit`, a push rejected
//! because someone else pushed first is recovered by fetching again and re-applying the same
//! files on the new tip (at most [`MAX_PUSH_ATTEMPTS`] times); `ForcePush` overwrites.
//!
//! Tree layouts record the paths they wrote in a ledger file,
//! `.kollect/inventories/<cluster>/<namespace>/<name>.paths`, so that files of resources that
//! disappeared are removed even when their whole directory goes, and deleting the inventory
//! removes exactly its files (decision X3).

pub mod commit;
pub mod layout;
pub mod repo;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use kollect_core::api::v1alpha1::{
    GitAuthType, GitPreview, KollectSnapshotSinkSpec, LayoutMode, LayoutPreview, LayoutSpec, PushPolicy,
    SerializationFormat, SinkPreview,
};
use kollect_core::error::Redactor;
use kollect_core::netguard::{EndpointKind, GuardedResolver, endpoint_host};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};

use self::commit::CommitContext;
use self::layout::{FileFormat, Layout};
use self::repo::{Auth, Pushed, Remote, TreeChange};
use crate::registry::BuildContext;

/// How many times a rejected push is retried on a fresh tip before giving up (transient).
pub const MAX_PUSH_ATTEMPTS: usize = 4;

/// Configuration of a [`GitSink`].
#[derive(Clone)]
pub struct GitConfig {
    /// `<namespace>/<name>` of the sink (the `{sink}` placeholder).
    pub sink_name: String,
    /// Remote connection.
    pub remote: Remote,
    /// Branch written to.
    pub branch: String,
    /// Commit or force-push.
    pub push_policy: PushPolicy,
    /// Commit subject template.
    pub commit_message: Option<String>,
    /// Commit body template.
    pub commit_body: Option<String>,
    /// Trailer templates.
    pub commit_trailers: Vec<String>,
    /// Author name and email.
    pub author: (String, String),
    /// `git.prune`.
    pub prune: bool,
    /// File format.
    pub format: FileFormat,
    /// `spec.layout`.
    pub layout: Option<LayoutSpec>,
    /// `spec.pathTemplate`.
    pub path_template: Option<String>,
    /// Mirror directory root.
    pub mirror_root: std::path::PathBuf,
    /// SSRF guard.
    pub resolver: GuardedResolver,
    /// Called after a commit is built and before it is pushed (instrumentation and tests, e.g.
    /// to race another writer deterministically).
    pub before_push: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// The Git sink.
pub struct GitSink {
    config: GitConfig,
    /// Pushes the remote rejected because the branch had moved.
    rejected_pushes: std::sync::atomic::AtomicU64,
    /// Paths written by earlier parts of a multipart set, per inventory.
    sets: Mutex<HashMap<(String, String, String), BTreeSet<String>>>,
}

impl std::fmt::Debug for GitSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSink")
            .field("url", &self.config.remote.url)
            .field("branch", &self.config.branch)
            .finish_non_exhaustive()
    }
}

/// Checks a branch name: `[A-Za-z0-9][A-Za-z0-9._/-]*`, no `..`, `@{`, trailing `.`/`.lock`, or
/// `refs/` prefix.
pub fn check_branch(branch: &str) -> Result<(), SinkError> {
    let valid = branch.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && branch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && !branch.contains("..")
        && !branch.contains("@{")
        && !branch.ends_with('.')
        && !branch.ends_with(".lock")
        && !branch.starts_with("refs/");
    if valid {
        Ok(())
    } else {
        Err(SinkError::terminal(format!(
            "spec.git.branch \"{branch}\" is not a valid branch name"
        )))
    }
}

fn ledger_path(inventory: &InventoryRef) -> String {
    let cluster = if inventory.cluster.is_empty() {
        "default"
    } else {
        &inventory.cluster
    };
    format!(
        ".kollect/inventories/{cluster}/{}/{}.paths",
        inventory.path_namespace(),
        inventory.name
    )
}

fn parent_dir(path: &str) -> Option<&str> {
    path.rfind('/').map(|i| &path[..i])
}

impl GitSink {
    /// Builds the sink from a `KollectSnapshotSink` spec (type `git`) and resolved secrets.
    pub fn from_spec(spec: &KollectSnapshotSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        let git = spec.git.clone().unwrap_or_default();
        let endpoint = spec
            .common
            .endpoint
            .as_deref()
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| SinkError::terminal("spec.endpoint is required for type git"))?;
        let mut url = url::Url::parse(endpoint).map_err(|_| {
            SinkError::terminal(
                "spec.endpoint is not a URL (use https://host/repo.git or ssh://git@host/repo.git)",
            )
        })?;
        let fragment_branch = url
            .fragment()
            .and_then(|f| f.strip_prefix("branch="))
            .map(str::to_owned);
        url.set_fragment(None);
        let url_user = url.username().to_owned();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let scheme = url.scheme().to_owned();
        if !matches!(scheme.as_str(), "https" | "http" | "ssh") {
            return Err(SinkError::terminal(format!(
                "spec.endpoint: scheme \"{scheme}\" is not supported (https, http, ssh)"
            )));
        }
        let branch = git
            .branch
            .clone()
            .or(fragment_branch)
            .unwrap_or_else(|| "main".into());
        check_branch(&branch)?;
        let secret = &context.secret;
        let auth_type = git
            .auth
            .as_ref()
            .and_then(|a| a.type_)
            .unwrap_or(if scheme == "ssh" {
                GitAuthType::Ssh
            } else {
                GitAuthType::Token
            });
        let insecure = spec
            .common
            .tls
            .as_ref()
            .and_then(|t| t.insecure_skip_verify)
            .unwrap_or(false);
        let auth = match (auth_type, scheme.as_str()) {
            (GitAuthType::Ssh, "ssh") => {
                let private_key = secret
                    .first_text(&["ssh-privatekey", "identity", "id_rsa"])
                    .ok_or_else(|| {
                        SinkError::terminal(
                            "git ssh auth: the Secret has no ssh-privatekey (or identity, id_rsa) key",
                        )
                    })?;
                let known_hosts = secret.text("known_hosts");
                if known_hosts.is_none() && !insecure {
                    return Err(SinkError::terminal(
                        "git ssh auth: the Secret has no known_hosts key (required unless spec.tls.insecureSkipVerify)",
                    ));
                }
                Auth::Ssh {
                    username: secret.text("username").unwrap_or(url_user),
                    private_key,
                    known_hosts,
                }
            }
            (GitAuthType::Ssh, _) => {
                return Err(SinkError::terminal("git auth type ssh needs an ssh:// endpoint"));
            }
            (GitAuthType::Token, "ssh") => {
                return Err(SinkError::terminal(
                    "git auth type token needs an https:// endpoint",
                ));
            }
            (GitAuthType::Token, _) => {
                let token = secret.text("token");
                let password = token.clone().or_else(|| secret.text("password"));
                match password {
                    None => Auth::Anonymous,
                    Some(password) => Auth::Basic {
                        username: secret.text("username").unwrap_or_else(|| {
                            if token.is_some() {
                                "x-access-token".into()
                            } else {
                                "git".into()
                            }
                        }),
                        password,
                    },
                }
            }
        };
        let format = match spec.common.serialization.as_ref().and_then(|s| s.format) {
            None | Some(SerializationFormat::Yaml) => FileFormat::Yaml,
            Some(SerializationFormat::Json) => FileFormat::Json,
            Some(SerializationFormat::Ndjson) => FileFormat::Ndjson,
            Some(other) => {
                return Err(SinkError::terminal(format!(
                    "spec.serialization.format {other:?} is not supported by the git sink (yaml, json, ndjson)"
                )));
            }
        };
        let author = git.author.clone().unwrap_or_default();
        Ok(Self::new(GitConfig {
            sink_name: context.name.clone(),
            remote: Remote {
                url: url.to_string(),
                auth,
                ca_pem: context.ca_pem.clone(),
                insecure,
                redactor: Redactor::new(context.secret.values()),
            },
            branch,
            push_policy: git.push_policy.unwrap_or_default(),
            commit_message: git.commit_message.clone(),
            commit_body: git.commit_body.clone(),
            commit_trailers: git.commit_trailers.clone(),
            author: (
                author.name.unwrap_or_else(|| "kollect".into()),
                author.email.unwrap_or_else(|| "kollect@kollect.dev".into()),
            ),
            prune: git.prune.unwrap_or(false),
            format,
            layout: spec.common.layout.clone(),
            path_template: spec.common.path_template.clone(),
            mirror_root: repo::mirror_root(),
            resolver: GuardedResolver::new(context.net_policy),
            before_push: None,
        }))
    }

    /// A sink with `config`.
    pub fn new(config: GitConfig) -> Self {
        Self {
            config,
            rejected_pushes: std::sync::atomic::AtomicU64::new(0),
            sets: Mutex::default(),
        }
    }

    /// Pushes rejected because someone else pushed first (each was recovered or retried).
    pub fn rejected_pushes(&self) -> u64 {
        self.rejected_pushes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets the hook called before every push (see [`GitConfig::before_push`]).
    pub fn set_before_push(&mut self, hook: Arc<dyn Fn() + Send + Sync>) {
        self.config.before_push = Some(hook);
    }

    /// The lock of this sink's mirror directory (shared with other sinks on the same
    /// repository and branch).
    fn mirror_lock(&self) -> Arc<Mutex<()>> {
        let config = &self.config;
        repo::mirror_lock(&repo::mirror_dir(
            &config.mirror_root,
            &config.remote.url,
            &config.branch,
        ))
    }

    /// Keeps the mirror under `root` instead of the default location.
    pub fn set_mirror_root(&mut self, root: std::path::PathBuf) {
        self.config.mirror_root = root;
    }

    /// Resolves the remote host through the SSRF guard (see [`repo`] for what libgit2 allows).
    async fn check_network(&self) -> Result<(), SinkError> {
        let host = endpoint_host(&self.config.remote.url, EndpointKind::GitRemote)
            .map_err(|e| SinkError::terminal(format!("spec.endpoint: {e}")))?;
        let Some(host) = host else { return Ok(()) };
        let port = url::Url::parse(&self.config.remote.url)
            .ok()
            .and_then(|u| u.port_or_known_default())
            .unwrap_or(443);
        self.config
            .resolver
            .resolve(&host, port)
            .await
            .map(|_| ())
            .map_err(|e| SinkError::terminal(format!("spec.endpoint: {e}")))
    }

    fn layout(&self, request: &ExportRequest) -> Layout {
        let rows: Vec<_> = request.rows().collect();
        Layout::resolve(
            self.config.layout.as_ref(),
            self.config.path_template.as_deref(),
            self.config.format,
            self.config.prune,
            &rows,
        )
    }

    /// Fetch, apply `change`, commit and push, retrying on a fresh tip after a rejected push.
    /// Returns whether a commit was pushed.
    fn commit_and_push(
        &self,
        change: &TreeChange,
        message: &str,
        previous_ledger: Option<&str>,
    ) -> Result<bool, SinkError> {
        let lock = self.mirror_lock();
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let config = &self.config;
        let repo = repo::open_mirror(&config.mirror_root, &config.remote.url, &config.branch)?;
        for _ in 0..MAX_PUSH_ATTEMPTS {
            let tip = repo::fetch(&repo, &config.remote, &config.branch)?;
            let mut change_here = TreeChange {
                write: change.write.clone(),
                delete: change.delete.clone(),
                prune_dirs: change.prune_dirs.clone(),
                keep: change.keep.clone(),
            };
            // Files the previous export of this inventory wrote that this one no longer does.
            if let Some(ledger) = previous_ledger
                && let Some(bytes) = repo::read_file(&repo, tip, ledger)
            {
                for path in String::from_utf8_lossy(&bytes).lines() {
                    if !path.is_empty() && !change.keep.contains(path) {
                        change_here.delete.push(path.to_owned());
                    }
                }
            }
            let (tree, changed) = repo::build_tree(&repo, tip, &change_here)?;
            if !changed {
                return Ok(false);
            }
            let commit = repo::commit(&repo, tip, tree, message, (&config.author.0, &config.author.1))?;
            let force = config.push_policy == PushPolicy::ForcePush || tip.is_none();
            if let Some(hook) = &config.before_push {
                hook();
            }
            match repo::push(&repo, &config.remote, commit, &config.branch, force)? {
                Pushed::Accepted => return Ok(true),
                Pushed::Rejected => {
                    self.rejected_pushes
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(url = %config.remote.url, branch = %config.branch, "push rejected (someone pushed first); re-applying on the new tip");
                }
            }
        }
        Err(SinkError::transient(format!(
            "git push to {} rejected {MAX_PUSH_ATTEMPTS} times: the branch keeps moving",
            config.branch
        )))
    }

    fn run_blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&GitSink) -> Result<T, SinkError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, SinkError>> {
        let sink = Arc::clone(self);
        async move {
            tokio::task::spawn_blocking(move || work(&sink))
                .await
                .map_err(|e| SinkError::transient(format!("git task: {e}")))?
        }
    }
}

/// The Git sink behind an `Arc`, so blocking git work can run off the async threads.
#[derive(Debug, Clone)]
pub struct SharedGitSink(Arc<GitSink>);

impl SharedGitSink {
    /// Wraps a sink.
    pub fn new(sink: GitSink) -> Self {
        Self(Arc::new(sink))
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &GitSink {
        &self.0
    }
}

#[async_trait]
impl Sink for SharedGitSink {
    fn sink_type(&self) -> &str {
        "git"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::SNAPSHOT_STORE
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        let sink = &self.0;
        sink.check_network().await?;
        let layout = sink.layout(request);
        let mut files = layout.project(request)?;
        let inventory = &request.inventory;
        let set_key = (
            inventory.cluster.clone(),
            inventory.path_namespace().to_owned(),
            inventory.name.clone(),
        );
        // Paths of the whole set so far (multipart exports prune against the union).
        let mut union: BTreeSet<String> = {
            let mut sets = sink.sets.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = sets.entry(set_key.clone()).or_default();
            if request.marker().is_none_or(|m| m.index == 1) {
                entry.clear();
            }
            entry.extend(files.iter().map(|(p, _)| p.clone()));
            entry.clone()
        };
        let last = request.is_last_part();
        if last {
            sink.sets
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&set_key);
        }
        let tree_mode = layout.mode != LayoutMode::Document;
        let prune = layout.prune && last;
        if let (Some(marker), true) = (request.marker(), prune && last) {
            let base = path_without_part(&crate::path::render(
                &layout.document_template,
                inventory,
                request.generation,
                layout.format.extension(),
            )?);
            let manifest_path = format!("inventory/{}/{}.manifest.json", inventory.path_namespace(), base);
            if union.contains(&manifest_path) {
                return Err(SinkError::terminal(format!(
                    "layout collision: the set manifest path \"{manifest_path}\" is also a data path"
                )));
            }
            let manifest = serde_json::json!({
                "kind": "KollectExportSetManifest",
                "schemaVersion": kollect_core::model::SCHEMA_VERSION,
                "cluster": if inventory.cluster.is_empty() { "default" } else { &inventory.cluster },
                "namespace": inventory.path_namespace(),
                "name": inventory.name,
                "generation": request.generation,
                "partTotal": marker.total,
                "parts": (1..=marker.total).collect::<Vec<_>>(),
                "exportedAt": kollect_core::model::format_exported_at(request.exported_at),
                "paths": union.iter().collect::<Vec<_>>(),
            });
            let mut bytes = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| SinkError::terminal(format!("render set manifest: {e}")))?;
            bytes.push(b'\n');
            union.insert(manifest_path.clone());
            files.push((manifest_path, bytes));
        }
        let ledger = ledger_path(inventory);
        if tree_mode && last {
            let mut text = union.iter().cloned().collect::<Vec<_>>().join("\n");
            text.push('\n');
            union.insert(ledger.clone());
            files.push((ledger.clone(), text.into_bytes()));
        }
        let bytes: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
        let change = TreeChange {
            prune_dirs: if prune {
                files
                    .iter()
                    .filter_map(|(p, _)| parent_dir(p).map(str::to_owned))
                    .filter(|d| !d.is_empty() && !d.starts_with(".kollect"))
                    .collect()
            } else {
                BTreeSet::new()
            },
            keep: union,
            write: files,
            delete: Vec::new(),
        };
        let first_path = change.write.first().map(|(p, _)| p.clone()).unwrap_or_default();
        let context = CommitContext::new(request, &sink.config.sink_name, &first_path);
        let message = context.message(
            sink.config.commit_message.as_deref(),
            sink.config.commit_body.as_deref(),
            &sink.config.commit_trailers,
        );
        let previous_ledger = (tree_mode && prune).then_some(ledger);
        let pushed = self
            .0
            .run_blocking(move |sink| sink.commit_and_push(&change, &message, previous_ledger.as_deref()))
            .await?;
        Ok(ExportReceipt {
            bytes: if pushed { bytes } else { 0 },
            unchanged: !pushed,
        })
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        let sink = &self.0;
        sink.check_network().await?;
        let inventory = request.inventory.clone();
        let document = crate::path::render(
            sink.config
                .path_template
                .as_deref()
                .unwrap_or(crate::path::DEFAULT_TEMPLATE),
            &inventory,
            request.generation,
            sink.config.format.extension(),
        )?;
        let ledger = ledger_path(&inventory);
        let manifest = format!(
            "inventory/{}/{}.manifest.json",
            inventory.path_namespace(),
            path_without_part(&document)
        );
        let subject = format!(
            "chore({}/{}/{}): remove inventory",
            if inventory.cluster.is_empty() {
                "default"
            } else {
                &inventory.cluster
            },
            inventory.path_namespace(),
            inventory.name
        );
        // The document, its parts (pruned from its directory by name), the set manifest, and
        // every path the ledger lists.
        let change = TreeChange {
            write: Vec::new(),
            delete: vec![document.clone(), manifest, ledger.clone()],
            prune_dirs: BTreeSet::new(),
            keep: BTreeSet::new(),
        };
        let parts_prefix = format!("{}.part-", document_stem(&document));
        self.0
            .run_blocking(move |sink| {
                let lock = sink.mirror_lock();
                let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
                let config = &sink.config;
                let repo = repo::open_mirror(&config.mirror_root, &config.remote.url, &config.branch)?;
                for _ in 0..MAX_PUSH_ATTEMPTS {
                    let Some(tip) = repo::fetch(&repo, &config.remote, &config.branch)? else {
                        return Ok(());
                    };
                    let mut delete = change.delete.clone();
                    if let Some(bytes) = repo::read_file(&repo, Some(tip), &ledger) {
                        delete.extend(String::from_utf8_lossy(&bytes).lines().map(str::to_owned));
                    }
                    if let Some(dir) = parent_dir(&document)
                        && let Ok(tree) = repo.find_commit(tip).and_then(|c| c.tree())
                        && let Ok(entry) = tree.get_path(std::path::Path::new(dir))
                        && let Ok(subtree) = repo.find_tree(entry.id())
                    {
                        for file in subtree.iter() {
                            let path = format!("{dir}/{}", file.name().unwrap_or_default());
                            if path.starts_with(&parts_prefix) {
                                delete.push(path);
                            }
                        }
                    }
                    let (tree, changed) = repo::build_tree(
                        &repo,
                        Some(tip),
                        &TreeChange {
                            delete,
                            ..TreeChange::default()
                        },
                    )?;
                    if !changed {
                        return Ok(());
                    }
                    let commit = repo::commit(
                        &repo,
                        Some(tip),
                        tree,
                        &subject,
                        (&config.author.0, &config.author.1),
                    )?;
                    let force = config.push_policy == PushPolicy::ForcePush;
                    if let Pushed::Accepted =
                        repo::push(&repo, &config.remote, commit, &config.branch, force)?
                    {
                        return Ok(());
                    }
                }
                Err(SinkError::transient(
                    "git push rejected repeatedly while removing the inventory",
                ))
            })
            .await
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        let started = Instant::now();
        self.0.check_network().await?;
        self.0
            .run_blocking(|sink| {
                let config = &sink.config;
                let lock = sink.mirror_lock();
                let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
                let repo = repo::open_mirror(&config.mirror_root, &config.remote.url, &config.branch)?;
                repo::ls_remote(&repo, &config.remote).map(|_| ())
            })
            .await?;
        Ok(ProbeReport {
            latency: started.elapsed(),
            message: "TLS and git remote reachability verified".into(),
        })
    }

    fn preview(&self, request: &ExportRequest) -> SinkPreview {
        let sink = &self.0;
        let layout = sink.layout(request);
        let files = layout.project(request).unwrap_or_default();
        let first = files.first().map(|(p, _)| p.clone()).unwrap_or_default();
        let context = CommitContext::new(request, &sink.config.sink_name, &first);
        SinkPreview {
            input_sample_source: Some("synthetic".into()),
            serialization_format: Some(layout.format.extension().trim_start_matches('.').to_owned()),
            object_path: Some(first),
            git: Some(GitPreview {
                sample_commit_subject: Some(
                    context.render(
                        sink.config
                            .commit_message
                            .as_deref()
                            .unwrap_or(commit::DEFAULT_SUBJECT),
                    ),
                ),
                sample_commit_body: sink.config.commit_body.as_deref().map(|b| context.render(b)),
            }),
            layout: Some(LayoutPreview {
                mode: Some(format!("{:?}", layout.mode)),
                content: Some(format!("{:?}", layout.content)),
                prune: Some(layout.prune),
                sample_paths: files.into_iter().take(5).map(|(p, _)| p).collect(),
            }),
            ..SinkPreview::default()
        }
    }
}

/// `inventory/ns/name.part-0001-of-0002.yaml` -> `name`.
fn path_without_part(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split('.').next().unwrap_or(file);
    stem.to_owned()
}

/// The path without its extension.
fn document_stem(path: &str) -> &str {
    let file_start = path.rfind('/').map_or(0, |i| i + 1);
    match path[file_start..].rfind('.') {
        Some(dot) => &path[..file_start + dot],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_are_checked() {
        for good in ["main", "exports/team-a", "v1.2"] {
            assert!(check_branch(good).is_ok(), "{good}");
        }
        for bad in ["-x", ".x", "a..b", "x.lock", "refs/heads/x", "a@{1}", "x.", ""] {
            assert!(check_branch(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn part_and_stem_helpers() {
        assert_eq!(
            path_without_part("inventory/ns/apps.part-0001-of-0002.yaml"),
            "apps"
        );
        assert_eq!(document_stem("inventory/ns/apps.yaml"), "inventory/ns/apps");
    }
}
