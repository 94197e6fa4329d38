//! NATS with JetStream from the Debian packages.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{BackendError, find, log_file, start_error, wait_for_port};
use crate::control_plane::free_port;

/// A NATS server with JetStream enabled.
#[derive(Debug)]
pub struct Nats {
    server: super::ServerProcess,
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
            server: super::ServerProcess::new(dir, child, port),
        })
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.server.port)
    }
}
