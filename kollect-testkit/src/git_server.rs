//! A Git smart-HTTP(S) server with basic authentication over local bare repositories.
//!
//! Requests are authenticated and then handed to `git http-backend` (Debian's git) as CGI, so
//! clients talk to the real Git protocol implementation: clone, fetch, push (including rejected
//! non-fast-forward pushes) and authentication failures behave as against a hosted server.
//!
//! The server runs on its own thread and tokio runtime, so it serves every test of a binary
//! whatever runtime each test uses, and stops on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;

use crate::backends::BackendError;

/// A running smart-HTTP Git server.
pub struct GitServer {
    root: tempfile::TempDir,
    addr: SocketAddr,
    user: String,
    password: String,
    _server: crate::http_server::Running,
    /// The CA of the serving certificate, when serving HTTPS.
    ca_pem: Option<String>,
    available: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for GitServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn git_binary() -> Result<PathBuf, BackendError> {
    ["/usr/bin/git", "/usr/local/bin/git", "/bin/git"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or(BackendError::Missing {
            binary: "git",
            looked: "/usr/bin, /usr/local/bin, /bin".to_owned(),
        })
}

fn start_error(message: impl Into<String>) -> BackendError {
    BackendError::Start {
        backend: "git",
        message: message.into(),
    }
}

struct Config {
    available: Arc<std::sync::atomic::AtomicBool>,
    git: PathBuf,
    root: PathBuf,
    user: String,
    password: String,
}

impl GitServer {
    /// Starts a server accepting `user`/`password` on a free port.
    pub fn start(user: &str, password: &str) -> Result<Self, BackendError> {
        Self::start_with(user, password, None, std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// Starts a server accepting `user`/`password` on a free port of `address`, for clients
    /// that may not dial loopback (an operator run with its production network policy).
    pub fn start_on(address: std::net::IpAddr, user: &str, password: &str) -> Result<Self, BackendError> {
        Self::start_with(user, password, None, address)
    }

    /// Starts an HTTPS server (a fresh CA and a certificate for `127.0.0.1` and `localhost`;
    /// see [`GitServer::ca_pem`]).
    pub fn start_tls(user: &str, password: &str) -> Result<Self, BackendError> {
        let pki = crate::pki::serving_pki("git-server").map_err(|e| start_error(e.to_string()))?;
        Self::start_with(user, password, Some(pki), std::net::Ipv4Addr::LOCALHOST.into())
    }

    fn start_with(
        user: &str,
        password: &str,
        pki: Option<crate::pki::ServingPki>,
        address: std::net::IpAddr,
    ) -> Result<Self, BackendError> {
        let tls = pki
            .as_ref()
            .map(crate::http_server::tls_acceptor)
            .transpose()
            .map_err(start_error)?;
        let git = git_binary()?;
        let root = tempfile::Builder::new()
            .prefix("kollect-git-")
            .tempdir()
            .map_err(|e| start_error(e.to_string()))?;
        let listener = std::net::TcpListener::bind((address, 0)).map_err(|e| start_error(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| start_error(e.to_string()))?;
        let addr = listener.local_addr().map_err(|e| start_error(e.to_string()))?;
        let available = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let config = Arc::new(Config {
            available: Arc::clone(&available),
            git,
            root: root.path().to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
        });
        let server = crate::http_server::spawn("git-http", listener, tls, move |request| {
            handle(Arc::clone(&config), request)
        })
        .map_err(|e| start_error(e.to_string()))?;
        Ok(Self {
            root,
            addr,
            user: user.to_owned(),
            password: password.to_owned(),
            _server: server,
            ca_pem: pki.map(|p| p.ca_pem),
            available,
        })
    }

    /// Creates an empty bare repository `<name>.git` and returns its URL (without credentials).
    pub fn create_repo(&self, name: &str) -> Result<String, BackendError> {
        let path = self.repo_path(name);
        let git = git_binary()?;
        let status = std::process::Command::new(&git)
            .args(["init", "--quiet", "--bare", "--initial-branch=main"])
            .arg(&path)
            .status()
            .map_err(|e| start_error(format!("git init: {e}")))?;
        if !status.success() {
            return Err(start_error(format!(
                "git init {} failed ({status})",
                path.display()
            )));
        }
        let status = std::process::Command::new(&git)
            .arg("--git-dir")
            .arg(&path)
            .args(["config", "http.receivepack", "true"])
            .status()
            .map_err(|e| start_error(format!("git config: {e}")))?;
        if !status.success() {
            return Err(start_error("git config http.receivepack failed"));
        }
        Ok(self.url(name))
    }

    /// `http://127.0.0.1:<port>/<name>.git` (`https` when serving TLS).
    pub fn url(&self, name: &str) -> String {
        let scheme = if self.ca_pem.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/{name}.git", self.addr)
    }

    /// YAML of a Secret `git-credentials` with this server's user and password and a
    /// `KollectSnapshotSink` named `sink` of type git pushing to `repo_url` (branch `main`)
    /// with it, for tests that apply them.
    pub fn snapshot_sink_yaml(&self, sink: &str, repo_url: &str) -> String {
        format!(
            "apiVersion: v1
kind: Secret
metadata: {{name: git-credentials}}
stringData: {{username: {user}, password: {password}}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectSnapshotSink
metadata: {{name: {sink}}}
spec:
  type: git
  endpoint: {repo_url}
  secretRef: {{name: git-credentials}}
  git: {{branch: main}}
",
            user = self.user,
            password = self.password,
        )
    }

    /// The CA certificate (PEM) that signed the serving certificate of an HTTPS server.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The bare repository's directory, to inspect or modify it directly.
    pub fn repo_path(&self, name: &str) -> PathBuf {
        self.root.path().join(format!("{name}.git"))
    }

    /// The accepted user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The accepted password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The directory holding all repositories.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Takes the server down (`false`: every request gets `503 Service Unavailable`, as a hosted
    /// server in an outage answers) or brings it back (`true`). Repositories are kept.
    pub fn set_available(&self, available: bool) {
        self.available
            .store(available, std::sync::atomic::Ordering::SeqCst);
    }
}

fn respond(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            "WWW-Authenticate",
            hyper::header::HeaderValue::from_static("Basic realm=\"kollect\""),
        );
    }
    response
}

fn authorized(config: &Config, request: &Request<Incoming>) -> bool {
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", config.user, config.password));
    request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|given| given.trim() == expected)
}

async fn handle(config: Arc<Config>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if !config.available.load(std::sync::atomic::Ordering::SeqCst) {
        return respond(StatusCode::SERVICE_UNAVAILABLE, "service unavailable\n");
    }
    if !authorized(&config, &request) {
        return respond(StatusCode::UNAUTHORIZED, "authentication required\n");
    }
    cgi(&config, request)
        .await
        .unwrap_or_else(|e| respond(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")))
}

/// Runs `git http-backend` for one request (RFC 3875 CGI).
async fn cgi(config: &Config, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, String> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut child = tokio::process::Command::new(&config.git)
        .arg("http-backend")
        .env_clear()
        .env("GIT_PROJECT_ROOT", &config.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", &config.user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start git http-backend: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).await.map_err(|e| e.to_string())?;
    }
    let output = child.wait_with_output().await.map_err(|e| e.to_string())?;
    let split = output
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| {
            output
                .stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, 2))
        })
        .ok_or_else(|| {
            format!(
                "git http-backend sent no headers: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let (head, rest) = output.stdout.split_at(split.0);
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(&rest[split.1..])));
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("Status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or(500);
            *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::try_from(name),
            hyper::header::HeaderValue::try_from(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    Ok(response)
}
