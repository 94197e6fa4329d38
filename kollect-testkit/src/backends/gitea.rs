//! A Git forge with the Gitea/Forgejo REST API (`/api/v1`): Gitea on SQLite, built by
//! `hack/install-gitea.sh`, with an admin user, an access token, and real Git over HTTP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{BackendError, find, go_backends_dir, log_file, start_error, wait_for_http};
use crate::control_plane::free_port;

/// The admin user a [`Gitea`] server has.
pub const GITEA_USER: &str = "kollect";
/// That user's password.
pub const GITEA_PASSWORD: &str = "kollect-test-password";
/// The version `hack/install-gitea.sh` builds; its module source holds the templates.
const GITEA_VERSION: &str = "v1.26.0";

/// A Gitea server on loopback: repositories of [`GITEA_USER`], pushed to over HTTP with basic
/// authentication (the user and [`Gitea::token`]), pull requests through its API.
#[derive(Debug)]
pub struct Gitea {
    server: super::ServerProcess,
    binary: PathBuf,
    token: String,
}

impl Gitea {
    /// Starts Gitea on a free port with a fresh database, creates the admin user and an access
    /// token with every scope.
    pub fn start() -> Result<Self, BackendError> {
        let fail = |e: &dyn std::fmt::Display| start_error("gitea", e.to_string(), None);
        let binary = find("gitea", &[go_backends_dir()])?;
        let assets = crate::control_plane::cache_dir()
            .join("build")
            .join(format!("gitea-{GITEA_VERSION}"));
        if !assets.join("options").is_dir() {
            return Err(BackendError::Missing {
                binary: "gitea",
                looked: format!("{} (templates and options)", assets.display()),
            });
        }
        let dir = super::temp_dir("gitea")?;
        let port = free_port().map_err(|e| fail(&e))?;
        std::fs::write(dir.path().join("app.ini"), app_ini(dir.path(), port, &assets))
            .map_err(|e| fail(&e))?;
        admin(&binary, dir.path(), &["migrate"])?;
        admin(
            &binary,
            dir.path(),
            &[
                "admin",
                "user",
                "create",
                "--admin",
                "--username",
                GITEA_USER,
                "--password",
                GITEA_PASSWORD,
                "--email",
                "kollect@example.com",
                "--must-change-password=false",
            ],
        )?;
        let token = admin(
            &binary,
            dir.path(),
            &[
                "admin",
                "user",
                "generate-access-token",
                "--username",
                GITEA_USER,
                "--token-name",
                "tests",
                "--scopes",
                "all",
                "--raw",
            ],
        )?
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
        if token.len() < 20 {
            return Err(start_error(
                "gitea",
                format!("no access token from gitea: {token:?}"),
                None,
            ));
        }
        let child = launch(&binary, dir.path(), port, "gitea.log")?;
        Ok(Self {
            server: super::ServerProcess::new(dir, child, port),
            binary,
            token,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// An access token of [`GITEA_USER`] with every scope.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `http://127.0.0.1:<port>/kollect/<repo>.git`.
    pub fn repo_url(&self, repo: &str) -> String {
        format!("{}/{GITEA_USER}/{repo}.git", self.base_url())
    }

    /// The bare repository on disk, to inspect it directly.
    pub fn repo_path(&self, repo: &str) -> PathBuf {
        self.server
            .dir()
            .join("repos")
            .join(GITEA_USER)
            .join(format!("{}.git", repo.to_ascii_lowercase()))
    }

    /// Creates repository `repo` of [`GITEA_USER`] with a first commit on `main`.
    pub async fn create_repo(&self, repo: &str) -> Result<(), BackendError> {
        self.call(
            reqwest::Method::POST,
            "/api/v1/user/repos",
            Some(json!({"name": repo, "auto_init": true, "default_branch": "main"})),
        )
        .await
        .map(drop)
    }

    /// The open pull requests of `repo`: `(number, head branch, base branch, title)`.
    pub async fn open_pulls(&self, repo: &str) -> Result<Vec<(u64, String, String, String)>, BackendError> {
        let body = self
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/repos/{GITEA_USER}/{repo}/pulls?state=open"),
                None,
            )
            .await?;
        Ok(body
            .as_array()
            .map(|pulls| {
                pulls
                    .iter()
                    .map(|p| {
                        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                        (
                            p["number"].as_u64().unwrap_or_default(),
                            text(&p["head"]["ref"]),
                            text(&p["base"]["ref"]),
                            text(&p["title"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
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
            "gitea-restart.log",
        )?;
        self.server.respawn(child);
        Ok(())
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BackendError> {
        let fail = |message: String| start_error("gitea", message, None);
        let mut request = super::http_client("gitea")?
            .request(method, format!("{}{path}", self.base_url()))
            .header("Authorization", format!("token {}", self.token));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("{path}: HTTP {}: {text}", status.as_u16())));
        }
        serde_json::from_str(&text).map_err(|e| fail(format!("{path}: unreadable answer: {e}")))
    }
}

/// A configuration for tests: SQLite, HTTP on loopback only, no SSH, mail, indexers or cron.
fn app_ini(dir: &Path, port: u16, assets: &Path) -> String {
    let dir = dir.display();
    format!(
        "I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true
APP_NAME = kollect-test
RUN_MODE = prod
WORK_PATH = {dir}
[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {port}
ROOT_URL = http://127.0.0.1:{port}/
DISABLE_SSH = true
OFFLINE_MODE = true
STATIC_ROOT_PATH = {assets}
APP_DATA_PATH = {dir}/data
LFS_START_SERVER = false
[database]
DB_TYPE = sqlite3
PATH = {dir}/gitea.db
[security]
INSTALL_LOCK = true
SECRET_KEY = kollect-test-secret-key
[repository]
ROOT = {dir}/repos
DEFAULT_BRANCH = main
[log]
MODE = file
LEVEL = warn
ROOT_PATH = {dir}/log
[service]
DISABLE_REGISTRATION = true
[oauth2]
ENABLED = false
[mailer]
ENABLED = false
[indexer]
REPO_INDEXER_ENABLED = false
[cron]
ENABLED = false
",
        assets = assets.display()
    )
}

/// Runs a `gitea` administration command on the server's configuration; its output.
fn admin(binary: &Path, dir: &Path, args: &[&str]) -> Result<String, BackendError> {
    let output = Command::new(binary)
        .arg("--config")
        .arg(dir.join("app.ini"))
        .arg("--work-path")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| start_error("gitea", format!("run gitea {}: {e}", args[0]), None))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(start_error(
            "gitea",
            format!(
                "gitea {} failed: {}{}",
                args.join(" "),
                stdout,
                String::from_utf8_lossy(&output.stderr)
            ),
            None,
        ));
    }
    Ok(stdout)
}

fn launch(binary: &Path, dir: &Path, port: u16, log_name: &str) -> Result<Child, BackendError> {
    let log = dir.join(log_name);
    let (out, err) = log_file(&log)?;
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(dir.join("app.ini"))
        .arg("--work-path")
        .arg(dir)
        .arg("web")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| start_error("gitea", format!("start gitea: {e}"), None))?;
    wait_for_http(
        "gitea",
        port,
        "/api/v1/version",
        &mut child,
        &log,
        Duration::from_secs(60),
    )?;
    Ok(child)
}
