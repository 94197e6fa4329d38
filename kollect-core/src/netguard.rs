//! The SSRF policy: which addresses a sink may connect to (decision S6).
//!
//! Endpoints are checked twice with the same rules:
//!
//! 1. **At admission** ([`NetPolicy::check_endpoint`]), on the literal text, without DNS: `file://`
//!    URLs, the localhost and cloud-metadata host names, and literal IPs in blocked ranges are
//!    refused.
//! 2. **At connect time** ([`GuardedResolver::resolve`]): the host name is resolved freshly and
//!    the *whole* answer set is rejected if any address is blocked (a name that resolves to one
//!    public and one internal address is refused, so DNS rebinding cannot pick the internal
//!    one). Callers connect to the returned addresses, never resolving the name again.
//!
//! Always blocked: unspecified, loopback, link-local (incl. 169.254.169.254), multicast,
//! broadcast, `0.0.0.0/8`, CGNAT `100.64.0.0/10`, benchmarking `198.18.0.0/15`, IPv6 site-local,
//! and the AWS IPv6 metadata address `fd00:ec2::254`. Private ranges (RFC 1918, IPv6 ULA
//! `fc00::/7`) are blocked unless the operator runs with `--allow-private-sinks`. IPv4-mapped
//! IPv6 addresses are checked as the IPv4 address they carry.
//!
//! Tests reach loopback backends through [`NetPolicy::permissive_for_tests`], which only exists
//! in builds with debug assertions: a release build cannot turn it on.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use async_trait::async_trait;

/// Host names refused whatever they resolve to (compared lower-cased, trailing dots removed).
pub(crate) const DENIED_HOSTNAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "metadata",
    "metadata.google.internal",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Why an endpoint or address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// A `file://` endpoint.
    #[error("sink endpoint {endpoint:?} is forbidden: file:// URLs are not allowed")]
    FileUrl {
        /// The endpoint as written.
        endpoint: String,
    },
    /// The endpoint text could not be understood.
    #[error("sink endpoint {endpoint:?} is invalid: {reason}")]
    Invalid {
        /// The endpoint as written.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A denied host name (localhost and cloud metadata families).
    #[error("sink host {host:?} is forbidden")]
    ForbiddenHost {
        /// The host.
        host: String,
    },
    /// The host is, or resolved to, a blocked address.
    #[error("sink host {host:?} resolved to a forbidden address: IP {ip} {reason}")]
    ForbiddenAddress {
        /// The host as written.
        host: String,
        /// The offending address.
        ip: IpAddr,
        /// Why it is blocked.
        reason: BlockReason,
    },
    /// Resolution failed or returned nothing.
    #[error("resolve sink host {host:?}: {message}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        message: String,
    },
}

/// Why an address is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    /// Loopback, link-local, metadata, multicast and other non-routable ranges.
    NotGloballyRoutable,
    /// RFC 1918 or ULA, without `--allow-private-sinks`.
    Private,
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockReason::NotGloballyRoutable => f.write_str("is not globally routable"),
            BlockReason::Private => f.write_str(
                "is a private address; private sink addresses need the operator flag --allow-private-sinks",
            ),
        }
    }
}

/// How an endpoint field is written, which decides what part of it is a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// Git and GitLab remotes: a URL, or scp-style `user@host:path`.
    GitRemote,
    /// S3, GCS and Azure Blob: a bucket (`bucket/prefix`, `s3://bucket`, `gs://bucket`) is not
    /// checked; an `http(s)://` endpoint is.
    ObjectStore,
    /// NATS server URLs (`nats://host:4222`, `tls://...`), or bare `host:port`.
    NatsUrl,
    /// One Kafka broker: `host:port`, `[v6]:port` or a URL.
    KafkaBroker,
    /// Any other URL.
    Url,
}

/// The address policy of one operator process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetPolicy {
    allow_private: bool,
    permissive: bool,
}

impl NetPolicy {
    /// The production policy; `allow_private` mirrors `--allow-private-sinks`.
    pub fn new(allow_private: bool) -> Self {
        Self {
            allow_private,
            permissive: false,
        }
    }

    /// A policy for tests against backends on loopback: every resolved address and the
    /// localhost names are allowed; cloud metadata names stay denied and `file://` stays
    /// refused. Only compiled with debug assertions, so release builds cannot enable it.
    #[cfg(debug_assertions)]
    pub fn permissive_for_tests() -> Self {
        Self {
            allow_private: true,
            permissive: true,
        }
    }

