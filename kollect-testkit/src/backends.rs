//! Launchers for real sink backends on loopback: each starts the real server on a free port in a
//! temporary directory, waits until it accepts connections, hands back connection details, and
//! stops it (and removes the directory) on drop.
//!
//! A missing server binary is an error naming the setup command; with `KOLLECT_REQUIRE_INFRA=1`
//! tests fail on it, otherwise they may skip (see [`start_for_test`]).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::control_plane::{free_port, infra_required};

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

fn wait_for_port(
    backend: &'static str,
    port: u16,
    child: &mut Child,
    log: &Path,
    limit: Duration,
) -> Result<(), BackendError> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(start_error(
                backend,
                format!("exited early ({status})"),
                Some(log),
            ));
        }
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

/// Whether this process runs as root (PostgreSQL refuses to, so it is started as `postgres`).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// uid and gid of a local user, from /etc/passwd.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.split(':').next() == Some(user))?;
    let mut fields = line.split(':').skip(2);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// A PostgreSQL server with password authentication on TCP.
pub struct Postgres {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    password: String,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// The superuser name.
    pub const USER: &'static str = "postgres";

    /// Initialises a cluster in a temporary directory and starts it on a free port.
    pub fn start() -> Result<Self, BackendError> {
        let mut bin_dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                    .collect()
            })
            .unwrap_or_default();
        bin_dirs.sort();
        bin_dirs.reverse();
        let initdb = find("initdb", &bin_dirs)?;
        let postgres = find("postgres", &bin_dirs)?;
        let dir = tempfile::Builder::new()
            .prefix("kollect-pg-")
            .tempdir()
            .map_err(|e| start_error("postgres", e.to_string(), None))?;
        let data = dir.path().join("data");
        let password = format!("pw-{}", free_port().unwrap_or(0));
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, &password).map_err(|e| start_error("postgres", e.to_string(), None))?;
        let as_root = running_as_root();
        if as_root {
            let (uid, gid) = user_ids("postgres").ok_or_else(|| {
                start_error(
                    "postgres",
                    "running as root, but there is no 'postgres' user to run the server as",
                    None,
                )
            })?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| start_error("postgres", e.to_string(), None))?;
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))
                .map_err(|e| start_error("postgres", e.to_string(), None))?;
        }
        let command = |program: &Path| {
            if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            }
        };
        let init_log = dir.path().join("initdb.log");
        let (out, err) = log_file(&init_log)?;
        let status = command(&initdb)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                Self::USER,
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| start_error("postgres", format!("run initdb: {e}"), None))?;
        if !status.success() {
            return Err(start_error(
                "postgres",
                format!("initdb failed ({status})"),
                Some(&init_log),
            ));
        }
        let port = free_port().map_err(|e| start_error("postgres", e.to_string(), None))?;
        let log = dir.path().join("postgres.log");
        let (out, err) = log_file(&log)?;
        let mut child = command(&postgres)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| start_error("postgres", format!("start postgres: {e}"), None))?;
        wait_for_port("postgres", port, &mut child, &log, Duration::from_secs(30))?;
        // The port accepts connections slightly before startup finishes; wait for the log line.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("ready to accept connections")
        {
            if Instant::now() > deadline {
                return Err(start_error("postgres", "not ready within 30s", Some(&log)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            dir,
            child,
            port,
            password,
        })
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A connection string for `database` as the superuser (TLS off).
    pub fn dsn(&self, database: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{database}?sslmode=disable",
            Self::USER,
            self.password,
            self.port
        )
    }

    /// The server's directory (data and logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGKILL of `runuser` would leave the server running; ask the server itself to stop.
        let pid_file = self.dir.path().join("data/postmaster.pid");
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
        {
            let _ = Command::new("kill").args(["-QUIT", &pid]).status();
        }
        // `runuser` exits (and reaps the server) once the server is gone; give it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory `hack/install-go-backends.sh` installs Go-built servers into.
fn go_backends_dir() -> PathBuf {
    crate::control_plane::cache_dir().join("bin")
}

/// A MongoDB-wire-protocol server: FerretDB on its SQLite backend (no MongoDB server package is
/// available to install; FerretDB speaks the same protocol to the `mongodb` driver).
pub struct FerretDb {
    _dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl std::fmt::Debug for FerretDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FerretDb")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl FerretDb {
    /// Starts FerretDB on a free port with its SQLite files in a temporary directory.
    pub fn start() -> Result<Self, BackendError> {
        let binary = find("ferretdb", &[go_backends_dir()])?;
        let dir = tempfile::Builder::new()
            .prefix("kollect-ferretdb-")
            .tempdir()
            .map_err(|e| start_error("ferretdb", e.to_string(), None))?;
        let port = free_port().map_err(|e| start_error("ferretdb", e.to_string(), None))?;
        let log = dir.path().join("ferretdb.log");
        let (out, err) = log_file(&log)?;
        let mut child = Command::new(binary)
            .arg(format!("--listen-addr=127.0.0.1:{port}"))
            .arg("--handler=sqlite")
            .arg(format!("--sqlite-url=file:{}/", dir.path().display()))
            .arg(format!("--state-dir={}", dir.path().display()))
            .args(["--telemetry=disable", "--debug-addr=-", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| start_error("ferretdb", format!("start ferretdb: {e}"), None))?;
        wait_for_port("ferretdb", port, &mut child, &log, Duration::from_secs(20))?;
        Ok(Self {
            _dir: dir,
            child,
            port,
        })
    }

    /// `mongodb://127.0.0.1:<port>/`.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }
}

impl Drop for FerretDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A NATS server with JetStream enabled.
pub struct Nats {
    _dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Nats {
    /// Starts `nats-server -js` on a free port with its store in a temporary directory.
    pub fn start() -> Result<Self, BackendError> {
        let binary = find(
            "nats-server",
            &[PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")],
        )?;
        let dir = tempfile::Builder::new()
            .prefix("kollect-nats-")
            .tempdir()
            .map_err(|e| start_error("nats", e.to_string(), None))?;
        let port = free_port().map_err(|e| start_error("nats", e.to_string(), None))?;
        let log = dir.path().join("nats.log");
        let (out, err) = log_file(&log)?;
        let mut child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path().join("jetstream"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| start_error("nats", format!("start nats-server: {e}"), None))?;
        wait_for_port("nats", port, &mut child, &log, Duration::from_secs(20))?;
        Ok(Self {
            _dir: dir,
            child,
            port,
        })
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
