//! The git sink's configuration: what a `KollectSnapshotSink` of type `git` says, checked
//! without touching the network.

use std::sync::Arc;

use kollect_core::api::v1alpha1::{
    GitAuthType, KollectSnapshotSinkSpec, LayoutSpec, ProvisioningMode, PushPolicy,
};
use kollect_core::error::Redactor;
use kollect_core::netguard::GuardedResolver;
use kollect_core::sink::SinkError;

use super::repo::{self, Auth, Remote};
use crate::context::BuildContext;
use crate::family::Unused;
use crate::format::Format;

/// Configuration of a [`GitSink`](super::GitSink).
#[derive(Clone)]
#[non_exhaustive]
pub struct GitConfig {
    /// `<namespace>/<name>` of the sink (the `{sink}` placeholder).
    pub sink_name: String,
    /// Remote connection (URL, credentials, TLS, timeouts).
    pub(crate) remote: Remote,
    /// Branch written to.
    pub branch: String,
    /// The branch each commit is built on, when it is not `branch` itself: `branch` is then a
    /// proposal on top of it (a merge-request feature branch), force-pushed.
    pub base_branch: Option<String>,
    /// Commit or force-push.
    pub push_policy: PushPolicy,
    /// `ensure` (default) creates the branch when it does not exist; `existing` never does.
    pub provisioning: ProvisioningMode,
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
    pub format: Format,
    /// `spec.layout`.
    pub layout: Option<LayoutSpec>,
    /// `spec.pathTemplate`.
    pub path_template: Option<String>,
    /// Mirror directory root.
    pub mirror_root: std::path::PathBuf,
    /// SSRF guard.
    pub resolver: GuardedResolver,
    /// Cluster identity of `spec.cluster`, used when an export request names none.
    pub cluster: Option<String>,
    /// Called after a commit is built and before it is pushed (instrumentation and tests, e.g.
    /// to race another writer deterministically).
    pub before_push: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for GitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitConfig")
            .field("url", &self.remote.url)
            .field("branch", &self.branch)
            .finish_non_exhaustive()
    }
}

impl GitConfig {
    /// Reads a `KollectSnapshotSink` spec (type `git`) with its resolved secrets. Nothing is
    /// dialled: the remote is first contacted by an export or a probe.
    pub fn from_spec(spec: &KollectSnapshotSinkSpec, context: BuildContext) -> Result<Self, SinkError> {
        crate::family::refuse_unused(
            "git",
            &[Unused::naming(
                &spec.common,
                "the repository is spec.endpoint and the branch spec.git.branch",
            )],
        )?;
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
            None => Format::Yaml,
            Some(format) => Format::from_serialization(format).ok_or_else(|| {
                SinkError::terminal(format!(
                    "spec.serialization.format {} is not supported by the git sink (yaml, json, ndjson)",
                    crate::family::api_spelling(&format)
                ))
            })?,
        };
        let author = git.author.clone().unwrap_or_default();
        Ok(GitConfig {
            sink_name: context.name.clone(),
            remote: Remote {
                url: url.to_string(),
                auth,
                ca_pem: context.ca_pem.clone(),
                insecure,
                redactor: Redactor::new(context.secret.values()),
            },
            branch,
            base_branch: None,
            push_policy: git.push_policy.unwrap_or_default(),
            provisioning: spec.common.provisioning_mode(),
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
            cluster: spec.common.cluster.clone().filter(|c| !c.trim().is_empty()),
            mirror_root: repo::mirror_root(),
            resolver: GuardedResolver::new(context.net_policy),
            before_push: None,
        })
    }

    /// The same configuration keeping its mirror under `root` instead of the default location.
    pub fn with_mirror_root(mut self, root: std::path::PathBuf) -> Self {
        self.mirror_root = root;
        self
    }

    /// The same configuration calling `hook` after each commit is built and before it is
    /// pushed (see [`GitConfig::before_push`]).
    pub fn with_before_push(mut self, hook: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.before_push = Some(hook);
        self
    }
}

/// Checks a branch name: `[A-Za-z0-9][A-Za-z0-9._/-]*`, no `..`, `@{`, trailing `.`/`.lock`, or
/// `refs/` prefix.
pub(crate) fn check_branch(branch: &str) -> Result<(), SinkError> {
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
