//! `kollect collect`: collect targets from a cluster (one or more kubeconfig contexts), or from
//! files (`--source`), and export one document per target to standard output, a directory, or
//! the one sink declared in the configuration. `--watch` keeps running and exports changes.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kollect_collect::extract::{CompiledProfile, ExtractOptions};
use kollect_collect::runtime::{Partition, Runtime, RuntimeConfig, TargetRegistration};
use kollect_collect::select::{NamespaceDefaults, TargetFilter};
use kollect_core::api::v1alpha1::SecretReference;
use kollect_core::api::v1alpha1::{KollectTarget, SinkFamily};
use kollect_core::collect::RowOwner;
use kollect_core::export::{Binding, BindingKey, InventoryExporter, StackConfig, build_stack};
use kollect_core::middleware::ExportMetrics;
use kollect_core::model::{SharedRow, Snapshot};
use kollect_core::netguard::NetPolicy;
use kollect_core::sink::{InventoryRef, Sink};
use kollect_sinks::format::Format;
use kollect_sinks::local::{LocalConfig, LocalSink};
use kollect_sinks::stdout::StdoutSink;
use kollect_sinks::{BuildContext, FamilySink, Registry, SecretData};

use super::config::Config;

/// Exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Everything collected and exported.
    Ok = 0,
    /// Some targets were skipped or failed, at least one was exported.
    Degraded = 1,
    /// Nothing usable: bad flags, configuration, kubeconfig, sink or secret, or a degraded run
    /// that exported nothing.
    Fatal = 2,
}

/// Options of `kollect collect`.
#[derive(Debug, Clone, Default)]
pub struct CollectOptions {
    /// The configuration directory.
    pub config: PathBuf,
    /// Collect from these files instead of a cluster.
    pub source: Option<PathBuf>,
    /// Kubeconfig path (default `$KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Contexts (names or globs); default the current context.
    pub contexts: Vec<String>,
    /// Force `includedNamespaces=[ns]` on every target.
    pub namespace: Option<String>,
    /// `-` for standard output, or a directory.
    pub output: Option<String>,
    /// Output format.
    pub format: Option<String>,
    /// Collect, report what would be written, write nothing.
    pub dry_run: bool,
    /// Keep running and export changes until interrupted.
    pub watch: bool,
}

/// A fatal problem: printed as `error: ...`, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

fn fatal(message: impl Into<String>) -> Fatal {
    Fatal(message.into())
}

/// Where documents go.
struct Output {
    sink: Arc<dyn Sink>,
    stdout: Option<StdoutSink>,
    name: String,
}

fn resolve_output(options: &CollectOptions, config: &Config) -> Result<Output, Fatal> {
    let declared = config.snapshot_sinks.len() + config.database_sinks.len() + config.event_sinks.len();
    match options.output.as_deref() {
        Some("-") => {
            if options.dry_run {
                return Err(fatal("--output - and --dry-run cannot be combined"));
            }
            ignoring(declared, "-");
            let format = Format::parse(options.format.as_deref().unwrap_or("ndjson"))
                .map_err(|e| fatal(format!("--format: {}", e.message())))?;
            let sink = StdoutSink::stdout(format);
            Ok(Output {
                sink: Arc::new(sink.clone()),
                stdout: Some(sink),
                name: "stdout".into(),
            })
        }
        Some(dir) => {
            ignoring(declared, dir);
            let format = Format::parse(options.format.as_deref().unwrap_or("json"))
                .map_err(|e| fatal(format!("--format: {}", e.message())))?;
            let sink = LocalSink::new(LocalConfig::new(dir, format))
                .map_err(|e| fatal(format!("--output {dir}: {}", e.message())))?;
            Ok(Output {
                sink: Arc::new(sink),
                stdout: None,
                name: format!("local:{dir}"),
            })
        }
        None => {
            if options.format.is_some() {
                return Err(fatal("--format needs --output"));
            }
            if declared == 0 {
                return Err(fatal(format!(
                    "no KollectSnapshotSink, KollectDatabaseSink or KollectEventSink in {} and no --output",
                    config.dir.display()
                )));
            }
            if declared > 1 {
                return Err(fatal(format!(
                    "{declared} sink manifests in {}: only one is supported per run",
                    config.dir.display()
                )));
            }
            build_declared_sink(config)
        }
    }
}

