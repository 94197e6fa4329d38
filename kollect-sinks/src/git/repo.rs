//! Repository operations on a persistent bare mirror with libgit2: fetch the branch, build the
//! new tree from the previous one at the object level (unchanged files keep their blob, so only
//! changed files are written), commit, push, and recover from a rejected push.
//!
//! Network policy: libgit2 resolves and connects on its own and offers no way to pin the address
//! it connects to. The sink therefore resolves the remote host through the SSRF guard right
//! before every network operation and refuses the operation when any address is blocked. The
//! residual risk is a DNS answer that changes between that check and libgit2's own lookup
//! (rebinding); a deployment that needs to close it should point the sink at a host name it
//! controls or at an IP literal.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use git2::build::TreeUpdateBuilder;
use git2::{
    CertificateCheckStatus, Cred, FetchOptions, ObjectType, Oid, PushOptions, RemoteCallbacks, Repository,
    Signature,
};
use kollect_core::error::Redactor;
use kollect_core::sink::{ErrorClass, SinkError};

/// How the sink authenticates.
#[derive(Clone)]
pub(crate) enum Auth {
    /// No credentials.
    Anonymous,
    /// HTTP(S) basic authentication (password or token).
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
    /// SSH with a private key, checking the host key against `known_hosts`.
    Ssh {
        /// SSH user.
        username: String,
        /// Private key (PEM / OpenSSH format).
        private_key: String,
        /// `known_hosts` content; `None` only with `insecureSkipVerify`.
        known_hosts: Option<String>,
    },
}

/// Connection settings of one remote.
#[derive(Clone)]
pub(crate) struct Remote {
    /// The remote URL, without user info.
    pub(crate) url: String,
    /// Credentials.
    pub(crate) auth: Auth,
    /// Extra CA certificates (PEM) for HTTPS.
    pub(crate) ca_pem: Option<String>,
    /// Accept any certificate or host key.
    pub(crate) insecure: bool,
    /// Scrubs secret values from messages.
    pub(crate) redactor: Redactor,
}

impl Remote {
    /// A failure of a git operation as a credential-free sink error.
    pub(crate) fn error(&self, stage: &str, error: &git2::Error) -> SinkError {
        let class = match (error.code(), error.class()) {
            (git2::ErrorCode::Auth, _) => ErrorClass::Terminal,
            // Certificate and TLS failures do not heal by retrying: the CA or host is wrong.
            (git2::ErrorCode::Certificate, _) | (_, git2::ErrorClass::Ssl) => ErrorClass::Terminal,
            // Network, HTTP and SSH transport failures, and anything else, may pass.
            _ => ErrorClass::Transient,
        };
        let message = error.message();
        let text = if error.code() == git2::ErrorCode::Auth {
            format!("git auth failed: {stage}: {message}")
        } else if message.contains("hostkey") {
            format!("{stage}: the ssh host key is not in known_hosts ({message})")
        } else {
            format!("{stage}: {message}")
        };
        SinkError::new(
            match ErrorClass::from_message(&text) {
                Some(ErrorClass::Terminal) => ErrorClass::Terminal,
                _ => class,
            },
            self.redactor.scrub(&text),
        )
    }

