//! Sizes as tmpfs writes them, and the capacity and inode budget a daemon takes when none is
//! given.

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

/// Physical memory in bytes (`MemTotal` of /proc/meminfo), or 1 GiB if unreadable.
pub fn memory_bytes() -> u64 {
    memory_total().unwrap_or(1 << 30)
}

/// Physical memory in bytes (`MemTotal` of /proc/meminfo), if it can be read.
pub fn memory_total() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kib| kib * 1024)
}

/// A filesystem's capacity and inode budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizing {
    /// Capacity for file data, in bytes.
    pub size: u64,
    /// Most inodes.
    pub inodes: u64,
}

impl Sizing {
    /// `size` and `inodes` where given, else tmpfs's defaults: half of the machine's memory,
    /// and one inode per 4 KiB of the capacity (at least 1,024).
    pub fn with_defaults(size: Option<u64>, inodes: Option<u64>) -> Sizing {
        let size = size.unwrap_or_else(|| memory_bytes() / 2);
        Sizing {
            size,
            inodes: inodes.unwrap_or((size / 4096).max(1024)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_those_of_tmpfs() {
        let given = Sizing::with_defaults(Some(1 << 30), Some(7));
        assert_eq!((given.size, given.inodes), (1 << 30, 7));
        // One inode per 4 KiB of the capacity, at least 1,024.
        assert_eq!(Sizing::with_defaults(Some(1 << 30), None).inodes, 1 << 18);
        assert_eq!(Sizing::with_defaults(Some(1 << 20), None).inodes, 1024);
        let half = Sizing::with_defaults(None, None);
        assert_eq!(half.size, memory_bytes() / 2);
        assert_eq!(half.inodes, (half.size / 4096).max(1024));
    }
}
