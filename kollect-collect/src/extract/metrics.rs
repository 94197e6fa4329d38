//! Domain metrics computed from the rows of one profile, as a pure function.
//!
//! Without `spec.metrics`, every numeric attribute is summed per attribute name. With
//! `spec.metrics`, an entry without labels sums `attributes[path]`; an entry with labels sums per
//! tuple of label values (the attribute values as strings, null as ""), at most
//! [`MAX_LABELED_TUPLES`] tuples per series. Numbers and strings that parse as a number count;
//! booleans do not.

use std::collections::BTreeMap;

use kollect_core::api::v1alpha1::MetricSpec;
use kollect_core::model::{SharedRow, canonical};
use serde_json::Value;

/// Label tuples kept per labeled series; further tuples are dropped and counted.
pub const MAX_LABELED_TUPLES: usize = 200;

/// An unlabeled series (`kollect_custom_resource_series`).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Series name (`object_count`, an attribute name or a metric name).
    pub name: String,
    /// Sum.
    pub value: f64,
}

/// A labeled series (`kollect_custom_resource_labeled_series`).
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledSeries {
    /// Metric name.
    pub name: String,
    /// Label names and values, sorted by label name.
    pub labels: Vec<(String, String)>,
    /// Sum.
    pub value: f64,
}

/// Everything computed for one (profile, gvk).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainMetrics {
    /// Unlabeled series, `object_count` first.
    pub series: Vec<Series>,
    /// Labeled series, sorted per metric by their label key.
    pub labeled: Vec<LabeledSeries>,
    /// Dropped tuples per metric name beyond the cap.
    pub capped: BTreeMap<String, u64>,
}

/// The numeric value of an attribute, if it has one.
pub fn numeric(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn label_value(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => canonical::to_string(other),
    }
}

/// Computes the series of a profile over `rows`, decoding each row's attributes once.
pub fn compute<'a, I>(metrics: &[MetricSpec], rows: I) -> DomainMetrics
where
    I: IntoIterator<Item = &'a SharedRow>,
    I::IntoIter: ExactSizeIterator,
{
    let rows = rows.into_iter();
    let mut out = DomainMetrics::default();
    out.series.push(Series {
        name: "object_count".to_owned(),
        value: rows.len() as f64,
    });
    let label_names: Vec<Vec<String>> = metrics
        .iter()
        .map(|metric| {
            let mut names = metric.labels.clone();
            names.sort();
            names
        })
        .collect();
    // Without metrics: a sum per numeric attribute name. With them: a total per unlabeled
    // metric and the label tuples' sums per labeled one.
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    let mut totals = vec![0.0; metrics.len()];
    let mut tuples: Vec<Tuples> = vec![Tuples::new(); metrics.len()];
    for attrs in rows.filter_map(SharedRow::attributes) {
        if metrics.is_empty() {
            for (name, value) in &attrs {
                if let Some(n) = numeric(value) {
                    match sums.get_mut(name.as_str()) {
                        Some(sum) => *sum += n,
                        None => {
                            sums.insert(name.clone(), n);
                        }
                    }
                }
            }
            continue;
        }
        for (index, metric) in metrics.iter().enumerate() {
            let Some(n) = attrs.get(&metric.path).and_then(numeric) else {
                continue;
            };
            if metric.labels.is_empty() {
                totals[index] += n;
                continue;
            }
            let labels: Vec<(String, String)> = label_names[index]
                .iter()
                .map(|l| (l.clone(), label_value(attrs.get(l))))
                .collect();
            let key: String = labels.iter().map(|(k, v)| format!("{k}={v}\0")).collect();
            tuples[index].entry(key).or_insert_with(|| (labels, 0.0)).1 += n;
        }
    }
    out.series
        .extend(sums.into_iter().map(|(name, value)| Series { name, value }));
    for ((metric, total), tuples) in metrics.iter().zip(totals).zip(tuples) {
        if metric.labels.is_empty() {
            out.series.push(Series {
                name: metric.name.clone(),
                value: total,
            });
            continue;
        }
        let dropped = tuples.len().saturating_sub(MAX_LABELED_TUPLES);
        if dropped > 0 {
            out.capped.insert(metric.name.clone(), dropped as u64);
        }
        out.labeled.extend(
            tuples
                .into_values()
                .take(MAX_LABELED_TUPLES)
                .map(|(labels, value)| LabeledSeries {
                    name: metric.name.clone(),
                    labels,
                    value,
                }),
        );
    }
    out
}

/// Label tuples of one labeled metric by their joined key: the labels and their sum.
type Tuples = BTreeMap<String, (Vec<(String, String)>, f64)>;

#[cfg(test)]
mod tests {
    use super::*;
    use kollect_core::model::Row;
    use serde_json::json;

    fn row(attrs: Value) -> SharedRow {
        SharedRow::new(Row {
            attributes: attrs.as_object().cloned(),
            ..Row::default()
        })
    }

    #[test]
    fn without_metrics_every_numeric_attribute_is_summed() {
        let rows = vec![
            row(json!({"replicas": 2, "cpu": "0.5", "enabled": true, "name": "a"})),
            row(json!({"replicas": 3, "cpu": "1.5", "enabled": false, "name": "b"})),
        ];
        let m = compute(&[], &rows);
        assert_eq!(
            m.series,
            vec![
                Series {
                    name: "object_count".into(),
                    value: 2.0
                },
                Series {
                    name: "cpu".into(),
                    value: 2.0
                },
                Series {
                    name: "replicas".into(),
                    value: 5.0
                },
            ]
        );
        assert!(m.labeled.is_empty());
    }

    #[test]
    fn labeled_series_sum_per_sorted_tuple() {
        let rows = vec![
            row(json!({"replicas": 2, "team": "a", "env": "prod"})),
            row(json!({"replicas": 3, "team": "a", "env": "prod"})),
            row(json!({"replicas": 1, "team": "b"})),
            row(json!({"replicas": "x", "team": "c"})),
        ];
        let metrics = vec![
            MetricSpec {
                name: "total".into(),
                path: "replicas".into(),
                labels: vec![],
            },
            MetricSpec {
                name: "by_team".into(),
                path: "replicas".into(),
                labels: vec!["team".into(), "env".into()],
            },
        ];
        let m = compute(&metrics, &rows);
        assert_eq!(
            m.series[1],
            Series {
                name: "total".into(),
                value: 6.0
            }
        );
        assert_eq!(
            m.labeled,
            vec![
                LabeledSeries {
                    name: "by_team".into(),
                    labels: vec![("env".into(), "".into()), ("team".into(), "b".into())],
                    value: 1.0
                },
                LabeledSeries {
                    name: "by_team".into(),
                    labels: vec![("env".into(), "prod".into()), ("team".into(), "a".into())],
                    value: 5.0
                },
            ]
        );
    }

    #[test]
    fn tuples_are_capped() {
        let rows: Vec<SharedRow> = (0..250).map(|i| row(json!({"n": 1, "id": i}))).collect();
        let metrics = vec![MetricSpec {
            name: "per_id".into(),
            path: "n".into(),
            labels: vec!["id".into()],
        }];
        let m = compute(&metrics, &rows);
        assert_eq!(m.labeled.len(), MAX_LABELED_TUPLES);
        assert_eq!(m.capped.get("per_id"), Some(&50));
    }
}
