//! Export metrics, and a layer that records them for every call into a sink.
//!
//! Metric names and labels are those of the Go operator (decision O2), registered in a
//! `prometheus-client` [`Registry`] that the operator serves on `/metrics`:
//!
//! - `kollect_export_duration_seconds{sink_type}` (histogram);
//! - `kollect_export_bytes_total{sink_type}` (bytes delivered);
//! - `kollect_sink_errors_total{reason}` (`transient`, `terminal`, `forbidden`, `payload_too_large`,
//!   `spill_required`);
//! - `kollect_export_debounced_total{controller}` (exports skipped by coalescing).

use std::time::Instant;

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tower::Layer;

use crate::sink::{ExportReceipt, ExportRequest, ProbeReport, RemoveRequest, Sink, SinkError};

/// Buckets of `kollect_export_duration_seconds`.
pub(crate) const DURATION_BUCKETS: [f64; 11] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// `{sink_type}` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkTypeLabels {
    /// Backend type (`git`, `postgres`, ...).
    pub sink_type: String,
}

/// `{reason}` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Error class or gate (`transient`, `terminal`, `forbidden`, `payload_too_large`, ...).
    pub reason: String,
}

/// `{controller}` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// Controller name (`KollectInventory`, ...).
    pub controller: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The export metric families. Cloning shares the underlying series.
#[derive(Clone, Debug)]
pub struct ExportMetrics {
    duration: Family<SinkTypeLabels, Histogram, fn() -> Histogram>,
    bytes: Family<SinkTypeLabels, Counter>,
    errors: Family<ReasonLabels, Counter>,
    debounced: Family<ControllerLabels, Counter>,
}

impl Default for ExportMetrics {
    /// Metrics that are recorded but not registered anywhere (useful in tests and embedders that
    /// do not serve metrics).
    fn default() -> Self {
        Self {
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            bytes: Family::default(),
            errors: Family::default(),
            debounced: Family::default(),
        }
    }
}

impl ExportMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "kollect_export_duration_seconds",
            "Time of one export call to a sink, retries included",
            metrics.duration.clone(),
        );
        registry.register(
            "kollect_export_bytes",
            "Bytes delivered to sinks",
            metrics.bytes.clone(),
        );
        registry.register(
            "kollect_sink_errors",
            "Failed sink calls by reason",
            metrics.errors.clone(),
        );
        registry.register(
            "kollect_export_debounced",
            "Exports skipped because the content was unchanged within the interval",
            metrics.debounced.clone(),
        );
        metrics
    }

    /// Counts a sink failure (or an export gate) under `reason`.
    pub fn error(&self, reason: &str) {
        self.errors
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts `n` debounced exports of `controller`.
    pub fn debounced(&self, controller: &str, n: u64) {
        self.debounced
            .get_or_create(&ControllerLabels {
                controller: controller.to_owned(),
            })
            .inc_by(n);
    }

    /// Records one export call.
    pub fn observe(&self, sink_type: &str, seconds: f64, bytes: u64) {
        let labels = SinkTypeLabels {
            sink_type: sink_type.to_owned(),
        };
        self.duration.get_or_create(&labels).observe(seconds);
        self.bytes.get_or_create(&labels).inc_by(bytes);
    }

    /// Current value of `kollect_sink_errors_total{reason}` (for tests and status).
    pub fn error_count(&self, reason: &str) -> u64 {
        self.errors
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .get()
    }

    /// Current value of `kollect_export_bytes_total{sink_type}`.
    pub fn bytes_count(&self, sink_type: &str) -> u64 {
        self.bytes
            .get_or_create(&SinkTypeLabels {
                sink_type: sink_type.to_owned(),
            })
            .get()
    }

    /// Current value of `kollect_export_debounced_total{controller}`.
    pub fn debounced_count(&self, controller: &str) -> u64 {
        self.debounced
            .get_or_create(&ControllerLabels {
                controller: controller.to_owned(),
            })
            .get()
    }
}

/// A [`tower::Layer`] recording [`ExportMetrics`] around a sink.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    metrics: ExportMetrics,
}

impl MetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: ExportMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metered {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A sink whose exports and removals are timed and counted.
#[derive(Clone, Debug)]
pub struct Metered<S> {
    inner: S,
    metrics: ExportMetrics,
}

impl<S: Sink> Metered<S> {
    fn record_error(&self, error: &SinkError) {
        self.metrics.error(error.class().as_str());
    }
}

#[async_trait]
impl<S: Sink> Sink for Metered<S> {
    forward_sink_metadata!();

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        let start = Instant::now();
        let result = self.inner.export(request).await;
        let bytes = result.as_ref().map_or(0, |receipt| receipt.bytes);
        self.metrics
            .observe(self.inner.sink_type(), start.elapsed().as_secs_f64(), bytes);
        if let Err(error) = &result {
            self.record_error(error);
        }
        result
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        let result = self.inner.remove(request).await;
        if let Err(error) = &result {
            self.record_error(error);
        }
        result
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        self.inner.probe().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;
    use crate::middleware::test_sink::{ScriptedSink, request};

    #[tokio::test]
    async fn calls_and_errors_are_counted_and_exposed() {
        let mut registry = Registry::default();
        let metrics = ExportMetrics::register(&mut registry);
        let sink =
            MetricsLayer::new(metrics.clone()).layer(ScriptedSink::new([Err(ErrorClass::Terminal), Ok(())]));
        sink.export(&request()).await.unwrap_err();
        sink.export(&request()).await.unwrap();
        metrics.debounced("KollectInventory", 2);
        assert_eq!(metrics.error_count("terminal"), 1);
        assert_eq!(metrics.debounced_count("KollectInventory"), 2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("kollect_export_duration_seconds_count{sink_type=\"scripted\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("kollect_sink_errors_total{reason=\"terminal\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kollect_export_bytes_total{sink_type=\"scripted\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("kollect_export_debounced_total{controller=\"KollectInventory\"} 2"),
            "{text}"
        );
    }
}
