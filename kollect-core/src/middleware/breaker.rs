//! A per-sink circuit breaker.
//!
//! No maintained crate offers a breaker as a tower layer over an arbitrary trait with an
//! injectable clock and the half-open semantics the Go operator has, so this is a small
//! state machine of our own. It reads time through `tokio::time::Instant`, which tests pause and
//! advance deterministically.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tower::Layer;

use crate::sink::{ExportReceipt, ExportRequest, ProbeReport, RemoveRequest, Sink, SinkError};

/// Breaker thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before letting probe calls through.
    pub open_for: Duration,
    /// Calls allowed through while half-open; the first success closes the breaker, a failure
    /// opens it again.
    pub half_open_probes: u32,
    /// While closed, failure counts are forgotten after this long without reaching the
    /// threshold.
    pub reset_interval: Duration,
}

impl Default for BreakerConfig {
    /// Opens after 5 consecutive failures, stays open 30 s, one half-open probe, counts reset
    /// every 60 s.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            half_open_probes: 1,
            reset_interval: Duration::from_secs(60),
        }
    }
}

/// The externally visible state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass through.
    Closed,
    /// Calls fail fast with a transient error.
    Open,
    /// A limited number of probe calls pass through.
    HalfOpen,
}

#[derive(Debug)]
enum Phase {
    Closed { failures: u32, window_end: Instant },
    Open { until: Instant },
    HalfOpen { in_flight: u32 },
}

#[derive(Debug)]
struct Machine {
    config: BreakerConfig,
    phase: Phase,
}

impl Machine {
    fn closed(config: &BreakerConfig, now: Instant) -> Phase {
        Phase::Closed {
            failures: 0,
            window_end: now + config.reset_interval,
        }
    }

    /// Moves time-driven transitions forward and reports the state at `now`.
    fn state(&mut self, now: Instant) -> BreakerState {
        match self.phase {
            Phase::Closed { window_end, .. } if now >= window_end => {
                self.phase = Self::closed(&self.config, now);
                BreakerState::Closed
            }
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until } if now >= until => {
                self.phase = Phase::HalfOpen { in_flight: 0 };
                BreakerState::HalfOpen
            }
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Decides whether a call may proceed.
    fn admit(&mut self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => match &mut self.phase {
                Phase::HalfOpen { in_flight } if *in_flight < self.config.half_open_probes => {
                    *in_flight += 1;
                    true
                }
                _ => false,
            },
        }
    }

    fn record(&mut self, success: bool, now: Instant) {
        self.phase = match (&self.phase, success) {
            (Phase::HalfOpen { .. }, true) => Self::closed(&self.config, now),
            (Phase::HalfOpen { .. }, false) => Phase::Open {
                until: now + self.config.open_for,
            },
            (Phase::Closed { .. }, true) => Self::closed(&self.config, now),
            (Phase::Closed { failures, window_end }, false) => {
                let failures = failures + 1;
                if failures >= self.config.failure_threshold {
                    Phase::Open {
                        until: now + self.config.open_for,
                    }
                } else {
                    Phase::Closed {
                        failures,
                        window_end: *window_end,
                    }
                }
            }
            // A call admitted before the breaker opened finished late; the open period stands.
            (Phase::Open { until }, _) => Phase::Open { until: *until },
        };
    }
}

/// A [`tower::Layer`] adding a [`CircuitBreaker`] named after the sink it protects.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    name: String,
    config: BreakerConfig,
}

impl CircuitBreakerLayer {
    /// A breaker for the sink called `name` (used in the open-breaker error, e.g.
    /// `team-a/inventory-git`).
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Self {
        Self {
            name: name.into(),
            config,
        }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker {
            inner,
            name: self.name.clone(),
            machine: Arc::new(Mutex::new(Machine {
                config: self.config,
                phase: Machine::closed(&self.config, Instant::now()),
            })),
        }
    }
}

