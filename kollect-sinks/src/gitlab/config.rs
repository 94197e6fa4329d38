//! The gitlab sink's configuration: the git engine's settings with the Go operator's fixed
//! values as defaults, and the merge-request workflow.

use kollect_core::api::v1alpha1::{KollectSnapshotSinkSpec, MergeRequestMode, PushPolicy};
use kollect_core::netguard::{EndpointKind, GuardedResolver};
use kollect_core::sink::{InventoryRef, SinkError};

use crate::context::BuildContext;
use crate::git::GitConfig;

/// The commit subject without `spec.git.commitMessage` (the Go operator's fixed one).
pub const DEFAULT_SUBJECT: &str = "kollect: export inventory";
/// The feature branch prefix without `branchPrefix`.
pub const DEFAULT_BRANCH_PREFIX: &str = "kollect";
/// The merge request title without `titleTemplate`.
const DEFAULT_TITLE: &str = "kollect inventory export: {namespace}/{name}";

/// Configuration of a [`GitlabSink`](super::GitlabSink).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GitlabConfig {
    /// The git engine's settings; in merge-request mode its `branch` is replaced per inventory.
    pub git: GitConfig,
    /// The merge-request workflow, or `None` for `direct` mode.
    pub merge_requests: Option<MergeRequests>,
}

/// How inventories are proposed as merge requests.
#[derive(Clone)]
#[non_exhaustive]
pub struct MergeRequests {
    /// The branch merge requests target.
    pub target_branch: String,
    /// The first segment of feature branches.
    pub branch_prefix: String,
    /// The title template (`{namespace}`, `{name}`).
    pub title_template: String,
    /// The forge's address (`scheme://host[:port]`).
    pub api_base: url::Url,
    /// The project path (`group/project`, without `.git`).
    pub project: String,
    /// The API token.
    pub token: String,
    /// The SSRF guard the API client resolves through.
    pub resolver: GuardedResolver,
    /// Extra CA certificates (PEM) for the API.
    pub ca_pem: Option<String>,
    /// Skip certificate verification.
    pub insecure_skip_verify: bool,
}

impl std::fmt::Debug for MergeRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeRequests")
            .field("target_branch", &self.target_branch)
            .field("branch_prefix", &self.branch_prefix)
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

impl MergeRequests {
    /// The feature branch of `inventory`: `<prefix>/[<cluster>/]<namespace>/<name>`, slashes
    /// trimmed from each part (the cluster segment keeps fleets sharing a repository apart).
    pub fn feature_branch(&self, inventory: &InventoryRef) -> String {
        let mut parts = vec![self.branch_prefix.trim_matches('/')];
        if !inventory.cluster.is_empty() {
            parts.push(inventory.cluster.trim_matches('/'));
        }
        parts.push(inventory.path_namespace().trim_matches('/'));
        parts.push(inventory.name.trim_matches('/'));
        parts.join("/")
    }

    /// The merge request title of `inventory`.
    pub fn title(&self, inventory: &InventoryRef) -> String {
        self.title_template
            .replace("{namespace}", inventory.path_namespace())
            .replace("{name}", &inventory.name)
    }
}

