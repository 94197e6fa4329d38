//! Every subcommand's command-line definition, in one place: `kollect run`, `collect`,
//! `validate`, `init`, `completion` and `crds`. The subcommands' implementations turn these into
//! their own options ([`crate::operator::options`], [`crate::cli`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kollect_core::GoDuration;
use kollect_core::export::DEFAULT_MAX_EXPORT_BYTES;

/// What `kollect --version` prints after the name: the crate version, the commit the binary was
/// built from and the build date (see the crate's build script).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KOLLECT_BUILD_COMMIT"),
    ", built ",
    env!("KOLLECT_BUILD_DATE"),
    ")"
);

/// Kollect turns Kubernetes state into durable inventory.
#[derive(Debug, Parser)]
#[command(name = "kollect", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator: reconcile profiles, targets, inventories and sinks in the cluster of
    /// the in-cluster service account (or $KUBECONFIG) until SIGTERM or Ctrl-C.
    Run(Box<RunArgs>),
    /// Collect targets from a cluster (or from files with --source) and export one document per
    /// target: to standard output (--output -), a directory (--output DIR), or the one sink
    /// manifest in --config. Exit codes: 0 all collected, 1 some targets skipped or failed but
    /// at least one exported, 2 nothing usable (bad flags, configuration, kubeconfig or sink).
    Collect(CollectArgs),
    /// Check a configuration directory offline with the admission rules; exit 2 when an object
    /// is invalid.
    Validate {
        /// Directory of Kollect YAML files (non-recursive; multi-document files allowed).
        #[arg(long)]
        config: PathBuf,
    },
    /// Ask which kind to collect and where, preview one object if you agree, and write a
    /// starting profile.yaml and target.yaml. Needs a terminal; exit 2 when cancelled.
    Init {
        /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Context to use (default: the current context).
        #[arg(long)]
        context: Option<String>,
        /// Directory to write profile.yaml and target.yaml into.
        #[arg(long, default_value = "./collect-config")]
        output_dir: PathBuf,
    },
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the CustomResourceDefinitions, one file per CRD (kollect.dev_PLURAL.yaml).
    Crds {
        /// Directory to write into.
        #[arg(long, default_value = "charts/kollect/crds")]
        output_dir: PathBuf,
        /// Do not write; exit 1 when the files in --output-dir differ from the generated ones.
        #[arg(long)]
        check: bool,
    },
}

/// Flags of `kollect collect`.
#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    /// Directory of KollectProfile, KollectTarget, sink and Secret YAML files (non-recursive).
    #[arg(long)]
    pub config: PathBuf,
    /// Collect from manifest files or `kubectl get -o json` dumps (a file or directory) instead
    /// of a cluster.
    #[arg(long, value_name = "PATH")]
    pub source: Option<PathBuf>,
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Context to collect from; repeatable, comma-separated, globs allowed (default: the
    /// current context).
    #[arg(long = "context", value_name = "NAME")]
    pub contexts: Vec<String>,
    /// Collect only this namespace (overrides every target's includedNamespaces).
    #[arg(long)]
    pub namespace: Option<String>,
    /// `-` for records on standard output, or a directory to write documents into.
    #[arg(long)]
    pub output: Option<String>,
    /// Output format: ndjson, yaml or json (records with --output -; documents with a directory).
    #[arg(long)]
    pub format: Option<String>,
    /// Collect and report what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep running and export changes as they happen, until interrupted (Ctrl-C).
    #[arg(long)]
    pub watch: bool,
    /// Log level: debug, info, warn or error.
    #[arg(long, default_value = "warn")]
    pub log_level: String,
}

