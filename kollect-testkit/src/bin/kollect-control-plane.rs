//! `kollect-control-plane`: the testkit's local control plane (a real kube-apiserver and etcd
//! with every Kollect CRD installed) as a process, for examples and for trying Kollect without
//! a cluster. It runs until interrupted, then stops both servers.
//!
//! ```text
//! kollect-control-plane [--kubeconfig FILE] [--apply PATH]...
//!
//!   --kubeconfig FILE  write an admin kubeconfig there (else its path is printed)
//!   --apply PATH       server-side apply the manifests or kubectl dumps of a file or directory
//! ```
//!
//! Readiness is the line `ready: KUBECONFIG=<path>` on standard output.

use std::path::PathBuf;
use std::process::ExitCode;

use kollect_testkit::ControlPlane;

/// The two options are parsed by hand: a dependency on an argument parser would be larger than
/// this program.
struct Options {
    kubeconfig: Option<PathBuf>,
    apply: Vec<PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        kubeconfig: None,
        apply: Vec::new(),
    };
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .map(PathBuf::from)
                .ok_or(format!("{name} needs a value"))
        };
        match arg.to_str() {
            Some("--kubeconfig") => options.kubeconfig = Some(value("--kubeconfig")?),
            Some("--apply") => options.apply.push(value("--apply")?),
            Some("-h" | "--help") => {
                return Err("usage: kollect-control-plane [--kubeconfig FILE] [--apply PATH]...".into());
            }
            _ => return Err(format!("unknown argument {}", arg.to_string_lossy())),
        }
    }
    Ok(options)
}

async fn run(options: Options) -> Result<(), String> {
    let plane = ControlPlane::start().await.map_err(|e| e.to_string())?;
    for path in &options.apply {
        let objects = kollect_collect::offline::load_objects(path).map_err(|e| e.to_string())?;
        plane
            .apply_objects(objects, "default")
            .await
            .map_err(|e| format!("apply {}: {e}", path.display()))?;
    }
    let kubeconfig = match options.kubeconfig {
        Some(path) => {
            std::fs::copy(plane.kubeconfig_path(), &path)
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            path
        }
        None => plane.kubeconfig_path().to_owned(),
    };
    println!("ready: KUBECONFIG={}", kubeconfig.display());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("listen for SIGTERM: {e}"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    drop(plane);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match options() {
        Ok(options) => run(options).await,
        Err(message) => Err(message),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kollect-control-plane: {message}");
            ExitCode::FAILURE
        }
    }
}
