//! How the PostgreSQL sink reaches its server, and how server errors are classified.

use std::net::IpAddr;
use std::time::Duration;

use kollect_core::sink::SinkError;
use tokio_postgres::Client;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;

use super::config::PostgresConfig;

/// Classifies a server error of `stage`.
pub(super) fn db_error(stage: &str, error: &tokio_postgres::Error) -> SinkError {
    // The server's message names objects and values, never credentials; the client-side text
    // of a connection error can name the host, so only the server part is kept.
    match error.as_db_error() {
        Some(db) => {
            let message = format!("{stage}: {} ({})", db.message(), db.code().code());
            match *db.code() {
                SqlState::INSUFFICIENT_PRIVILEGE => SinkError::forbidden(message),
                SqlState::INVALID_PASSWORD | SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                    SinkError::terminal(message)
                }
                SqlState::UNDEFINED_TABLE
                | SqlState::UNDEFINED_COLUMN
                | SqlState::INVALID_PARAMETER_VALUE
                | SqlState::UNDEFINED_OBJECT
                | SqlState::CANT_CHANGE_RUNTIME_PARAM => SinkError::terminal(message),
                _ => SinkError::transient(message),
            }
        }
        None if error.is_closed() => SinkError::transient(format!("{stage}: connection closed")),
        None => SinkError::transient(format!("{stage}: connection failed")),
    }
}

/// Connects to the database of `settings`: every host resolved through the SSRF guard and the
/// checked address pinned, TLS as the DSN's `sslmode` says.
pub(super) async fn connect(settings: &PostgresConfig) -> Result<Client, SinkError> {
    let mut config = settings.parsed_dsn()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(30));
    }
    // Resolve every host through the SSRF guard and pin the checked address.
    let hosts = config.get_hosts().to_vec();
    let ports = config.get_ports().to_vec();
    let mut addresses: Vec<IpAddr> = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let Host::Tcp(name) = host else {
            return Err(SinkError::terminal(
                "connect postgres: Unix-socket hosts are not allowed; use a TCP host",
            ));
        };
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let ip = crate::net::resolve_one(&settings.resolver, name, port, "connect postgres").await?;
        addresses.push(ip);
    }
    if addresses.is_empty() {
        return Err(SinkError::terminal("connect postgres: the DSN names no host"));
    }
    for ip in addresses {
        config.hostaddr(ip);
    }
    let result = match config.get_ssl_mode() {
        SslMode::Disable => config
            .connect(tokio_postgres::NoTls)
            .await
            .map(|(client, connection)| {
                tokio::spawn(connection);
                client
            }),
        _ => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(crate::tls::client_config(
                settings.ca_pem.as_deref(),
            )?);
            config.connect(tls).await.map(|(client, connection)| {
                tokio::spawn(connection);
                client
            })
        }
    };
    result.map_err(|error| match error.as_db_error() {
        Some(db)
            if matches!(
                *db.code(),
                SqlState::INVALID_PASSWORD | SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            ) =>
        {
            SinkError::terminal("connect postgres: authentication failed")
        }
        Some(db) if *db.code() == SqlState::INVALID_CATALOG_NAME => {
            SinkError::terminal("connect postgres: the database does not exist")
        }
        _ => SinkError::transient("connect postgres: connection failed"),
    })
}
