//! Loopback ports for the servers the testkit starts.
//!
//! Ports come from below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), never
//! from it: a server that is stopped and started again on its port (an API outage test) would
//! otherwise race every outgoing connection on the machine, any of which may take that port as its
//! source port while the server is down. Within one process a port is handed out at most once.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

/// The lowest port considered; below it live well-known and commonly configured services.
const LOWEST: u16 = 15_000;
/// Used when the kernel's range cannot be read (not Linux): the IANA dynamic range's start.
const DEFAULT_EPHEMERAL_START: u16 = 49_152;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A TCP port on 127.0.0.1 that nothing listens on, outside the ephemeral range, not handed out
/// before by this process. The probe listener is closed again, so another process could bind the
/// port before the caller does; the callers' start-up retries cover that rare case.
pub(crate) fn free_port() -> std::io::Result<u16> {
    let end = ephemeral_start().max(LOWEST + 1);
    let span = u32::from(end - LOWEST);
    // Processes start at different offsets so that parallel test binaries rarely probe the same
    // ports; the process id is a sufficient spread for that.
    let offset = std::process::id() % span;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    for step in 0..span {
        let port = LOWEST + u16::try_from((offset + step) % span).unwrap_or(0);
        if handed_out.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free port on 127.0.0.1 in {LOWEST}..{end}"),
    ))
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        for port in ports {
            assert!((LOWEST..ephemeral_start()).contains(&port), "{port}");
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