    /// Callbacks for credentials and certificate / host key checks.
    pub(crate) fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
        let mut attempts = 0;
        callbacks.credentials(move |_url, username_from_url, allowed| {
            // Over SSH libgit2 first asks for the user name alone.
            if allowed.contains(git2::CredentialType::USERNAME)
                && let Auth::Ssh { username, .. } = &self.auth
            {
                let user = if username.is_empty() {
                    username_from_url.unwrap_or("git")
                } else {
                    username
                };
                return Cred::username(user);
            }
            // libgit2 asks again after a rejection; a second ask means the credentials are wrong.
            attempts += 1;
            if attempts > 1 {
                return Err(git2::Error::new(
                    git2::ErrorCode::Auth,
                    git2::ErrorClass::Http,
                    "authentication failed (credentials rejected)",
                ));
            }
            match &self.auth {
                Auth::Anonymous => Cred::default(),
                Auth::Basic { username, password } => Cred::userpass_plaintext(username, password),
                Auth::Ssh {
                    username,
                    private_key,
                    ..
                } => {
                    let user = if username.is_empty() {
                        username_from_url.unwrap_or("git")
                    } else {
                        username
                    };
                    Cred::ssh_key_from_memory(user, None, private_key, None)
                }
            }
        });
        callbacks.certificate_check(move |cert, host| self.check_certificate(cert, host));
        callbacks
    }

    fn check_certificate(
        &self,
        cert: &git2::cert::Cert<'_>,
        host: &str,
    ) -> Result<CertificateCheckStatus, git2::Error> {
        if self.insecure {
            return Ok(CertificateCheckStatus::CertificateOk);
        }
        if let Some(hostkey) = cert.as_hostkey() {
            let Auth::Ssh {
                known_hosts: Some(known_hosts),
                ..
            } = &self.auth
            else {
                return Err(git2::Error::from_str(
                    "ssh host key cannot be verified: known_hosts is required",
                ));
            };
            let presented = hostkey.hostkey().unwrap_or_default();
            return if known_host_matches(known_hosts, host, presented) {
                Ok(CertificateCheckStatus::CertificateOk)
            } else {
                Err(git2::Error::new(
                    git2::ErrorCode::Certificate,
                    git2::ErrorClass::Ssh,
                    format!("ssh host key of {host} is not in known_hosts"),
                ))
            };
        }
        if let (Some(x509), Some(pem)) = (cert.as_x509(), &self.ca_pem) {
            return match crate::tls::verify_with_ca(pem, x509.data(), host) {
                Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                Err(message) => Err(git2::Error::new(
                    git2::ErrorCode::Certificate,
                    git2::ErrorClass::Ssl,
                    format!("TLS certificate of {host} not trusted by spec.tls CA bundle: {message}"),
                )),
            };
        }
        Ok(CertificateCheckStatus::CertificatePassthrough)
    }
}

/// Whether `known_hosts` lists `key` (raw SSH wire-format key) for `host`. Hashed entries
/// (`|1|...`) are not supported and never match.
fn known_host_matches(known_hosts: &str, host: &str, key: &[u8]) -> bool {
    use base64::Engine;
    known_hosts.lines().any(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return false;
        }
        let mut fields = line.split_whitespace();
        let (Some(hosts), Some(_kind), Some(encoded)) = (fields.next(), fields.next(), fields.next()) else {
            return false;
        };
        let host_listed = hosts.split(',').any(|pattern| {
            pattern == host || pattern.trim_start_matches('[').split(']').next() == Some(host)
        });
        host_listed
            && base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .is_ok_and(|decoded| decoded == key)
    })
}

/// Where mirrors live: `$KOLLECT_GIT_MIRROR_DIR`, else `~/.cache/kollect/git-mirrors`, else the
/// temporary directory.
pub(crate) fn mirror_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("KOLLECT_GIT_MIRROR_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/kollect/git-mirrors"))
        .unwrap_or_else(|| std::env::temp_dir().join("kollect-git-mirrors"))
}

/// The directory of the mirror of (`url`, `branch`) under `root`.
pub(crate) fn mirror_dir(root: &Path, url: &str, branch: &str) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{url}\0{branch}").as_bytes());
    let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    root.join(name)
}

/// The lock of one mirror directory, shared by every sink of this process that uses it: two
/// sinks on the same repository and branch (different paths or layouts, say) share a mirror, and
/// libgit2 refuses concurrent writers to one repository (`config.lock`, `index.lock`).
pub(crate) fn mirror_lock(dir: &Path) -> Arc<Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = LazyLock::new(Mutex::default);
    let mut locks = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(locks.entry(dir.to_owned()).or_default())
}

/// Opens (or creates) the bare mirror of (`url`, `branch`) under `root`. Callers hold
/// [`mirror_lock`] of its directory.
pub(crate) fn open_mirror(root: &Path, url: &str, branch: &str) -> Result<Repository, SinkError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| SinkError::transient(format!("create git mirror directory: {e}")))?;
    let dir = mirror_dir(root, url, branch);
    let repo = match Repository::open_bare(&dir) {
        Ok(repo) => repo,
        Err(_) => Repository::init_bare(&dir)
            .map_err(|e| SinkError::transient(format!("create git mirror: {}", e.message())))?,
    };
    Ok(repo)
}

