//! Effective per-binding settings: the export interval and the size ceiling.

use std::time::Duration;

use crate::GoDuration;

/// Interval used when neither the ref, the sink nor the inventory sets one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// No interval is longer than a day.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// The operator's default `--max-export-bytes` (1.5 MiB).
pub const DEFAULT_MAX_EXPORT_BYTES: u64 = 1_572_864;

fn positive(d: Option<GoDuration>) -> Option<Duration> {
    d.and_then(GoDuration::as_std)
}

/// The interval of one binding: the ref's `exportMinInterval`, else the sink's, else the
/// inventory's, else 30 s; then raised to the scope floor when it is below it (including `0s`),
/// and capped at 24 h.
pub fn effective_interval(
    binding: Option<GoDuration>,
    sink: Option<GoDuration>,
    inventory: Option<GoDuration>,
    scope_floor: Option<GoDuration>,
) -> Duration {
    let chosen = positive(binding)
        .or(positive(sink))
        .or(positive(inventory))
        .unwrap_or(DEFAULT_INTERVAL);
    let floored = match positive(scope_floor) {
        Some(floor) if !floor.is_zero() && (chosen.is_zero() || chosen < floor) => floor,
        _ => chosen,
    };
    floored.min(MAX_INTERVAL)
}

/// The size ceiling of one binding: a positive ref `maxExportBytes` replaces the inventory's
/// value, which replaces the global cap (values are replaced, not clamped against each other).
pub fn effective_ceiling(binding: Option<i64>, inventory: Option<i64>, global_cap: u64) -> u64 {
    let positive = |v: Option<i64>| v.filter(|v| *v > 0).and_then(|v| u64::try_from(v).ok());
    positive(binding).or(positive(inventory)).unwrap_or(global_cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Option<GoDuration> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn interval_precedence_floor_and_cap() {
        assert_eq!(effective_interval(None, None, None, None), DEFAULT_INTERVAL);
        assert_eq!(
            effective_interval(None, None, d("15s"), None),
            Duration::from_secs(15)
        );
        assert_eq!(
            effective_interval(None, d("1m"), d("15s"), None),
            Duration::from_secs(60)
        );
        assert_eq!(
            effective_interval(d("1h"), d("1m"), d("15s"), None),
            Duration::from_secs(3600)
        );
        assert_eq!(
            effective_interval(d("0s"), d("1m"), None, None),
            Duration::ZERO,
            "0s on the ref wins"
        );
        assert_eq!(
            effective_interval(d("0s"), None, None, d("30s")),
            Duration::from_secs(30),
            "0s is raised to the floor"
        );
        assert_eq!(
            effective_interval(d("10s"), None, None, d("30s")),
            Duration::from_secs(30)
        );
        assert_eq!(
            effective_interval(d("1m"), None, None, d("30s")),
            Duration::from_secs(60)
        );
        assert_eq!(effective_interval(d("48h"), None, None, None), MAX_INTERVAL);
        assert_eq!(
            effective_interval(d("-5s"), None, d("20s"), None),
            Duration::from_secs(20),
            "negative is ignored"
        );
    }

    #[test]
    fn ceiling_replaces_instead_of_clamping() {
        assert_eq!(
            effective_ceiling(None, None, DEFAULT_MAX_EXPORT_BYTES),
            DEFAULT_MAX_EXPORT_BYTES
        );
        assert_eq!(
            effective_ceiling(None, Some(1_048_576), DEFAULT_MAX_EXPORT_BYTES),
            1_048_576
        );
        assert_eq!(
            effective_ceiling(Some(524_288), Some(1_048_576), DEFAULT_MAX_EXPORT_BYTES),
            524_288
        );
        assert_eq!(
            effective_ceiling(Some(2_000_000), Some(1_048_576), DEFAULT_MAX_EXPORT_BYTES),
            2_000_000
        );
        assert_eq!(effective_ceiling(Some(0), Some(-1), 99), 99);
    }
}
