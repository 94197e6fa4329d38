//! # kollect-testkit
//!
//! A local control plane (kube-apiserver + etcd), launchers for real sink backends, a golden-file
//! harness and the sink conformance suite. Under construction: the crate currently only reserves
//! its place in the workspace.
#![forbid(unsafe_code)]
