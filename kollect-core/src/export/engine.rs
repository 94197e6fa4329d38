//! The per-inventory export engine: decide, partition, deliver, remember.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::jiff::Timestamp;

use super::binding::{Binding, BindingKey};
use super::report::{ExportReport, RemoveReport, SinkOutcome, SinkReport};
use crate::middleware::coalesce::{CoalesceDecision, CoalesceState, Coalescer};
use crate::middleware::metrics::ExportMetrics;
use crate::model::{Checksum, ContentChecksum, Delta, ExportMeta, Part, Snapshot, partition};
use crate::sink::{ChecksumBasis, ExportRequest, InventoryRef, RemoveRequest, Sink, SinkError};

/// What the engine remembers between passes, per binding, for deltas (decision X6): the last
/// snapshot the sink acknowledged.
type Acked = HashMap<BindingKey, Snapshot>;

/// Exports one inventory to its bound sinks, pass after pass.
///
/// A pass ([`InventoryExporter::export`]) decides per binding whether an export is due (content or
/// generation changed, or the interval passed for unchanged content), partitions the snapshot
/// within the binding's ceiling, delivers the parts in order (stopping at the first failure), and
/// runs different sinks concurrently. Successful exports are remembered so that the next pass can
/// coalesce and can hand delta-capable sinks only what changed.
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
/// # async fn example() {
/// use std::time::Duration;
/// use k8s_openapi::jiff::{SignedDuration, Timestamp};
/// use kollect_core::api::v1alpha1::SinkFamily;
/// use kollect_core::export::{Binding, BindingKey, InventoryExporter, SinkOutcome, StackConfig, build_stack};
/// use kollect_core::middleware::ExportMetrics;
/// use kollect_core::model::Snapshot;
/// use kollect_core::sink::InventoryRef;
///
/// let metrics = ExportMetrics::default();
/// let binding = Binding {
///     key: BindingKey::new(SinkFamily::Snapshot, "last"),
///     sink: build_stack("team-a/last", Last::default(), &StackConfig::default(), &metrics),
///     interval: Duration::from_secs(300),
///     ceiling: kollect_core::export::DEFAULT_MAX_EXPORT_BYTES,
/// };
/// let mut exporter = InventoryExporter::new(InventoryRef::namespaced("team-a", "apps"), "example", metrics);
/// let snapshot = Snapshot::new(Vec::new());
/// let now = Timestamp::now();
/// let first = exporter.export(&snapshot, 1, std::slice::from_ref(&binding), now).await;
/// assert!(matches!(first.sinks[0].outcome, SinkOutcome::Exported { .. }));
/// // The same content a minute later is not sent again before the interval.
/// let later = now.checked_add(SignedDuration::from_mins(1)).unwrap();
/// let second = exporter.export(&snapshot, 1, std::slice::from_ref(&binding), later).await;
/// assert!(matches!(second.sinks[0].outcome, SinkOutcome::Debounced { .. }));
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(example());
/// ```
#[derive(Debug)]
pub struct InventoryExporter {
    inventory: InventoryRef,
    controller: String,
    coalescer: Coalescer<BindingKey>,
    acked: Acked,
    metrics: ExportMetrics,
}

struct Planned {
    key: BindingKey,
    sink: Arc<dyn Sink>,
    checksum: ContentChecksum,
    requests: Vec<ExportRequest>,
}

impl InventoryExporter {
    /// An exporter for `inventory`; `controller` labels `kollect_export_debounced_total`.
    pub fn new(inventory: InventoryRef, controller: impl Into<String>, metrics: ExportMetrics) -> Self {
        Self {
            inventory,
            controller: controller.into(),
            coalescer: Coalescer::new(),
            acked: HashMap::new(),
            metrics,
        }
    }

    /// The inventory this exporter serves.
    pub fn inventory(&self) -> &InventoryRef {
        &self.inventory
    }

    /// Seeds what a previous process exported (from `status.sinkExports[]`, decision X7), so
    /// that unchanged content is not exported again after a restart. The first export after a
    /// seed carries no delta: the sink reconciles against the full snapshot.
    pub fn seed(
        &mut self,
        key: BindingKey,
        last_export: Timestamp,
        last_checksum: Checksum,
        generation: i64,
    ) {
        self.coalescer.seed(
            key,
            CoalesceState {
                last_export,
                last_checksum: ContentChecksum::known(last_checksum),
                last_generation: generation,
            },
        );
    }

    /// Forgets bindings that are no longer bound.
    pub fn retain_bindings(&mut self, bound: &[BindingKey]) {
        self.acked.retain(|key, _| bound.contains(key));
        self.coalescer.retain(|key| bound.contains(key));
    }

    /// The coalescing state of a binding, if any.
    pub fn state(&self, key: &BindingKey) -> Option<&CoalesceState> {
        self.coalescer.state(key)
    }

