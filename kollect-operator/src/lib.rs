//! The Kollect operator and the `kollect` command-line tool.
//!
//! - [`admission`]: the validating webhook (`kollect run`) and the rules `kollect validate` shares;
//! - [`args`]: the command-line definitions of every subcommand;
//! - [`crds`]: CRD generation (`kollect crds`);
//! - [`cli`]: the pipeline CLI (`kollect collect`, `kollect validate`, `kollect init`) over the
//!   library crates.
//!
//! - [`operator`]: the operator (`kollect run`), kube-runtime controllers over the same crates;
//! - [`serving`]: TLS for its HTTPS servers.
#![forbid(unsafe_code)]

pub mod admission;
pub mod args;
pub mod cli;
pub mod crds;
pub mod operator;
pub mod serving;
