//! Git over SSH: an OpenSSH server (Debian's `openssh-server`) on a loopback port, accepting one
//! generated client key for the current user, over local bare repositories. Clients run the real
//! `git-upload-pack` / `git-receive-pack` through it, as against a hosted server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::backends::BackendError;

/// A running `sshd` serving Git repositories.
pub struct SshGitServer {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    user: String,
    private_key: String,
    known_hosts: String,
}

impl std::fmt::Debug for SshGitServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshGitServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

fn start_error(message: impl Into<String>) -> BackendError {
    BackendError::Start {
        backend: "sshd",
        message: message.into(),
    }
}

fn find(binary: &'static str, dirs: &[&str]) -> Result<PathBuf, BackendError> {
    dirs.iter()
        .map(|d| Path::new(d).join(binary))
        .find(|p| p.is_file())
        .ok_or(BackendError::Missing {
            binary,
            looked: dirs.join(", "),
        })
}

fn keygen(keygen: &Path, kind: &[&str], path: &Path) -> Result<(), BackendError> {
    let status = Command::new(keygen)
        .args(kind)
        .args(["-q", "-N", "", "-C", "kollect-test", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| start_error(format!("ssh-keygen: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(start_error(format!("ssh-keygen failed ({status})")))
    }
}

fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            let out = Command::new("id").arg("-un").output().ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "root".to_owned())
}

impl SshGitServer {
    /// Generates host and client keys and starts `sshd` on a free port.
    pub fn start() -> Result<Self, BackendError> {
        let sshd = find("sshd", &["/usr/sbin", "/usr/local/sbin"])?;
        let ssh_keygen = find("ssh-keygen", &["/usr/bin", "/usr/local/bin"])?;
        let dir = tempfile::Builder::new()
            .prefix("kollect-sshd-")
            .tempdir()
            .map_err(|e| start_error(e.to_string()))?;
        let host_key = dir.path().join("host_ed25519");
        let client_key = dir.path().join("client_ecdsa");
        keygen(&ssh_keygen, &["-t", "ed25519"], &host_key)?;
        // PEM ECDSA: the key format every libssh2 build reads from memory.
        keygen(
            &ssh_keygen,
            &["-t", "ecdsa", "-b", "256", "-m", "PEM"],
            &client_key,
        )?;
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized)
            .map_err(|e| start_error(e.to_string()))?;
        // sshd refuses to start without its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = crate::control_plane::free_port().map_err(|e| start_error(e.to_string()))?;
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {dir}/sshd.pid\n\
                 AuthorizedKeysFile {authorized}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
                 LogLevel ERROR\n",
                host = host_key.display(),
                dir = dir.path().display(),
                authorized = authorized.display(),
            ),
        )
        .map_err(|e| start_error(e.to_string()))?;
        let log = dir.path().join("sshd.log");
        let out = std::fs::File::create(&log).map_err(|e| start_error(e.to_string()))?;
        let mut child = Command::new(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| start_error(e.to_string()))?)
            .stderr(out)
            .spawn()
            .map_err(|e| start_error(format!("start sshd: {e}")))?;
        crate::backends::wait_for_port("sshd", port, &mut child, &log, Duration::from_secs(20))?;
        let host_public = std::fs::read_to_string(host_key.with_extension("pub"))
            .map_err(|e| start_error(e.to_string()))?;
        let mut fields = host_public.split_whitespace();
        let known_hosts = format!(
            "[127.0.0.1]:{port} {} {}\n",
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default()
        );
        let private_key = std::fs::read_to_string(&client_key).map_err(|e| start_error(e.to_string()))?;
        crate::backends::reap(child.id(), dir.path());
        Ok(Self {
            dir,
            child,
            port,
            user: current_user(),
            private_key,
            known_hosts,
        })
    }

    /// Creates a bare repository and returns its `ssh://` URL.
    pub fn create_repo(&self, name: &str) -> Result<String, BackendError> {
        let path = self.dir.path().join(format!("{name}.git"));
        init_bare(&path)?;
        Ok(format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        ))
    }

    /// The bare repository's directory.
    pub fn repo_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.git"))
    }

    /// The client's private key (PEM).
    pub fn private_key(&self) -> &str {
        &self.private_key
    }

    /// A `known_hosts` line for this server's host key.
    pub fn known_hosts(&self) -> &str {
        &self.known_hosts
    }

    /// The SSH user.
    pub fn user(&self) -> &str {
        &self.user
    }
}

/// `git init --bare --initial-branch=main` with Debian's git.
fn init_bare(path: &Path) -> Result<(), BackendError> {
    let git = find("git", &["/usr/bin", "/usr/local/bin", "/bin"])?;
    let status = Command::new(git)
        .args(["init", "--quiet", "--bare", "--initial-branch=main"])
        .arg(path)
        .status()
        .map_err(|e| start_error(format!("git init: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(start_error(format!(
            "git init {} failed ({status})",
            path.display()
        )))
    }
}

impl Drop for SshGitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
