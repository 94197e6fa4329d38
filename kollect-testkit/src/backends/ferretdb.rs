//! A MongoDB-wire-protocol server (FerretDB, built by `hack/install-go-backends.sh`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{BackendError, find, go_backends_dir, log_file, start_error, wait_for_port};
use crate::control_plane::free_port;

/// The user a [`FerretDb::start_with`] server with authentication creates.
pub const FERRETDB_USER: &str = "kollect";
/// That user's password.
pub const FERRETDB_PASSWORD: &str = "kollect-test-password";

/// How a [`FerretDb`] server is started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FerretDbOptions {
    /// SCRAM authentication with [`FERRETDB_USER`] and [`FERRETDB_PASSWORD`] (FerretDB's new
    /// authentication, which checks credentials itself instead of passing them to a backend).
    pub auth: bool,
    /// TLS only, with a certificate for `localhost` and `127.0.0.1` from a fresh CA.
    pub tls: bool,
}

impl FerretDbOptions {
    /// With authentication.
    pub fn with_auth(mut self) -> Self {
        self.auth = true;
        self
    }

    /// With TLS.
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }
}

/// A MongoDB-wire-protocol server: FerretDB on its SQLite backend (no MongoDB server package is
/// available to install; FerretDB speaks the same protocol to the `mongodb` driver).
#[derive(Debug)]
pub struct FerretDb {
    server: super::ServerProcess,
    binary: PathBuf,
    options: FerretDbOptions,
    pki: Option<crate::pki::ServingPki>,
}

impl FerretDb {
    /// Starts FerretDB without authentication or TLS on a free port, with its SQLite files in
    /// a temporary directory.
    pub fn start() -> Result<Self, BackendError> {
        Self::start_with(FerretDbOptions::default())
    }

    /// Starts FerretDB as `options` say.
    pub fn start_with(options: FerretDbOptions) -> Result<Self, BackendError> {
        let fail = |e: &dyn std::fmt::Display| start_error("ferretdb", e.to_string(), None);
        let binary = find("ferretdb", &[go_backends_dir()])?;
        let dir = tempfile::Builder::new()
            .prefix("kollect-ferretdb-")
            .tempdir()
            .map_err(|e| fail(&e))?;
        let port = free_port().map_err(|e| fail(&e))?;
        let pki = if options.tls {
            let pki = crate::pki::serving_pki("ferretdb").map_err(|e| fail(&e))?;
            std::fs::write(dir.path().join("cert.pem"), &pki.cert_pem).map_err(|e| fail(&e))?;
            std::fs::write(dir.path().join("key.pem"), &pki.key_pem).map_err(|e| fail(&e))?;
            Some(pki)
        } else {
            None
        };
        let child = launch(&binary, dir.path(), port, options, "ferretdb.log")?;
        Ok(Self {
            server: super::ServerProcess::new(dir, child, port),
            binary,
            options,
            pki,
        })
    }

    /// `mongodb://127.0.0.1:<port>/` (with the user and `tls=true` when the server has them).
    pub fn uri(&self) -> String {
        let credentials = if self.options.auth {
            format!("{FERRETDB_USER}:{FERRETDB_PASSWORD}@")
        } else {
            String::new()
        };
        let query = match (self.options.auth, self.options.tls) {
            (true, true) => "?authMechanism=SCRAM-SHA-256&tls=true",
            (true, false) => "?authMechanism=SCRAM-SHA-256",
            (false, true) => "?tls=true",
            (false, false) => "",
        };
        format!("mongodb://{credentials}127.0.0.1:{}/{query}", self.server.port)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The CA and serving certificate of a TLS server.
    pub fn pki(&self) -> Option<&crate::pki::ServingPki> {
        self.pki.as_ref()
    }

    /// Kills the server (its files stay): clients see it go away.
    pub fn stop(&mut self) {
        self.server.kill();
    }

    /// Starts the server again on the same port with the same files.
    pub fn resume(&mut self) -> Result<(), BackendError> {
        let child = launch(
            &self.binary,
            self.server.dir(),
            self.server.port,
            self.options,
            "ferretdb-restart.log",
        )?;
        self.server.respawn(child);
        Ok(())
    }
}

fn launch(
    binary: &Path,
    dir: &Path,
    port: u16,
    options: FerretDbOptions,
    log_name: &str,
) -> Result<Child, BackendError> {
    let log = dir.join(log_name);
    let (out, err) = log_file(&log)?;
    let mut command = Command::new(binary);
    if options.tls {
        command
            .arg("--listen-addr=")
            .arg(format!("--listen-tls=127.0.0.1:{port}"))
            .arg(format!(
                "--listen-tls-cert-file={}",
                dir.join("cert.pem").display()
            ))
            .arg(format!("--listen-tls-key-file={}", dir.join("key.pem").display()));
    } else {
        command.arg(format!("--listen-addr=127.0.0.1:{port}"));
    }
    if options.auth {
        command.args([
            "--test-enable-new-auth",
            "--setup-database=admin",
            &format!("--setup-username={FERRETDB_USER}"),
            &format!("--setup-password={FERRETDB_PASSWORD}"),
        ]);
    }
    let mut child = command
        .arg("--handler=sqlite")
        .arg(format!("--sqlite-url=file:{}/", dir.display()))
        .arg(format!("--state-dir={}", dir.display()))
        .args(["--telemetry=disable", "--debug-addr=-", "--log-level=warn"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| start_error("ferretdb", format!("start ferretdb: {e}"), None))?;
    wait_for_port("ferretdb", port, &mut child, &log, Duration::from_secs(20))?;
    Ok(child)
}
