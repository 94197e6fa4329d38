//! What the harnesses share: settings from the environment, the ConfigMaps they load and the
//! profile that reads them, and process measurements from /proc.

#![allow(dead_code)]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// `name` from the environment, or `default`.
pub(crate) fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// ConfigMap `i` of a load: about 1.2 KiB, two labels, a colour that changes flip.
pub(crate) fn configmap(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("obj-{i:06}"), "labels": {"app": "scale", "shard": (i % 10).to_string()}},
        "data": {"color": if i.is_multiple_of(2) { "red" } else { "blue" }, "payload": "x".repeat(1024)},
    })
}

/// The ConfigMap profile's spec (YAML, indented for a `spec:` block): two JSONPath attributes
/// and one CEL attribute; the first is the one a change sets.
pub(crate) const CONFIGMAP_PROFILE: &str = "targetGVK: {version: v1, kind: ConfigMap}
  attributes:
    - {name: value, path: '$.data.color'}
    - {name: app, path: '$.metadata.labels.app'}
    - {name: keys, path: 'cel:size(object.data)'}";

/// RSS, peak RSS (KiB) and CPU seconds of a process, from /proc.
#[derive(Clone, Copy, Default)]
pub(crate) struct Usage {
    /// `VmRSS`.
    pub(crate) rss_kib: u64,
    /// `VmHWM`.
    pub(crate) peak_kib: u64,
    /// User and system time.
    pub(crate) cpu_seconds: f64,
}

/// The usage of process `pid` now (zeros once it is gone).
pub(crate) fn usage(pid: u32, ticks_per_second: f64) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Usage {
        rss_kib: field("VmRSS:"),
        peak_kib: field("VmHWM:"),
        cpu_seconds: (tick(11) + tick(12)) / ticks_per_second,
    }
}

/// Clock ticks per second of /proc's CPU times.
pub(crate) fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// KiB as MiB for a table.
pub(crate) fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// A process run to its end: wall time, and its peak RSS and CPU as last seen before it exited.
pub(crate) struct Measured {
    /// From spawn to exit.
    pub(crate) wall: Duration,
    /// Last usage read while it ran (sampled every 2 ms; VmHWM only grows).
    pub(crate) usage: Usage,
    /// Whether it exited with status 0.
    pub(crate) success: bool,
}

/// Spawns `command` and samples it until it exits.
pub(crate) fn measure(command: &mut Command, ticks_per_second: f64) -> Measured {
    let started = Instant::now();
    let mut child: Child = command.spawn().expect("spawn the measured process");
    let pid = child.id();
    let mut last = Usage::default();
    loop {
        let now = usage(pid, ticks_per_second);
        if let Ok(Some(status)) = child.try_wait() {
            return Measured {
                wall: started.elapsed(),
                usage: last,
                success: status.success(),
            };
        }
        if now.peak_kib > 0 {
            last = now;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
