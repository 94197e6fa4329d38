//! The operator's own metrics and its HTTP endpoints: `/metrics` (Prometheus text) on the
//! metrics address, `/healthz` and `/readyz` on the health address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `{controller,result}` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Controller name, e.g. `kollectinventory`.
    pub controller: String,
    /// `success` or `failure`.
    pub result: String,
}

/// `{controller}` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    /// Controller name.
    pub controller: String,
}

/// `{type,result}` labels of connection probes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// Sink type, e.g. `git`.
    #[prometheus(flatten)]
    pub sink: SinkType,
    /// `success` or `failure`.
    pub result: String,
}

/// The `type` label (a Rust keyword, hence the wrapper).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkType {
    /// Sink type.
    pub r#type: String,
}

/// Metrics of the controllers.
#[derive(Clone, Debug, Default)]
pub struct ControllerMetrics {
    reconciles: Family<ReconcileLabels, Counter>,
    in_flight: Family<ControllerLabel, Gauge>,
    probes: Family<ProbeLabels, Counter>,
    shard_warnings: Counter,
    leader: Gauge,
}

impl ControllerMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "kollect_reconcile",
            "Reconciles by controller and result",
            metrics.reconciles.clone(),
        );
        registry.register(
            "kollect_workqueue_depth",
            "Reconciles in flight by controller",
            metrics.in_flight.clone(),
        );
        registry.register(
            "kollect_sink_connection_test",
            "Sink connection probes by sink type and result",
            metrics.probes.clone(),
        );
        registry.register(
            "kollect_leader_is_leader",
            "1 while this process leads (collects and exports), 0 while it waits for the lease",
            metrics.leader.clone(),
        );
        registry.register(
            "kollect_export_shard_warn",
            "Inventory passes at or above the row count that warrants splitting the inventory",
            metrics.shard_warnings.clone(),
        );
        metrics
    }

    /// Marks a reconcile of `controller` as started; the guard records its result when dropped.
    pub fn start(&self, controller: &'static str) -> ReconcileGuard {
        self.in_flight
            .get_or_create(&ControllerLabel {
                controller: controller.to_owned(),
            })
            .inc();
        ReconcileGuard {
            metrics: self.clone(),
            controller,
            success: false,
        }
    }

    /// Counts a connection probe.
    pub fn probe(&self, sink_type: &str, success: bool) {
        self.probes
            .get_or_create(&ProbeLabels {
                sink: SinkType {
                    r#type: sink_type.to_owned(),
                },
                result: if success { "success" } else { "failure" }.to_owned(),
            })
            .inc();
    }

    /// Records whether this process leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Counts an inventory pass at or above the shard warning threshold.
    pub fn shard_warning(&self) {
        self.shard_warnings.inc();
    }
}

/// Records one reconcile when dropped: `failure` unless [`ReconcileGuard::succeeded`] was called.
#[derive(Debug)]
pub struct ReconcileGuard {
    metrics: ControllerMetrics,
    controller: &'static str,
    success: bool,
}

impl ReconcileGuard {
    /// Marks the reconcile as successful.
    pub fn succeeded(&mut self) {
        self.success = true;
    }
}

impl Drop for ReconcileGuard {
    fn drop(&mut self) {
        let controller = self.controller.to_owned();
        self.metrics
            .in_flight
            .get_or_create(&ControllerLabel {
                controller: controller.clone(),
            })
            .dec();
        self.metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                controller,
                result: if self.success { "success" } else { "failure" }.to_owned(),
            })
            .inc();
    }
}

/// Shared state of the endpoints.
#[derive(Clone)]
struct Endpoints {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
}

async fn metrics(State(state): State<Endpoints>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encode metrics: {error}"),
        ),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<Endpoints>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

/// How `/metrics` is protected (`--metrics-secure`).
#[derive(Debug, Clone)]
pub struct Secure {
    /// The certificate it is served with.
    pub tls: super::metrics_auth::MetricsTls,
    /// Who may scrape it.
    pub auth: super::metrics_auth::MetricsAuth,
}

/// Binds and serves `/metrics` on `metrics` and the probes on `health` (the same listener when
/// the addresses are equal and `/metrics` is plain HTTP). Returns the bound addresses (port 0
/// picks a free port).
pub async fn serve(
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    metrics_addr: Option<SocketAddr>,
    health_addr: Option<SocketAddr>,
    secure: Option<Secure>,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>), String> {
    let state = Endpoints { registry, ready };
    let metrics_router = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    let health_router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    let shared = metrics_addr.is_some() && metrics_addr == health_addr;
    match secure {
        None if shared => {
            let router = metrics_router.merge(health_router);
            let address = spawn(router, metrics_addr).await?;
            Ok((address, address))
        }
        None => Ok((
            spawn(metrics_router, metrics_addr).await?,
            spawn(health_router, health_addr).await?,
        )),
        Some(_) if shared => Err(
            "--metrics-secure serves /metrics over HTTPS, so --metrics-bind-address must differ from \
             --health-probe-bind-address (the probes stay plain HTTP for the kubelet)"
                .into(),
        ),
        Some(secure) => {
            let router = metrics_router.layer(axum::middleware::from_fn_with_state(
                secure.auth.clone(),
                super::metrics_auth::require_access,
            ));
            Ok((
                spawn_tls(router, metrics_addr, &secure)?,
                spawn(health_router, health_addr).await?,
            ))
        }
    }
}

async fn spawn(router: Router, address: Option<SocketAddr>) -> Result<Option<SocketAddr>, String> {
    let Some(address) = address else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("bind {address}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("bind {address}: {e}"))?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, address = %local, "HTTP endpoint stopped");
        }
    });
    Ok(Some(local))
}

fn spawn_tls(
    router: Router,
    address: Option<SocketAddr>,
    secure: &Secure,
) -> Result<Option<SocketAddr>, String> {
    let Some(address) = address else {
        return Ok(None);
    };
    let (local, _task) =
        crate::serving::spawn_https("HTTPS metrics endpoint", address, secure.tls.config()?, router)?;
    Ok(Some(local))
}
