//! # kollect-collect
//!
//! The extraction engine ([`extract`]): pure functions that turn one Kubernetes object plus a
//! compiled `KollectProfile` into a row's attributes, and the profile validation shared by the
//! admission webhook and `kollect validate`. The collection runtime (shared watches, target
//! matching, the row store) joins it in this crate.
#![forbid(unsafe_code)]

pub mod extract;
