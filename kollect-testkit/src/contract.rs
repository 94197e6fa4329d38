//! A recorded-contract HTTP(S) server: it answers a scripted list of exchanges in order,
//! checking every request's method, path and query, headers and JSON body against what the
//! exchange expects (as an API's documentation specifies it), and records each mismatch.
//!
//! Use it where no real server of an API can run in tests; a contract only proves what it
//! checks, so name the documentation each exchange follows.
//!
//! ```
//! use kollect_testkit::contract::{ContractServer, Exchange};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let server = ContractServer::start(vec![
//!     Exchange::new("GET", "/api/v4/version")
//!         .header("PRIVATE-TOKEN", "secret")
//!         .respond(200, serde_json::json!({"version": "17.0.0"})),
//! ])
//! .unwrap();
//! # let _ = server.base_url();
//! // ... let the client under test talk to server.base_url() ...
//! # let _ = rustls::crypto::ring::default_provider().install_default();
//! # let client = reqwest::Client::new();
//! # let _ = client.get(format!("{}/api/v4/version", server.base_url())).header("PRIVATE-TOKEN", "secret").send().await;
//! server.verify().unwrap();
//! # }
//! ```

use std::sync::{Arc, Mutex, PoisonError};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

use crate::backends::BackendError;

/// A check of one header's value: `Err` says what is wrong with it.
pub type HeaderCheck = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What a header must be.
#[derive(Clone)]
enum Expect {
    Equals(String),
    Satisfies(HeaderCheck),
}

/// One request the server expects and its answer.
#[derive(Clone)]
pub struct Exchange {
    method: String,
    path: String,
    headers: Vec<(String, Expect)>,
    body: Option<Value>,
    status: u16,
    response: Value,
    response_headers: Vec<(String, String)>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

impl Exchange {
    /// Expects `method` on `path` (with its query string, exactly as sent); answers 200 `{}`
    /// unless told otherwise.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
            status: 200,
            response: Value::Object(serde_json::Map::new()),
            response_headers: Vec::new(),
        }
    }

    /// The request must carry header `name` with exactly `value`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_owned(), Expect::Equals(value.to_owned())));
        self
    }

    /// The request must carry header `name` with a value `check` accepts.
    pub fn header_satisfies(
        mut self,
        name: &str,
        check: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.headers
            .push((name.to_owned(), Expect::Satisfies(Arc::new(check))));
        self
    }

    /// The request body must be this JSON value.
    pub fn json_body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// The answer: `status` with the JSON `body`.
    pub fn respond(mut self, status: u16, body: Value) -> Self {
        self.status = status;
        self.response = body;
        self
    }

    /// An extra header on the answer.
    pub fn respond_header(mut self, name: &str, value: &str) -> Self {
        self.response_headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// What is wrong with `request` for this exchange.
    fn mismatches(&self, request: &Recorded) -> Vec<String> {
        let mut problems = Vec::new();
        if request.method != self.method || request.path != self.path {
            problems.push(format!(
                "expected {} {}, got {} {}",
                self.method, self.path, request.method, request.path
            ));
            return problems;
        }
        for (name, expect) in &self.headers {
            let value = request
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str());
            match (value, expect) {
                (None, _) => problems.push(format!("{} {}: header {name} missing", self.method, self.path)),
                (Some(value), Expect::Equals(expected)) if value != expected => problems.push(format!(
                    "{} {}: header {name} is {value:?}, expected {expected:?}",
                    self.method, self.path
                )),
                (Some(value), Expect::Satisfies(check)) => {
                    if let Err(why) = check(value) {
                        problems.push(format!("{} {}: header {name}: {why}", self.method, self.path));
                    }
                }
                _ => {}
            }
        }
        if let Some(expected) = &self.body {
            match serde_json::from_slice::<Value>(&request.body) {
                Ok(body) if &body == expected => {}
                Ok(body) => problems.push(format!(
                    "{} {}: body {body}, expected {expected}",
                    self.method, self.path
                )),
                Err(_) => problems.push(format!(
                    "{} {}: body is not JSON: {:?}",
                    self.method,
                    self.path,
                    String::from_utf8_lossy(&request.body)
                )),
            }
        }
        problems
    }
}

/// A request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Every header, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

#[derive(Default)]
struct State {
    script: Vec<Exchange>,
    next: usize,
    requests: Vec<Recorded>,
    problems: Vec<String>,
}

/// A running contract server; stops on drop.
pub struct ContractServer {
    _server: crate::http_server::Running,
    base_url: String,
    ca_pem: Option<String>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for ContractServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContractServer")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl ContractServer {
    /// Serves `script` over HTTP on a free loopback port.
    pub fn start(script: Vec<Exchange>) -> Result<Self, BackendError> {
        Self::start_with(script, None)
    }

    /// Serves `script` over HTTPS with a certificate for `localhost` and `127.0.0.1` from a
    /// fresh CA ([`ContractServer::ca_pem`]).
    pub fn start_tls(script: Vec<Exchange>) -> Result<Self, BackendError> {
        let pki = crate::pki::serving_pki("contract").map_err(|e| start_error(e.to_string()))?;
        Self::start_with(script, Some(pki))
    }

    fn start_with(script: Vec<Exchange>, pki: Option<crate::pki::ServingPki>) -> Result<Self, BackendError> {
        let tls = pki
            .as_ref()
            .map(crate::http_server::tls_acceptor)
            .transpose()
            .map_err(start_error)?;
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| start_error(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| start_error(e.to_string()))?;
        let port = listener
            .local_addr()
            .map_err(|e| start_error(e.to_string()))?
            .port();
        let state = Arc::new(Mutex::new(State {
            script,
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let server = crate::http_server::spawn("contract", listener, tls, move |request| {
            answer(Arc::clone(&shared), request)
        })
        .map_err(|e| start_error(e.to_string()))?;
        let scheme = if pki.is_some() { "https" } else { "http" };
        Ok(Self {
            _server: server,
            base_url: format!("{scheme}://127.0.0.1:{port}"),
            ca_pem: pki.map(|p| p.ca_pem),
            state,
        })
    }

    /// `http(s)://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The CA that signed an HTTPS server's certificate.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// `Ok` when every exchange happened as scripted and nothing else was asked.
    pub fn verify(&self) -> Result<(), String> {
        let state = self.lock();
        let mut problems = state.problems.clone();
        for missing in &state.script[state.next.min(state.script.len())..] {
            problems.push(format!("{missing:?} was never requested"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn start_error(message: impl Into<String>) -> BackendError {
    BackendError::Start {
        backend: "contract",
        message: message.into(),
    }
}

async fn answer(state: Arc<Mutex<State>>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.as_str().to_owned(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body,
    };
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    state.requests.push(recorded.clone());
    let Some(exchange) = state.script.get(state.next).cloned() else {
        let problem = format!(
            "unexpected {} {} after the script ended",
            recorded.method, recorded.path
        );
        state.problems.push(problem.clone());
        return reply(StatusCode::INTERNAL_SERVER_ERROR, &problem, &[]);
    };
    state.next += 1;
    let problems = exchange.mismatches(&recorded);
    if !problems.is_empty() {
        let text = problems.join("; ");
        state.problems.extend(problems);
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("contract mismatch: {text}"),
            &[],
        );
    }
    let status = StatusCode::from_u16(exchange.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply(status, &exchange.response.to_string(), &exchange.response_headers)
}

fn reply(status: StatusCode, body: &str, headers: &[(String, String)]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::try_from(name.as_str()),
            hyper::header::HeaderValue::try_from(value.as_str()),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
