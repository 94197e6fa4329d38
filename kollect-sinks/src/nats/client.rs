//! The connection to NATS: the SSRF check of every configured server, authentication and TLS,
//! permission violations the server reports asynchronously, the JetStream stream (created in
//! `ensure` mode, only checked otherwise), reading subjects' last messages back, and the error
//! classes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{ConnectErrorKind, ConnectOptions, Event, ServerAddr, ServerError};
use futures::StreamExt;
use kollect_core::api::v1alpha1::ProvisioningMode;
use kollect_core::sink::{ErrorClass, SinkError};

use super::config::{NatsAuth, NatsConfig};
use crate::events::{HEADER_CHECKSUM, HEADER_MESSAGE};

/// How long a request to the server (connect, JetStream API, acknowledgement) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Acknowledgements outstanding at once; publishing waits when they are all in use.
const IN_FLIGHT: usize = 4096;
/// A read-back that delivers nothing for this long fails instead of waiting forever.
const READ_BACK_STALL: Duration = Duration::from_secs(30);

/// The header marking a delete: `PURGE`, the marker NATS key-value buckets use.
pub const OPERATION_HEADER: &str = "KV-Operation";

/// The part of JetStream account information the probe reports.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub(super) struct AccountSummary {
    /// Streams in the account.
    #[serde(default)]
    pub(super) streams: usize,
}

/// What the stream allows, as far as the sink cares.
#[derive(Debug, Clone, Copy)]
pub(super) struct StreamFacts {
    /// `allow_rollup_hdrs`: a delete marker may remove the subject's earlier messages.
    pub(super) allow_rollup: bool,
}

/// The last message of one subject, as read back.
#[derive(Debug, Clone)]
pub(super) struct LastMessage {
    /// Its stream sequence.
    pub(super) sequence: u64,
    /// Its checksum header; `None` for a delete marker.
    pub(super) checksum: Option<String>,
}

/// The last permission violation the server reported (it arrives asynchronously, while the
/// publish that caused it just times out).
#[derive(Clone, Default)]
struct Violations(Arc<Mutex<Option<String>>>);

impl Violations {
    fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn set(&self, text: String) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
    }
}

/// A connected client and its JetStream context.
pub(super) struct Connection {
    pub(super) client: async_nats::Client,
    pub(super) jetstream: jetstream::Context,
    violations: Violations,
    /// Set when the server said the stream does not exist (any more).
    stream_gone: AtomicBool,
    config: NatsConfig,
}

impl Connection {
    /// Checks every server address, then connects and authenticates.
    pub(super) async fn open(config: &NatsConfig) -> Result<Self, SinkError> {
        let servers = check_servers(config).await?;
        let violations = Violations::default();
        let options = connect_options(config, violations.clone())?;
        let client = options
            .connect(servers)
            .await
            .map_err(|e| connect_error(config, &e))?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            // Acknowledgements of publishes abandoned after a failure hold in-flight slots
            // until they time out: no longer than an awaited one.
            .ack_timeout(REQUEST_TIMEOUT)
            .max_ack_inflight(IN_FLIGHT)
            .backpressure_on_inflight(true)
            .build(client.clone());
        Ok(Self {
            client,
            jetstream,
            violations,
            stream_gone: AtomicBool::new(false),
            config: config.clone(),
        })
    }

    /// Whether an operation found the stream missing since it was provisioned.
    pub(super) fn stream_gone(&self) -> bool {
        self.stream_gone.load(Ordering::Relaxed)
    }

    /// Re-checks what the server names resolve to now (the client resolves them again on
    /// every reconnect).
    pub(super) async fn recheck(&self) -> Result<(), SinkError> {
        check_servers(&self.config).await.map(drop)
    }

    /// A sink error for a failed operation: a permission violation the server reported in the
    /// meantime makes it `Forbidden`; otherwise `class`.
    pub(super) fn error(&self, stage: &str, class: ErrorClass, detail: &dyn std::fmt::Display) -> SinkError {
        let redactor = self.config.redactor();
        match self.violations.take() {
            Some(violation) => {
                SinkError::forbidden(redactor.scrub(&format!("{stage}: the server refused it: {violation}")))
            }
            None => SinkError::new(class, redactor.scrub(&format!("{stage}: {detail}"))),
        }
    }

