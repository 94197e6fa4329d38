//! The HTTP client of REST-speaking backends: reqwest whose DNS resolver is the SSRF guard (so
//! every dial goes to checked addresses), redirects off (a redirect to an IP literal would skip
//! the resolver), no proxy from the environment, and rustls trusting the web roots plus the
//! sink's CA bundle. IP-literal hosts never reach a resolver, so callers check an endpoint's own
//! host against the policy when they build the client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kollect_core::netguard::{GuardedResolver, Resolve};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client dialing only addresses `resolver` admits, with `tls` and an overall per-request
/// `timeout`.
pub(crate) fn guarded_client<R: Resolve + Clone + 'static>(
    resolver: &GuardedResolver<R>,
    tls: rustls::ClientConfig,
    timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedDns(resolver.clone())))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout)
        .build()
}

/// The guard as reqwest's resolver: a denied or unresolvable name fails the connection.
struct GuardedDns<R>(GuardedResolver<R>);

impl<R: Resolve + Clone + 'static> reqwest::dns::Resolve for GuardedDns<R> {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        Box::pin(async move {
            // reqwest sets the port on the returned addresses itself.
            let addresses: Vec<SocketAddr> = resolver.resolve(name.as_str(), 0).await?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(any(feature = "bigquery", feature = "gitlab"))]
/// What went wrong with a request, without its URL: the error and its causes, innermost last
/// (reqwest's own message says only "error sending request").
pub(crate) fn cause(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
