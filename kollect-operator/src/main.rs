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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds { output_dir, check } => crds(&output_dir, check),
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
