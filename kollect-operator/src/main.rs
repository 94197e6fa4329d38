//! The `kollect` binary.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Kollect turns Kubernetes state into durable inventory.
#[derive(Debug, Parser)]
#[command(name = "kollect", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator: reconcile profiles, targets, inventories and sinks in the cluster of
    /// the in-cluster service account (or $KUBECONFIG) until SIGTERM or Ctrl-C.
    Run(Box<kollect_operator::operator::options::RunArgs>),
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
struct CollectArgs {
    /// Directory of KollectProfile, KollectTarget, sink and Secret YAML files (non-recursive).
    #[arg(long)]
    config: PathBuf,
    /// Collect from manifest files or `kubectl get -o json` dumps (a file or directory) instead
    /// of a cluster.
    #[arg(long, value_name = "PATH")]
    source: Option<PathBuf>,
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Context to collect from; repeatable, comma-separated, globs allowed (default: the
    /// current context).
    #[arg(long = "context", value_name = "NAME")]
    contexts: Vec<String>,
    /// Collect only this namespace (overrides every target's includedNamespaces).
    #[arg(long)]
    namespace: Option<String>,
    /// `-` for records on standard output, or a directory to write documents into.
    #[arg(long)]
    output: Option<String>,
    /// Output format: ndjson, yaml or json (records with --output -; documents with a directory).
    #[arg(long)]
    format: Option<String>,
    /// Collect and report what would be written; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Keep running and export changes as they happen, until interrupted (Ctrl-C).
    #[arg(long)]
    watch: bool,
    /// Log level: debug, info, warn or error.
    #[arg(long, default_value = "warn")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds { output_dir, check } => crds(&output_dir, check),
        Command::Collect(args) => collect(args),
        Command::Run(args) => run(*args),
        Command::Validate { config } => ExitCode::from(kollect_operator::cli::validate::run(&config) as u8),
        Command::Init {
            kubeconfig,
            context,
            output_dir,
        } => init(kollect_operator::cli::init::InitOptions {
            kubeconfig,
            context,
            output_dir,
        }),
        Command::Completion { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "kollect", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

fn collect(args: CollectArgs) -> ExitCode {
    let filter = match args.log_level.as_str() {
        level @ ("debug" | "info" | "warn" | "error") => level.to_owned(),
        other => {
            eprintln!("error: --log-level {other}: use debug, info, warn or error");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let options = kollect_operator::cli::collect::CollectOptions {
        config: args.config,
        source: args.source,
        kubeconfig: args.kubeconfig,
        contexts: args.contexts,
        namespace: args.namespace,
        output: args.output,
        format: args.format,
        dry_run: args.dry_run,
        watch: args.watch,
    };
    let exit = runtime.block_on(kollect_operator::cli::collect::run(options));
    ExitCode::from(exit as u8)
}

fn run(args: kollect_operator::operator::options::RunArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level);
    let filter = match filter {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("error: --log-level {}: {error}", args.log_level);
            return ExitCode::from(2);
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match args.log_format.as_str() {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => {
            eprintln!("error: --log-format {other}: use text or json");
            return ExitCode::from(2);
        }
    }
    let options = match args.into_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        let client = match kube::Client::try_default().await {
            Ok(client) => client,
            Err(error) => {
                eprintln!("error: connect to the API server: {error}");
                return ExitCode::from(2);
            }
        };
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_termination().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        });
        match kollect_operator::operator::run(client, options, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        }
    })
}

/// SIGTERM (Kubernetes) or Ctrl-C.
async fn wait_for_termination() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

fn init(options: kollect_operator::cli::init::InitOptions) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => ExitCode::from(runtime.block_on(kollect_operator::cli::init::run(options)) as u8),
        Err(error) => {
            eprintln!("error: start the async runtime: {error}");
            ExitCode::from(2)
        }
    }
}

fn crds(dir: &std::path::Path, check: bool) -> ExitCode {
    if check {
        return match kollect_operator::crds::drift(dir) {
            Ok(drifted) if drifted.is_empty() => ExitCode::SUCCESS,
            Ok(drifted) => {
                eprintln!("CRDs in {} are out of date; run `kollect crds`:", dir.display());
                for file in drifted {
                    eprintln!("  {file}");
                }
                ExitCode::FAILURE
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::from(2)
            }
        };
    }
    match kollect_operator::crds::write_all(dir) {
        Ok(paths) => {
            for path in paths {
                eprintln!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}
