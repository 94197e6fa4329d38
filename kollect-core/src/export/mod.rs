//! The export engine: between a row store and the sinks of one inventory.
//!
//! Free of Kubernetes I/O and of any concrete backend, so the operator and the CLI's watch mode
//! share it (decisions X2–X7, A12):
//!
//! - [`effective_interval`] and [`effective_ceiling`] compute a binding's settings from the ref,
//!   the sink, the inventory, the scope floor and the global cap;
//! - [`build_stack`] wraps a sink in metrics, retry, circuit breaker and timeout;
//! - [`InventoryExporter`] runs export passes: coalescing (export on content or generation
//!   change, unchanged content once per interval, `0s` on change only), partitioning within the
//!   ceiling, parts in order per sink, sinks concurrently, deltas since each sink's last
//!   acknowledged export, state seeded from status after a restart, and removal of everything
//!   an inventory exported when it is deleted;
//! - [`ExportReport`] turns the outcomes into the `Synced`, `Ready`, `Degraded` and
//!   `SinkReachable` conditions and per-sink status.
//!
//! Sinks that delete rows themselves (databases) get the whole snapshot in one request; document
//! and message sinks get parts within the ceiling.

mod binding;
mod engine;
mod report;
mod settings;
mod stack;

pub use binding::{Binding, BindingKey};
pub use engine::InventoryExporter;
pub use report::{ConditionSpec, ExportReport, FAILURE_RETRY, RemoveReport, SinkOutcome, SinkReport};
pub use settings::{
    DEFAULT_INTERVAL, DEFAULT_MAX_EXPORT_BYTES, MAX_INTERVAL, effective_ceiling, effective_interval,
};
pub use stack::{StackConfig, build_stack};
