//! Merge requests through the forge's REST API: GitLab's (`/api/v4`), or the Gitea/Forgejo
//! API (`/api/v1` pull requests) when GitLab's path answers 404 or 405.

use std::time::Duration;

use kollect_core::sink::{ErrorClass, SinkError};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::config::MergeRequests;

/// Timeout of one API request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes of an answer read at most.
const MAX_BODY: usize = 1024 * 1024;
/// Characters of an error body quoted in messages.
const MAX_QUOTE: usize = 240;
/// Pull requests listed per page (Gitea's maximum is 50).
const PAGE: usize = 50;

/// Which API the forge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    GitLab,
    Gitea,
}

/// A merge request that exists (found open, or just created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MergeRequest {
    /// Its number in the project (`iid` on GitLab, `number` on Gitea).
    pub(crate) number: u64,
    /// True when this call created it.
    pub(crate) created: bool,
}

/// The merge-request client of one project.
pub(crate) struct Forge {
    http: reqwest::Client,
    settings: MergeRequests,
    flavour: OnceCell<Flavour>,
}

#[derive(Deserialize)]
struct GitlabMergeRequest {
    iid: u64,
    #[serde(default)]
    target_branch: String,
}

#[derive(Deserialize)]
struct GiteaPull {
    number: u64,
    head: GiteaRef,
    base: GiteaRef,
}

#[derive(Deserialize)]
struct GiteaRef {
    #[serde(rename = "ref", default)]
    name: String,
}

/// A non-success answer.
struct Refused {
    status: StatusCode,
    body: String,
}

impl Forge {
    pub(crate) fn new(settings: MergeRequests) -> Result<Self, SinkError> {
        let tls = if settings.insecure_skip_verify {
            crate::tls::insecure_client_config()?
        } else {
            crate::tls::client_config(settings.ca_pem.as_deref())?
        };
        let http = crate::http::guarded_client(&settings.resolver, tls, REQUEST_TIMEOUT)
            .map_err(|e| SinkError::terminal(format!("gitlab HTTP client: {e}")))?;
        Ok(Self {
            http,
            settings,
            flavour: OnceCell::new(),
        })
    }

    /// The open merge request from `source` to the target branch, created titled `title` when
    /// there is none.
    pub(crate) async fn ensure(&self, source: &str, title: &str) -> Result<MergeRequest, SinkError> {
        if let Some(number) = self.find_open(source).await? {
            return Ok(MergeRequest {
                number,
                created: false,
            });
        }
        let number = match self.flavour.get() {
            Some(Flavour::Gitea) => self.create_gitea(source, title).await?,
            _ => self.create_gitlab(source, title).await?,
        };
        Ok(MergeRequest {
            number,
            created: true,
        })
    }

    /// Closes the open merge request from `source` to the target branch, if there is one: the
    /// proposal of an inventory whose files never reached the target is withdrawn.
    pub(crate) async fn withdraw(&self, source: &str) -> Result<Option<u64>, SinkError> {
        let Some(number) = self.find_open(source).await? else {
            return Ok(None);
        };
        match self.flavour.get() {
            Some(Flavour::Gitea) => {
                let url = self.url(
                    &format!("api/v1/repos/{}/pulls/{number}", self.settings.project),
                    &[],
                );
                self.send(
                    Method::PATCH,
                    url,
                    Some(json!({"state": "closed"})),
                    Flavour::Gitea,
                )
                .await
                .map_err(|r| self.error("gitea close pull request", r))?;
            }
            _ => {
                let project = urlencoding(&self.settings.project);
                let url = self.url(&format!("api/v4/projects/{project}/merge_requests/{number}"), &[]);
                self.send(
                    Method::PUT,
                    url,
                    Some(json!({"state_event": "close"})),
                    Flavour::GitLab,
                )
                .await
                .map_err(|r| self.error("gitlab close merge request", r))?;
            }
        }
        Ok(Some(number))
    }