    /// JetStream account information: proves the credentials and that JetStream is enabled.
    /// Read into a summary of our own: the client's full account type needs fields servers
    /// before 2.10 do not send.
    pub(super) async fn account(&self) -> Result<AccountSummary, SinkError> {
        let response: Result<jetstream::response::Response<AccountSummary>, _> =
            self.jetstream.request("INFO", &()).await;
        match response {
            Ok(jetstream::response::Response::Ok(account)) => Ok(account),
            Ok(jetstream::response::Response::Err { error }) => {
                let class = if matches!(
                    error.error_code(),
                    jetstream::ErrorCode::JETSTREAM_NOT_ENABLED
                        | jetstream::ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
                ) {
                    ErrorClass::Terminal
                } else {
                    ErrorClass::Transient
                };
                Err(self.error("nats jetstream account info", class, &error))
            }
            Err(e) => {
                let class = match e.kind() {
                    // Nobody answers the JetStream API: it is not enabled for this account.
                    jetstream::context::RequestErrorKind::NoResponders => ErrorClass::Terminal,
                    _ => ErrorClass::Transient,
                };
                Err(self.error("nats jetstream account info (is JetStream enabled?)", class, &e))
            }
        }
    }

    /// The stream's configuration, or `None` when it does not exist.
    pub(super) async fn stream_config(&self) -> Result<Option<stream::Config>, SinkError> {
        match self.jetstream.get_stream(&self.config.stream).await {
            Ok(mut stream) => {
                let info = stream
                    .info()
                    .await
                    .map_err(|e| self.error("nats stream info", ErrorClass::Transient, &e))?;
                Ok(Some(info.config.clone()))
            }
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(inner)
                    if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(self.error(
                    &format!("nats stream \"{}\"", self.config.stream),
                    ErrorClass::Transient,
                    &e,
                )),
            },
        }
    }

    /// Makes sure the stream exists and captures `filter`: creates it in `ensure` mode when
    /// missing, never changes an existing one, and refuses one that does not capture the
    /// subjects.
    pub(super) async fn provision(&self, filter: &str) -> Result<StreamFacts, SinkError> {
        let name = &self.config.stream;
        let config = match self.stream_config().await? {
            Some(config) => config,
            None if self.config.provisioning == ProvisioningMode::Existing => {
                return Err(SinkError::terminal(format!(
                    "nats stream \"{name}\" does not exist (provisioning.mode existing never creates it)"
                )));
            }
            None => self.create_stream(filter).await?,
        };
        if !config.subjects.iter().any(|s| super::subject::covers(s, filter)) {
            return Err(SinkError::terminal(format!(
                "nats stream \"{name}\" captures {:?}, not {filter:?}; Kollect never changes a stream it finds: add the subject to the stream or choose another stream",
                config.subjects
            )));
        }
        Ok(StreamFacts {
            allow_rollup: config.allow_rollup,
        })
    }

    async fn create_stream(&self, filter: &str) -> Result<stream::Config, SinkError> {
        let name = &self.config.stream;
        let row_mode = self.config.mode == crate::events::MessageMode::Row;
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![filter.to_owned()],
            description: Some("Kollect inventory events".to_owned()),
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: self.config.replicas,
            // Row mode keeps the latest message per row (like a compacted topic); snapshot
            // parts share a subject, so their history stays under the stream's limits.
            max_messages_per_subject: if row_mode { 1 } else { -1 },
            allow_rollup: true,
            ..stream::Config::default()
        };
        match self.jetstream.create_stream(config).await {
            Ok(stream) => {
                let config = stream.cached_info().config.clone();
                tracing::info!(stream = %name, subjects = ?config.subjects, "created NATS JetStream stream");
                Ok(config)
            }
            Err(e) => match e.kind() {
                // Created by someone else in the meantime: use theirs as it is.
                jetstream::context::CreateStreamErrorKind::JetStream(inner)
                    if inner.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST =>
                {
                    self.stream_config().await?.ok_or_else(|| {
                        SinkError::transient(format!("nats stream \"{name}\" vanished while being created"))
                    })
                }
                jetstream::context::CreateStreamErrorKind::JetStream(inner)
                    if inner.error_code() == jetstream::ErrorCode::STREAM_SUBJECT_OVERLAP =>
                {
                    Err(SinkError::terminal(format!(
                        "nats create stream \"{name}\": subject {filter:?} already belongs to another stream; set spec.nats.stream to that stream or choose another subject"
                    )))
                }
                jetstream::context::CreateStreamErrorKind::JetStream(_) => Err(self.error(
                    &format!("nats create stream \"{name}\""),
                    ErrorClass::Terminal,
                    &e,
                )),
                _ => Err(self.error(
                    &format!("nats create stream \"{name}\""),
                    ErrorClass::Transient,
                    &e,
                )),
            },
        }
    }

    /// The sequence and headers of the last message on `subject`, if it has one.
    pub(super) async fn last_message_of(
        &self,
        subject: &str,
    ) -> Result<Option<(u64, async_nats::HeaderMap)>, SinkError> {
        let stream = self.stream_handle().await?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some((message.sequence, message.headers))),
            Err(e) => match e.kind() {
                stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
                _ => Err(self.error("nats read last message", ErrorClass::Transient, &e)),
            },
        }
    }

    /// The stream's last sequence overall.
    pub(super) async fn stream_last_sequence(&self) -> Result<u64, SinkError> {
        let mut stream = self.stream_handle().await?;
        let info = stream
            .info()
            .await
            .map_err(|e| self.error("nats stream info", ErrorClass::Transient, &e))?;
        Ok(info.state.last_sequence)
    }

    async fn stream_handle(&self) -> Result<stream::Stream, SinkError> {
        self.jetstream.get_stream(&self.config.stream).await.map_err(|e| {
            if let jetstream::context::GetStreamErrorKind::JetStream(inner) = e.kind()
                && inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            {
                self.stream_gone.store(true, Ordering::Relaxed);
            }
            self.error(
                &format!("nats stream \"{}\"", self.config.stream),
                ErrorClass::Transient,
                &e,
            )
        })
    }

    /// The last message of every subject matching `filter`, headers only, as the stream holds
    /// them now (an ordered consumer delivering the last message per subject).
    pub(super) async fn last_per_subject(
        &self,
        filter: &str,
    ) -> Result<Vec<(String, LastMessage)>, SinkError> {
        let stream = self.stream_handle().await?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter.to_owned(),
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                headers_only: true,
                ..Default::default()
            })
            .await
            .map_err(|e| self.error("nats read back: consumer", ErrorClass::Transient, &e))?;
        let mut remaining = consumer.cached_info().num_pending;
        let mut last = Vec::with_capacity(usize::try_from(remaining).unwrap_or(0));
        if remaining == 0 {
            return Ok(last);
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| self.error("nats read back", ErrorClass::Transient, &e))?;
        let started = Instant::now();
        while remaining > 0 {
            let next = tokio::time::timeout(READ_BACK_STALL, messages.next()).await;
            let message = match next {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(e))) => return Err(self.error("nats read back", ErrorClass::Transient, &e)),
                Ok(None) => break,
                Err(_) => {
                    return Err(SinkError::transient(format!(
                        "nats read back of {filter:?} stalled after {} s with {remaining} messages to go",
                        started.elapsed().as_secs()
                    )));
                }
            };
            let info = message
                .info()
                .map_err(|e| SinkError::transient(format!("nats read back: {e}")))?;
            let sequence = info.stream_sequence;
            remaining = info.pending;
            let headers = message.headers.as_ref();
            let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
            if header(HEADER_MESSAGE).is_none() {
                continue;
            }
            let checksum = if header(OPERATION_HEADER).is_some() {
                None
            } else {
                Some(header(HEADER_CHECKSUM).unwrap_or_default())
            };
            last.push((message.subject.to_string(), LastMessage { sequence, checksum }));
        }
        Ok(last)
    }

    /// The class of a failed publish acknowledgement.
    pub(super) fn publish_error(&self, error: &jetstream::context::PublishError) -> SinkError {
        use jetstream::context::PublishErrorKind as Kind;
        let class = match error.kind() {
            Kind::MaxPayloadExceeded => ErrorClass::Terminal,
            Kind::StreamNotFound => {
                self.stream_gone.store(true, Ordering::Relaxed);
                ErrorClass::Transient
            }
            _ => {
                let text = error.to_string();
                // The server's own refusals (wrong stream, bad headers) will not pass on retry.
                if text.contains("10060") || text.contains("expected stream does not match") {
                    ErrorClass::Terminal
                } else {
                    ErrorClass::Transient
                }
            }
        };
        self.error("nats publish", class, error)
    }
}