    /// Whether private ranges are allowed.
    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// Checks one address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), BlockReason> {
        if self.permissive {
            return Ok(());
        }
        let ip = canonical(ip);
        if !is_routable(ip) {
            return Err(BlockReason::NotGloballyRoutable);
        }
        if is_private(ip) && !self.allow_private {
            return Err(BlockReason::Private);
        }
        Ok(())
    }

    /// Checks a host name or literal IP without resolving it (admission-time rule).
    pub fn check_host(&self, host: &str) -> Result<(), NetError> {
        let trimmed = host.trim_start_matches('[').trim_end_matches(']');
        let without_zone = trimmed.split('%').next().unwrap_or(trimmed);
        if let Ok(ip) = without_zone.parse::<IpAddr>() {
            return self.check_ip(ip).map_err(|reason| NetError::ForbiddenAddress {
                host: host.to_owned(),
                ip,
                reason,
            });
        }
        let normalized = host.trim_end_matches('.').to_ascii_lowercase();
        let localhost_family = normalized == "localhost"
            || normalized == "localhost.localdomain"
            || normalized.ends_with(".localhost");
        let metadata = DENIED_HOSTNAMES.iter().any(|d| *d == normalized) && !localhost_family;
        if metadata || (localhost_family && !self.permissive) {
            return Err(NetError::ForbiddenHost {
                host: host.to_owned(),
            });
        }
        Ok(())
    }

    /// The admission-time check of an endpoint field: refuses `file://`, denied host names and
    /// blocked literal IPs. DNS names are not resolved here.
    pub fn check_endpoint(&self, endpoint: &str, kind: EndpointKind) -> Result<(), NetError> {
        match endpoint_host(endpoint, kind)? {
            Some(host) => self.check_host(&host),
            None => Ok(()),
        }
    }
}

/// Extracts the host an endpoint connects to, or `None` when the field names no host (a bare
/// bucket).
pub fn endpoint_host(endpoint: &str, kind: EndpointKind) -> Result<Option<String>, NetError> {
    let endpoint = endpoint.trim();
    let invalid = |reason: &str| NetError::Invalid {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    if endpoint.is_empty() {
        return Err(invalid("empty endpoint"));
    }
    if endpoint.to_ascii_lowercase().starts_with("file:") {
        return Err(NetError::FileUrl {
            endpoint: endpoint.to_owned(),
        });
    }
    let has_scheme = endpoint.contains("://");
    match kind {
        EndpointKind::ObjectStore if !has_scheme => return Ok(None),
        EndpointKind::ObjectStore => {
            let scheme = endpoint
                .split("://")
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if matches!(scheme.as_str(), "s3" | "gs" | "az" | "azure" | "abfs" | "abfss") {
                return Ok(None);
            }
        }
        EndpointKind::GitRemote if !has_scheme => {
            // scp-style user@host:path
            let after_user = endpoint.rsplit_once('@').map_or(endpoint, |(_, rest)| rest);
            return match after_user.split_once(':') {
                Some((host, _)) if !host.is_empty() => Ok(Some(host.to_owned())),
                _ => Err(invalid(
                    "expected a URL (https://host/repo.git, ssh://git@host/repo.git) or user@host:path",
                )),
            };
        }
        EndpointKind::KafkaBroker | EndpointKind::NatsUrl if !has_scheme => {
            return host_of_host_port(endpoint)
                .map(Some)
                .ok_or_else(|| invalid("expected host:port, [ipv6]:port or a URL"));
        }
        _ => {}
    }
    let url = url::Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
    match url.host() {
        Some(url::Host::Domain(domain)) => Ok(Some(domain.to_owned())),
        Some(url::Host::Ipv4(ip)) => Ok(Some(ip.to_string())),
        Some(url::Host::Ipv6(ip)) => Ok(Some(ip.to_string())),
        None => Err(invalid("URL has no host")),
    }
}

fn host_of_host_port(text: &str) -> Option<String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, _) = rest.split_once(']')?;
        return Some(host.to_owned());
    }
    let host = text.rsplit_once(':').map_or(text, |(host, _)| host);
    (!host.is_empty()).then(|| host.to_owned())
}

/// Unwraps IPv4-mapped IPv6 addresses so they are judged as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

const AWS_IPV6_METADATA: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

fn is_routable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (b & 0xc0) == 64)
                || (a == 198 && (b & 0xfe) == 18)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || v6 == AWS_IPV6_METADATA)
        }
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Name resolution, abstracted so the guard can be tested without DNS.
#[async_trait]
pub trait Resolve: Send + Sync {
    /// All addresses of `host`.
    async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>>;
}

/// The system resolver (through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, port))
            .await?
            .map(|addr| addr.ip())
            .collect())
    }
}

/// Resolves sink hosts under a [`NetPolicy`]: the connect-time half of the SSRF guard.
#[derive(Debug, Clone)]
pub struct GuardedResolver<R = SystemResolver> {
    policy: NetPolicy,
    resolver: R,
}

