//! PostgreSQL from the Debian packages.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BackendError, find, log_file, start_error, wait_for_port};
use crate::control_plane::free_port;

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
    host: IpAddr,
    password: String,
    ca_pem: Option<String>,
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
        Self::start_with(false, None)
    }

    /// The same, also listening on `address` (a non-loopback address of this machine), with
    /// [`Postgres::dsn`] naming it. For a client that refuses loopback endpoints, such as the
    /// `kollect` binary's network policy.
    pub fn start_listening_on(address: IpAddr) -> Result<Self, BackendError> {
        Self::start_with(false, Some(address))
    }

    /// The same, also accepting TLS with a certificate for `127.0.0.1` and `localhost` from a
    /// fresh CA ([`Postgres::ca_pem`]).
    pub fn start_tls() -> Result<Self, BackendError> {
        Self::start_with(true, None)
    }

    /// The CA that signed the server certificate (TLS servers only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    fn start_with(tls: bool, extra_address: Option<IpAddr>) -> Result<Self, BackendError> {
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
        let mut listen = "127.0.0.1".to_owned();
        if let Some(address) = extra_address {
            listen = format!("127.0.0.1,{address}");
            let prefix = if address.is_ipv4() { 32 } else { 128 };
            let hba = data.join("pg_hba.conf");
            let mut rules =
                std::fs::read_to_string(&hba).map_err(|e| start_error("postgres", e.to_string(), None))?;
            rules.push_str(&format!("host all all {address}/{prefix} scram-sha-256\n"));
            std::fs::write(&hba, rules).map_err(|e| start_error("postgres", e.to_string(), None))?;
        }
        let mut tls_args: Vec<String> = Vec::new();
        let mut ca_pem = None;
        if tls {
            let pki = crate::pki::serving_pki("postgres")
                .map_err(|e| start_error("postgres", e.to_string(), None))?;
            let cert = dir.path().join("server.crt");
            let key = dir.path().join("server.key");
            let write = |path: &Path, content: &str| {
                std::fs::write(path, content).map_err(|e| start_error("postgres", e.to_string(), None))
            };
            write(&cert, &pki.cert_pem)?;
            write(&key, &pki.key_pem)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| start_error("postgres", e.to_string(), None))?;
            if as_root && let Some((uid, gid)) = user_ids("postgres") {
                for file in [&cert, &key] {
                    std::os::unix::fs::chown(file, Some(uid), Some(gid))
                        .map_err(|e| start_error("postgres", e.to_string(), None))?;
                }
            }
            tls_args = vec![
                "-c".into(),
                "ssl=on".into(),
                "-c".into(),
                format!("ssl_cert_file={}", cert.display()),
                "-c".into(),
                format!("ssl_key_file={}", key.display()),
            ];
            ca_pem = Some(pki.ca_pem);
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
                &format!("listen_addresses={listen}"),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .args(&tls_args)
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
        // The postmaster (not `runuser`) must get the signal; its pid is in postmaster.pid.
        super::spawn_reaper(&format!(
            "kill -QUIT $(head -1 '{dir}/data/postmaster.pid') 2>/dev/null; sleep 2; rm -rf '{dir}'",
            dir = dir.path().display()
        ));
        Ok(Self {
            dir,
            child,
            port,
            host: extra_address.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            password,
            ca_pem,
        })
    }

    /// The TCP port (on 127.0.0.1, and on the address of [`Postgres::start_listening_on`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A connection string for `database` as the superuser (TLS off), on 127.0.0.1 or the
    /// address given to [`Postgres::start_listening_on`].
    pub fn dsn(&self, database: &str) -> String {
        let host = match self.host {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        format!(
            "postgres://{}:{}@{host}:{}/{database}?sslmode=disable",
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
