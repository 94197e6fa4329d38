//! Launchers for real sink backends on loopback: each starts the real server on a free port in a
//! temporary directory, waits until it accepts connections, hands back connection details, and
//! stops it (and removes the directory) on drop.
//!
//! A missing server binary is an error naming the setup command; with `KOLLECT_REQUIRE_INFRA=1`
//! tests fail on it, otherwise they may skip (see [`start_for_test`]).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::control_plane::infra_required;

mod bigquery;
mod duckdb;
mod ferretdb;
mod gitea;
mod kafka;
mod nats;
mod object_stores;
mod postgres;

pub use bigquery::{BIGQUERY_DATASET, BIGQUERY_PROJECT, BigqueryEmulator};
pub use duckdb::{DuckDb, QueryResult, S3Access};
pub use ferretdb::{FERRETDB_PASSWORD, FERRETDB_USER, FerretDb, FerretDbOptions};
pub use gitea::{GITEA_PASSWORD, GITEA_USER, Gitea};
pub use kafka::{KAFKA_PASSWORD, KAFKA_UNAUTHORIZED_USER, KAFKA_USER, Kafka, KafkaRecord};
pub use nats::{
    NATS_PASSWORD, NATS_RESTRICTED_PASSWORD, NATS_RESTRICTED_USER, NATS_TOKEN, NATS_USER, Nats, NatsAuth,
    NatsOptions, NatsRecord, NatsTls,
};
pub use object_stores::{Azurite, FakeGcs, Minio};
pub use postgres::Postgres;

/// The command that installs every backend.
pub const SETUP_COMMAND: &str = "hack/setup.sh";

/// Why a backend could not be started.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The server is not installed.
    #[error(
        "{binary} not found ({looked}); install the test backends with {SETUP_COMMAND} (./hack/test.sh does this)"
    )]
    Missing {
        /// The binary.
        binary: &'static str,
        /// Where it was looked for.
        looked: String,
    },
    /// Starting or preparing the server failed.
    #[error("{backend}: {message}")]
    Start {
        /// Which backend.
        backend: &'static str,
        /// What failed (with the tail of the server log when there is one).
        message: String,
    },
}

/// Starts a backend for a test: `None` (after printing why) when it is not installed and
/// infrastructure is not required; panics on every other failure.
///
/// # Panics
///
/// When the backend cannot start, or is missing while `KOLLECT_REQUIRE_INFRA=1`.
pub fn start_for_test<T>(start: impl FnOnce() -> Result<T, BackendError>) -> Option<T> {
    match start() {
        Ok(backend) => Some(backend),
        Err(error @ BackendError::Missing { .. }) if !infra_required() => {
            eprintln!("skipping: {error} (set KOLLECT_REQUIRE_INFRA=1 to make this a failure)");
            None
        }
        Err(error) => panic!("{error}"),
    }
}

