//! The collect-side metric series of the Go operator (decision O2), registered in a
//! `prometheus-client` registry by whoever serves `/metrics`:
//!
//! - `kollect_collect_items_total` (gauge): rows in the store;
//! - `kollect_collected_objects{profile,gvk}` (gauge): rows of the last target that changed,
//!   per profile and `group/version/kind`;
//! - `kollect_collect_dispatch_duration_seconds` (histogram): time to turn one event into rows;
//! - `kollect_collect_dispatch_queue_depth` (gauge) and
//!   `kollect_collect_dispatch_backpressure_total` (counter: enqueues that had to wait);
//! - `kollect_collect_namespace_mismatch_total{group,version,resource}` (counter);
//! - `kollect_informer_objects{group,version,resource}` (gauge: objects seen by the last full
//!   list) and `kollect_informer_cluster_wide_scope{group,version,resource}` (gauge, 1 when the
//!   watch covers all namespaces);
//! - `kollect_access_cache_total{result}` (counter: `hit` / `miss`);
//! - `kollect_reconcile_errors_total{kind="KollectTarget",error_class}` (counter);
//! - the domain series of profiles (refreshed every `RuntimeConfig::metrics_sample_interval`):
//!   `kollect_custom_resource_series{profile,gvk,series,namespace,target}`,
//!   `kollect_custom_resource_labeled_series{profile,gvk,series,namespace,target,<labels>}` (gauges)
//!   and `kollect_custom_resource_labeled_series_capped_total{profile,gvk,series,namespace,target}`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use kollect_core::api::v1alpha1::GroupVersionKind;

/// Buckets of `kollect_collect_dispatch_duration_seconds`.
pub(crate) const DISPATCH_BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// `{profile,gvk}` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProfileLabels {
    /// The target's `profileRef`.
    pub profile: String,
    /// `group/version/kind` (a leading `/` for the core group).
    pub gvk: String,
}

/// `{group,version,resource}` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name.
    pub resource: String,
}

/// `{result}` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `hit` or `miss`.
    pub result: String,
}

/// `{kind,error_class}` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The resource kind (`KollectTarget`).
    pub kind: String,
    /// `transient`, `terminal` or `forbidden`.
    pub error_class: String,
}

fn dispatch_histogram() -> Histogram {
    Histogram::new(DISPATCH_BUCKETS)
}

/// The collect metric families. Cloning shares the series.
#[derive(Clone, Debug)]
pub struct CollectMetrics {
    items: Gauge,
    collected: Family<ProfileLabels, Gauge>,
    dispatch_duration: Histogram,
    queue_depth: Gauge,
    backpressure: Counter,
    namespace_mismatch: Family<ResourceLabels, Counter>,
    informer_objects: Family<ResourceLabels, Gauge>,
    cluster_wide: Family<ResourceLabels, Gauge>,
    access_cache: Family<ResultLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    pub(crate) domain: Family<DomainLabels, Gauge<f64, AtomicU64>>,
    pub(crate) domain_labeled: Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>,
    pub(crate) domain_capped: Family<DomainLabels, Counter>,
}

/// `{profile,gvk,series,namespace,target}`: one domain series of one target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct DomainLabels {
    /// The target's profile.
    pub profile: String,
    /// `group/version/kind`.
    pub gvk: String,
    /// `object_count`, an attribute name or a `spec.metrics` name.
    pub series: String,
    /// The target's namespace (`""` for a cluster target).
    pub namespace: String,
    /// The target's name.
    pub target: String,
}

impl Default for CollectMetrics {
    /// Metrics recorded but not registered anywhere.
    fn default() -> Self {
        Self {
            items: Gauge::default(),
            collected: Family::default(),
            dispatch_duration: dispatch_histogram(),
            queue_depth: Gauge::default(),
            backpressure: Counter::default(),
            namespace_mismatch: Family::default(),
            informer_objects: Family::default(),
            cluster_wide: Family::default(),
            access_cache: Family::default(),
            errors: Family::default(),
            domain: Family::default(),
            domain_labeled: Family::default(),
            domain_capped: Family::default(),
        }
    }
}