    /// The open merge request from `source` to the target branch; the first call finds out
    /// which API the forge speaks.
    async fn find_open(&self, source: &str) -> Result<Option<u64>, SinkError> {
        match self.flavour.get() {
            Some(Flavour::GitLab) => self.find_gitlab(source).await?.ok_or_else(|| self.no_api()),
            Some(Flavour::Gitea) => self.find_gitea(source).await,
            None => match self.find_gitlab(source).await? {
                Some(found) => {
                    let _ = self.flavour.set(Flavour::GitLab);
                    Ok(found)
                }
                None => {
                    let found = self.find_gitea(source).await?;
                    let _ = self.flavour.set(Flavour::Gitea);
                    Ok(found)
                }
            },
        }
    }

    fn no_api(&self) -> SinkError {
        SinkError::terminal(format!(
            "gitlab merge requests: {} answers neither GitLab's /api/v4 nor the Gitea/Forgejo /api/v1",
            self.settings.api_base
        ))
    }

    /// GitLab: `GET /projects/:id/merge_requests?state=opened&source_branch=`. `None` when the
    /// path answers 404 or 405 (not GitLab).
    async fn find_gitlab(&self, source: &str) -> Result<Option<Option<u64>>, SinkError> {
        let project = urlencoding(&self.settings.project);
        let list = self.url(
            &format!("api/v4/projects/{project}/merge_requests"),
            &[("state", "opened"), ("source_branch", source)],
        );
        let open: Vec<GitlabMergeRequest> = match self.send(Method::GET, list, None, Flavour::GitLab).await {
            Ok(body) => parse(body, "gitlab list merge requests")?,
            Err(refused)
                if matches!(
                    refused.status,
                    StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
                ) =>
            {
                return Ok(None);
            }
            Err(refused) => return Err(self.error("gitlab list merge requests", refused)),
        };
        let target = &self.settings.target_branch;
        Ok(Some(
            open.iter()
                .find(|mr| &mr.target_branch == target)
                .map(|mr| mr.iid),
        ))
    }

    /// GitLab: `POST /projects/:id/merge_requests` with source, target and title.
    async fn create_gitlab(&self, source: &str, title: &str) -> Result<u64, SinkError> {
        let project = urlencoding(&self.settings.project);
        let body =
            json!({"source_branch": source, "target_branch": self.settings.target_branch, "title": title});
        let create = self.url(&format!("api/v4/projects/{project}/merge_requests"), &[]);
        let created: GitlabMergeRequest = parse(
            self.send(Method::POST, create, Some(body), Flavour::GitLab)
                .await
                .map_err(|r| self.error("gitlab create merge request", r))?,
            "gitlab create merge request",
        )?;
        Ok(created.iid)
    }

    /// Gitea/Forgejo: the open pull requests, page by page, filtered by head and base.
    async fn find_gitea(&self, source: &str) -> Result<Option<u64>, SinkError> {
        let repo = &self.settings.project;
        let target = &self.settings.target_branch;
        for page in 1.. {
            let page_text = page.to_string();
            let limit = PAGE.to_string();
            let list = self.url(
                &format!("api/v1/repos/{repo}/pulls"),
                &[("state", "open"), ("page", &page_text), ("limit", &limit)],
            );
            let pulls: Vec<GiteaPull> = parse(
                self.send(Method::GET, list, None, Flavour::Gitea)
                    .await
                    .map_err(|r| self.error("gitea list pull requests", r))?,
                "gitea list pull requests",
            )?;
            if let Some(existing) = pulls
                .iter()
                .find(|p| p.head.name == source && &p.base.name == target)
            {
                return Ok(Some(existing.number));
            }
            if pulls.len() < PAGE {
                break;
            }
        }
        Ok(None)
    }