/// `--output` takes the place of the sink manifests of the configuration.
fn ignoring(declared: usize, output: &str) {
    if declared > 0 {
        progress(|| {
            format!(
                "--output {output}: not exporting to the {declared} sink manifest(s) of the configuration"
            )
        });
    }
}

fn build_declared_sink(config: &Config) -> Result<Output, Fatal> {
    let secret_error = |e: super::config::ConfigError| fatal(e.to_string());
    let sink = if let Some(sink) = config.snapshot_sinks.first() {
        FamilySink::Snapshot(sink.clone())
    } else if let Some(sink) = config.database_sinks.first() {
        FamilySink::Database(sink.clone())
    } else if let Some(sink) = config.event_sinks.first() {
        FamilySink::Event(sink.clone())
    } else {
        return Err(fatal("no sink manifest"));
    };
    let metadata = sink.metadata();
    let namespace = metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = format!("{namespace}/{}", metadata.name.clone().unwrap_or_default());
    let registry = Registry::builtin();
    let refs = registry
        .secret_refs(&sink)
        .map_err(|e| fatal(format!("sink {name}: {e}")))?;
    let resolve = |reference: Option<SecretReference>| match reference {
        Some(reference) => config.secret(&reference, &namespace).map_err(secret_error),
        None => Ok(SecretData::default()),
    };
    let ca_pem = match sink.common().tls.as_ref().and_then(|t| t.ca_bundle.as_ref()) {
        Some(bundle) => Some(String::from_utf8_lossy(&bundle.0).into_owned()),
        None => resolve(refs.ca.clone())?.first_text(&["ca.crt", "tls.crt", "ca.pem"]),
    };
    let context = BuildContext::new(name.clone(), NetPolicy::new(false))
        .with_secret(resolve(refs.credentials.clone())?)
        .with_database_secret(resolve(refs.database.clone())?)
        .with_ca_pem(ca_pem);
    let sink = registry
        .build(&sink.config(), context)
        .map_err(|e| fatal(format!("sink {name}: {}", e.message())))?;
    Ok(Output {
        sink: Arc::from(sink),
        stdout: None,
        name,
    })
}

/// Compiles every target of the configuration.
fn registrations(options: &CollectOptions, config: &Config) -> Result<Vec<(TargetRegistration, i64)>, Fatal> {
    let extract = ExtractOptions::default();
    let mut out = Vec::new();
    for target in &config.targets {
        let target = forced_namespace(target, options.namespace.as_deref());
        let Some(profile) = config.profile_of(&target) else {
            return Err(fatal(format!(
                "KollectTarget {}: profileRef \"{}\" does not resolve",
                target.metadata.name.as_deref().unwrap_or_default(),
                target.spec.profile_ref
            )));
        };
        let namespace = target
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = target.metadata.name.clone().unwrap_or_default();
        let filter = TargetFilter::compile(
            (&target.spec).into(),
            &NamespaceDefaults::default(),
            None,
            &extract.cel,
        )
        .map_err(|e| fatal(format!("KollectTarget {namespace}/{name}: {e}")))?;
        out.push((
            TargetRegistration {
                owner: RowOwner::target(&namespace, &name),
                profile_name: target.spec.profile_ref.clone(),
                gvk: profile.spec.target_gvk.clone(),
                profile: Arc::new(CompiledProfile::compile(&profile.spec, &extract)),
                filter,
                fingerprint: format!(
                    "{:?}/{:?}",
                    target.metadata.generation, profile.metadata.generation
                ),
            },
            target.metadata.generation.unwrap_or(1),
        ));
    }
    Ok(out)
}

fn forced_namespace(target: &KollectTarget, namespace: Option<&str>) -> KollectTarget {
    let mut target = target.clone();
    if let Some(namespace) = namespace {
        target.spec.filter.included_namespaces = vec![namespace.to_owned()];
    }
    target
}

