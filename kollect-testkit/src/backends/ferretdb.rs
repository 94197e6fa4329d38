//! A MongoDB-wire-protocol server (FerretDB, built by `hack/install-go-backends.sh`).

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{BackendError, find, go_backends_dir, log_file, start_error, wait_for_port};
use crate::control_plane::free_port;

/// A MongoDB-wire-protocol server: FerretDB on its SQLite backend (no MongoDB server package is
/// available to install; FerretDB speaks the same protocol to the `mongodb` driver).
#[derive(Debug)]
pub struct FerretDb {
    server: super::ServerProcess,
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
            server: super::ServerProcess::new(dir, child, port),
        })
    }

    /// `mongodb://127.0.0.1:<port>/`.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.server.port)
    }
}