    /// Runs one export pass of `snapshot` at `generation` to `bindings`.
    pub async fn export(
        &mut self,
        snapshot: &Snapshot,
        generation: i64,
        bindings: &[Binding],
        now: Timestamp,
    ) -> ExportReport {
        let meta = ExportMeta {
            generation: Some(generation),
            cluster: Some(self.inventory.cluster.clone()).filter(|c| !c.is_empty()),
            exported_at: now,
        };
        let mut reports: Vec<Option<SinkReport>> = vec![None; bindings.len()];
        let mut planned: Vec<(usize, Planned)> = Vec::new();
        // Bindings with the same ceiling share one partitioning: encoding every row is the
        // expensive part of a pass, so it is done once per distinct ceiling, not per sink.
        let mut partitions: HashMap<Option<u64>, Result<Vec<Arc<Part>>, SinkError>> = HashMap::new();
        for (index, binding) in bindings.iter().enumerate() {
            // `None` = one whole part (databases); documents and messages are bounded.
            let ceiling = binding.sink.capabilities().ceiling(binding.ceiling);
            let parts = partitions
                .entry(ceiling)
                .or_insert_with(|| match ceiling {
                    None => Ok(vec![Arc::new(Part::whole(snapshot))]),
                    Some(ceiling) => partition(snapshot, &meta, Some(ceiling))
                        .map(|p| p.parts.into_iter().map(Arc::new).collect())
                        .map_err(SinkError::from),
                })
                .clone();
            match parts.map(|parts| self.plan(binding, &parts, snapshot, generation, now)) {
                Ok(Some(plan)) => planned.push((index, plan)),
                Ok(None) => {
                    let next_due = self.coalescer.next_due(&binding.key, binding.interval, now);
                    self.metrics.debounced(&self.controller, 1);
                    reports[index] = Some(self.report(binding, SinkOutcome::Debounced { next_due }));
                }
                Err(error) => {
                    self.metrics.error("payload_too_large");
                    reports[index] = Some(self.report(binding, failed(&error)));
                }
            }
        }

        let deliveries = planned.iter().map(|(_, plan)| deliver(plan));
        let results = join_all(deliveries).await;

        for ((index, plan), result) in planned.into_iter().zip(results) {
            let binding = &bindings[index];
            let outcome = match result {
                Ok(bytes) => {
                    self.coalescer
                        .record(plan.key.clone(), plan.checksum.clone(), generation, now);
                    self.acked.insert(plan.key.clone(), snapshot.clone());
                    SinkOutcome::Exported {
                        checksum: plan.checksum,
                        parts: u32::try_from(plan.requests.len()).unwrap_or(u32::MAX),
                        bytes,
                        with_delta: plan.requests.first().is_some_and(|r| r.delta.is_some()),
                    }
                }
                Err(error) => failed(&error),
            };
            reports[index] = Some(self.report(binding, outcome));
        }
        ExportReport {
            sinks: reports.into_iter().flatten().collect(),
            item_count: snapshot.len(),
        }
    }

    /// Decides whether `binding` needs an export of `parts`; `None` means debounced.
    fn plan(
        &self,
        binding: &Binding,
        parts: &[Arc<Part>],
        snapshot: &Snapshot,
        generation: i64,
        now: Timestamp,
    ) -> Option<Planned> {
        let capabilities = binding.sink.capabilities();
        // Snapshot sinks checksum their parts, which they hash anyway to write them; for the
        // others the content's fingerprint stays pending until the status asks for it.
        let checksum = match capabilities.checksum {
            ChecksumBasis::Parts => ContentChecksum::known(crate::model::partitions_checksum(
                parts.iter().map(|p| p.checksum()),
            )),
            ChecksumBasis::Content => ContentChecksum::of(snapshot),
        };
        if let CoalesceDecision::Debounce { .. } =
            self.coalescer
                .decide(&binding.key, &checksum, generation, binding.interval, now)
        {
            return None;
        }
        let delta = if capabilities.accepts_delta {
            self.acked
                .get(&binding.key)
                .map(|previous| Arc::new(Delta::between(previous, snapshot)))
        } else {
            None
        };
        let requests = parts
            .iter()
            .map(|part| ExportRequest {
                inventory: self.inventory.clone(),
                generation,
                exported_at: now,
                snapshot: snapshot.clone(),
                part: Arc::clone(part),
                delta: delta.clone(),
            })
            .collect();
        Some(Planned {
            key: binding.key.clone(),
            sink: Arc::clone(&binding.sink),
            checksum,
            requests,
        })
    }

    fn report(&self, binding: &Binding, outcome: SinkOutcome) -> SinkReport {
        let state = self.coalescer.state(&binding.key);
        SinkReport {
            key: binding.key.clone(),
            interval: binding.interval,
            last_export: state.map(|s| s.last_export),
            last_checksum: state.map(|s| s.last_checksum.clone()),
            outcome,
        }
    }

    /// Removes everything this inventory exported from every bound sink (inventory deletion,
    /// decision X3). Sinks are asked concurrently; state of sinks that succeeded is forgotten.
    pub async fn remove(&mut self, bindings: &[Binding], generation: i64) -> RemoveReport {
        let request = RemoveRequest {
            inventory: self.inventory.clone(),
            generation,
        };
        // A sink that holds nothing of the inventory (it only streams records) has nothing to
        // remove and is reported as done.
        let results = join_all(bindings.iter().map(|b| {
            let request = &request;
            async move {
                if b.sink.capabilities().needs_removal {
                    b.sink.remove(request).await
                } else {
                    Ok(())
                }
            }
        }))
        .await;
        let mut report = RemoveReport::default();
        for (binding, result) in bindings.iter().zip(results) {
            if result.is_ok() {
                self.acked.remove(&binding.key);
                self.coalescer.forget(&binding.key);
            }
            report.results.push((binding.key.clone(), result));
        }
        report
    }
}

fn failed(error: &SinkError) -> SinkOutcome {
    SinkOutcome::Failed {
        class: error.class(),
        message: error.message().to_owned(),
    }
}

/// Sends the parts of one binding in order; the first failure stops the set.
async fn deliver(plan: &Planned) -> Result<u64, SinkError> {
    let mut bytes = 0;
    for request in &plan.requests {
        let receipt = plan
            .sink
            .export(request)
            .await
            .map_err(|e| match request.marker() {
                Some(m) => e.context(format!("part {} of {}", m.index, m.total)),
                None => e,
            })?;
        bytes += receipt.bytes;
    }
    Ok(bytes)
}
