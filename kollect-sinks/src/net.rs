//! Guarded DNS for transports: every host a backend dials is resolved through the SSRF guard
//! of its build context, and the checked addresses are what it connects to where the client
//! library allows pinning them.

use std::net::SocketAddr;

use kollect_core::netguard::GuardedResolver;
use kollect_core::sink::SinkError;

/// Resolves `host:port` through the guard; a refused or unresolvable address is an error of
/// `stage` (refusals are terminal: the policy will not change by retrying).
pub(crate) async fn resolve_all(
    resolver: &GuardedResolver,
    host: &str,
    port: u16,
    stage: &str,
) -> Result<Vec<SocketAddr>, SinkError> {
    let addresses = resolver
        .resolve(host, port)
        .await
        .map_err(|e| SinkError::terminal(format!("{stage}: {e}")))?;
    if addresses.is_empty() {
        return Err(SinkError::transient(format!("{stage}: the host did not resolve")));
    }
    Ok(addresses)
}

#[cfg(feature = "postgres")]
/// The first checked address of `host:port` ([`resolve_all`]).
pub(crate) async fn resolve_one(
    resolver: &GuardedResolver,
    host: &str,
    port: u16,
    stage: &str,
) -> Result<std::net::IpAddr, SinkError> {
    resolve_all(resolver, host, port, stage)
        .await?
        .first()
        .map(SocketAddr::ip)
        .ok_or_else(|| SinkError::transient(format!("{stage}: the host did not resolve")))
}