fn find(binary: &'static str, dirs: &[PathBuf]) -> Result<PathBuf, BackendError> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.iter()
        .chain(path_dirs.iter())
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
        .ok_or_else(|| BackendError::Missing {
            binary,
            looked: dirs
                .iter()
                .map(|d| d.display().to_string())
                .chain(["$PATH".to_owned()])
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn start_error(backend: &'static str, message: impl Into<String>, log: Option<&Path>) -> BackendError {
    let mut message = message.into();
    if let Some(log) = log {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(10).collect();
        if !tail.is_empty() {
            message.push_str("; log tail:\n");
            message.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
    }
    BackendError::Start { backend, message }
}

/// An error with the log tail when the server process has already exited.
fn exited_early(backend: &'static str, child: &mut Child, log: &Path) -> Result<(), BackendError> {
    match child.try_wait() {
        Ok(Some(status)) => Err(start_error(
            backend,
            format!("exited early ({status})"),
            Some(log),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn wait_for_port(
    backend: &'static str,
    port: u16,
    child: &mut Child,
    log: &Path,
    limit: Duration,
) -> Result<(), BackendError> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        exited_early(backend, child, log)?;
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(start_error(
        backend,
        format!("no listener on port {port} within {limit:?}"),
        Some(log),
    ))
}

fn log_file(path: &Path) -> Result<(std::fs::File, std::fs::File), BackendError> {
    let out = std::fs::File::create(path).map_err(|e| start_error("log", e.to_string(), None))?;
    let err = out
        .try_clone()
        .map_err(|e| start_error("log", e.to_string(), None))?;
    Ok((out, err))
}

/// The directory `hack/install-go-backends.sh` installs Go-built servers into.
fn go_backends_dir() -> PathBuf {
    crate::control_plane::cache_dir().join("bin")
}

/// Waits until `GET path` on the loopback port answers with a 2xx status.
fn wait_for_http(
    backend: &'static str,
    port: u16,
    path: &str,
    child: &mut Child,
    log: &Path,
    limit: Duration,
) -> Result<(), BackendError> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + limit;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        exited_early(backend, child, log)?;
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let request =
                format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut head = [0u8; 12];
            if stream.write_all(request.as_bytes()).is_ok() && stream.read_exact(&mut head).is_ok() {
                let status_line = String::from_utf8_lossy(&head).into_owned();
                if status_line.get(9..10) == Some("2") {
                    return Ok(());
                }
                last = status_line;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(start_error(
        backend,
        format!("GET {path} on port {port} not ready within {limit:?} (last: {last})"),
        Some(log),
    ))
}

/// A temporary directory for one backend instance.
fn temp_dir(backend: &'static str) -> Result<tempfile::TempDir, BackendError> {
    tempfile::Builder::new()
        .prefix(&format!("kollect-{backend}-"))
        .tempdir()
        .map_err(|e| start_error(backend, e.to_string(), None))
}

/// Kills a child process and reaps it.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Installs rustls' ring provider as the process default (idempotent). The HTTP clients of the
/// object store crates are built without a bundled provider so the workspace uses one (ring)
/// everywhere; a client built before a default exists would panic.
pub fn install_crypto_provider() {
    // An error only means a default is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP client for launcher requests on loopback.
fn http_client(backend: &'static str) -> Result<reqwest::Client, BackendError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .build()
        .map_err(|e| start_error(backend, format!("build an HTTP client: {e}"), None))
}

/// A server process with its temporary directory: killed (and the directory removed) on drop,
/// and by a reaper when the test process exits first.
pub(crate) struct ServerProcess {
    dir: tempfile::TempDir,
    child: Child,
    pub(crate) port: u16,
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl ServerProcess {
    fn new(dir: tempfile::TempDir, child: Child, port: u16) -> Self {
        reap(child.id(), dir.path());
        Self { dir, child, port }
    }

    /// The server's directory.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server process (its directory stays).
    pub(crate) fn kill(&mut self) {
        stop(&mut self.child);
    }

    /// Replaces the (killed) process with `child`, started in the same directory.
    pub(crate) fn respawn(&mut self, child: Child) {
        reap(child.id(), self.dir.path());
        self.child = child;
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Starts a small shell process that runs `cleanup` once this process has exited: servers held
/// in statics (shared by the tests of a binary) are never dropped, so without it they would
/// outlive the test run.
fn spawn_reaper(cleanup: &str) {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 1; done; {cleanup}",
        parent = std::process::id()
    );
    let _ = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// A reaper that kills `pid` and removes `dir`.
pub(crate) fn reap(pid: u32, dir: &Path) {
    spawn_reaper(&format!(
        "kill {pid} 2>/dev/null; sleep 1; rm -rf '{}'",
        dir.display()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_backend_names_the_setup_command() {
        let error = find("kollect-no-such-server", &[PathBuf::from("/nonexistent")]).unwrap_err();
        assert!(matches!(error, BackendError::Missing { .. }));
        let message = error.to_string();
        assert!(message.contains("kollect-no-such-server"), "{message}");
        assert!(message.contains("/nonexistent"), "{message}");
        assert!(message.contains(SETUP_COMMAND), "{message}");
    }

    #[test]
    fn shared_key_signature_matches_a_known_vector() {
        // HMAC-SHA256 with the key bytes "key" over "The quick brown fox jumps over the lazy dog"
        // is the widely published f7bc83f4…2d1a3cd8; the header carries it in base64.
        let header = object_stores::shared_key_authorization(
            "acct",
            "a2V5",
            "The quick brown fox jumps over the lazy dog",
        )
        .unwrap();
        assert_eq!(
            header,
            "SharedKey acct:97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="
        );
    }
}
