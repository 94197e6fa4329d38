//! A bound on concurrent calls into one sink.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tower::Layer;

use crate::sink::{ExportReceipt, ExportRequest, ProbeReport, RemoveRequest, Sink, SinkError};

/// A [`tower::Layer`] adding a [`ConcurrencyLimit`]. Sinks built from one layer value share one
/// limit, so a layer can bound a whole backend (e.g. one database) across inventories.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    permits: Arc<Semaphore>,
}

impl ConcurrencyLimitLayer {
    /// At most `max` calls at a time (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            permits: Arc::clone(&self.permits),
        }
    }
}

/// A sink that queues calls beyond a concurrency limit.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S: Sink> ConcurrencyLimit<S> {
    async fn limited<T>(&self, call: impl Future<Output = Result<T, SinkError>>) -> Result<T, SinkError> {
        // The semaphore is never closed, so acquiring only fails if that invariant breaks.
        let _permit = self.permits.acquire().await.map_err(|_| {
            SinkError::transient(format!("{} concurrency limiter closed", self.inner.sink_type()))
        })?;
        call.await
    }
}

#[async_trait]
impl<S: Sink> Sink for ConcurrencyLimit<S> {
    forward_sink_metadata!();

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        self.limited(self.inner.export(request)).await
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        self.limited(self.inner.remove(request)).await
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        self.limited(self.inner.probe()).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::middleware::test_sink::{ScriptedSink, request};

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_the_limit_wait() {
        let layer = ConcurrencyLimitLayer::new(1);
        let a = layer.layer(ScriptedSink::new([]).slow(Duration::from_secs(1)));
        let b = layer.layer(ScriptedSink::new([]).slow(Duration::from_secs(1)));
        let start = tokio::time::Instant::now();
        let (qa, qb) = (request(), request());
        let (ra, rb) = tokio::join!(a.export(&qa), b.export(&qb));
        ra.unwrap();
        rb.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(2),
            "the shared limit serialises both sinks"
        );
    }
}
