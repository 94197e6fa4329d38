//! Flags of `kollect run` and the options they produce.

use std::net::SocketAddr;
use std::time::Duration;

use kollect_collect::extract::ExtractOptions;
use kollect_collect::runtime::{NamespaceSource, RuntimeConfig};
use kollect_core::export::DEFAULT_MAX_EXPORT_BYTES;
use kollect_core::netguard::NetPolicy;

use super::leader::LeaseTimings;

/// How often tenant mode reads its namespaces again (labels and annotations for namespace
/// selectors and watch opt-outs).
pub const NAMESPACE_POLL: Duration = Duration::from_secs(30);
pub use super::metrics_auth::MetricsTls;
pub use crate::admission::server::WebhookOptions;
pub use crate::args::RunArgs;

/// The Lease name the Go operator uses, so that the two never lead at once during a switch.
pub const LEADER_ELECTION_ID: &str = "3274ac8a.kollect.dev";

/// Parses a Go-style listen address: `:8081` (all interfaces), `host:port`, or `0` (disabled).
pub fn parse_address(flag: &str, text: &str) -> Result<Option<SocketAddr>, String> {
    let text = text.trim();
    if text.is_empty() || text == "0" {
        return Ok(None);
    }
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_owned()
    };
    full.parse()
        .map(Some)
        .map_err(|_| format!("--{flag} {text}: use :PORT, HOST:PORT or 0 to disable"))
}

/// Settings of one operator process.
#[derive(Debug, Clone)]
pub struct OperatorOptions {
    /// `/metrics` address; `None` disables it.
    pub metrics_bind_address: Option<SocketAddr>,
    /// `/healthz` and `/readyz` address; `None` disables them.
    pub health_probe_bind_address: Option<SocketAddr>,
    /// Whether to run only while holding the Lease.
    pub leader_elect: bool,
    /// Lease timings.
    pub lease: LeaseTimings,
    /// Lease namespace.
    pub leader_election_namespace: String,
    /// Lease name.
    pub leader_election_id: String,
    /// This process's identity in the Lease and in events.
    pub identity: String,
    /// Where sinks may connect.
    pub net_policy: NetPolicy,
    /// A10 override.
    pub allow_cross_namespace_secret_refs: bool,
    /// Global export ceiling.
    pub max_export_bytes: u64,
    /// Concurrent target reconciles.
    pub max_concurrent_reconciles_target: u16,
    /// Concurrent inventory reconciles.
    pub max_concurrent_reconciles_inventory: u16,
    /// Namespaces of managed Kollect objects (empty: all).
    pub watch_namespaces: Vec<String>,
    /// Default included namespaces.
    pub default_included_namespaces: Vec<String>,
    /// Default excluded namespaces.
    pub default_excluded_namespaces: Vec<String>,
    /// Extra scrub keys.
    pub scrub_keys: Vec<String>,
    /// Dispatch workers.
    pub collect_dispatch_workers: usize,
    /// Queue capacity per worker.
    pub collect_dispatch_queue_size: usize,
    /// Grace before a wait for a full queue counts as backpressure.
    pub collect_dispatch_enqueue_wait: Duration,
    /// Refresh period of the domain series (zero: never computed).
    pub collect_metrics_sample_interval: Duration,
    /// Full relist period of the watches (`None`: never).
    pub informer_resync_period: Option<Duration>,
    /// Target status refresh period.
    pub target_count_resync: Duration,
    /// Base of the failure backoff (zero: fixed delays).
    pub reconcile_rate_limit: Duration,
    /// Least time between two reconcile triggers from row changes; a change with no
    /// trigger in the period before it triggers at once.
    pub row_change_throttle: Duration,
    /// How long the progress of healthy exports (export times, checksums, item counts) may wait
    /// before it is written into an inventory's status; zero writes it after every pass.
    pub inventory_status_refresh: Duration,
    /// `--metrics-secure`: HTTPS with this certificate and RBAC on `/metrics`; `None` serves
    /// plain HTTP to anyone.
    pub metrics_tls: Option<MetricsTls>,
    /// The admission webhook server; `None` serves none.
    pub webhook: Option<WebhookOptions>,
    /// `--tenant-mode`: namespaced kinds only.
    pub tenant_mode: bool,
    /// The sink backends the operator builds sinks with (default: every backend of this
    /// build). Embedders and tests may narrow or extend it.
    pub sink_registry: &'static kollect_sinks::registry::Registry,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        Self {
            sink_registry: kollect_sinks::registry::Registry::builtin(),
            metrics_bind_address: None,
            health_probe_bind_address: None,
            leader_elect: false,
            lease: LeaseTimings::default(),
            leader_election_namespace: "kollect-system".into(),
            leader_election_id: LEADER_ELECTION_ID.into(),
            identity: default_identity(),
            net_policy: NetPolicy::new(false),
            allow_cross_namespace_secret_refs: false,
            max_export_bytes: DEFAULT_MAX_EXPORT_BYTES,
            max_concurrent_reconciles_target: 5,
            max_concurrent_reconciles_inventory: 3,
            watch_namespaces: Vec::new(),
            default_included_namespaces: Vec::new(),
            default_excluded_namespaces: Vec::new(),
            scrub_keys: Vec::new(),
            collect_dispatch_workers: 4,
            collect_dispatch_queue_size: 512,
            collect_dispatch_enqueue_wait: Duration::from_millis(25),
            collect_metrics_sample_interval: Duration::from_secs(30),
            informer_resync_period: Some(Duration::from_secs(12 * 3600)),
            target_count_resync: Duration::from_secs(60),
            reconcile_rate_limit: Duration::ZERO,
            row_change_throttle: Duration::from_millis(100),
            inventory_status_refresh: Duration::from_secs(10),
            metrics_tls: None,
            webhook: None,
            tenant_mode: false,
        }
    }
}

