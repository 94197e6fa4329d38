//! Retry of transient sink errors with exponential backoff and jitter.

use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use tower::Layer;

use crate::sink::{ExportReceipt, ExportRequest, ProbeReport, RemoveRequest, Sink, SinkError};

/// How often and how patiently to retry.
///
/// Only [`ErrorClass::Transient`](crate::error::ErrorClass::Transient) errors are retried;
/// terminal and forbidden errors return at once. The loop is bounded twice: by `max_attempts`
/// and by `max_total_delay` (the sum of the waits between attempts).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in total, including the first (at least 1).
    pub max_attempts: usize,
    /// Wait before the second attempt.
    pub initial_delay: Duration,
    /// Longest single wait.
    pub max_delay: Duration,
    /// Growth of the wait per attempt.
    pub factor: f32,
    /// Add a random extra wait of up to the current delay, so that many sinks failing together
    /// do not retry in lockstep.
    pub jitter: bool,
    /// Upper bound of the sum of all waits.
    pub max_total_delay: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, waits of 1 s then 2 s (factor 2, capped at 30 s), with jitter, at most 60 s of
    /// waiting in total.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            factor: 2.0,
            jitter: true,
            max_total_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The same policy with `max_attempts` attempts in total (at least 1).
    pub fn with_max_attempts(mut self, max_attempts: usize) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// The same policy waiting `initial_delay` before the second attempt.
    pub fn with_initial_delay(mut self, initial_delay: Duration) -> Self {
        self.initial_delay = initial_delay;
        self
    }

    /// The same policy with jitter on or off (off makes waits deterministic in tests).
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    fn backoff(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.initial_delay)
            .with_max_delay(self.max_delay)
            .with_factor(self.factor)
            .with_max_times(self.max_attempts.saturating_sub(1))
            .with_total_delay(Some(self.max_total_delay));
        if self.jitter {
            builder.with_jitter()
        } else {
            builder
        }
    }
}

/// A [`tower::Layer`] adding [`Retry`] to a sink.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// Retries with `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            policy: self.policy,
        }
    }
}

/// A sink whose `export` and `remove` retry transient errors. `probe` is not retried: a
/// connection test reports what it sees.
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S> Retry<S> {
    /// The wrapped sink.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

fn log_retry<'a>(sink_type: &'a str, operation: &'a str) -> impl FnMut(&SinkError, Duration) + 'a {
    move |error, wait| {
        tracing::debug!(sink_type, operation, error = %error, wait = ?wait, "retrying transient sink error");
    }
}

#[async_trait]
impl<S: Sink> Sink for Retry<S> {
    forward_sink_metadata!();

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        (|| self.inner.export(request))
            .retry(self.policy.backoff())
            .when(SinkError::is_retryable)
            .notify(log_retry(self.inner.sink_type(), "export"))
            .await
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        (|| self.inner.remove(request))
            .retry(self.policy.backoff())
            .when(SinkError::is_retryable)
            .notify(log_retry(self.inner.sink_type(), "remove"))
            .await
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

    fn policy() -> RetryPolicy {
        RetryPolicy {
            jitter: false,
            ..RetryPolicy::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_until_success_with_growing_waits() {
        let sink = ScriptedSink::new([Err(ErrorClass::Transient), Err(ErrorClass::Transient), Ok(())]);
        let retry = RetryLayer::new(policy()).layer(sink.clone());
        let start = tokio::time::Instant::now();
        retry.export(&request()).await.unwrap();
        assert_eq!(sink.calls(), 3);
        // 1 s then 2 s of (virtual) waiting.
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_after_max_attempts() {
        let sink = ScriptedSink::new([Err(ErrorClass::Transient); 10]);
        let retry = RetryLayer::new(policy()).layer(sink.clone());
        let err = retry.export(&request()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient);
        assert_eq!(sink.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn terminal_and_forbidden_are_not_retried() {
        for class in [ErrorClass::Terminal, ErrorClass::Forbidden] {
            let sink = ScriptedSink::new([Err(class), Ok(())]);
            let retry = RetryLayer::new(policy()).layer(sink.clone());
            assert_eq!(
                retry
                    .remove(&crate::middleware::test_sink::remove_request())
                    .await
                    .unwrap_err()
                    .class(),
                class
            );
            assert_eq!(sink.calls(), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn total_delay_bounds_the_loop() {
        let sink = ScriptedSink::new([Err(ErrorClass::Transient); 20]);
        let p = RetryPolicy {
            max_attempts: 20,
            max_total_delay: Duration::from_secs(10),
            ..policy()
        };
        let start = tokio::time::Instant::now();
        RetryLayer::new(p)
            .layer(sink.clone())
            .export(&request())
            .await
            .unwrap_err();
        assert!(
            start.elapsed() <= Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        // Waits 1+2+4 = 7 s fit, the next (8 s) would exceed 10 s: four attempts.
        assert_eq!(sink.calls(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_keeps_waits_within_bounds() {
        let sink = ScriptedSink::new([Err(ErrorClass::Transient), Ok(())]);
        let start = tokio::time::Instant::now();
        RetryLayer::new(RetryPolicy::default())
            .layer(sink.clone())
            .export(&request())
            .await
            .unwrap();
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited <= Duration::from_secs(2),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn probe_is_not_retried() {
        let sink = ScriptedSink::new([Err(ErrorClass::Transient), Ok(())]);
        let retry = RetryLayer::new(policy()).layer(sink.clone());
        assert!(retry.probe().await.is_err());
        assert_eq!(sink.calls(), 1);
    }
}
