//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's timing model: a
//! candidate acquires an expired or free lease, the leader renews every retry period, and a
//! leader that could not renew within the renew deadline steps down — without exiting — and goes
//! back to acquiring (decision O1).
//!
//! Written here rather than taken from a crate: the Lease helpers available for kube 5 keep
//! reporting leadership while the API server is unreachable, and stepping down at the renew
//! deadline is exactly what O1 needs.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// Timing of the election (`--leader-elect-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimings {
    /// How long a lease is valid after its last renewal, as seen by other candidates.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(60),
            renew_deadline: Duration::from_secs(40),
            retry_period: Duration::from_secs(5),
        }
    }
}

impl LeaseTimings {
    /// Checks retry < renew < lease, naming the flags.
    pub fn validate(&self) -> Result<(), String> {
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err("--leader-elect-retry-period must be greater than 0 and less than --leader-elect-renew-deadline".into());
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(
                "--leader-elect-renew-deadline must be less than --leader-elect-lease-duration".into(),
            );
        }
        Ok(())
    }
}

/// What the elector last saw of the lease, timed by the local clock so that clock skew between
/// candidates does not matter (as client-go does).
struct Observed {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    since: Instant,
}

/// A candidate for the lease `namespace/name`.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: LeaseTimings,
    observed: Option<Observed>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .field("timings", &self.timings)
            .finish_non_exhaustive()
    }
}

impl LeaderElector {
    /// A candidate named `identity`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: LeaseTimings,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timings,
            observed: None,
        }
    }

    /// Runs the election until `shutdown` fires, publishing whether this process leads. On
    /// shutdown a held lease is released so a successor does not wait for it to expire.
    pub async fn run(mut self, leading: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut last_renewal: Option<Instant> = None;
        loop {
            let now = Instant::now();
            // A hung request must not hold the leader past its deadline.
            let attempt_timeout = (self.timings.retry_period * 2)
                .max(Duration::from_secs(1))
                .min(self.timings.renew_deadline);
            let attempt = match tokio::time::timeout(attempt_timeout, self.try_acquire_or_renew()).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {attempt_timeout:?}")),
            };
            match attempt {
                Ok(true) => {
                    if last_renewal.is_none() {
                        tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                    }
                    last_renewal = Some(now);
                    leading.send_replace(true);
                }
                Ok(false) => {
                    if last_renewal.take().is_some() {
                        tracing::warn!(lease = %self.name, "another candidate holds the lease; stepping down");
                    }
                    leading.send_replace(false);
                }
                Err(error) => {
                    tracing::warn!(lease = %self.name, %error, "could not reach the lease");
                    if let Some(renewed) = last_renewal
                        && now.duration_since(renewed) >= self.timings.renew_deadline
                    {
                        tracing::warn!(lease = %self.name, "renew deadline passed; stepping down");
                        last_renewal = None;
                        leading.send_replace(false);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timings.retry_period) => {}
                _ = shutdown.changed() => break,
            }
        }
        if last_renewal.is_some() {
            leading.send_replace(false);
            if let Err(error) = self.release().await {
                tracing::warn!(lease = %self.name, %error, "could not release the lease");
            }
        }
    }

    fn expired(&self) -> bool {
        match &self.observed {
            Some(observed) => observed.since.elapsed() > self.timings.lease_duration,
            None => true,
        }
    }

    /// One attempt: `Ok(true)` when this candidate holds the lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let duration = i32::try_from(self.timings.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    self.observe(Some(self.identity.clone()), Some(now));
                    Ok(true)
                }
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let renew_time = spec.renew_time.as_ref().map(|t| t.0);
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew_time != renew_time);
        if changed {
            self.observe(holder.clone(), renew_time);
        }
        let held_by_us = holder.as_deref() == Some(self.identity.as_str());
        if holder.is_some() && !held_by_us && !self.expired() {
            return Ok(false);
        }
        let mut new_spec = spec.clone();
        if !held_by_us {
            new_spec.acquire_time = Some(MicroTime(now));
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        new_spec.holder_identity = Some(self.identity.clone());
        new_spec.lease_duration_seconds = Some(duration);
        new_spec.renew_time = Some(MicroTime(now));
        lease.spec = Some(new_spec);
        // The resourceVersion in `lease` makes this a compare-and-swap against other candidates.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => {
                self.observe(Some(self.identity.clone()), Some(now));
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn observe(&mut self, holder: Option<String>, renew_time: Option<Timestamp>) {
        self.observed = Some(Observed {
            holder,
            renew_time,
            since: Instant::now(),
        });
    }

    /// Gives the lease up: no holder, so the next candidate takes it at once.
    async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        tracing::info!(lease = %self.name, "released the lease");
        Ok(())
    }
}
