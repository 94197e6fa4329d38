//! How the MongoDB sink reaches its servers, and how driver and server errors are classified.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::mongodb::Client;
use ::mongodb::bson::Document;
use ::mongodb::error::{ErrorKind, WriteFailure};
use ::mongodb::event::EventHandler;
use ::mongodb::event::sdam::SdamEvent;
use ::mongodb::options::{ClientOptions, ServerAddress, Tls, TlsOptions};
use kollect_core::netguard::GuardedResolver;
use kollect_core::sink::SinkError;

use super::config::MongodbConfig;

/// Server error codes that a retry cannot fix.
const DUPLICATE_KEY: i32 = 11000;
const DOCUMENT_VALIDATION_FAILURE: i32 = 121;
const UNAUTHORIZED: i32 = 13;
const AUTHENTICATION_FAILED: i32 = 18;
const BSON_OBJECT_TOO_LARGE: i32 = 10334;
const INVALID_NAMESPACE: i32 = 73;

/// A connected client and what keeps its settings alive.
pub(super) struct Connection {
    pub(super) client: Client,
    /// The CA bundle written for the driver, which reads CA certificates from a file only.
    _ca_file: Option<tempfile::NamedTempFile>,
    /// Set when the server announced a member the network policy refuses.
    refused: Arc<Mutex<Option<String>>>,
}

impl Connection {
    /// Fails when the topology came to include a server the policy refuses.
    pub(super) fn check_policy(&self) -> Result<(), SinkError> {
        match self
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            Some(reason) => Err(SinkError::terminal(reason.clone())),
            None => Ok(()),
        }
    }
}

/// Builds a client for `settings`: every seed host checked against the SSRF policy, announced
/// replica-set members checked as they appear, TLS as the URI and `spec.tls` say. The driver
/// connects lazily, on the first command.
pub(super) async fn connect(settings: &MongodbConfig) -> Result<Connection, SinkError> {
    let mut options = ClientOptions::parse(settings.uri.as_str())
        .await
        .map_err(|e| match *e.kind {
            ErrorKind::DnsResolve { .. } => {
                SinkError::transient("parse mongodb URI: the SRV record did not resolve")
            }
            _ => SinkError::terminal("parse mongodb URI: invalid connection string"),
        })?;
    let mut seeds = HashSet::new();
    for host in &options.hosts {
        let ServerAddress::Tcp { host, port } = host else {
            return Err(SinkError::terminal(
                "connect mongodb: Unix-socket hosts are not allowed; use a TCP host",
            ));
        };
        let port = port.unwrap_or(27017);
        crate::net::resolve_all(&settings.resolver, host, port, "connect mongodb").await?;
        seeds.insert((host.to_ascii_lowercase(), port));
    }
    if options.connect_timeout.is_none() {
        options.connect_timeout = Some(Duration::from_secs(30));
    }
    if options.app_name.is_none() {
        options.app_name = Some("kollect".to_owned());
    }
    let refused = Arc::new(Mutex::new(None));
    options.sdam_event_handler = Some(member_check(
        settings.resolver.clone(),
        seeds,
        Arc::clone(&refused),
    ));
    let ca_file = tls_settings(&mut options, settings)?;
    let client = Client::with_options(options)
        .map_err(|_| SinkError::terminal("connect mongodb: invalid client options"))?;
    Ok(Connection {
        client,
        _ca_file: ca_file,
        refused,
    })
}

/// Applies `spec.tls`: a CA bundle (written to a private temporary file for the driver) or
/// disabled verification; either turns TLS on.
fn tls_settings(
    options: &mut ClientOptions,
    settings: &MongodbConfig,
) -> Result<Option<tempfile::NamedTempFile>, SinkError> {
    if settings.ca_pem.is_none() && !settings.insecure_skip_verify {
        return Ok(None);
    }
    let mut tls = match options.tls.take() {
        Some(Tls::Enabled(tls)) => tls,
        _ => TlsOptions::default(),
    };
    let mut file = None;
    if let Some(pem) = &settings.ca_pem {
        let written = tempfile::Builder::new()
            .prefix("kollect-mongodb-ca-")
            .suffix(".pem")
            .tempfile()
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, pem.as_bytes())?;
                Ok(f)
            })
            .map_err(|e| SinkError::transient(format!("connect mongodb: write the CA bundle: {e}")))?;
        tls.ca_file_path = Some(written.path().to_path_buf());
        file = Some(written);
    }
    if settings.insecure_skip_verify {
        tls.allow_invalid_certificates = Some(true);
    }
    options.tls = Some(Tls::Enabled(tls));
    Ok(file)
}

/// Checks every server the driver adds to the topology beyond the seeds (replica-set members
/// the server announces). The driver dials on its own, so a refused member cannot be stopped
/// from being contacted once; it poisons the connection so that every export fails with the
/// reason until the sink is rebuilt.
fn member_check(
    resolver: GuardedResolver,
    seeds: HashSet<(String, u16)>,
    refused: Arc<Mutex<Option<String>>>,
) -> EventHandler<SdamEvent> {
    EventHandler::callback(move |event| {
        let SdamEvent::ServerOpening(opening) = event else {
            return;
        };
        let ServerAddress::Tcp { host, port } = opening.address else {
            let mut slot = refused.lock().unwrap_or_else(PoisonError::into_inner);
            *slot = Some(
                "connect mongodb: the server announced a Unix-socket member, which is not allowed".into(),
            );
            return;
        };
        let port = port.unwrap_or(27017);
        if seeds.contains(&(host.to_ascii_lowercase(), port)) {
            return;
        }
        let (resolver, refused) = (resolver.clone(), Arc::clone(&refused));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = resolver.resolve(&host, port).await {
                    let mut slot = refused.lock().unwrap_or_else(PoisonError::into_inner);
                    *slot = Some(format!(
                        "connect mongodb: a replica-set member the server announced is refused: {error}"
                    ));
                }
            });
        }
    })
}