/// `$POD_NAME` (or the host name) plus the process id: unique per replica and per restart.
fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "kollect".into());
    format!("{host}_{}", std::process::id())
}

impl RunArgs {
    /// Checks the flags and turns them into options; errors name the flag.
    pub fn into_options(self) -> Result<OperatorOptions, String> {
        let lease = LeaseTimings {
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
        };
        lease.validate()?;
        if self.max_export_bytes == 0 {
            return Err("--max-export-bytes must be greater than 0".into());
        }
        if self.collect_dispatch_workers == 0 || self.collect_dispatch_queue_size == 0 {
            return Err(
                "--collect-dispatch-workers and --collect-dispatch-queue-size must be greater than 0".into(),
            );
        }
        if self.max_concurrent_reconciles_target == 0 || self.max_concurrent_reconciles_inventory == 0 {
            return Err("--max-concurrent-reconciles-* must be greater than 0".into());
        }
        if self.enable_pprof {
            return Err(
                "--enable-pprof: Go's pprof profiler has no counterpart in this operator; profile it with \
                        perf or valgrind instead, and drop the flag (Helm: pprof.enabled=false)"
                    .into(),
            );
        }
        if self.inventory_http_enabled {
            return Err(
                "--inventory-http-enabled: the read-only inventory HTTP API is not part of this operator; \
                        read the inventories from their sinks, and drop the flag (Helm: \
                        featureGates.inventoryHttp.enabled=false)"
                    .into(),
            );
        }
        if self.tenant_mode && self.watch_namespaces.iter().all(|n| n.trim().is_empty()) {
            return Err("--tenant-mode needs --watch-namespaces: a tenant operator manages the namespaces it is given".into());
        }
        let webhook = if self.validating_webhooks_enabled {
            let bind_address = parse_address("webhook-bind-address", &self.webhook_bind_address)?.ok_or(
                "--webhook-bind-address 0: to serve no webhooks, set --validating-webhooks-enabled=false",
            )?;
            Some(WebhookOptions {
                bind_address,
                cert_dir: self.webhook_cert_path,
                cert_name: self.webhook_cert_name,
                key_name: self.webhook_cert_key,
                http2: self.enable_http2,
            })
        } else {
            None
        };
        let clean = |list: Vec<String>| -> Vec<String> {
            list.into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        Ok(OperatorOptions {
            metrics_bind_address: parse_address("metrics-bind-address", &self.metrics_bind_address)?,
            health_probe_bind_address: parse_address(
                "health-probe-bind-address",
                &self.health_probe_bind_address,
            )?,
            leader_elect: self.leader_elect,
            lease,
            leader_election_namespace: self
                .leader_election_namespace
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .unwrap_or_else(|| "kollect-system".into()),
            net_policy: NetPolicy::new(self.allow_private_sinks),
            allow_cross_namespace_secret_refs: self.allow_cross_namespace_secret_refs,
            max_export_bytes: self.max_export_bytes,
            max_concurrent_reconciles_target: self.max_concurrent_reconciles_target,
            max_concurrent_reconciles_inventory: self.max_concurrent_reconciles_inventory,
            watch_namespaces: clean(self.watch_namespaces),
            default_included_namespaces: clean(self.default_included_namespaces),
            default_excluded_namespaces: clean(self.default_excluded_namespaces),
            scrub_keys: clean(self.scrub_keys),
            collect_dispatch_workers: self.collect_dispatch_workers,
            collect_dispatch_queue_size: self.collect_dispatch_queue_size,
            collect_dispatch_enqueue_wait: self.collect_dispatch_enqueue_wait,
            collect_metrics_sample_interval: self.collect_metrics_sample_interval,
            informer_resync_period: Some(self.informer_resync_period).filter(|p| !p.is_zero()),
            target_count_resync: self.target_count_resync,
            inventory_status_refresh: self.inventory_status_refresh,
            reconcile_rate_limit: self.reconcile_rate_limit,
            metrics_tls: self.metrics_secure.then_some(MetricsTls {
                cert_dir: self.metrics_cert_path,
                cert_name: self.metrics_cert_name,
                key_name: self.metrics_cert_key,
                http2: self.enable_http2,
            }),
            webhook,
            tenant_mode: self.tenant_mode,
            ..OperatorOptions::default()
        })
    }
}

impl OperatorOptions {
    /// The collection runtime's settings.
    pub fn runtime_config(&self) -> RuntimeConfig {
        let defaults = RuntimeConfig::default();
        RuntimeConfig {
            workers: self.collect_dispatch_workers,
            queue_capacity: self.collect_dispatch_queue_size,
            enqueue_wait: self.collect_dispatch_enqueue_wait,
            resync_period: self.informer_resync_period,
            metrics_sample_interval: self.collect_metrics_sample_interval,
            // Within `--watch-namespaces` every collection watch is narrowed to them, however
            // many there are: the operator has no rights beyond them in tenant mode.
            narrow_threshold: defaults.narrow_threshold.max(self.watch_namespaces.len()),
            // In tenant mode namespaces are read one by one, never listed across the cluster.
            namespaces: if self.tenant_mode {
                NamespaceSource::Poll {
                    names: self.watch_namespaces.clone(),
                    every: NAMESPACE_POLL,
                }
            } else {
                NamespaceSource::Watch
            },
            ..defaults
        }
    }

