//! Middleware for sinks, as [`tower::Layer`]s whose services are themselves [`Sink`](crate::sink::Sink)s.
//!
//! Every layer here wraps any `S: Sink` and yields another `Sink`, so layers compose with
//! [`tower::ServiceBuilder`] and with each other, and embedders can add their own:
//!
//! ```
//! use std::time::Duration;
//! use kollect_core::middleware::{BreakerConfig, CircuitBreakerLayer, RetryLayer, RetryPolicy, TimeoutLayer};
//! use kollect_core::sink::Sink;
//! use tower::ServiceBuilder;
//!
//! fn harden<S: Sink>(sink: S) -> impl Sink {
//!     ServiceBuilder::new()
//!         .layer(RetryLayer::new(RetryPolicy::default()))
//!         .layer(CircuitBreakerLayer::new("team-a/inventory-git", BreakerConfig::default()))
//!         .layer(TimeoutLayer::new(Duration::from_secs(120)))
//!         .service(sink)
//! }
//! ```
//!
//! The outermost layer runs first: above, every attempt of the retry loop passes through the
//! breaker, and every call the breaker lets through is bounded by the timeout.
//!
//! [`coalesce`] holds the export coalescing rule (decision X2) as a pure, clock-injected
//! component, used by the export engine to decide whether a sink needs an export at all.

/// Implements the pass-through methods of [`Sink`](crate::sink::Sink) (`sink_type`,
/// `capabilities`, `preview`) for a middleware whose wrapped sink is `self.inner`.
macro_rules! forward_sink_metadata {
    () => {
        fn sink_type(&self) -> &str {
            self.inner.sink_type()
        }

        fn capabilities(&self) -> $crate::sink::Capabilities {
            self.inner.capabilities()
        }

        fn preview(&self, request: &$crate::sink::ExportRequest) -> $crate::api::v1alpha1::SinkPreview {
            self.inner.preview(request)
        }
    };
}

mod breaker;
pub mod coalesce;
mod limit;
pub mod metrics;
mod retry;
mod timeout;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker, CircuitBreakerLayer};
pub use coalesce::{CoalesceDecision, CoalesceState, Coalescer, ExportReason};
pub use limit::{ConcurrencyLimit, ConcurrencyLimitLayer};
pub use metrics::{ExportMetrics, Metered, MetricsLayer};
pub use retry::{Retry, RetryLayer, RetryPolicy};
pub use timeout::{Timeout, TimeoutLayer};

#[cfg(test)]
pub(crate) mod test_sink;
