//! The `git` sink: inventory files committed to a branch and pushed, over HTTPS
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

mod commit;
mod config;
pub(crate) mod repo;
mod sink;

pub use self::config::GitConfig;
#[cfg(feature = "gitlab")]
pub(crate) use self::config::check_branch;
pub use self::sink::GitSink;
#[cfg(feature = "gitlab")]
pub(crate) use self::sink::Outcome;

use kollect_core::api::v1alpha1::SinkFamily;
use kollect_core::netguard::EndpointKind;
use kollect_core::sink::{BoxSink, Capabilities, SinkError};

use crate::backend::{Backend, BackendFamily, EndpointField, SecretRefs};
use crate::context::BuildContext;
use crate::family::{FamilySink, SinkConfig};

/// The type name of this backend.
pub const TYPE: &str = "git";

/// How many times a rejected push is retried on a fresh tip before giving up (transient).
pub const MAX_PUSH_ATTEMPTS: usize = 4;

/// The `git` backend.
pub(crate) const BACKEND: Backend = Backend::new(
    TYPE,
    BackendFamily::Crd(SinkFamily::Snapshot),
    Capabilities::DOCUMENTS,
    build,
)
.with_endpoints(&[EndpointField::new("spec.endpoint", EndpointKind::GitRemote)])
.with_secrets(secret_refs);

fn build(config: &SinkConfig, context: BuildContext) -> Result<BoxSink, SinkError> {
    match config {
        SinkConfig::Snapshot(spec) => Ok(Box::new(GitSink::from_spec(spec, context)?)),
        other => Err(crate::backend::wrong_family(TYPE, other)),
    }
}

/// `spec.git.auth.secretRef` wins over `spec.secretRef`; the CA comes from `spec.tls`.
pub(crate) fn secret_refs(sink: &FamilySink) -> SecretRefs {
    let FamilySink::Snapshot(s) = sink else {
        return SecretRefs::default();
    };
    let own = s
        .spec
        .git
        .as_ref()
        .and_then(|g| g.auth.as_ref())
        .and_then(|a| a.secret_ref.clone());
    SecretRefs::common(sink).with_credentials_override(own)
}

#[cfg(test)]
mod tests {
    use super::config::check_branch;

    #[test]
    fn branch_names_are_checked() {
        for good in ["main", "exports/team-a", "v1.2"] {
            assert!(check_branch(good).is_ok(), "{good}");
        }
        for bad in ["-x", ".x", "a..b", "x.lock", "refs/heads/x", "a@{1}", "x.", ""] {
            assert!(check_branch(bad).is_err(), "{bad}");
        }
    }
}
