//! [`MemorySink`]: a sink that keeps what it receives in memory, records every request, and can
//! be told to fail, to be slow, or to return a given error class.
//!
//! It behaves like a real destination from a reader's point of view: a full (or multipart)
//! snapshot replaces the inventory's rows once complete, a delta is applied to them when the sink
//! is configured to accept deltas, and a removal deletes them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use kollect_core::error::ErrorClass;
use kollect_core::model::{PartMarker, Row, RowKey, SharedRow};
use kollect_core::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};

/// One request the sink received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// An export of one part.
    Export {
        /// The inventory.
        inventory: InventoryRef,
        /// Its generation.
        generation: i64,
        /// Part marker, for multipart sets.
        marker: Option<PartMarker>,
        /// Rows in the part.
        rows: usize,
        /// Upserts and deletes of the delta, when one was attached.
        delta: Option<(usize, usize)>,
    },
    /// A removal.
    Remove {
        /// The inventory.
        inventory: InventoryRef,
    },
    /// A connection probe.
    Probe,
}

#[derive(Default)]
struct Behaviour {
    fail_next: VecDeque<ErrorClass>,
    fail_always: Option<ErrorClass>,
    delay: Duration,
}

#[derive(Default)]
struct Store {
    rows: HashMap<InventoryRef, BTreeMap<RowKey, Row>>,
    staging: HashMap<InventoryRef, Vec<Row>>,
}

struct Inner {
    sink_type: String,
    capabilities: Capabilities,
    requests: Mutex<Vec<Recorded>>,
    store: Mutex<Store>,
    behaviour: Mutex<Behaviour>,
}

/// An in-memory sink for tests. Clones share the same state.
#[derive(Clone)]
pub struct MemorySink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemorySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySink")
            .field("sink_type", &self.inner.sink_type)
            .finish_non_exhaustive()
    }
}

impl Default for MemorySink {
    fn default() -> Self {
        Self::new("memory", Capabilities::DOCUMENTS)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Test state stays usable after a panicking test thread.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemorySink {
    /// A sink reporting `sink_type` with `capabilities` (e.g. [`Capabilities::ROWS`]
    /// to behave like a database that applies deltas).
    pub fn new(sink_type: &str, capabilities: Capabilities) -> Self {
        Self {
            inner: Arc::new(Inner {
                sink_type: sink_type.to_owned(),
                capabilities,
                requests: Mutex::default(),
                store: Mutex::default(),
                behaviour: Mutex::default(),
            }),
        }
    }

    /// Every call from now on fails with `class` until [`MemorySink::heal`].
    pub fn fail_with(&self, class: ErrorClass) {
        lock(&self.inner.behaviour).fail_always = Some(class);
    }

    /// The next `n` calls fail with `class`.
    pub fn fail_next(&self, n: usize, class: ErrorClass) {
        lock(&self.inner.behaviour)
            .fail_next
            .extend(std::iter::repeat_n(class, n));
    }

    /// Stops failing.
    pub fn heal(&self) {
        let mut behaviour = lock(&self.inner.behaviour);
        behaviour.fail_always = None;
        behaviour.fail_next.clear();
    }

    /// Every call takes `delay` (on tokio's clock, so paused-time tests stay instant).
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.inner.behaviour).delay = delay;
    }

    /// Every request received so far, failed ones included.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner.requests).clone()
    }

    /// Number of export requests received.
    pub fn export_count(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| matches!(r, Recorded::Export { .. }))
            .count()
    }

    /// The rows held for `inventory` in canonical order, or `None` when it holds nothing.
    pub fn rows(&self, inventory: &InventoryRef) -> Option<Vec<Row>> {
        let store = lock(&self.inner.store);
        store.rows.get(inventory).map(|rows| {
            let mut rows: Vec<Row> = rows.values().cloned().collect();
            kollect_core::model::sort_canonical(&mut rows);
            rows
        })
    }

    async fn step(&self, recorded: Recorded) -> Result<(), SinkError> {
        lock(&self.inner.requests).push(recorded);
        let (delay, failure) = {
            let mut behaviour = lock(&self.inner.behaviour);
            let failure = behaviour.fail_always.or_else(|| behaviour.fail_next.pop_front());
            (behaviour.delay, failure)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match failure {
            Some(class) => Err(SinkError::new(
                class,
                format!("memory sink told to fail ({class})"),
            )),
            None => Ok(()),
        }
    }
}

fn keyed(rows: impl IntoIterator<Item = Row>) -> BTreeMap<RowKey, Row> {
    rows.into_iter().map(|row| (row.key(), row)).collect()
}

#[async_trait]
impl Sink for MemorySink {
    fn sink_type(&self) -> &str {
        &self.inner.sink_type
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities
    }

    async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        let part_rows: Vec<Row> = request.rows().map(SharedRow::to_row).collect();
        let delta = request
            .delta
            .as_ref()
            .filter(|_| self.inner.capabilities.accepts_delta);
        self.step(Recorded::Export {
            inventory: request.inventory.clone(),
            generation: request.generation,
            marker: request.marker(),
            rows: part_rows.len(),
            delta: delta.map(|d| (d.upserts.len(), d.deletes.len())),
        })
        .await?;
        let bytes = request.envelope().len() as u64;
        let mut store = lock(&self.inner.store);
        let inventory = request.inventory.clone();
        let complete = match request.marker() {
            None => Some(part_rows),
            Some(marker) => {
                let staging = store.staging.entry(inventory.clone()).or_default();
                if marker.index == 1 {
                    staging.clear();
                }
                staging.extend(part_rows);
                (marker.index == marker.total).then(|| store.staging.remove(&inventory).unwrap_or_default())
            }
        };
        if let Some(rows) = complete {
            match delta {
                Some(delta) => {
                    let current = store.rows.entry(inventory).or_default();
                    for key in &delta.deletes {
                        current.remove(key);
                    }
                    for row in &delta.upserts {
                        current.insert(row.key(), row.to_row());
                    }
                }
                None => {
                    store.rows.insert(inventory, keyed(rows));
                }
            }
        }
        Ok(ExportReceipt::written(bytes))
    }

    async fn remove(&self, request: &RemoveRequest) -> Result<(), SinkError> {
        self.step(Recorded::Remove {
            inventory: request.inventory.clone(),
        })
        .await?;
        let mut store = lock(&self.inner.store);
        store.rows.remove(&request.inventory);
        store.staging.remove(&request.inventory);
        Ok(())
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        self.step(Recorded::Probe).await?;
        Ok(ProbeReport::new(Duration::ZERO, "memory sink reachable"))
    }
}

#[async_trait]
impl crate::conformance::Inspect for MemorySink {
    async fn rows(&self, inventory: &InventoryRef) -> Result<Option<Vec<Row>>, String> {
        Ok(MemorySink::rows(self, inventory))
    }
}