/// Flags of `kollect run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Address of /metrics, e.g. `:8443` or `127.0.0.1:9090`; `0` disables it.
    #[arg(long, default_value = "0")]
    pub metrics_bind_address: String,
    /// Serve /metrics over HTTPS to callers RBAC allows to `get` the non-resource URL /metrics
    /// (bearer tokens checked with TokenReview and SubjectAccessReview).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub metrics_secure: bool,
    /// Directory holding the metrics certificate and key (default: a self-signed certificate).
    #[arg(long)]
    pub metrics_cert_path: Option<PathBuf>,
    /// File name of the metrics certificate in --metrics-cert-path.
    #[arg(long, default_value = "tls.crt")]
    pub metrics_cert_name: String,
    /// File name of the metrics key in --metrics-cert-path.
    #[arg(long, default_value = "tls.key")]
    pub metrics_cert_key: String,
    /// Address of /healthz and /readyz; `0` disables them.
    #[arg(long, default_value = ":8081")]
    pub health_probe_bind_address: String,
    /// Run only while holding the Lease `3274ac8a.kollect.dev` (needed with more than one replica).
    #[arg(long)]
    pub leader_elect: bool,
    /// How long a lease stays valid after its last renewal.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down (it keeps running and
    /// competes again).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// Pause between attempts to acquire or renew the lease.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else kollect-system).
    #[arg(long)]
    pub leader_election_namespace: Option<String>,
    /// Allow sink endpoints in private ranges (RFC 1918, ULA). Loopback, link-local, cloud
    /// metadata and file:// stay denied.
    #[arg(long)]
    pub allow_private_sinks: bool,
    /// Allow family sinks to reference Secrets in other namespaces.
    #[arg(long)]
    pub allow_cross_namespace_secret_refs: bool,
    /// Largest export part in bytes (inventories and sink refs may set lower ceilings).
    #[arg(long, default_value_t = DEFAULT_MAX_EXPORT_BYTES)]
    pub max_export_bytes: u64,
    /// Targets reconciled at once.
    #[arg(long, default_value_t = 5)]
    pub max_concurrent_reconciles_target: u16,
    /// Inventories reconciled (exported) at once.
    #[arg(long, default_value_t = 3)]
    pub max_concurrent_reconciles_inventory: u16,
    /// Namespaces whose Kollect objects this operator manages, comma-separated (default: all).
    /// Collection follows the targets, wherever their objects are.
    #[arg(long, value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// Namespaces collected by targets that list no includedNamespaces, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub default_included_namespaces: Vec<String>,
    /// Namespaces never collected, added to every target's excludedNamespaces.
    #[arg(long, value_delimiter = ',')]
    pub default_excluded_namespaces: Vec<String>,
    /// Extra keys redacted from every extracted value, comma-separated (case-insensitive).
    #[arg(long, value_delimiter = ',')]
    pub scrub_keys: Vec<String>,
    /// Workers turning watch events into rows.
    #[arg(long, default_value_t = 4)]
    pub collect_dispatch_workers: usize,
    /// Queue capacity per worker; a full queue makes the watch wait.
    #[arg(long, default_value_t = 512)]
    pub collect_dispatch_queue_size: usize,
    /// How long an event waits for a full dispatch queue before the wait counts as
    /// backpressure; it then waits on (events are never dropped). Negative values count as 0.
    #[arg(long, default_value = "25ms", value_parser = parse_clamped_duration, allow_hyphen_values = true)]
    pub collect_dispatch_enqueue_wait: Duration,
    /// How often the domain series of each target's rows (`kollect_custom_resource_series`)
    /// are refreshed; a change shows within one interval. `0` never computes them.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub collect_metrics_sample_interval: Duration,
    /// How often every watch lists everything again, evaluating each object anew and sweeping
    /// rows of objects that are gone; `0` never does.
    #[arg(long, default_value = "12h", value_parser = parse_duration)]
    pub informer_resync_period: Duration,
    /// Base delay for retrying a failed reconcile, doubling per consecutive failure of the
    /// object up to 300 times the base; `0` keeps each controller's fixed retry delay.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    pub reconcile_rate_limit: Duration,
    /// How often a healthy target's status (collectedCount) is refreshed at the latest.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub target_count_resync: Duration,
    /// How long the progress of healthy exports (lastExportTime, lastChecksum, itemCount) may
    /// wait before it is written into an inventory's status; failures, recoveries and spec
    /// changes are written at once. `0` writes after every export.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub inventory_status_refresh: Duration,
    /// Serve the validating admission webhooks (every replica serves them, leading or not).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub validating_webhooks_enabled: bool,
    /// Address of the webhook server.
    #[arg(long, default_value = ":9443")]
    pub webhook_bind_address: String,
    /// Directory holding the webhook's certificate and key (reloaded when they change).
    #[arg(long, default_value = "/tmp/k8s-webhook-server/serving-certs")]
    pub webhook_cert_path: PathBuf,
    /// File name of the webhook certificate in --webhook-cert-path.
    #[arg(long, default_value = "tls.crt")]
    pub webhook_cert_name: String,
    /// File name of the webhook key in --webhook-cert-path.
    #[arg(long, default_value = "tls.key")]
    pub webhook_cert_key: String,
    /// Offer HTTP/2 on the webhook and secure metrics servers (HTTP/1.1 only by default).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub enable_http2: bool,
    /// Go's pprof profiler; not part of this operator (refused when true).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub enable_pprof: bool,
    /// Address of the pprof server; only meaningful with --enable-pprof.
    #[arg(long, default_value = ":6060")]
    pub pprof_bind_address: String,
    /// The read-only inventory HTTP API; not part of this operator (refused when true).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub inventory_http_enabled: bool,
    /// Port of the inventory HTTP API; only meaningful with --inventory-http-enabled.
    #[arg(long, default_value_t = 8082)]
    pub inventory_http_port: u16,
    /// Authentication of the inventory HTTP API; only meaningful with --inventory-http-enabled.
    #[arg(long, default_value = "kubernetes")]
    pub inventory_auth_mode: String,
    /// Manage namespaced kinds only (in --watch-namespaces); the webhooks refuse the cluster
    /// kinds.
    #[arg(long)]
    pub tenant_mode: bool,
    /// Log level: trace, debug, info, warn or error.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    pub log_format: String,
}

/// A Go duration where negative values mean zero.
fn parse_clamped_duration(text: &str) -> Result<Duration, String> {
    let parsed: GoDuration = text.parse().map_err(|e| format!("{e}"))?;
    Ok(parsed.as_std().unwrap_or_default())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed: GoDuration = text.parse().map_err(|e| format!("{e}"))?;
    parsed
        .as_std()
        .ok_or_else(|| format!("{text}: must not be negative"))
}