/// Fetches `branch` into `refs/remotes/origin/<branch>`; returns its tip, or `None` when the
/// remote has no such branch (an empty repository).
pub(crate) fn fetch(repo: &Repository, remote: &Remote, branch: &str) -> Result<Option<Oid>, SinkError> {
    let mut origin = repo
        .remote_anonymous(&remote.url)
        .map_err(|e| remote.error("git remote", &e))?;
    let mut options = FetchOptions::new();
    options.remote_callbacks(remote.callbacks());
    let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
    match origin.fetch(&[&refspec], Some(&mut options), None) {
        Ok(()) => {}
        Err(error) if is_missing_ref(&error) => return Ok(None),
        Err(error) => return Err(remote.error("git fetch", &error)),
    }
    Ok(repo.refname_to_id(&format!("refs/remotes/origin/{branch}")).ok())
}

fn is_missing_ref(error: &git2::Error) -> bool {
    let message = error.message().to_ascii_lowercase();
    message.contains("couldn't find remote ref")
        || message.contains("could not find remote ref")
        || message.contains("reference not found")
        || message.contains("remote repository is empty")
}

/// Lists the remote's references (a connection probe with authentication).
pub(crate) fn ls_remote(repo: &Repository, remote: &Remote) -> Result<usize, SinkError> {
    let mut origin = repo
        .remote_anonymous(&remote.url)
        .map_err(|e| remote.error("git remote", &e))?;
    let connection = origin
        .connect_auth(git2::Direction::Fetch, Some(remote.callbacks()), None)
        .map_err(|e| remote.error("git ls-remote", &e))?;
    connection
        .list()
        .map(<[git2::RemoteHead<'_>]>::len)
        .map_err(|e| remote.error("git ls-remote", &e))
}

/// The change a commit makes: files to write and paths to delete.
#[derive(Debug, Default)]
pub(crate) struct TreeChange {
    /// `(path, content)` to write.
    pub(crate) write: Vec<(String, Vec<u8>)>,
    /// Paths to delete.
    pub(crate) delete: Vec<String>,
    /// Directories in which files not in `keep` are pruned.
    pub(crate) prune_dirs: BTreeSet<String>,
    /// Paths that stay when pruning.
    pub(crate) keep: BTreeSet<String>,
}

/// Applies `change` on top of `base` (a commit) and returns the new tree and whether it differs.
pub(crate) fn build_tree(
    repo: &Repository,
    base: Option<Oid>,
    change: &TreeChange,
) -> Result<(Oid, bool), SinkError> {
    let git = |stage: &str, e: git2::Error| SinkError::transient(format!("{stage}: {}", e.message()));
    let base_tree = match base {
        Some(commit) => Some(
            repo.find_commit(commit)
                .and_then(|c| c.tree())
                .map_err(|e| git("read tree", e))?,
        ),
        None => None,
    };
    let empty = || -> Result<git2::Tree<'_>, SinkError> {
        let oid = repo
            .treebuilder(None)
            .and_then(|b| b.write())
            .map_err(|e| git("empty tree", e))?;
        repo.find_tree(oid).map_err(|e| git("empty tree", e))
    };
    let tree = match base_tree {
        Some(tree) => tree,
        None => empty()?,
    };
    // Every file of the base tree, read once: looking paths up one by one would re-read and
    // re-parse large tree objects (libgit2 does not cache trees over 4 KiB) for every file.
    let mut existing: std::collections::HashMap<String, Oid> = std::collections::HashMap::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(ObjectType::Blob) {
            existing.insert(format!("{dir}{}", entry.name().unwrap_or_default()), entry.id());
        }
        git2::TreeWalkResult::Ok
    })
    .map_err(|e| git("read tree", e))?;
    let mut update = TreeUpdateBuilder::new();
    let mut changed = false;
    for (path, bytes) in &change.write {
        let oid = repo.blob(bytes).map_err(|e| git("write blob", e))?;
        let current = existing.get(path.as_str()).copied();
        if current != Some(oid) {
            update.upsert(path, oid, git2::FileMode::Blob);
            changed = true;
        }
    }
    let mut delete: BTreeSet<String> = change.delete.iter().cloned().collect();
    for path in existing.keys() {
        let in_pruned_dir = path
            .rfind('/')
            .is_some_and(|slash| change.prune_dirs.contains(&path[..slash]));
        if in_pruned_dir && !change.keep.contains(path) {
            delete.insert(path.clone());
        }
    }
    for path in delete {
        if existing.contains_key(&path) {
            update.remove(&path);
            changed = true;
        }
    }
    let oid = update
        .create_updated(repo, &tree)
        .map_err(|e| git("build tree", e))?;
    Ok((oid, changed && oid != tree.id()))
}

