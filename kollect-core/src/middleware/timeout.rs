//! A deadline for every sink call.

use std::time::Duration;

use async_trait::async_trait;
use tower::Layer;

use crate::GoDuration;
use crate::sink::{ExportReceipt, ExportRequest, ProbeReport, RemoveRequest, Sink, SinkError};

/// A [`tower::Layer`] adding a [`Timeout`].
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// Fails calls that take longer than `limit`.
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            limit: self.limit,
        }
    }
}

/// A sink whose calls fail with a transient error after a deadline. The abandoned call is
/// dropped (cancelled), so backends must not leave partial state that a retry cannot repair.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    limit: Duration,
}

impl<S: Sink> Timeout<S> {
    async fn bounded<T>(
        &self,
        operation: &str,
        call: impl Future<Output = Result<T, SinkError>>,
    ) -> Result<T, SinkError> {
        tokio::time::timeout(self.limit, call).await.unwrap_or_else(|_| {
            Err(SinkError::transient(format!(
                "{} {operation} timed out after {}",
                self.inner.sink_type(),
                GoDuration::from_std(self.limit)
            )))
        })
    }
}

#[async_trait]
impl<S: Sink> Sink for Timeout<S> {
    forward_sink_metadata!();

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        self.bounded("export", self.inner.export(request)).await
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        self.bounded("remove", self.inner.remove(request)).await
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        self.bounded("probe", self.inner.probe()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;
    use crate::middleware::test_sink::{ScriptedSink, request};

    #[tokio::test(start_paused = true)]
    async fn slow_calls_fail_transiently_fast_ones_pass() {
        let slow = TimeoutLayer::new(Duration::from_secs(2))
            .layer(ScriptedSink::new([]).slow(Duration::from_secs(5)));
        let err = slow.export(&request()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient);
        assert_eq!(err.message(), "scripted export timed out after 2s");
        let fast = TimeoutLayer::new(Duration::from_secs(2))
            .layer(ScriptedSink::new([]).slow(Duration::from_secs(1)));
        fast.export(&request()).await.unwrap();
    }
}
