//! The git sink itself: one export is fetch, build the tree, commit, push (with recovery of
//! rejected pushes); removal deletes exactly what the ledger lists.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use kollect_core::api::v1alpha1::{
    GitPreview, KollectSnapshotSinkSpec, LayoutMode, LayoutPreview, ProvisioningMode, PushPolicy, SinkPreview,
};
use kollect_core::netguard::{EndpointKind, endpoint_host};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};

use super::commit::{self, CommitContext};
use super::config::GitConfig;
use super::repo::{self, Pushed, TreeChange};
use super::{MAX_PUSH_ATTEMPTS, TYPE};
use crate::context::BuildContext;
use crate::layout::Layout;

/// The Git sink. Cheap to clone: clones share the mirror state and the counters, and blocking
/// git work runs off the async threads on a shared handle.
#[derive(Clone)]
pub struct GitSink {
    inner: Arc<Inner>,
}

struct Inner {
    config: GitConfig,
    /// Pushes the remote rejected because the branch had moved.
    rejected_pushes: std::sync::atomic::AtomicU64,
    /// Paths written by earlier parts of a multipart set, per inventory.
    sets: Mutex<HashMap<(String, String, String), BTreeSet<String>>>,
}

impl std::fmt::Debug for GitSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSink")
            .field("url", &self.inner.config.remote.url)
            .field("branch", &self.inner.config.branch)
            .finish_non_exhaustive()
    }
}

fn ledger_path(inventory: &InventoryRef) -> String {
    let cluster = cluster_segment(inventory);
    format!(
        ".kollect/inventories/{cluster}/{}/{}.paths",
        inventory.path_namespace(),
        inventory.name
    )
}

fn parent_dir(path: &str) -> Option<&str> {
    path.rfind('/').map(|i| &path[..i])
}

/// The `{cluster}` value of paths and messages: the inventory's, or `default`.
fn cluster_segment(inventory: &InventoryRef) -> &str {
    if inventory.cluster.is_empty() {
        "default"
    } else {
        &inventory.cluster
    }
}

/// What an export or removal did to the branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The branch (or the base branch) already held these files: nothing was committed.
    Unchanged,
    /// A feature branch on top of the base already held this tree: nothing was pushed.
    Held,
    /// A commit was pushed.
    Pushed,
}

impl GitSink {
    /// Builds the sink from a `KollectSnapshotSink` spec (type `git`) and resolved secrets.
    pub fn from_spec(spec: &KollectSnapshotSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        GitConfig::from_spec(spec, context).map(Self::new)
    }