/// Reads a file of the tree of `commit`.
/// The tree of `commit`, when it is a commit.
pub(crate) fn tree_of(repo: &Repository, commit: Oid) -> Option<Oid> {
    repo.find_commit(commit).ok().map(|c| c.tree_id())
}

pub(crate) fn read_file(repo: &Repository, commit: Option<Oid>, path: &str) -> Option<Vec<u8>> {
    let tree = repo.find_commit(commit?).ok()?.tree().ok()?;
    let entry = tree.get_path(Path::new(path)).ok()?;
    Some(repo.find_blob(entry.id()).ok()?.content().to_vec())
}

/// Commits `tree` on top of `parent`.
pub(crate) fn commit(
    repo: &Repository,
    parent: Option<Oid>,
    tree: Oid,
    message: &str,
    author: (&str, &str),
) -> Result<Oid, SinkError> {
    let git = |stage: &str, e: git2::Error| SinkError::transient(format!("{stage}: {}", e.message()));
    let signature = Signature::now(author.0, author.1).map_err(|e| git("git author", e))?;
    let tree = repo.find_tree(tree).map_err(|e| git("git commit", e))?;
    let parent = match parent {
        Some(oid) => Some(repo.find_commit(oid).map_err(|e| git("git commit", e))?),
        None => None,
    };
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(None, &signature, &signature, message, &tree, &parents)
        .map_err(|e| git("git commit", e))
}

/// The outcome of a push.
pub(crate) enum Pushed {
    /// The remote accepted it.
    Accepted,
    /// The remote rejected it as not a fast-forward (someone pushed in between).
    Rejected,
}

/// Pushes `commit` to `refs/heads/<branch>` (forced when `force`).
pub(crate) fn push(
    repo: &Repository,
    remote: &Remote,
    commit: Oid,
    branch: &str,
    force: bool,
) -> Result<Pushed, SinkError> {
    let local = format!("refs/kollect/push/{branch}");
    repo.reference(&local, commit, true, "kollect export")
        .map_err(|e| SinkError::transient(format!("git push: {}", e.message())))?;
    let mut origin = repo
        .remote_anonymous(&remote.url)
        .map_err(|e| remote.error("git remote", &e))?;
    let rejected = std::cell::RefCell::new(None::<String>);
    let mut callbacks = remote.callbacks();
    callbacks.push_update_reference(|_reference, status| {
        if let Some(status) = status {
            *rejected.borrow_mut() = Some(status.to_owned());
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);
    let refspec = format!("{}{local}:refs/heads/{branch}", if force { "+" } else { "" });
    let result = origin.push(&[&refspec], Some(&mut options));
    drop(options);
    let status = rejected.into_inner();
    match result {
        Err(error) => {
            let message = error.message().to_ascii_lowercase();
            if message.contains("non-fast-forward")
                || message.contains("not present locally")
                || message.contains("fetch first")
            {
                Ok(Pushed::Rejected)
            } else {
                Err(remote.error("git push", &error))
            }
        }
        Ok(()) => match status {
            None => {
                // The remote now has `commit`: record it as the remote-tracking tip, so the next
                // fetch negotiates from it instead of downloading the branch again.
                repo.reference(
                    &format!("refs/remotes/origin/{branch}"),
                    commit,
                    true,
                    "kollect push",
                )
                .map_err(|e| SinkError::transient(format!("git push: {}", e.message())))?;
                Ok(Pushed::Accepted)
            }
            Some(status) => {
                let lower = status.to_ascii_lowercase();
                if lower.contains("fast-forward") || lower.contains("fetch first") || lower.contains("stale")
                {
                    Ok(Pushed::Rejected)
                } else {
                    Err(SinkError::terminal(
                        remote.redactor.scrub(&format!("git push rejected: {status}")),
                    ))
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_match_host_and_key() {
        use base64::Engine;
        let key = b"\x00\x00\x00\x0bssh-ed25519fake";
        let encoded = base64::engine::general_purpose::STANDARD.encode(key);
        let file = format!(
            "# comment\nother.example ssh-ed25519 AAAA\ngit.example,[git.example]:2222 ssh-ed25519 {encoded}\n"
        );
        assert!(known_host_matches(&file, "git.example", key));
        assert!(!known_host_matches(&file, "other.example", key));
        assert!(!known_host_matches(&file, "git.example", b"different"));
    }
}