/// A sink that fails fast with a transient error while its backend keeps failing.
///
/// Every `export` and `remove` error counts as a failure, whatever its class (a backend that
/// rejects every request should not be hammered either). `probe` bypasses the breaker, so a
/// connection test always reaches the backend.
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
    name: String,
    machine: Arc<Mutex<Machine>>,
}

impl<S> CircuitBreaker<S> {
    /// The state at this moment.
    pub fn state(&self) -> BreakerState {
        self.lock().state(Instant::now())
    }

    /// The wrapped sink.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Machine> {
        // The machine holds no invariants a panicking holder could break half-way.
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn guarded<T, F>(&self, call: F) -> Result<T, SinkError>
    where
        F: std::future::Future<Output = Result<T, SinkError>>,
    {
        if !self.lock().admit(Instant::now()) {
            return Err(SinkError::transient(format!(
                "sink circuit breaker open for {:?}",
                self.name
            )));
        }
        let result = call.await;
        self.lock().record(result.is_ok(), Instant::now());
        result
    }
}

#[async_trait]
impl<S: Sink> Sink for CircuitBreaker<S> {
    forward_sink_metadata!();

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        self.guarded(self.inner.export(request)).await
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        self.guarded(self.inner.remove(request)).await
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

    fn breaker(script: Vec<Result<(), ErrorClass>>) -> (ScriptedSink, CircuitBreaker<ScriptedSink>) {
        let sink = ScriptedSink::new(script);
        let breaker = CircuitBreakerLayer::new("team-a/git", BreakerConfig::default()).layer(sink.clone());
        (sink, breaker)
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_five_consecutive_failures_and_fails_fast() {
        let (sink, breaker) = breaker(vec![Err(ErrorClass::Transient); 5]);
        for _ in 0..4 {
            breaker.export(&request()).await.unwrap_err();
            assert_eq!(breaker.state(), BreakerState::Closed);
        }
        breaker.export(&request()).await.unwrap_err();
        assert_eq!(breaker.state(), BreakerState::Open);
        let err = breaker.export(&request()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient);
        assert_eq!(err.message(), "sink circuit breaker open for \"team-a/git\"");
        assert_eq!(sink.calls(), 5, "open breaker must not call the sink");
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_probe_success_closes() {
        let (sink, breaker) = breaker(vec![Err(ErrorClass::Terminal); 5]);
        for _ in 0..5 {
            breaker.export(&request()).await.unwrap_err();
        }
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(breaker.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.export(&request()).await.unwrap();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(sink.calls(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_probe_failure_reopens_and_admits_only_one_probe() {
        let sink = ScriptedSink::new(vec![Err(ErrorClass::Transient); 7]).slow(Duration::from_secs(1));
        let breaker = CircuitBreakerLayer::new("x", BreakerConfig::default()).layer(sink.clone());
        for _ in 0..5 {
            breaker.export(&request()).await.unwrap_err();
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        let (ra, rb) = (request(), request());
        let (a, b) = tokio::join!(breaker.export(&ra), breaker.export(&rb));
        assert!(a.is_err() && b.is_err());
        assert_eq!(sink.calls(), 6, "only one half-open probe reaches the sink");
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let mut script = vec![Err(ErrorClass::Transient); 4];
        script.push(Ok(()));
        script.extend(vec![Err(ErrorClass::Transient); 4]);
        let (sink, breaker) = breaker(script);
        for _ in 0..9 {
            let _ = breaker.export(&request()).await;
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(sink.calls(), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_spread_beyond_the_reset_interval_do_not_open() {
        let (_, breaker) = breaker(vec![Err(ErrorClass::Transient); 8]);
        for _ in 0..4 {
            breaker.export(&request()).await.unwrap_err();
        }
        tokio::time::advance(Duration::from_secs(61)).await;
        for _ in 0..4 {
            breaker.export(&request()).await.unwrap_err();
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn probe_bypasses_an_open_breaker() {
        let (sink, breaker) = breaker(vec![Err(ErrorClass::Transient); 5]);
        for _ in 0..5 {
            breaker.export(&request()).await.unwrap_err();
        }
        breaker.probe().await.unwrap();
        assert_eq!(sink.calls(), 6);
    }
}
