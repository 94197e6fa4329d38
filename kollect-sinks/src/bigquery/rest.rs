//! The BigQuery REST API calls the sink makes (v2): dataset and table metadata, table
//! creation, and query jobs, with BigQuery's error body turned into classified errors.

use std::time::{Duration, Instant};

use kollect_core::sink::{ErrorClass, SinkError};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::auth::TokenSource;
use super::config::BigqueryConfig;
use super::statement::Statement;

/// Timeout of one HTTP request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one `jobs.query` or `getQueryResults` call waits for the job on the server.
const WAIT_PER_CALL: Duration = Duration::from_secs(10);
/// How long a query job may run before the export gives up on it (it is idempotent, so a
/// later attempt converges).
const JOB_DEADLINE: Duration = Duration::from_secs(600);
/// How often a load job is asked whether it finished.
const JOB_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Characters of an error message quoted from the server.
const MAX_MESSAGE: usize = 400;

/// Reasons that mean trying again may succeed, whatever the HTTP status (BigQuery answers
/// quota and rate limits with 403).
const TRANSIENT_REASONS: &[&str] = &[
    "ratelimitexceeded",
    "quotaexceeded",
    "backenderror",
    "internalerror",
    "jobbackenderror",
    "jobinternalerror",
    "tableunavailable",
];
/// Reasons of a refused authorisation.
const FORBIDDEN_REASONS: &[&str] = &["accessdenied", "billingnotenabled", "forbidden"];

/// A client of one project's BigQuery API.
pub(super) struct Api {
    http: reqwest::Client,
    endpoint: Url,
    project: String,
    location: Option<String>,
    tokens: TokenSource,
}

/// A table's metadata, as far as the sink reads it.
#[derive(Debug, Deserialize)]
pub(super) struct Table {
    #[serde(default)]
    pub(super) schema: Schema,
}

/// A table schema.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Schema {
    #[serde(default)]
    pub(super) fields: Vec<Field>,
}

/// One column.
#[derive(Debug, Deserialize)]
pub(super) struct Field {
    pub(super) name: String,
    #[serde(rename = "type", default)]
    pub(super) kind: String,
}

/// The outcome of a finished query job.
#[derive(Debug, Default)]
pub(super) struct JobOutcome {
    /// Rows inserted, updated or deleted by a DML statement.
    pub(super) affected_rows: u64,
}

/// The parts of a `jobs.query` / `getQueryResults` answer the sink reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryResponse {
    #[serde(default)]
    job_complete: bool,
    #[serde(default)]
    job_reference: Option<JobReference>,
    #[serde(default)]
    num_dml_affected_rows: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobReference {
    job_id: String,
    #[serde(default)]
    location: Option<String>,
}

/// BigQuery's error body: `{"error": {"code", "message", "errors": [{"reason", "message"}]}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    reason: String,
}

/// A failed call: its HTTP status (`None` when no answer came) and the first error reason.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: Option<StatusCode>,
    pub(super) reason: String,
    message: String,
    /// The class when it is known without a status (a credentials failure).
    known_class: Option<ErrorClass>,
}

impl ApiError {
    fn new(status: Option<StatusCode>, message: String) -> Self {
        Self {
            status,
            reason: String::new(),
            message,
            known_class: None,
        }
    }

    /// True for HTTP 404 (a missing dataset or table).
    pub(super) fn is_not_found(&self) -> bool {
        self.status == Some(StatusCode::NOT_FOUND)
    }

    /// True for HTTP 409 `duplicate` (the table already exists).
    pub(super) fn is_duplicate(&self) -> bool {
        self.status == Some(StatusCode::CONFLICT) || self.reason.eq_ignore_ascii_case("duplicate")
    }

    /// The error class: quota and backend reasons are transient whatever the status; other
    /// 4xx answers are terminal (401) or forbidden (403, `accessDenied`); 408, 429, 5xx and
    /// no answer are transient.
    pub(super) fn class(&self) -> ErrorClass {
        if let Some(class) = self.known_class {
            return class;
        }
        let reason = self.reason.to_ascii_lowercase();
        if TRANSIENT_REASONS.contains(&reason.as_str()) {
            return ErrorClass::Transient;
        }
        if FORBIDDEN_REASONS.contains(&reason.as_str()) || self.status == Some(StatusCode::FORBIDDEN) {
            return ErrorClass::Forbidden;
        }
        match self.status {
            None => ErrorClass::Transient,
            Some(StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS) => ErrorClass::Transient,
            Some(status) if status.is_server_error() => ErrorClass::Transient,
            Some(status) if status.is_client_error() => ErrorClass::Terminal,
            Some(_) => ErrorClass::Transient,
        }
    }

