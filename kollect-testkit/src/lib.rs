//! # kollect-testkit
//!
//! Test support for Kollect and for code built on it: golden-file assertions ([`golden`]). The
//! local control plane (kube-apiserver + etcd), launchers for real sink backends and the sink
//! conformance suite join it here.
#![forbid(unsafe_code)]

pub mod golden;
