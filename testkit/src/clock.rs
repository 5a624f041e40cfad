//! Clocks for tests.

use btfuse_core::{Clock, Timestamp};
use std::sync::atomic::{AtomicI64, Ordering};

/// A clock that moves only when told to, so two filesystems driven step by step see the same
/// times. Starts at one second past the epoch; each [`tick`](ManualClock::tick) adds 1 ns.
#[derive(Debug)]
pub struct ManualClock {
    nanos: AtomicI64,
}

impl ManualClock {
    /// A clock at 1 s past the epoch.
    pub fn new() -> ManualClock {
        ManualClock {
            nanos: AtomicI64::new(1_000_000_000),
        }
    }

    /// Advance by `nanos` nanoseconds.
    pub fn advance(&self, nanos: i64) {
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }

    /// Advance by one nanosecond.
    pub fn tick(&self) {
        self.advance(1);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        let n = self.nanos.load(Ordering::SeqCst);
        Timestamp {
            secs: n.div_euclid(1_000_000_000),
            nanos: n.rem_euclid(1_000_000_000) as u32,
        }
    }
}