    /// The error as a sink error of `stage`.
    pub(super) fn into_sink_error(self, stage: &str) -> SinkError {
        let class = self.class();
        SinkError::new(class, format!("{stage}: {self}"))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.status, self.reason.is_empty()) {
            (Some(status), false) => write!(f, "HTTP {} {}: {}", status.as_u16(), self.reason, self.message),
            (Some(status), true) => write!(f, "HTTP {}: {}", status.as_u16(), self.message),
            (None, _) => f.write_str(&self.message),
        }
    }
}

impl Api {
    /// A client for `config`'s project through the guarded HTTP client.
    pub(super) fn new(config: &BigqueryConfig) -> Result<Self, SinkError> {
        let tls = if config.insecure_skip_verify {
            crate::tls::insecure_client_config()?
        } else {
            crate::tls::client_config(config.ca_pem.as_deref())?
        };
        let http = crate::http::guarded_client(&config.resolver, tls, REQUEST_TIMEOUT)
            .map_err(|e| SinkError::terminal(format!("bigquery HTTP client: {e}")))?;
        Ok(Self {
            http,
            endpoint: config.endpoint.clone(),
            project: config.project.clone(),
            location: config.location.clone(),
            tokens: TokenSource::new(config.credentials.clone(), &config.metadata_host)?,
        })
    }