/// Per-target outcome of one collection.
#[derive(Debug, Default)]
struct Tally {
    exported: usize,
    degraded: bool,
}

impl Tally {
    fn exit(&self) -> Exit {
        match (self.degraded, self.exported) {
            (false, _) => Exit::Ok,
            (true, 0) => Exit::Fatal,
            (true, _) => Exit::Degraded,
        }
    }
}

fn progress(message: impl FnOnce() -> String) {
    if std::io::stderr().is_terminal() {
        eprintln!("{}", message());
    }
}

/// Exports one document per target through the export engine (partitioning, retries).
struct Exporter {
    output: Output,
    dry_run: bool,
    exporters: BTreeMap<(String, RowOwner), InventoryExporter>,
    metrics: ExportMetrics,
    binding: Binding,
}

impl Exporter {
    fn new(output: Output, dry_run: bool) -> Self {
        let metrics = ExportMetrics::default();
        let binding = Binding {
            key: BindingKey::new(SinkFamily::Snapshot, output.name.clone()),
            sink: build_stack(
                &output.name,
                Arc::clone(&output.sink),
                &StackConfig::default(),
                &metrics,
            ),
            interval: Duration::ZERO,
            ceiling: kollect_core::export::DEFAULT_MAX_EXPORT_BYTES,
        };
        Self {
            output,
            dry_run,
            exporters: BTreeMap::new(),
            metrics,
            binding,
        }
    }

    /// Exports `rows` of `owner`; returns whether it was written (or would be, in a dry run).
    async fn export(&mut self, context: &str, owner: &RowOwner, generation: i64, snapshot: Snapshot) -> bool {
        let RowOwner::Target { namespace, name } = owner else {
            return false;
        };
        let inventory = InventoryRef::namespaced(namespace, name).with_cluster(context);
        if self.dry_run {
            let request = kollect_core::sink::ExportRequest::full(
                inventory.clone(),
                generation,
                k8s_openapi::jiff::Timestamp::now(),
                snapshot,
            );
            eprintln!(
                "dry-run: would write export target={namespace}/{name} path={} bytes={}",
                inventory.default_object_path(".json"),
                request.envelope().len()
            );
            return true;
        }
        let exporter = self
            .exporters
            .entry((context.to_owned(), owner.clone()))
            .or_insert_with(|| InventoryExporter::new(inventory, "kollect-cli", self.metrics.clone()));
        let report = exporter
            .export(
                &snapshot,
                generation,
                std::slice::from_ref(&self.binding),
                k8s_openapi::jiff::Timestamp::now(),
            )
            .await;
        if report.failed() > 0 {
            let condition = report.synced();
            eprintln!("target {namespace}/{name}: export failed: {}", condition.message);
            return false;
        }
        progress(|| format!("exported {namespace}/{name} ({} rows)", snapshot.len()));
        true
    }

    fn finish(&self) -> Result<(), Fatal> {
        match &self.output.stdout {
            Some(stdout) => stdout
                .finish()
                .map_err(|e| fatal(format!("write to standard output: {}", e.message()))),
            None => Ok(()),
        }
    }
}

/// Runs `kollect collect`.
pub async fn run(options: CollectOptions) -> Exit {
    match run_inner(options).await {
        Ok(exit) => exit,
        Err(Fatal(message)) => {
            eprintln!("error: {message}");
            Exit::Fatal
        }
    }
}

async fn run_inner(options: CollectOptions) -> Result<Exit, Fatal> {
    let config = Config::load(&options.config).map_err(|e| fatal(e.to_string()))?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    config.check_references().map_err(|e| fatal(e.to_string()))?;
    if options.watch && options.source.is_some() {
        return Err(fatal(
            "--watch needs a cluster; it cannot be combined with --source",
        ));
    }
    let output = resolve_output(&options, &config)?;
    let targets = registrations(&options, &config)?;
    let mut exporter = Exporter::new(output, options.dry_run);
    let exit = match &options.source {
        Some(source) => collect_offline(source, &targets, &mut exporter).await?,
        None => collect_cluster(&options, targets, &mut exporter).await?,
    };
    exporter.finish()?;
    Ok(exit)
}

