//! Pieces every btfuse daemon shares: the wall clock, sizes as tmpfs writes them, and the
//! signals that stop a daemon.

use btfuse_core::{Clock, Timestamp};

pub use crate::sys::{block_stop_signals, wait_for_stop};

/// The wall clock, for the engine's timestamps.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    }
}

/// Parses a size: a number of bytes with an optional `k`, `M`, `G` or `T` suffix (powers of
/// 1024), or a percentage of the machine's memory (`50%`), as tmpfs's `size=` does.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let bad =
        || format!("invalid size {text:?}: expected bytes with an optional k/M/G/T suffix or N%");
    if let Some(pct) = text.strip_suffix('%') {
        let pct: u64 = pct.parse().map_err(|_| bad())?;
        if pct == 0 || pct > 100 {
            return Err(bad());
        }
        return Ok(memory_bytes() / 100 * pct);
    }
    let (digits, shift) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_lowercase() {
                'k' => 10,
                'm' => 20,
                'g' => 30,
                't' => 40,
                _ => return Err(bad()),
            };
            (&text[..i], shift)
        }
        _ => (text, 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n && *v > 0)
        .ok_or_else(bad)
}

/// Raises the soft limit on open descriptors to the hard limit, as a daemon that holds one
/// per client connection should, and logs the limit it runs with (or why it could not).
pub fn raise_descriptor_limit() {
    match crate::sys::raise_nofile_limit() {
        Ok(limit) => log::debug!("open descriptor limit: {limit}"),
        Err(e) => log::warn!("cannot raise the open descriptor limit: {e}"),
    }
}

/// Physical memory in bytes (`MemTotal` of /proc/meminfo), or 1 GiB if unreadable.
pub fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(1 << 30, |kib| kib * 1024)
}