/// The `gvk` label value.
pub(crate) fn gvk_label(gvk: &GroupVersionKind) -> String {
    format!("{}/{}/{}", gvk.group, gvk.version, gvk.kind)
}

impl CollectMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "kollect_collect_items_total",
            "Rows in the collection store",
            m.items.clone(),
        );
        registry.register(
            "kollect_collected_objects",
            "Rows collected per profile and kind",
            m.collected.clone(),
        );
        registry.register(
            "kollect_collect_dispatch_duration_seconds",
            "Time to turn one watch event into rows",
            m.dispatch_duration.clone(),
        );
        registry.register(
            "kollect_collect_dispatch_queue_depth",
            "Watch events waiting to be processed",
            m.queue_depth.clone(),
        );
        registry.register(
            "kollect_collect_dispatch_backpressure",
            "Watch events that waited for queue space",
            m.backpressure.clone(),
        );
        registry.register(
            "kollect_collect_namespace_mismatch",
            "Objects skipped because their namespace is outside a target's namespaces",
            m.namespace_mismatch.clone(),
        );
        registry.register(
            "kollect_informer_objects",
            "Objects returned by the last full list of a watched resource",
            m.informer_objects.clone(),
        );
        registry.register(
            "kollect_informer_cluster_wide_scope",
            "1 when a resource is watched in all namespaces, 0 when in selected namespaces",
            m.cluster_wide.clone(),
        );
        registry.register(
            "kollect_access_cache",
            "Access review cache lookups",
            m.access_cache.clone(),
        );
        registry.register(
            "kollect_reconcile_errors",
            "Collection and reconcile errors by kind and class",
            m.errors.clone(),
        );
        registry.register(
            "kollect_custom_resource_series",
            "Domain series of a target's rows: object_count and sums of numeric attributes or spec.metrics",
            m.domain.clone(),
        );
        registry.register(
            "kollect_custom_resource_labeled_series",
            "Labeled spec.metrics sums of a target's rows, per tuple of label values",
            m.domain_labeled.clone(),
        );
        registry.register(
            "kollect_custom_resource_labeled_series_capped",
            "Label tuples dropped beyond the per-series cap",
            m.domain_capped.clone(),
        );
        m
    }

    pub(crate) fn set_items(&self, n: usize) {
        self.items.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub(crate) fn set_collected(&self, profile: &str, gvk: &GroupVersionKind, n: usize) {
        self.collected
            .get_or_create(&ProfileLabels {
                profile: profile.to_owned(),
                gvk: gvk_label(gvk),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub(crate) fn observe_dispatch(&self, seconds: f64) {
        self.dispatch_duration.observe(seconds);
    }

    pub(crate) fn queue_depth(&self) -> &Gauge<i64, std::sync::atomic::AtomicI64> {
        &self.queue_depth
    }

    pub(crate) fn backpressure(&self) {
        self.backpressure.inc();
    }

    pub(crate) fn namespace_mismatch(&self, resource: &ResourceLabels) {
        self.namespace_mismatch.get_or_create(resource).inc();
    }

    pub(crate) fn informer(&self, resource: &ResourceLabels, objects: usize, cluster_wide: bool) {
        self.informer_objects
            .get_or_create(resource)
            .set(i64::try_from(objects).unwrap_or(i64::MAX));
        self.cluster_wide
            .get_or_create(resource)
            .set(i64::from(cluster_wide));
    }

    pub(crate) fn access_cache(&self, hit: bool) {
        self.access_cache
            .get_or_create(&ResultLabels {
                result: if hit { "hit" } else { "miss" }.to_owned(),
            })
            .inc();
    }

    pub(crate) fn target_error(&self, class: &str) {
        self.reconcile_error("KollectTarget", class);
    }

    /// Counts a reconcile error of `kind` (`KollectInventory`, ...) in
    /// `kollect_reconcile_errors_total`, the family the collection side also counts into.
    pub fn reconcile_error(&self, kind: &str, class: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
                error_class: class.to_owned(),
            })
            .inc();
    }
}