    /// A sink with `config`.
    pub fn new(config: GitConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                rejected_pushes: std::sync::atomic::AtomicU64::new(0),
                sets: Mutex::default(),
            }),
        }
    }

    /// The branch this sink writes.
    pub fn branch(&self) -> &str {
        &self.inner.config.branch
    }

    /// Pushes rejected because someone else pushed first (each was recovered or retried).
    pub fn rejected_pushes(&self) -> u64 {
        self.inner
            .rejected_pushes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// [`Sink::export`], also saying what happened to the branch.
    pub(crate) async fn export_outcome(
        &self,
        request: &ExportRequest,
    ) -> Result<(ExportReceipt, Outcome), SinkError> {
        let request = &self.identified(request);
        let sink = &self.inner;
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
                "cluster": cluster_segment(inventory),
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
        let outcome = sink
            .run_blocking(move |sink| sink.commit_and_push(&change, &message, previous_ledger.as_deref()))
            .await?;
        let receipt = if outcome == Outcome::Pushed {
            ExportReceipt::written(bytes)
        } else {
            ExportReceipt::unchanged()
        };
        Ok((receipt, outcome))
    }

    /// [`Sink::remove`], also saying what happened to the branch.
    pub(crate) async fn remove_outcome(&self, request: &RemoveRequest) -> Result<Outcome, SinkError> {
        let sink = &self.inner;
        sink.check_network().await?;
        let inventory = self.identify(&request.inventory);
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
            cluster_segment(&inventory),
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
        sink.run_blocking(move |sink| {
            sink.write_branch(&subject, |repo, tip| {
                let tip = tip?;
                let mut delete = change.delete.clone();
                if let Some(bytes) = repo::read_file(repo, Some(tip), &ledger) {
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
                Some(TreeChange {
                    delete,
                    ..TreeChange::default()
                })
            })
        })
        .await
    }

    /// The inventory with its cluster identity: the request's, else `spec.cluster`, else none
    /// (paths then say `default`), so fleets sharing one repository never overwrite each other.
    fn identify(&self, inventory: &InventoryRef) -> InventoryRef {
        match (&self.inner.config.cluster, inventory.cluster.is_empty()) {
            (Some(cluster), true) => inventory.clone().with_cluster(cluster.clone()),
            _ => inventory.clone(),
        }
    }

    /// `request` with its cluster identity resolved by [`GitSink::identify`].
    fn identified(&self, request: &ExportRequest) -> ExportRequest {
        let mut request = request.clone();
        request.inventory = self.identify(&request.inventory);
        request
    }
}

impl Inner {
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

    /// Resolves the remote host through the SSRF guard (see [`repo`] for what libgit2 allows).
    async fn check_network(&self) -> Result<(), SinkError> {
        let host = endpoint_host(&self.config.remote.url, EndpointKind::GitRemote)
            .map_err(|e| SinkError::terminal(format!("spec.endpoint: {e}")))?;
        let Some(host) = host else { return Ok(()) };
        let port = url::Url::parse(&self.config.remote.url)
            .ok()
            .and_then(|u| u.port_or_known_default())
            .unwrap_or(443);
        crate::net::resolve_all(&self.config.resolver, &host, port, "spec.endpoint")
            .await
            .map(|_| ())
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
    fn commit_and_push(
        &self,
        change: &TreeChange,
        message: &str,
        previous_ledger: Option<&str>,
    ) -> Result<Outcome, SinkError> {
        self.write_branch(message, |repo, tip| {
            let mut change_here = TreeChange {
                write: change.write.clone(),
                delete: change.delete.clone(),
                prune_dirs: change.prune_dirs.clone(),
                keep: change.keep.clone(),
            };
            // Files the previous export of this inventory wrote that this one no longer does.
            if let Some(ledger) = previous_ledger
                && let Some(bytes) = repo::read_file(repo, tip, ledger)
            {
                for path in String::from_utf8_lossy(&bytes).lines() {
                    if !path.is_empty() && !change.keep.contains(path) {
                        change_here.delete.push(path.to_owned());
                    }
                }
            }
            Some(change_here)
        })
    }

    /// The write loop of exports and removals: fetch the base branch (`base_branch`, else the
    /// branch itself), build the tree `change` says for its tip (`None`: nothing to do), commit
    /// and push to the branch, again on a fresh tip when the push is rejected.
    ///
    /// With a base branch the branch is a proposal on top of the base (a merge-request feature
    /// branch): it is force-pushed, and left alone when it already holds the new tree.
    fn write_branch(
        &self,
        message: &str,
        change: impl Fn(&git2::Repository, Option<git2::Oid>) -> Option<TreeChange>,
    ) -> Result<Outcome, SinkError> {
        let lock = self.mirror_lock();
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let config = &self.config;
        let repo = repo::open_mirror(&config.mirror_root, &config.remote.url, &config.branch)?;
        let base = config.base_branch.as_deref().unwrap_or(&config.branch);
        for _ in 0..MAX_PUSH_ATTEMPTS {
            let tip = repo::fetch(&repo, &config.remote, base)?;
            let Some(change) = change(&repo, tip) else {
                return Ok(Outcome::Unchanged);
            };
            if tip.is_none() {
                if config.base_branch.is_some() {
                    return Err(SinkError::terminal(format!(
                        "git branch {base} does not exist: a proposal needs the branch it targets"
                    )));
                }
                if config.provisioning == ProvisioningMode::Existing {
                    return Err(SinkError::terminal(format!(
                        "git branch {base} does not exist and provisioning.mode is existing (create it, or use mode ensure)"
                    )));
                }
            }
            let (tree, changed) = repo::build_tree(&repo, tip, &change)?;
            if !changed {
                return Ok(Outcome::Unchanged);
            }
            if config.base_branch.is_some()
                && let Some(proposed) = repo::fetch(&repo, &config.remote, &config.branch)?
                && repo::tree_of(&repo, proposed) == Some(tree)
            {
                return Ok(Outcome::Held);
            }
            let commit = repo::commit(&repo, tip, tree, message, (&config.author.0, &config.author.1))?;
            let force =
                config.push_policy == PushPolicy::ForcePush || tip.is_none() || config.base_branch.is_some();
            if let Some(hook) = &config.before_push {
                hook();
            }
            match repo::push(&repo, &config.remote, commit, &config.branch, force)? {
                Pushed::Accepted => return Ok(Outcome::Pushed),
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
        work: impl FnOnce(&Inner) -> Result<T, SinkError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, SinkError>> {
        let sink = Arc::clone(self);
        async move {
            tokio::task::spawn_blocking(move || work(&sink))
                .await
                .map_err(|e| SinkError::transient(format!("git task: {e}")))?
        }
    }
}

#[async_trait]
impl Sink for GitSink {
    fn sink_type(&self) -> &str {
        TYPE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::DOCUMENTS
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        self.export_outcome(request).await.map(|(receipt, _)| receipt)
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        self.remove_outcome(request).await.map(drop)
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        let started = Instant::now();
        self.inner.check_network().await?;
        self.inner
            .run_blocking(|sink| {
                let config = &sink.config;
                let lock = sink.mirror_lock();
                let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
                let repo = repo::open_mirror(&config.mirror_root, &config.remote.url, &config.branch)?;
                repo::ls_remote(&repo, &config.remote).map(|_| ())
            })
            .await?;
        Ok(ProbeReport::new(
            started.elapsed(),
            "TLS and git remote reachability verified",
        ))
    }

    fn preview(&self, request: &ExportRequest) -> SinkPreview {
        let request = &self.identified(request);
        let sink = &self.inner;
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
                mode: Some(crate::family::api_spelling(&layout.mode)),
                content: Some(crate::family::api_spelling(&layout.content)),
                prune: Some(layout.prune),
                sample_paths: files.into_iter().take(3).map(|(p, _)| p).collect(),
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
    fn part_and_stem_helpers() {
        assert_eq!(
            path_without_part("inventory/ns/apps.part-0001-of-0002.yaml"),
            "apps"
        );
        assert_eq!(document_stem("inventory/ns/apps.yaml"), "inventory/ns/apps");
    }

    #[test]
    fn layout_values_use_the_api_spellings() {
        assert_eq!(
            crate::family::api_spelling(&LayoutMode::PerResource),
            "perResource"
        );
        assert_eq!(crate::family::api_spelling(&LayoutMode::Document), "document");
    }
}