    /// What the admission rules need.
    pub fn admission_settings(&self) -> crate::admission::Settings {
        crate::admission::Settings {
            extract: self.extract_options(),
            net_policy: self.net_policy,
            max_export_bytes: self.max_export_bytes,
            tenant_mode: self.tenant_mode,
        }
    }

    /// Extraction settings.
    pub fn extract_options(&self) -> ExtractOptions {
        ExtractOptions {
            scrub_keys: self.scrub_keys.clone(),
            ..ExtractOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn options(args: &[&str]) -> Result<OperatorOptions, String> {
        let mut argv = vec!["run"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .run
            .into_options()
    }

    #[test]
    fn every_flag_the_go_chart_passes_is_accepted() {
        let o = options(&[
            "--leader-elect",
            "--leader-elect-lease-duration=15s",
            "--leader-elect-renew-deadline=10s",
            "--leader-elect-retry-period=2s",
            "--health-probe-bind-address=:8081",
            "--metrics-bind-address=:8443",
            "--metrics-secure=true",
            "--max-concurrent-reconciles-target=5",
            "--max-concurrent-reconciles-inventory=3",
            "--collect-dispatch-workers=4",
            "--collect-dispatch-queue-size=2048",
            "--informer-resync-period=10m",
            "--collect-metrics-sample-interval=15s",
            "--reconcile-rate-limit=5ms",
            "--target-count-resync=60s",
            "--pprof-bind-address=:6060",
            "--inventory-http-port=8082",
            "--inventory-auth-mode=token",
            "--validating-webhooks-enabled=true",
            "--webhook-cert-path=/tmp/k8s-webhook-server/serving-certs",
            "--tenant-mode",
            "--allow-private-sinks",
            "--watch-namespaces=team-a",
            "--default-included-namespaces=",
            "--default-excluded-namespaces=kube-system",
            "--scrub-keys=password",
        ])
        .expect("the Go chart's flags");
        assert!(o.leader_elect && o.tenant_mode);
        assert_eq!(o.collect_metrics_sample_interval, Duration::from_secs(15));
        assert_eq!(o.watch_namespaces, ["team-a"]);
    }

    #[test]
    fn defaults_follow_the_reference() {
        let o = options(&[]).expect("defaults");
        assert_eq!(o.metrics_bind_address, None);
        assert_eq!(
            o.health_probe_bind_address,
            Some("0.0.0.0:8081".parse().expect("addr"))
        );
        assert_eq!(o.lease, LeaseTimings::default());
        assert_eq!(o.max_export_bytes, 1_572_864);
        assert_eq!(
            (
                o.max_concurrent_reconciles_target,
                o.max_concurrent_reconciles_inventory
            ),
            (5, 3)
        );
        assert_eq!(o.leader_election_id, "3274ac8a.kollect.dev");
        assert_eq!(
            o.runtime_config().resync_period,
            Some(Duration::from_secs(12 * 3600))
        );
        let webhook = o.webhook.as_ref().expect("webhooks are served by default");
        assert_eq!(webhook.bind_address, "0.0.0.0:9443".parse().expect("addr"));
        assert_eq!(
            webhook.cert_dir,
            std::path::Path::new("/tmp/k8s-webhook-server/serving-certs")
        );
        assert!(!o.tenant_mode);
        assert_eq!(
            o.runtime_config().metrics_sample_interval,
            Duration::from_secs(30)
        );
        assert_eq!(o.runtime_config().namespaces, NamespaceSource::Watch);
        let tenant = options(&[
            "--tenant-mode",
            "--watch-namespaces=team-a,team-b",
            "--collect-metrics-sample-interval=0",
        ])
        .expect("tenant");
        let runtime = tenant.runtime_config();
        assert_eq!(runtime.metrics_sample_interval, Duration::ZERO);
        assert_eq!(
            runtime.namespaces,
            NamespaceSource::Poll {
                names: vec!["team-a".into(), "team-b".into()],
                every: NAMESPACE_POLL
            }
        );
        let tls = o.metrics_tls.as_ref().expect("/metrics is secure by default");
        assert_eq!((tls.cert_dir.as_ref(), tls.cert_name.as_str()), (None, "tls.crt"));
        assert_eq!(
            options(&["--metrics-secure=false"]).expect("plain").metrics_tls,
            None
        );
        let off = options(&["--validating-webhooks-enabled=false"]).expect("off");
        assert_eq!(off.webhook, None);
        assert_eq!(o.runtime_config().enqueue_wait, Duration::from_millis(25));
        assert_eq!(o.reconcile_rate_limit, Duration::ZERO);
        let limited = options(&["--reconcile-rate-limit=50ms"]).expect("rate limit");
        assert_eq!(limited.reconcile_rate_limit, Duration::from_millis(50));
        let clamped = options(&["--collect-dispatch-enqueue-wait=-5ms"]).expect("clamped");
        assert_eq!(clamped.runtime_config().enqueue_wait, Duration::ZERO);
        let never = options(&["--informer-resync-period", "0s"]).expect("0s");
        assert_eq!(never.runtime_config().resync_period, None);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = options(&["--leader-elect-renew-deadline", "90s"]).expect_err("renew > lease");
        assert!(e.contains("--leader-elect-renew-deadline"), "{e}");
        let e = options(&["--metrics-bind-address", "nonsense"]).expect_err("address");
        assert!(e.contains("--metrics-bind-address nonsense"), "{e}");
        let e = options(&["--leader-elect-retry-period", "soon"]).expect_err("duration");
        assert!(e.contains("soon"), "{e}");
        let o = options(&[
            "--scrub-keys",
            "token, apiKey,",
            "--metrics-bind-address",
            "127.0.0.1:0",
        ])
        .expect("ok");
        assert_eq!(o.scrub_keys, ["token", "apiKey"]);
        for flag in ["--enable-pprof", "--inventory-http-enabled=true"] {
            let e = options(&[flag]).expect_err("not shipped");
            assert!(
                e.contains("not part of this operator") || e.contains("no counterpart"),
                "{e}"
            );
        }
        let accepted = options(&[
            "--pprof-bind-address=:6060",
            "--inventory-http-port=8082",
            "--enable-http2",
        ])
        .expect("accepted");
        assert!(accepted.webhook.is_some_and(|w| w.http2));
        let e = options(&["--tenant-mode"]).expect_err("tenant without namespaces");
        assert!(e.contains("--tenant-mode needs --watch-namespaces"), "{e}");
        let e = options(&["--webhook-bind-address", "0"]).expect_err("no webhook address");
        assert!(e.contains("--validating-webhooks-enabled=false"), "{e}");
        assert!(o.metrics_bind_address.is_some());
    }
}
