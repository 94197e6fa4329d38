//! A scripted sink for middleware tests: each call consumes the next scripted outcome.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;

use crate::error::ErrorClass;
use crate::model::Snapshot;
use crate::sink::{
    Capabilities, ExportReceipt, ExportRequest, InventoryRef, ProbeReport, RemoveRequest, Sink, SinkError,
};

#[derive(Clone, Default)]
pub(crate) struct ScriptedSink {
    script: Arc<Mutex<VecDeque<Result<(), ErrorClass>>>>,
    calls: Arc<AtomicUsize>,
    delay: Duration,
}

impl ScriptedSink {
    pub(crate) fn new(script: impl IntoIterator<Item = Result<(), ErrorClass>>) -> Self {
        Self {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            ..Self::default()
        }
    }

    pub(crate) fn slow(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn step(&self) -> Result<(), SinkError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let next = self.script.lock().unwrap().pop_front().unwrap_or(Ok(()));
        next.map_err(|class| SinkError::new(class, format!("scripted {class} failure")))
    }
}

#[async_trait]
impl Sink for ScriptedSink {
    fn sink_type(&self) -> &str {
        "scripted"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::DOCUMENTS
    }

    async fn export(&self, _: &ExportRequest) -> Result<ExportReceipt, SinkError> {
        self.step().await.map(|()| ExportReceipt::default())
    }

    async fn remove(&self, _: &RemoveRequest) -> Result<(), SinkError> {
        self.step().await
    }

    async fn probe(&self) -> Result<ProbeReport, SinkError> {
        self.step().await.map(|()| ProbeReport::new(Duration::ZERO, "ok"))
    }
}

pub(crate) fn request() -> ExportRequest {
    ExportRequest::full(
        InventoryRef::namespaced("ns", "inv"),
        1,
        Timestamp::UNIX_EPOCH,
        Snapshot::empty(),
    )
}

pub(crate) fn remove_request() -> RemoveRequest {
    RemoveRequest {
        inventory: InventoryRef::namespaced("ns", "inv"),
        generation: 1,
    }
}
