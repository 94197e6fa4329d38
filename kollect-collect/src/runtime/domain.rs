//! The domain series of the registered targets (`kollect_custom_resource_series` and its labeled
//! and capped companions), refreshed every `RuntimeConfig::metrics_sample_interval`.
//!
//! Each sample recomputes, with [`crate::extract::metrics::compute`], the series of every target
//! whose partition changed (or whose registration did) since its last sample, and replaces that
//! target's previous series; the series of unregistered targets are removed. Unlike the Go
//! operator, which refreshed on a change at most once per interval and never after the last
//! one, a change is always reflected within one interval.
//!
//! Series carry the target (`namespace`, `target`) besides the Go labels (`profile`, `gvk`,
//! `series`), so that two targets of the same profile name do not overwrite each other.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kollect_core::collect::RowOwner;

use super::metrics::{CollectMetrics, DomainLabels, gvk_label};
use super::store::Partition;
use super::{Shared, TargetEntry};
use crate::extract::metrics::compute;

/// Label names the labeled series set themselves; attribute labels of these names are prefixed.
const RESERVED: [&str; 5] = ["profile", "gvk", "series", "namespace", "target"];

/// What was last exported for one target.
#[derive(Debug, Default)]
pub(crate) struct Sampled {
    /// Partition version and registration fingerprint the series correspond to.
    seen: Option<(u64, String)>,
    series: Vec<DomainLabels>,
    labeled: Vec<Vec<(String, String)>>,
}

/// Samples every `every` until the task is aborted.
pub(crate) async fn run(shared: Arc<Shared>, every: Duration) {
    let mut sampled = HashMap::new();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        sample(&shared, &mut sampled);
    }
}

/// One sample over the registered targets.
pub(crate) fn sample(shared: &Shared, sampled: &mut HashMap<RowOwner, Sampled>) {
    let targets = shared.registered();
    let live: HashSet<&RowOwner> = targets.iter().map(|t| &t.owner).collect();
    sampled.retain(|owner, previous| {
        let keep = live.contains(owner);
        if !keep {
            clear(&shared.metrics, previous);
        }
        keep
    });
    for target in &targets {
        let seen = (
            shared.store.version(&Partition::of(&target.owner)),
            target.fingerprint.clone(),
        );
        let previous = sampled.entry(target.owner.clone()).or_default();
        if previous.seen.as_ref() == Some(&seen) {
            continue;
        }
        let next = export(&shared.metrics, target, shared, previous);
        *previous = Sampled {
            seen: Some(seen),
            ..next
        };
    }
}

/// Sets the series of `target` and removes those of `previous` it no longer has.
fn export(metrics: &CollectMetrics, target: &TargetEntry, shared: &Shared, previous: &Sampled) -> Sampled {
    let rows = shared.store.snapshot_of(std::slice::from_ref(&target.owner));
    let computed = compute(target.profile.metric_specs(), rows.rows());
    let (namespace, name) = match &target.owner {
        RowOwner::Target { namespace, name } => (namespace.clone(), name.clone()),
        RowOwner::ClusterTarget { name } => (String::new(), name.clone()),
    };
    let labels = |series: &str| DomainLabels {
        profile: target.profile_name.clone(),
        gvk: gvk_label(&target.gvk),
        series: series.to_owned(),
        namespace: namespace.clone(),
        target: name.clone(),
    };
    let mut next = Sampled::default();
    for series in &computed.series {
        let key = labels(&series.name);
        metrics.domain.get_or_create(&key).set(series.value);
        next.series.push(key);
    }
    for series in &computed.labeled {
        let key = labeled_key(&labels(&series.name), &series.labels);
        metrics.domain_labeled.get_or_create(&key).set(series.value);
        next.labeled.push(key);
    }
    for (series, dropped) in &computed.capped {
        metrics
            .domain_capped
            .get_or_create(&labels(series))
            .inc_by(*dropped);
    }
    for stale in previous.series.iter().filter(|k| !next.series.contains(k)) {
        metrics.domain.remove(stale);
    }
    for stale in previous.labeled.iter().filter(|k| !next.labeled.contains(k)) {
        metrics.domain_labeled.remove(stale);
    }
    next
}

fn clear(metrics: &CollectMetrics, previous: &Sampled) {
    for key in &previous.series {
        metrics.domain.remove(key);
    }
    for key in &previous.labeled {
        metrics.domain_labeled.remove(key);
    }
}

/// The labels of one labeled series: the target's, then the attribute labels as valid
/// Prometheus label names (a reserved name gets an `attribute_` prefix).
fn labeled_key(base: &DomainLabels, attributes: &[(String, String)]) -> Vec<(String, String)> {
    let mut key = vec![
        ("profile".to_owned(), base.profile.clone()),
        ("gvk".to_owned(), base.gvk.clone()),
        ("series".to_owned(), base.series.clone()),
        ("namespace".to_owned(), base.namespace.clone()),
        ("target".to_owned(), base.target.clone()),
    ];
    for (name, value) in attributes {
        let mut label: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if label.starts_with(|c: char| c.is_ascii_digit()) || label.is_empty() {
            label.insert(0, '_');
        }
        if RESERVED.contains(&label.as_str()) {
            label.insert_str(0, "attribute_");
        }
        key.push((label, value.clone()));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_labels_become_valid_names_that_never_shadow_the_targets() {
        let base = DomainLabels {
            profile: "p".into(),
            gvk: "apps/v1/Deployment".into(),
            series: "replicas".into(),
            namespace: "team".into(),
            target: "t".into(),
        };
        let key = labeled_key(
            &base,
            &[
                ("namespace".into(), "prod".into()),
                ("app.kubernetes.io/name".into(), "web".into()),
                ("2nd".into(), "x".into()),
            ],
        );
        let names: Vec<&str> = key.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "profile",
                "gvk",
                "series",
                "namespace",
                "target",
                "attribute_namespace",
                "app_kubernetes_io_name",
                "_2nd"
            ]
        );
    }
}
