//! The middleware stack every bound sink is wrapped in.

use std::sync::Arc;
use std::time::Duration;

use tower::ServiceBuilder;

use crate::middleware::{
    BreakerConfig, CircuitBreakerLayer, ExportMetrics, MetricsLayer, RetryLayer, RetryPolicy, TimeoutLayer,
};
use crate::sink::Sink;

/// Settings of the per-sink stack.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct StackConfig {
    /// Retries of transient errors.
    pub retry: RetryPolicy,
    /// Circuit breaker thresholds.
    pub breaker: BreakerConfig,
    /// Deadline of one attempt.
    pub timeout: Duration,
}

impl Default for StackConfig {
    /// The default retry policy and breaker, and a 2-minute deadline per attempt.
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            timeout: Duration::from_secs(120),
        }
    }
}

impl StackConfig {
    /// The same settings with `retry`.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The same settings with `breaker`.
    pub fn with_breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// The same settings with a deadline of `timeout` per attempt.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Wraps `sink` as metrics → retry → circuit breaker → timeout → sink: one metrics observation
/// per export call (retries included), every attempt through the breaker (named `name`, e.g.
/// `team-a/inventory-git`), every attempt bounded by the timeout.
///
/// The breaker's state lives in the returned sink, so callers keep the stack for as long as the
/// sink's configuration is unchanged.
///
/// ```
/// # use std::sync::{Arc, Mutex};
/// # use async_trait::async_trait;
/// # use kollect_core::sink::*;
/// # /// Remembers the last envelope it was sent.
/// # #[derive(Default)]
/// # struct Last(Mutex<Vec<u8>>);
/// # #[async_trait]
/// # impl Sink for Last {
/// #     fn sink_type(&self) -> &str { "last" }
/// #     fn capabilities(&self) -> Capabilities { Capabilities::DOCUMENTS }
/// #     async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
/// #         let envelope = request.envelope();
/// #         let bytes = envelope.len() as u64;
/// #         *self.0.lock().unwrap() = envelope;
/// #         Ok(ExportReceipt::written(bytes))
/// #     }
/// #     async fn remove(&self, _: &RemoveRequest) -> Result<(), SinkError> { Ok(()) }
/// #     async fn probe(&self) -> Result<ProbeReport, SinkError> {
/// #         Ok(ProbeReport::new(std::time::Duration::ZERO, "ok"))
/// #     }
/// # }
/// use std::time::Duration;
/// use kollect_core::export::{StackConfig, build_stack};
/// use kollect_core::middleware::{ExportMetrics, RetryPolicy};
///
/// let config = StackConfig::default()
///     .with_retry(RetryPolicy::default().with_initial_delay(Duration::from_millis(100)))
///     .with_timeout(Duration::from_secs(30));
/// let sink: Arc<dyn Sink> = build_stack("team-a/last", Last::default(), &config, &ExportMetrics::default());
/// assert_eq!(sink.sink_type(), "last");
/// ```
pub fn build_stack<S: Sink + 'static>(
    name: &str,
    sink: S,
    config: &StackConfig,
    metrics: &ExportMetrics,
) -> Arc<dyn Sink> {
    Arc::new(
        ServiceBuilder::new()
            .layer(MetricsLayer::new(metrics.clone()))
            .layer(RetryLayer::new(config.retry))
            .layer(CircuitBreakerLayer::new(name, config.breaker))
            .layer(TimeoutLayer::new(config.timeout))
            .service(sink),
    )
}