impl GuardedResolver<SystemResolver> {
    /// A guard over the system resolver.
    pub fn new(policy: NetPolicy) -> Self {
        Self {
            policy,
            resolver: SystemResolver,
        }
    }
}

impl<R: Resolve> GuardedResolver<R> {
    /// A guard over a custom resolver.
    pub fn with_resolver(policy: NetPolicy, resolver: R) -> Self {
        Self { policy, resolver }
    }

    /// The policy in force.
    pub fn policy(&self) -> NetPolicy {
        self.policy
    }

    /// Resolves `host` and returns the socket addresses to dial, in resolver order. Fails when
    /// the host name is denied, when resolution returns nothing, or when *any* returned address
    /// is blocked.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, NetError> {
        self.policy.check_host(host)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let bare = bare.split('%').next().unwrap_or(bare);
        let ips = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self
                .resolver
                .lookup(bare, port)
                .await
                .map_err(|e| NetError::Resolve {
                    host: host.to_owned(),
                    message: e.to_string(),
                })?,
        };
        if ips.is_empty() {
            return Err(NetError::Resolve {
                host: host.to_owned(),
                message: "no addresses".to_owned(),
            });
        }
        for ip in &ips {
            self.policy
                .check_ip(*ip)
                .map_err(|reason| NetError::ForbiddenAddress {
                    host: host.to_owned(),
                    ip: *ip,
                    reason,
                })?;
        }
        Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d))
    }

    fn strict() -> NetPolicy {
        NetPolicy::new(false)
    }

    #[test]
    fn blocked_ranges() {
        let blocked: &[&str] = &[
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ];
        for ip in blocked {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                strict().check_ip(ip),
                Err(BlockReason::NotGloballyRoutable),
                "{ip}"
            );
            assert_eq!(
                NetPolicy::new(true).check_ip(ip),
                Err(BlockReason::NotGloballyRoutable),
                "{ip} with private allowed"
            );
        }
        for ip in [
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "198.20.0.1",
            "2001:4860:4860::8888",
        ] {
            assert_eq!(strict().check_ip(ip.parse().unwrap()), Ok(()), "{ip}");
        }
    }

    #[test]
    fn private_ranges_need_the_flag_and_only_open_rfc1918_and_ula() {
        for ip in [
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "fd12:3456::1",
            "fc00::1",
            "::ffff:10.1.2.3",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(strict().check_ip(ip), Err(BlockReason::Private), "{ip}");
            assert_eq!(NetPolicy::new(true).check_ip(ip), Ok(()), "{ip}");
        }
        assert_eq!(strict().check_ip(v4(172, 32, 0, 1)), Ok(()));
    }

    #[test]
    fn denied_host_names() {
        for host in [
            "localhost",
            "LOCALHOST.",
            "localhost.localdomain",
            "foo.localhost",
            "metadata",
            "metadata.google.internal.",
            "instance-data",
            "Instance-Data.ec2.internal",
        ] {
            assert!(
                matches!(strict().check_host(host), Err(NetError::ForbiddenHost { .. })),
                "{host}"
            );
        }
        assert_eq!(strict().check_host("git.example.com"), Ok(()));
        assert_eq!(strict().check_host("localhost-proxy.example.com"), Ok(()));
        let err = strict().check_host("[fe80::1%eth0]").unwrap_err();
        assert!(err.to_string().contains("is not globally routable"), "{err}");
    }

    #[test]
    fn endpoint_forms() {
        let p = strict();
        let host = |e: &str, k| endpoint_host(e, k).unwrap();
        assert_eq!(
            host(
                "https://user:pw@git.example.com:8443/r.git",
                EndpointKind::GitRemote
            ),
            Some("git.example.com".into())
        );
        assert_eq!(
            host("git@github.example:org/repo.git", EndpointKind::GitRemote),
            Some("github.example".into())
        );
        assert_eq!(host("my-bucket/prefix", EndpointKind::ObjectStore), None);
        assert_eq!(host("s3://my-bucket/prefix", EndpointKind::ObjectStore), None);
        assert_eq!(
            host("http://10.0.0.5:9000/bucket", EndpointKind::ObjectStore),
            Some("10.0.0.5".into())
        );
        assert_eq!(
            host("broker-1:9092", EndpointKind::KafkaBroker),
            Some("broker-1".into())
        );
        assert_eq!(
            host("[2001:db8::1]:9092", EndpointKind::KafkaBroker),
            Some("2001:db8::1".into())
        );
        assert_eq!(
            host("nats://nats.example.com:4222", EndpointKind::NatsUrl),
            Some("nats.example.com".into())
        );
        assert!(matches!(
            p.check_endpoint("file:///etc/passwd", EndpointKind::GitRemote),
            Err(NetError::FileUrl { .. })
        ));
        assert!(matches!(
            p.check_endpoint("FILE:///x", EndpointKind::Url),
            Err(NetError::FileUrl { .. })
        ));
        assert!(matches!(
            p.check_endpoint("https://127.0.0.1/r.git", EndpointKind::GitRemote),
            Err(NetError::ForbiddenAddress { .. })
        ));
        assert!(matches!(
            p.check_endpoint("http://[::1]:9000/b", EndpointKind::ObjectStore),
            Err(NetError::ForbiddenAddress { .. })
        ));
        assert!(matches!(
            p.check_endpoint("git@localhost:r.git", EndpointKind::GitRemote),
            Err(NetError::ForbiddenHost { .. })
        ));
        assert!(matches!(
            p.check_endpoint("169.254.169.254:9092", EndpointKind::KafkaBroker),
            Err(NetError::ForbiddenAddress { .. })
        ));
        assert!(matches!(
            p.check_endpoint("not a url", EndpointKind::Url),
            Err(NetError::Invalid { .. })
        ));
        assert_eq!(
            p.check_endpoint("https://git.example.com/r.git", EndpointKind::GitRemote),
            Ok(())
        );
        let err = p
            .check_endpoint("https://192.168.1.10/r.git", EndpointKind::GitRemote)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "sink host \"192.168.1.10\" resolved to a forbidden address: IP 192.168.1.10 is a private address; private sink addresses need the operator flag --allow-private-sinks"
        );
        assert_eq!(
            NetPolicy::new(true).check_endpoint("https://192.168.1.10/r.git", EndpointKind::GitRemote),
            Ok(())
        );
    }

    struct FakeDns(HashMap<&'static str, Vec<IpAddr>>);

    #[async_trait]
    impl Resolve for FakeDns {
        async fn lookup(&self, host: &str, _: u16) -> io::Result<Vec<IpAddr>> {
            self.0
                .get(host)
                .cloned()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
        }
    }

    fn dns() -> FakeDns {
        FakeDns(HashMap::from([
            (
                "public.example",
                vec![v4(93, 184, 216, 34), "2606:2800:220:1::1".parse().unwrap()],
            ),
            (
                "rebind.example",
                vec![v4(93, 184, 216, 34), v4(169, 254, 169, 254)],
            ),
            ("internal.example", vec![v4(10, 0, 0, 7)]),
            ("empty.example", vec![]),
        ]))
    }

    #[tokio::test]
    async fn resolution_rejects_the_whole_answer_set() {
        let guard = GuardedResolver::with_resolver(strict(), dns());
        let addrs = guard.resolve("public.example", 443).await.unwrap();
        assert_eq!(addrs.len(), 2);
        assert_eq!(addrs[0], SocketAddr::new(v4(93, 184, 216, 34), 443));
        let err = guard.resolve("rebind.example", 443).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "sink host \"rebind.example\" resolved to a forbidden address: IP 169.254.169.254 is not globally routable"
        );
        assert!(matches!(
            guard.resolve("internal.example", 5432).await,
            Err(NetError::ForbiddenAddress {
                reason: BlockReason::Private,
                ..
            })
        ));
        assert!(
            GuardedResolver::with_resolver(NetPolicy::new(true), dns())
                .resolve("internal.example", 5432)
                .await
                .is_ok()
        );
        assert!(matches!(
            guard.resolve("empty.example", 1).await,
            Err(NetError::Resolve { .. })
        ));
        assert!(matches!(
            guard.resolve("missing.example", 1).await,
            Err(NetError::Resolve { .. })
        ));
        assert!(matches!(
            guard.resolve("localhost", 1).await,
            Err(NetError::ForbiddenHost { .. })
        ));
        assert!(matches!(
            guard.resolve("127.0.0.1", 1).await,
            Err(NetError::ForbiddenAddress { .. })
        ));
    }

    #[cfg(debug_assertions)]
    #[tokio::test]
    async fn test_policy_opens_loopback_but_not_metadata_names() {
        let guard = GuardedResolver::new(NetPolicy::permissive_for_tests());
        let addrs = guard.resolve("127.0.0.1", 5432).await.unwrap();
        assert_eq!(addrs, vec![SocketAddr::new(v4(127, 0, 0, 1), 5432)]);
        assert!(guard.resolve("localhost", 5432).await.is_ok());
        assert!(matches!(
            guard.resolve("metadata.google.internal", 80).await,
            Err(NetError::ForbiddenHost { .. })
        ));
        assert!(matches!(
            NetPolicy::permissive_for_tests().check_endpoint("file:///x", EndpointKind::GitRemote),
            Err(NetError::FileUrl { .. })
        ));
    }
}