    /// Gitea/Forgejo: `POST /repos/{owner}/{repo}/pulls` with head, base and title.
    async fn create_gitea(&self, source: &str, title: &str) -> Result<u64, SinkError> {
        let body = json!({"head": source, "base": self.settings.target_branch, "title": title});
        let create = self.url(&format!("api/v1/repos/{}/pulls", self.settings.project), &[]);
        let created: GiteaPull = parse(
            self.send(Method::POST, create, Some(body), Flavour::Gitea)
                .await
                .map_err(|r| self.error("gitea create pull request", r))?,
            "gitea create pull request",
        )?;
        Ok(created.number)
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> url::Url {
        let mut url = self.settings.api_base.clone();
        // The project part is already percent-encoded (GitLab) or a plain `owner/repo` path.
        url.set_path(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// One call; the JSON answer, or the status and (the start of) the body.
    async fn send(
        &self,
        method: Method,
        url: url::Url,
        body: Option<Value>,
        flavour: Flavour,
    ) -> Result<Value, Refused> {
        let token = &self.settings.token;
        let mut request = self.http.request(method, url);
        request = match flavour {
            Flavour::GitLab => request.header("PRIVATE-TOKEN", token),
            Flavour::Gitea => request.header(reqwest::header::AUTHORIZATION, format!("token {token}")),
        };
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let unreachable = |e: reqwest::Error| Refused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: crate::http::cause(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let mut bytes = response.bytes().await.map_err(unreachable)?.to_vec();
        bytes.truncate(MAX_BODY);
        if !status.is_success() {
            return Err(Refused {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|_| Refused {
            status,
            body: "an answer that is not JSON".to_owned(),
        })
    }

    /// A refused call as a sink error: 401 terminal, 403 forbidden, other 4xx terminal, the
    /// rest transient; the token is never part of it.
    fn error(&self, stage: &str, refused: Refused) -> SinkError {
        let class = match refused.status {
            StatusCode::UNAUTHORIZED => ErrorClass::Terminal,
            StatusCode::FORBIDDEN => ErrorClass::Forbidden,
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => ErrorClass::Transient,
            status if status.is_client_error() => ErrorClass::Terminal,
            _ => ErrorClass::Transient,
        };
        let quoted: String = refused
            .body
            .replace(&self.settings.token, "[redacted]")
            .chars()
            .take(MAX_QUOTE)
            .collect();
        SinkError::new(
            class,
            format!("{stage}: HTTP {}: {}", refused.status.as_u16(), quoted.trim()),
        )
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: Value, stage: &str) -> Result<T, SinkError> {
    serde_json::from_value(body)
        .map_err(|e| SinkError::transient(format!("{stage}: unexpected answer ({e})")))
}

/// A project path as GitLab's `:id`, one percent-encoded path segment
/// (`group/sub/project` -> `group%2Fsub%2Fproject`).
fn urlencoding(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! GitLab's `/api/v4` merge request calls against a recorded contract of GitLab's REST
    //! documentation (<https://docs.gitlab.com/api/merge_requests/>): list open merge requests
    //! of a source branch, create one. No GitLab server runs in these tests.
    use super::*;
    use kollect_core::netguard::{GuardedResolver, NetPolicy};
    use kollect_testkit::contract::{ContractServer, Exchange};

    const TOKEN: &str = "glpat-contract-token";
    const LIST: &str = "/api/v4/projects/platform%2Finventory/merge_requests?state=opened&source_branch=kollect%2Fteam-a%2Fapps";
    const CREATE: &str = "/api/v4/projects/platform%2Finventory/merge_requests";

    fn forge(server: &ContractServer) -> Forge {
        Forge::new(MergeRequests {
            target_branch: "main".to_owned(),
            branch_prefix: "kollect".to_owned(),
            title_template: String::new(),
            api_base: url::Url::parse(server.base_url()).expect("url"),
            project: "platform/inventory".to_owned(),
            token: TOKEN.to_owned(),
            resolver: GuardedResolver::new(NetPolicy::permissive_for_tests()),
            ca_pem: server.ca_pem().map(str::to_owned),
            insecure_skip_verify: false,
        })
        .expect("forge")
    }

    fn list(answer: Value) -> Exchange {
        Exchange::new("GET", LIST)
            .header("private-token", TOKEN)
            .respond(200, answer)
    }

    #[test]
    fn project_paths_are_one_encoded_segment() {
        assert_eq!(
            urlencoding("platform/team a/inventory"),
            "platform%2Fteam%20a%2Finventory"
        );
    }

    #[tokio::test]
    async fn an_open_merge_request_to_the_target_is_reused() {
        let server = ContractServer::start_tls(vec![list(json!([
            {"iid": 3, "source_branch": "kollect/team-a/apps", "target_branch": "release", "state": "opened"},
            {"iid": 7, "source_branch": "kollect/team-a/apps", "target_branch": "main", "state": "opened"}
        ]))])
        .expect("server");
        let found = forge(&server)
            .ensure("kollect/team-a/apps", "t")
            .await
            .expect("ensure");
        assert_eq!(
            found,
            MergeRequest {
                number: 7,
                created: false
            }
        );
        server.verify().expect("contract");
    }

    #[tokio::test]
    async fn a_missing_merge_request_is_created_with_source_target_and_title() {
        let server = ContractServer::start_tls(vec![
            list(json!([])),
            Exchange::new("POST", CREATE)
                .header("private-token", TOKEN)
                .header("content-type", "application/json")
                .json_body(json!({
                    "source_branch": "kollect/team-a/apps",
                    "target_branch": "main",
                    "title": "kollect inventory export: team-a/apps"
                }))
                .respond(201, json!({"iid": 8, "state": "opened", "web_url": "https://gitlab.example.com/platform/inventory/-/merge_requests/8"})),
        ])
        .expect("server");
        let forge = forge(&server);
        let created = forge
            .ensure("kollect/team-a/apps", "kollect inventory export: team-a/apps")
            .await
            .expect("ensure");
        assert_eq!(
            created,
            MergeRequest {
                number: 8,
                created: true
            }
        );
        assert_eq!(
            forge.flavour.get(),
            Some(&Flavour::GitLab),
            "GitLab is remembered"
        );
        server.verify().expect("contract");
    }

    #[tokio::test]
    async fn withdrawing_closes_the_open_merge_request() {
        let server = ContractServer::start_tls(vec![
            list(json!([{"iid": 7, "target_branch": "main", "state": "opened"}])),
            Exchange::new("PUT", &format!("{CREATE}/7"))
                .header("private-token", TOKEN)
                .json_body(json!({"state_event": "close"}))
                .respond(200, json!({"iid": 7, "state": "closed"})),
        ])
        .expect("server");
        assert_eq!(
            forge(&server)
                .withdraw("kollect/team-a/apps")
                .await
                .expect("withdraw"),
            Some(7)
        );
        server.verify().expect("contract");
    }

    #[tokio::test]
    async fn a_refused_token_is_terminal_and_redacted() {
        let server = ContractServer::start_tls(vec![
            Exchange::new("GET", LIST).header("private-token", TOKEN).respond(
                401,
                json!({"message": format!("401 Unauthorized: token {TOKEN} is revoked")}),
            ),
        ])
        .expect("server");
        let error = forge(&server)
            .ensure("kollect/team-a/apps", "t")
            .await
            .expect_err("refused");
        assert_eq!(error.class(), ErrorClass::Terminal);
        assert!(
            error
                .to_string()
                .starts_with("gitlab list merge requests: HTTP 401"),
            "{error}"
        );
        assert!(!error.to_string().contains(TOKEN), "{error}");
        server.verify().expect("contract");
    }

    #[tokio::test]
    async fn a_forge_without_api_v4_is_asked_through_the_gitea_api() {
        let server = ContractServer::start_tls(vec![
            Exchange::new("GET", LIST).respond(404, json!({"message": "404 page not found"})),
            Exchange::new(
                "GET",
                "/api/v1/repos/platform/inventory/pulls?state=open&page=1&limit=50",
            )
            .header("authorization", &format!("token {TOKEN}"))
            .respond(200, json!([])),
            Exchange::new("POST", "/api/v1/repos/platform/inventory/pulls")
                .header("authorization", &format!("token {TOKEN}"))
                .json_body(json!({"head": "kollect/team-a/apps", "base": "main", "title": "t"}))
                .respond(
                    201,
                    json!({"number": 2, "head": {"ref": "kollect/team-a/apps"}, "base": {"ref": "main"}}),
                ),
        ])
        .expect("server");
        let forge = forge(&server);
        let created = forge.ensure("kollect/team-a/apps", "t").await.expect("ensure");
        assert_eq!(
            created,
            MergeRequest {
                number: 2,
                created: true
            }
        );
        assert_eq!(forge.flavour.get(), Some(&Flavour::Gitea));
        server.verify().expect("contract");
    }
}