/// Classifies a driver error of `stage` without echoing hosts or credentials.
pub(super) fn driver_error(stage: &str, error: &::mongodb::error::Error) -> SinkError {
    match error.kind.as_ref() {
        // The driver's reasons are fixed texts ("invalid server signature"), never credentials.
        ErrorKind::Authentication { message, .. } => {
            SinkError::terminal(format!("{stage}: authentication failed ({message})"))
        }
        ErrorKind::ServerSelection { .. } => SinkError::transient(format!("{stage}: no server reachable")),
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => {
            SinkError::transient(format!("{stage}: connection failed"))
        }
        ErrorKind::DnsResolve { .. } => SinkError::transient(format!("{stage}: the host did not resolve")),
        ErrorKind::Command(command) => server_error(stage, command.code, &command.message),
        ErrorKind::Write(WriteFailure::WriteError(write)) => server_error(stage, write.code, &write.message),
        ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => SinkError::transient(format!(
            "{stage}: write concern: {} ({})",
            concern.message, concern.code
        )),
        _ => SinkError::transient(format!("{stage}: request failed")),
    }
}

/// Classifies a server error: the server's message names objects and values, never
/// credentials.
fn server_error(stage: &str, code: i32, message: &str) -> SinkError {
    let text = format!("{stage}: {message} (code {code})");
    match code {
        UNAUTHORIZED => SinkError::forbidden(text),
        AUTHENTICATION_FAILED => SinkError::terminal(format!("{stage}: authentication failed")),
        DUPLICATE_KEY | DOCUMENT_VALIDATION_FAILURE | BSON_OBJECT_TOO_LARGE | INVALID_NAMESPACE => {
            SinkError::terminal(text)
        }
        _ => SinkError::transient(text),
    }
}

/// Runs a write command and fails on the first write error its reply reports (an ordered
/// command stops there); returns the reply's `n`.
pub(super) async fn write(
    database: &::mongodb::Database,
    command: ::mongodb::bson::RawDocumentBuf,
    stage: &str,
) -> Result<i64, SinkError> {
    let reply = database
        .run_raw_command(command)
        .await
        .map_err(|e| driver_error(stage, &e))?;
    check_reply(&reply, stage)
}

/// Reads a write command's reply: the first write error, or a write concern error, fails.
pub(super) fn check_reply(reply: &Document, stage: &str) -> Result<i64, SinkError> {
    if let Ok(errors) = reply.get_array("writeErrors")
        && let Some(first) = errors.first().and_then(|e| e.as_document())
    {
        let code = first.get_i32("code").unwrap_or_default();
        let message = first.get_str("errmsg").unwrap_or("write error");
        return Err(server_error(stage, code, message));
    }
    if let Ok(concern) = reply.get_document("writeConcernError") {
        let code = concern.get_i32("code").unwrap_or_default();
        let message = concern.get_str("errmsg").unwrap_or("write concern error");
        return Err(SinkError::transient(format!(
            "{stage}: write concern: {message} (code {code})"
        )));
    }
    Ok(match reply.get("n") {
        Some(::mongodb::bson::Bson::Int32(n)) => i64::from(*n),
        Some(::mongodb::bson::Bson::Int64(n)) => *n,
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::mongodb::bson::doc;
    use kollect_core::sink::ErrorClass;

    #[test]
    fn write_errors_in_a_reply_are_classified() {
        let duplicate = doc! {"ok": 1, "n": 0, "writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"}]};
        let error = check_reply(&duplicate, "mongodb upsert").unwrap_err();
        assert_eq!(error.class(), ErrorClass::Terminal);
        assert_eq!(
            error.message(),
            "mongodb upsert: E11000 duplicate key (code 11000)"
        );
        let other =
            doc! {"ok": 1, "writeErrors": [{"index": 3, "code": 262, "errmsg": "exceeded time limit"}]};
        assert_eq!(
            check_reply(&other, "s").unwrap_err().class(),
            ErrorClass::Transient
        );
        let concern = doc! {"ok": 1, "n": 2, "writeConcernError": {"code": 64, "errmsg": "waiting for replication timed out"}};
        assert_eq!(
            check_reply(&concern, "s").unwrap_err().class(),
            ErrorClass::Transient
        );
        assert_eq!(check_reply(&doc! {"ok": 1, "n": 7}, "s").unwrap(), 7);
    }

    #[test]
    fn authorization_failures_are_forbidden_and_authentication_terminal() {
        assert_eq!(
            server_error("s", 13, "not authorized").class(),
            ErrorClass::Forbidden
        );
        let auth = server_error("s", 18, "Authentication failed for user x");
        assert_eq!(auth.class(), ErrorClass::Terminal);
        assert_eq!(auth.message(), "s: authentication failed");
    }
}
