//! The `kollect` binary.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use kollect_operator::args::{Cli, CollectArgs, Command};

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