    /// `<endpoint>/<prefix>/bigquery/v2/projects/<project>/<segments>?<query>`.
    fn url(&self, prefix: Option<&str>, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.endpoint.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(prefix);
            path.extend(["bigquery", "v2", "projects", &self.project]);
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// `GET datasets/<dataset>`.
    pub(super) async fn dataset(&self, dataset: &str) -> Result<(), ApiError> {
        self.call(Method::GET, self.url(None, &["datasets", dataset], &[]), None)
            .await
            .map(drop)
    }

    /// `GET datasets/<dataset>/tables/<table>`; `None` when it does not exist.
    pub(super) async fn table(&self, dataset: &str, table: &str) -> Result<Option<Table>, ApiError> {
        let url = self.url(None, &["datasets", dataset, "tables", table], &[]);
        match self.call(Method::GET, url, None).await {
            Ok(body) => serde_json::from_value(body)
                .map(Some)
                .map_err(|e| ApiError::new(None, format!("unreadable table metadata: {e}"))),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `POST datasets/<dataset>/tables` with the table resource `table`.
    pub(super) async fn create_table(&self, dataset: &str, table: &Value) -> Result<(), ApiError> {
        let url = self.url(None, &["datasets", dataset, "tables"], &[]);
        self.call(Method::POST, url, Some(Body::json(table)))
            .await
            .map(drop)
    }

    /// `DELETE datasets/<dataset>/tables/<table>`; a table already gone is no error.
    pub(super) async fn delete_table(&self, dataset: &str, table: &str) -> Result<(), ApiError> {
        let url = self.url(None, &["datasets", dataset, "tables", table], &[]);
        match self.call(Method::DELETE, url, None).await {
            Err(error) if !error.is_not_found() => Err(error),
            _ => Ok(()),
        }
    }

    /// Runs `statement` to completion.
    pub(super) async fn query(&self, statement: &Statement) -> Result<JobOutcome, ApiError> {
        let mut request = json!({
            "query": statement.sql,
            "useLegacySql": false,
            "parameterMode": "NAMED",
            "queryParameters": statement.parameters,
            "timeoutMs": WAIT_PER_CALL.as_millis() as u64,
        });
        if let Some(location) = &self.location {
            request["location"] = json!(location);
        }
        let started = Instant::now();
        let body = self
            .call(
                Method::POST,
                self.url(None, &["queries"], &[]),
                Some(Body::json(&request)),
            )
            .await?;
        let mut response = parse_query_response(body)?;
        while !response.job_complete {
            let Some(job) = response.job_reference.as_ref() else {
                return Err(protocol_error("an unfinished query job without a job reference"));
            };
            check_deadline(started, &job.job_id)?;
            let mut query = vec![
                ("timeoutMs", WAIT_PER_CALL.as_millis().to_string()),
                ("maxResults", "0".to_owned()),
            ];
            query.extend(self.job_location(job.location.as_ref()));
            let url = self.url(None, &["queries", &job.job_id], &query);
            response = parse_query_response(self.call(Method::GET, url, None).await?)?;
        }
        Ok(JobOutcome {
            affected_rows: response
                .num_dml_affected_rows
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        })
    }

    /// Validates `query` without running it (`dryRun`).
    pub(super) async fn dry_run(&self, query: &str) -> Result<(), ApiError> {
        let mut request = json!({"query": query, "useLegacySql": false, "dryRun": true});
        if let Some(location) = &self.location {
            request["location"] = json!(location);
        }
        self.call(
            Method::POST,
            self.url(None, &["queries"], &[]),
            Some(Body::json(&request)),
        )
        .await
        .map(drop)
    }

    /// Loads newline-delimited JSON `rows` into the existing table `dataset.table` with a load
    /// job (a resumable upload sent in one piece), and waits for the job.
    pub(super) async fn load(
        &self,
        dataset: &str,
        table: &str,
        rows: Vec<u8>,
        job_id: &str,
    ) -> Result<(), ApiError> {
        let mut job_reference = json!({"projectId": self.project, "jobId": job_id});
        if let Some(location) = &self.location {
            job_reference["location"] = json!(location);
        }
        let job = json!({
            "jobReference": job_reference,
            "configuration": {"load": {
                "destinationTable": {"projectId": self.project, "datasetId": dataset, "tableId": table},
                "sourceFormat": "NEWLINE_DELIMITED_JSON",
                "createDisposition": "CREATE_NEVER",
                "writeDisposition": "WRITE_APPEND",
            }},
        });
        let start = self.url(
            Some("upload"),
            &["jobs"],
            &[("uploadType", "resumable".to_owned())],
        );
        let (headers, _) = self.send(Method::POST, start, Some(Body::json(&job))).await?;
        let session = headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Url::parse(v).ok())
            .ok_or_else(|| protocol_error("an upload session without a Location"))?;
        // The session URL comes from the server: it must stay on the endpoint's origin, or a
        // redirect-like answer could send the rows (and the token) elsewhere.
        if session.origin() != self.endpoint.origin() {
            return Err(protocol_error("an upload session on another host"));
        }
        let body = Body {
            content_type: "application/octet-stream",
            bytes: rows,
        };
        let (_, answer) = self.send(Method::PUT, session, Some(body)).await?;
        let started = Instant::now();
        let mut status: JobStatus = serde_json::from_value(answer["status"].clone()).unwrap_or_default();
        while status.state != "DONE" {
            check_deadline(started, job_id)?;
            tokio::time::sleep(JOB_POLL_INTERVAL).await;
            let query: Vec<(&str, String)> = self.job_location(None).into_iter().collect();
            let body = self
                .call(Method::GET, self.url(None, &["jobs", job_id], &query), None)
                .await?;
            status = serde_json::from_value(body["status"].clone()).unwrap_or_default();
        }
        match status.error_result {
            None => Ok(()),
            Some(error) => Err(ApiError {
                reason: error.reason,
                ..ApiError::new(
                    None,
                    format!("load job {job_id} failed: {}", truncate(&error.message)),
                )
            }),
        }
    }

    fn job_location(&self, reported: Option<&String>) -> Option<(&'static str, String)> {
        reported
            .or(self.location.as_ref())
            .map(|location| ("location", location.clone()))
    }

    /// One call answered with JSON: the answer, or the classified error.
    async fn call(&self, method: Method, url: Url, body: Option<Body>) -> Result<Value, ApiError> {
        self.send(method, url, body).await.map(|(_, value)| value)
    }

    /// One request; the answer's headers and JSON body (`null` when empty), or the classified
    /// error.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Body>,
    ) -> Result<(reqwest::header::HeaderMap, Value), ApiError> {
        let mut request = self.http.request(method, url);
        if let Some(authorization) = self.tokens.authorization().await.map_err(|e| ApiError {
            known_class: Some(e.class()),
            ..ApiError::new(None, e.to_string())
        })? {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, body.content_type)
                .body(body.bytes);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::new(None, crate::http::cause(&e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(|e| {
            ApiError::new(
                Some(status),
                format!("reading the answer: {}", crate::http::cause(&e)),
            )
        })?;
        if !status.is_success() {
            return Err(error_of(status, &bytes));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((headers, Value::Null));
        }
        let value =
            serde_json::from_slice(&bytes).map_err(|_| protocol_error("an answer that is not JSON"))?;
        Ok((headers, value))
    }
}

/// A request body.
struct Body {
    content_type: &'static str,
    bytes: Vec<u8>,
}

impl Body {
    fn json(value: &Value) -> Self {
        Self {
            content_type: "application/json",
            bytes: value.to_string().into_bytes(),
        }
    }
}

/// A job's `status`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobStatus {
    #[serde(default)]
    state: String,
    #[serde(default)]
    error_result: Option<JobError>,
}

#[derive(Debug, Deserialize)]
struct JobError {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

fn check_deadline(started: Instant, job_id: &str) -> Result<(), ApiError> {
    if started.elapsed() > JOB_DEADLINE {
        return Err(ApiError::new(
            None,
            format!("job {job_id} still running after {}s", JOB_DEADLINE.as_secs()),
        ));
    }
    Ok(())
}

fn parse_query_response(body: Value) -> Result<QueryResponse, ApiError> {
    serde_json::from_value(body).map_err(|e| protocol_error(&format!("an unreadable query answer ({e})")))
}

fn protocol_error(what: &str) -> ApiError {
    ApiError::new(None, format!("the BigQuery API sent {what}"))
}

/// The error of a non-success answer: BigQuery's error body when there is one, else the
/// start of the body.
fn error_of(status: StatusCode, body: &[u8]) -> ApiError {
    let (reason, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => (
            parsed
                .error
                .errors
                .first()
                .map(|e| e.reason.clone())
                .unwrap_or_default(),
            parsed.error.message,
        ),
        Err(_) => (String::new(), String::from_utf8_lossy(body).trim().to_owned()),
    };
    ApiError {
        reason,
        ..ApiError::new(Some(status), truncate(&message))
    }
}

fn truncate(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE) {
        Some((end, _)) => format!("{}...", &message[..end]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(status: u16, body: &str) -> ApiError {
        error_of(StatusCode::from_u16(status).expect("status"), body.as_bytes())
    }

    #[test]
    fn reasons_decide_before_statuses() {
        let quota = error(
            403,
            r#"{"error": {"code": 403, "message": "Quota exceeded", "errors": [{"reason": "quotaExceeded"}]}}"#,
        );
        assert_eq!(quota.class(), ErrorClass::Transient);
        assert_eq!(quota.to_string(), "HTTP 403 quotaExceeded: Quota exceeded");
        let denied = error(
            403,
            r#"{"error": {"code": 403, "message": "Access Denied", "errors": [{"reason": "accessDenied"}]}}"#,
        );
        assert_eq!(denied.class(), ErrorClass::Forbidden);
        let invalid = error(
            400,
            r#"{"error": {"code": 400, "message": "Syntax error", "errors": [{"reason": "invalidQuery"}]}}"#,
        );
        assert_eq!(invalid.class(), ErrorClass::Terminal);
        assert_eq!(error(401, "{}").class(), ErrorClass::Terminal);
        assert_eq!(error(404, "").class(), ErrorClass::Terminal);
        assert!(error(404, "").is_not_found());
        assert_eq!(error(429, "slow down").class(), ErrorClass::Transient);
        assert_eq!(error(503, "<html>").class(), ErrorClass::Transient);
        let backend = error(
            400,
            r#"{"error": {"message": "x", "errors": [{"reason": "backendError"}]}}"#,
        );
        assert_eq!(backend.class(), ErrorClass::Transient);
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "x".repeat(5000);
        let error = error(500, &long);
        assert!(error.to_string().len() < 450);
        assert!(error.to_string().ends_with("..."));
    }

    #[test]
    fn a_duplicate_is_recognised_by_status_or_reason() {
        assert!(
            error(
                409,
                r#"{"error": {"message": "Already Exists", "errors": [{"reason": "duplicate"}]}}"#
            )
            .is_duplicate()
        );
        assert!(!error(400, "{}").is_duplicate());
    }
}
