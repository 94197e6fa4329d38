//! # kollect-testkit
//!
//! Test support for Kollect and for code built on it:
//!
//! - [`golden`]: golden-file assertions with an update mode;
//! - [`MemorySink`]: an in-memory [`Sink`](kollect_core::sink::Sink) that records every request
//!   and can be told to fail, be slow, or return a given error class;
//! - [`conformance`]: the sink conformance suite every sink backend (ours or a third party's)
//!   runs, with [`sink_conformance_tests!`].
//!
//! - [`ControlPlane`]: a real kube-apiserver + etcd with every Kollect CRD installed;
//! - [`backends`]: launchers for the real sink backends, and [`GitServer`] (smart HTTP(S) with
//!   basic auth), [`SshGitServer`] (OpenSSH with a generated key); [`pki`]: throwaway certificates for them;
//! - [`contract`]: a recorded-contract HTTP(S) server for APIs no real server of can run in tests.
#![forbid(unsafe_code)]

pub mod backends;
pub mod conformance;
pub mod contract;
pub mod control_plane;
pub mod git_server;
pub mod golden;
mod http_server;
mod memory_sink;
pub mod pki;
mod ports;
mod ssh_git_server;

pub use control_plane::ControlPlane;
pub use git_server::GitServer;
pub use ssh_git_server::SshGitServer;

pub use memory_sink::{MemorySink, Recorded};
