//! Records what `kollect --version` prints besides the crate version: the commit the binary was
//! built from and the build date.
//!
//! - commit: `KOLLECT_BUILD_COMMIT` when set (image builds without a `.git` directory pass it),
//!   else `git rev-parse` of the enclosing repository, else `unknown` (a crates.io build);
//! - date: `SOURCE_DATE_EPOCH` when set (reproducible builds), else the time of the build.

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=KOLLECT_BUILD_COMMIT");
    println!("cargo::rerun-if-env-changed=SOURCE_DATE_EPOCH");

    let commit = std::env::var("KOLLECT_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo::rustc-env=KOLLECT_BUILD_COMMIT={}", commit.trim());
    println!("cargo::rustc-env=KOLLECT_BUILD_DATE={}", build_date());
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The short commit of HEAD, and rerun triggers for when HEAD moves.
fn git_commit() -> Option<String> {
    let git_dir = PathBuf::from(git(&["rev-parse", "--absolute-git-dir"])?);
    println!("cargo::rerun-if-changed={}", git_dir.join("HEAD").display());
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        println!("cargo::rerun-if-changed={}", git_dir.join(reference).display());
        println!(
            "cargo::rerun-if-changed={}",
            git_dir.join("packed-refs").display()
        );
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}

fn build_date() -> String {
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
        });
    chrono::DateTime::from_timestamp(seconds, 0)
        .map_or_else(|| "unknown".to_owned(), |t| t.format("%Y-%m-%d").to_string())
}