impl GitlabConfig {
    /// Reads a `KollectSnapshotSink` spec (type `gitlab`) with its resolved Secret. Nothing is
    /// dialled.
    pub fn from_spec(spec: &KollectSnapshotSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        let endpoint = spec.common.endpoint.as_deref().unwrap_or_default().trim();
        let url = url::Url::parse(endpoint).map_err(|_| {
            SinkError::terminal(
                "spec.endpoint is not a URL (use https://gitlab.example.com/group/project.git)",
            )
        })?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(SinkError::terminal(format!(
                "spec.endpoint: gitlab sinks push over HTTPS with a token; scheme \"{}\" is not supported",
                url.scheme()
            )));
        }
        let git_spec = spec.git.clone().unwrap_or_default();
        let mut git = GitConfig::from_spec(spec, context.clone())?;
        if git_spec.push_policy.is_none() {
            git.push_policy = PushPolicy::ForcePush;
        }
        if git_spec.commit_message.is_none() {
            git.commit_message = Some(DEFAULT_SUBJECT.to_owned());
        }
        let mr = spec
            .gitlab
            .as_ref()
            .and_then(|g| g.merge_request.clone())
            .unwrap_or_default();
        if mr.auto_merge == Some(true) {
            return Err(SinkError::terminal(
                "spec.gitlab.mergeRequest.autoMerge is not supported: the sink opens merge requests and never merges them",
            ));
        }
        if mr.mode != Some(MergeRequestMode::MergeRequest) {
            return Ok(Self {
                git,
                merge_requests: None,
            });
        }
        if git_spec.branch.is_some() {
            return Err(SinkError::terminal(
                "spec.git.branch is not used in merge_request mode: each inventory gets its own feature branch on top of spec.gitlab.mergeRequest.targetBranch",
            ));
        }
        let target_branch = mr
            .target_branch
            .clone()
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| {
                SinkError::terminal(
                    "spec.gitlab.mergeRequest.targetBranch is required when mode is merge_request",
                )
            })?;
        crate::git::check_branch(&target_branch)?;
        let branch_prefix = mr
            .branch_prefix
            .clone()
            .filter(|p| !p.trim_matches('/').is_empty())
            .unwrap_or_else(|| DEFAULT_BRANCH_PREFIX.to_owned());
        crate::git::check_branch(branch_prefix.trim_matches('/'))?;
        let token = context.secret.first_text(&["token", "password"]).ok_or_else(|| {
            SinkError::terminal(
                "merge request workflow requires api token in secretRef (key token or password)",
            )
        })?;
        let mut api_base = url.clone();
        api_base.set_path("");
        api_base.set_query(None);
        api_base.set_fragment(None);
        let _ = api_base.set_username("");
        let _ = api_base.set_password(None);
        context
            .net_policy
            .check_endpoint(api_base.as_str(), EndpointKind::Url)
            .map_err(|e| SinkError::terminal(format!("spec.endpoint: {e}")))?;
        let project = url.path().trim_matches('/').trim_end_matches(".git").to_owned();
        if project.is_empty() || !project.contains('/') {
            return Err(SinkError::terminal(format!(
                "spec.endpoint: {project:?} is not a project path (group/project)"
            )));
        }
        git.base_branch = Some(target_branch.clone());
        Ok(Self {
            git,
            merge_requests: Some(MergeRequests {
                target_branch,
                branch_prefix,
                title_template: mr
                    .title_template
                    .clone()
                    .filter(|t| !t.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_TITLE.to_owned()),
                api_base,
                project,
                token,
                resolver: GuardedResolver::new(context.net_policy),
                ca_pem: context.ca_pem.clone(),
                insecure_skip_verify: spec.common.tls_insecure(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretData;
    use kollect_core::netguard::NetPolicy;

    fn spec(value: serde_json::Value) -> KollectSnapshotSinkSpec {
        serde_json::from_value(value).expect("spec")
    }

    fn context() -> BuildContext {
        BuildContext::new("team/gl", NetPolicy::default())
            .with_secret(SecretData::new([("token".to_owned(), b"glpat-secret".to_vec())]))
    }

    #[test]
    fn direct_mode_keeps_the_go_operators_fixed_settings_as_defaults() {
        let config = GitlabConfig::from_spec(
            &spec(serde_json::json!({"type": "gitlab", "endpoint": "https://gitlab.example.com/platform/inventory.git#branch=exports"})),
            context(),
        )
        .expect("config");
        assert!(config.merge_requests.is_none());
        assert_eq!(config.git.push_policy, PushPolicy::ForcePush);
        assert_eq!(config.git.commit_message.as_deref(), Some(DEFAULT_SUBJECT));
        assert_eq!(config.git.branch, "exports");
        let custom = GitlabConfig::from_spec(
            &spec(serde_json::json!({"type": "gitlab", "endpoint": "https://gitlab.example.com/platform/inventory.git",
                "git": {"pushPolicy": "Commit", "commitMessage": "inventory {namespace}/{name}"}})),
            context(),
        )
        .expect("config");
        assert_eq!(custom.git.push_policy, PushPolicy::Commit);
        assert_eq!(
            custom.git.commit_message.as_deref(),
            Some("inventory {namespace}/{name}")
        );
    }

    #[test]
    fn merge_request_mode_names_a_feature_branch_per_inventory() {
        let config = GitlabConfig::from_spec(
            &spec(serde_json::json!({"type": "gitlab", "endpoint": "https://gitlab.example.com/platform/inventory.git",
                "gitlab": {"mergeRequest": {"mode": "merge_request", "targetBranch": "main", "branchPrefix": "/exports/"}}})),
            context(),
        )
        .expect("config");
        let mr = config.merge_requests.expect("merge requests");
        assert_eq!(mr.project, "platform/inventory");
        assert_eq!(mr.api_base.as_str(), "https://gitlab.example.com/");
        assert_eq!(config.git.base_branch.as_deref(), Some("main"));
        let inventory = InventoryRef::namespaced("team-a", "apps");
        assert_eq!(mr.feature_branch(&inventory), "exports/team-a/apps");
        assert_eq!(
            mr.feature_branch(&inventory.clone().with_cluster("east")),
            "exports/east/team-a/apps"
        );
        assert_eq!(mr.title(&inventory), "kollect inventory export: team-a/apps");
        assert!(
            !format!("{mr:?}").contains("glpat"),
            "the token stays out of Debug"
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                serde_json::json!({"type": "gitlab", "endpoint": "ssh://git@gitlab.example.com/a/b.git"}),
                "scheme \"ssh\"",
            ),
            (
                serde_json::json!({"type": "gitlab", "endpoint": "https://gitlab.example.com/a/b.git", "gitlab": {"mergeRequest": {"autoMerge": true}}}),
                "autoMerge is not supported",
            ),
            (
                serde_json::json!({"type": "gitlab", "endpoint": "https://gitlab.example.com/a/b.git", "git": {"branch": "x"},
                    "gitlab": {"mergeRequest": {"mode": "merge_request", "targetBranch": "main"}}}),
                "spec.git.branch is not used in merge_request mode",
            ),
        ];
        for (value, expected) in cases {
            let error = GitlabConfig::from_spec(&spec(value.clone()), context()).expect_err("refused");
            assert!(error.to_string().contains(expected), "{value}: {error}");
        }
        let no_token = GitlabConfig::from_spec(
            &spec(
                serde_json::json!({"type": "gitlab", "endpoint": "https://gitlab.example.com/a/b.git",
                "gitlab": {"mergeRequest": {"mode": "merge_request", "targetBranch": "main"}}}),
            ),
            BuildContext::new("team/gl", NetPolicy::default()),
        )
        .expect_err("no token");
        assert!(
            no_token
                .to_string()
                .contains("merge request workflow requires api token"),
            "{no_token}"
        );
    }
}