/// Resolves every configured server through the SSRF guard.
async fn check_servers(config: &NatsConfig) -> Result<Vec<ServerAddr>, SinkError> {
    let mut servers = Vec::with_capacity(config.servers.len());
    for server in &config.servers {
        let address: ServerAddr = server
            .parse()
            .map_err(|e| SinkError::terminal(format!("nats server {server:?}: {e}")))?;
        crate::net::resolve_all(
            &config.resolver,
            address.host(),
            address.port(),
            &format!("nats server {server}"),
        )
        .await?;
        servers.push(address);
    }
    Ok(servers)
}

fn connect_options(config: &NatsConfig, violations: Violations) -> Result<ConnectOptions, SinkError> {
    let redactor = config.redactor();
    let mut options = ConnectOptions::new()
        .name("kollect")
        // Only the configured (and checked) servers are dialled, never ones the cluster
        // gossips.
        .ignore_discovered_servers()
        .connection_timeout(REQUEST_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .event_callback(move |event| {
            let violations = violations.clone();
            let redactor = redactor.clone();
            async move {
                match event {
                    Event::ServerError(ServerError::Other(text))
                        if text.to_ascii_lowercase().contains("permissions violation") =>
                    {
                        tracing::warn!(target: "async_nats", "{}", redactor.scrub(&text));
                        violations.set(redactor.scrub(&text));
                    }
                    other => tracing::debug!(target: "async_nats", "{}", redactor.scrub(&other.to_string())),
                }
            }
        });
    let tls = config.tls.as_ref();
    let client_tls = crate::tls::client_config_with_identity(
        tls.and_then(|t| t.ca_pem.as_deref()),
        tls.is_some_and(|t| t.insecure_skip_verify),
        tls.and_then(|t| t.client.as_ref())
            .map(|(c, k)| (c.as_str(), k.as_str())),
    )?;
    options = options.tls_client_config(client_tls).require_tls(tls.is_some());
    options = match &config.auth {
        NatsAuth::None => options,
        NatsAuth::Token(token) => options.token(token.clone()),
        NatsAuth::UserPassword { username, password } => {
            options.user_and_password(username.clone(), password.clone())
        }
        NatsAuth::NKey(seed) => {
            nkeys::KeyPair::from_seed(seed).map_err(|_| {
                SinkError::terminal("nkey in the credentials Secret is not a valid NKey seed")
            })?;
            options.nkey(seed.clone())
        }
        NatsAuth::Credentials(creds) => options.credentials(creds).map_err(|_| {
            SinkError::terminal(
                "creds in the credentials Secret could not be parsed as a NATS credentials file",
            )
        })?,
    };
    Ok(options)
}

fn connect_error(config: &NatsConfig, error: &async_nats::ConnectError) -> SinkError {
    let redactor = config.redactor();
    let servers = config.servers.join(",");
    let message = |what: &str| redactor.scrub(&format!("nats connect {servers}: {what}"));
    match error.kind() {
        ConnectErrorKind::AuthorizationViolation => SinkError::terminal(message(&format!(
            "authentication failed ({} credentials refused)",
            config.auth.kind()
        ))),
        ConnectErrorKind::Authentication => {
            SinkError::terminal(message(&format!("authentication failed: {error}")))
        }
        ConnectErrorKind::ServerParse => SinkError::terminal(message(&error.to_string())),
        ConnectErrorKind::Tls => SinkError::terminal(message(&format!("TLS: {error}"))),
        _ => SinkError::transient(message(&format!("{error} (server unavailable)"))),
    }
}
