//! The `gitlab` sink: the git engine against a GitLab (or Gitea/Forgejo) repository over
//! HTTPS with a token, writing straight to a branch (`direct`) or proposing each inventory on a
//! feature branch of its own with one open merge request (`merge_request`).
//!
//! - Without `spec.git`, the Go operator's fixed settings are the defaults: force-push, the
//!   subject `kollect: export inventory`, author `kollect <kollect@kollect.dev>`. `spec.git`
//!   (commit templates, author, push policy, branch, prune) overrides each; SSH is refused.
//! - `merge_request` mode: every export of an inventory is a commit on top of the target
//!   branch's tip, force-pushed to `<prefix>/[<cluster>/]<namespace>/<name>`, and the merge
//!   request from that branch to the target branch is created when none is open. A feature
//!   branch that already holds the export is not pushed again. Removing the inventory proposes
//!   the removal the same way. `autoMerge: true` is refused: the sink never merges.
//! - Merge requests use GitLab's REST API (`/api/v4`, `PRIVATE-TOKEN`); when GitLab's path
//!   answers 404 or 405 the Gitea/Forgejo API (`/api/v1` pull requests,
//!   `Authorization: token`) is used instead, and remembered.

mod config;
mod forge;
mod sink;

pub use self::config::{DEFAULT_BRANCH_PREFIX, DEFAULT_SUBJECT, GitlabConfig, MergeRequests};
pub use self::sink::GitlabSink;

use kollect_core::api::v1alpha1::SinkFamily;
use kollect_core::netguard::EndpointKind;
use kollect_core::sink::{BoxSink, Capabilities, SinkError};

use crate::backend::{Backend, BackendFamily, EndpointField};
use crate::context::BuildContext;
use crate::family::SinkConfig;

/// The type name of this backend.
pub const TYPE: &str = "gitlab";

/// The `gitlab` backend.
pub(crate) const BACKEND: Backend = Backend::new(
    TYPE,
    BackendFamily::Crd(SinkFamily::Snapshot),
    Capabilities::DOCUMENTS,
    build,
)
.with_endpoints(&[EndpointField::new("spec.endpoint", EndpointKind::GitRemote)])
// The same references as git: `spec.git.auth.secretRef`, else `spec.secretRef`.
.with_secrets(crate::git::secret_refs);

fn build(config: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
    match config {
        SinkConfig::Snapshot(spec) => Ok(Box::new(GitlabSink::from_spec(spec, context)?)),
        other => Err(crate::backend::wrong_family(TYPE, other)),
    }
}
