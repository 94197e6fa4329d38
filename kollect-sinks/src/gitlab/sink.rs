//! The gitlab sink: the git sink on the configured branch (`direct`), or one git sink per
//! inventory on its feature branch plus the merge request (`merge_request`).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use kollect_core::api::v1alpha1::{KollectSnapshotSinkSpec, SinkPreview};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};
use tokio::sync::Mutex;

use super::config::GitlabConfig;
use super::forge::Forge;
use crate::context::BuildContext;
use crate::git::{GitSink, Outcome};

/// The gitlab sink.
pub struct GitlabSink {
    config: GitlabConfig,
    /// The sink of `direct` mode, and the one probes use.
    direct: GitSink,
    forge: Option<Forge>,
    /// Merge-request mode: one git sink per inventory's feature branch.
    branches: Mutex<HashMap<String, Arc<GitSink>>>,
}

impl std::fmt::Debug for GitlabSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitlabSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GitlabSink {
    /// Builds the sink from a `KollectSnapshotSink` spec (type `gitlab`) and resolved secrets.
    pub fn from_spec(spec: &KollectSnapshotSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        GitlabConfig::from_spec(spec, context).and_then(Self::new)
    }

    /// A sink with `config`.
    pub fn new(config: GitlabConfig) -> Result<Self, SinkError> {
        let forge = config.merge_requests.clone().map(Forge::new).transpose()?;
        let mut direct = config.git.clone();
        if let Some(mr) = &config.merge_requests {
            // Probes read the target branch; nothing is ever pushed to it.
            direct.branch = mr.target_branch.clone();
            direct.base_branch = None;
        }
        Ok(Self {
            direct: GitSink::new(direct),
            config,
            forge,
            branches: Mutex::new(HashMap::new()),
        })
    }

    /// The git sink writing `inventory`'s feature branch.
    async fn feature_sink(&self, inventory: &InventoryRef) -> Result<(Arc<GitSink>, String), SinkError> {
        let Some(mr) = &self.config.merge_requests else {
            return Err(SinkError::terminal("gitlab: not in merge_request mode"));
        };
        let inventory = self.identify(inventory);
        let branch = mr.feature_branch(&inventory);
        crate::git::check_branch(&branch)?;
        let mut branches = self.branches.lock().await;
        let sink = branches
            .entry(branch.clone())
            .or_insert_with(|| {
                let mut git = self.config.git.clone();
                git.branch = branch.clone();
                Arc::new(GitSink::new(git))
            })
            .clone();
        Ok((sink, mr.title(&inventory)))
    }

    /// The inventory with the cluster identity the git engine gives it.
    fn identify(&self, inventory: &InventoryRef) -> InventoryRef {
        match (&self.config.git.cluster, inventory.cluster.is_empty()) {
            (Some(cluster), true) => inventory.clone().with_cluster(cluster.clone()),
            _ => inventory.clone(),
        }
    }

    /// Opens the merge request of a feature branch that holds a proposal.
    async fn propose(&self, branch: &str, title: &str, outcome: Outcome) -> Result<(), SinkError> {
        let Some(forge) = &self.forge else {
            return Ok(());
        };
        // Unchanged: the target branch already holds these files; nothing to propose.
        if outcome == Outcome::Unchanged {
            return Ok(());
        }
        let request = forge.ensure(branch, title).await?;
        if request.created {
            tracing::info!(branch, number = request.number, "opened a merge request");
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for GitlabSink {
    fn sink_type(&self) -> &str {
        super::TYPE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::DOCUMENTS
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        if self.forge.is_none() {
            return self.direct.export(request).await;
        }
        let (sink, title) = self.feature_sink(&request.inventory).await?;
        let (receipt, outcome) = sink.export_outcome(request).await?;
        if request.is_last_part() {
            let branch = sink.branch().to_owned();
            self.propose(&branch, &title, outcome).await?;
        }
        Ok(receipt)
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        if self.forge.is_none() {
            return self.direct.remove(request).await;
        }
        let (sink, title) = self.feature_sink(&request.inventory).await?;
        let outcome = sink.remove_outcome(request).await?;
        let branch = sink.branch().to_owned();
        if outcome == Outcome::Unchanged
            && let Some(forge) = &self.forge
        {
            // The target branch holds none of the inventory's files: an open proposal to add
            // them is withdrawn instead.
            if let Some(number) = forge.withdraw(&branch).await? {
                tracing::info!(branch, number, "closed the merge request of a deleted inventory");
            }
            return Ok(());
        }
        self.propose(&branch, &title, outcome).await
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        let report = self.direct.probe().await?;
        Ok(ProbeReport::new(
            report.latency,
            "TLS and GitLab remote reachability verified",
        ))
    }

    fn preview(&self, request: &ExportRequest) -> SinkPreview {
        self.direct.preview(request)
    }
}
