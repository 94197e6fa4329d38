//! # kollect-collect
//!
//! - [`extract`]: pure functions that turn one Kubernetes object plus a compiled
//!   `KollectProfile` into a row's attributes, and the profile validation shared by the admission
//!   webhook and `kollect validate`;
//! - [`select`]: which objects a target collects (namespace, resource and watch-label gates),
//!   shared by every way of collecting;
//! - [`target`]: a registered target (compiled profile and filters) and how it builds a row,
//!   shared by the runtime and the offline source;
//! - [`offline`]: the same collection over manifest files and `kubectl get -o json` dumps;
//! - [`runtime`]: shared watches per GVK, target registration, access checks and the
//!   [`runtime::RowStore`] of rows, against a live API server.
#![forbid(unsafe_code)]

pub mod extract;
pub mod offline;
pub mod runtime;
pub mod select;
pub mod target;