async fn collect_offline(
    source: &std::path::Path,
    targets: &[(TargetRegistration, i64)],
    exporter: &mut Exporter,
) -> Result<Exit, Fatal> {
    let objects =
        kollect_collect::offline::load_objects(source).map_err(|e| fatal(format!("--source: {e}")))?;
    progress(|| format!("read {} objects from {}", objects.len(), source.display()));
    let registrations: Vec<TargetRegistration> = targets.iter().map(|(t, _)| t.clone()).collect();
    let mut result = kollect_collect::offline::collect(&registrations, &objects);
    let mut tally = Tally::default();
    for (registration, generation) in targets {
        let owner = &registration.owner;
        for failure in result.failures.remove(owner).unwrap_or_default() {
            eprintln!("{owner}: {failure}");
            tally.degraded = true;
        }
        let rows = result.rows.remove(owner).unwrap_or_default();
        if exporter.export("", owner, *generation, Snapshot::new(rows)).await {
            tally.exported += 1;
        } else {
            tally.degraded = true;
        }
    }
    Ok(tally.exit())
}

/// The contexts to collect from: names and globs over the kubeconfig's contexts, sorted.
fn resolve_contexts(
    kubeconfig: &kube::config::Kubeconfig,
    requested: &[String],
) -> Result<Vec<String>, Fatal> {
    let available: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
    if requested.is_empty() {
        return kubeconfig
            .current_context
            .clone()
            .map(|c| vec![c])
            .ok_or_else(|| fatal("the kubeconfig has no current-context; pass --context"));
    }
    let mut chosen = std::collections::BTreeSet::new();
    for entry in requested
        .iter()
        .flat_map(|r| r.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if entry.contains(['*', '?', '[']) {
            let pattern = glob::Pattern::new(entry).map_err(|e| fatal(format!("--context {entry}: {e}")))?;
            let matched: Vec<&String> = available.iter().filter(|c| pattern.matches(c)).collect();
            if matched.is_empty() {
                eprintln!("warning: --context {entry} matches no context");
            }
            chosen.extend(matched.into_iter().cloned());
        } else if available.iter().any(|c| c == entry) {
            chosen.insert(entry.to_owned());
        } else {
            return Err(fatal(format!(
                "--context {entry}: no such context in the kubeconfig (typo?)"
            )));
        }
    }
    if chosen.is_empty() {
        return Err(fatal("no context selected"));
    }
    Ok(chosen.into_iter().collect())
}

fn kubeconfig_path(options: &CollectOptions) -> Result<PathBuf, Fatal> {
    if let Some(path) = &options.kubeconfig {
        return Ok(path.clone());
    }
    if let Some(path) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".kube/config"))
        .ok_or_else(|| fatal("no --kubeconfig, $KUBECONFIG or ~/.kube/config"))
}

async fn collect_cluster(
    options: &CollectOptions,
    targets: Vec<(TargetRegistration, i64)>,
    exporter: &mut Exporter,
) -> Result<Exit, Fatal> {
    let path = kubeconfig_path(options)?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .map_err(|e| fatal(format!("kubeconfig {}: {e}", path.display())))?;
    let contexts = resolve_contexts(&kubeconfig, &options.contexts)?;
    let mut runtimes = Vec::new();
    for context in &contexts {
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig.clone(),
            &kube::config::KubeConfigOptions {
                context: Some(context.clone()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| fatal(format!("context {context}: {e}")))?;
        let client = kube::Client::try_from(config).map_err(|e| fatal(format!("context {context}: {e}")))?;
        let runtime = Runtime::start(client, runtime_config(options.watch));
        for (registration, _) in &targets {
            runtime.register(registration.clone());
        }
        runtimes.push((context.clone(), runtime));
    }
    let generations: BTreeMap<RowOwner, i64> = targets.iter().map(|(t, g)| (t.owner.clone(), *g)).collect();
    let mut exit = Exit::Ok;
    for (context, runtime) in &runtimes {
        let code = export_context(context, runtime, &generations, exporter).await;
        exit = exit.max(code);
    }
    if !options.watch {
        return Ok(exit);
    }
    watch(&runtimes, &generations, exporter).await;
    Ok(Exit::Ok)
}

/// The collection runtime of a run: every target is registered before the watches make their
/// first request, so they need not wait for registrations to settle. Without `--watch`, each
/// kind is listed once, its items turned into rows as the response arrives; with it, larger
/// pages halve the round trips of a list where the API server does not stream lists.
fn runtime_config(watch: bool) -> RuntimeConfig {
    RuntimeConfig {
        settle: Duration::ZERO,
        page_size: 1000,
        list_only: !watch,
        ..RuntimeConfig::default()
    }
}

/// Waits until every target of `runtime` listed once, then exports them.
async fn export_context(
    context: &str,
    runtime: &Runtime,
    generations: &BTreeMap<RowOwner, i64>,
    exporter: &mut Exporter,
) -> Exit {
    let mut tally = Tally::default();
    for (owner, generation) in generations {
        let synced = runtime.wait_synced(owner, Duration::from_secs(300)).await;
        let report = runtime.report(owner).unwrap_or_default();
        if let Some(unresolved) = &report.unresolved {
            eprintln!("context {context}: {owner}: skipped (gvk-not-found): {unresolved}");
            tally.degraded = true;
            continue;
        }
        if !synced {
            eprintln!(
                "context {context}: {owner}: skipped (transient): not listed within 300s: {}",
                report.watch_error.as_deref().unwrap_or("no answer")
            );
            tally.degraded = true;
            continue;
        }
        for (namespace, reason) in &report.forbidden_namespaces {
            eprintln!("context {context}: {owner}: namespace {namespace} skipped (forbidden): {reason}");
            tally.degraded = true;
        }
        for failure in report.extraction_failures.values() {
            eprintln!("context {context}: {owner}: {failure}");
            tally.degraded = true;
        }
        let rows = rows_of(runtime, owner);
        progress(|| format!("context {context}: {owner}: {} rows", rows.len()));
        if exporter.export(context, owner, *generation, rows).await {
            tally.exported += 1;
        } else {
            tally.degraded = true;
        }
    }
    tally.exit()
}

/// The rows of `owner` as the store shares them (already encoded, in canonical order).
fn rows_of(runtime: &Runtime, owner: &RowOwner) -> Snapshot {
    let RowOwner::Target { namespace, name } = owner else {
        return Snapshot::empty();
    };
    let partition = runtime
        .store()
        .snapshot(&Partition::Namespace(namespace.clone()))
        .snapshot;
    let rows: Vec<SharedRow> = partition
        .rows()
        .iter()
        .filter(|r| r.target_name() == name)
        .cloned()
        .collect();
    // A subsequence of canonically ordered rows is in canonical order.
    Snapshot::from_canonical_order(rows)
}

/// Exports changes as they happen until Ctrl-C.
async fn watch(
    runtimes: &[(String, Runtime)],
    generations: &BTreeMap<RowOwner, i64>,
    exporter: &mut Exporter,
) {
    let mut changes: Vec<_> = runtimes.iter().map(|(_, r)| r.store().subscribe()).collect();
    progress(|| "watching for changes (Ctrl-C to stop)".to_owned());
    loop {
        let mut dirty = false;
        let tick = tokio::time::sleep(Duration::from_millis(250));
        tokio::pin!(tick);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                progress(|| "stopping".to_owned());
                return;
            }
            _ = &mut tick => {}
        }
        for receiver in &mut changes {
            while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) =
                receiver.try_recv()
            {
                dirty = true;
            }
        }
        if !dirty {
            continue;
        }
        // The engine coalesces: targets whose rows did not change are not written again.
        for (context, runtime) in runtimes {
            for (owner, generation) in generations {
                let rows = rows_of(runtime, owner);
                exporter.export(context, owner, *generation, rows).await;
            }
        }
    }
}
