//! [`Closing`]: open files of the mount that hold a `flock` and had a descriptor closed since,
//! whose RELEASE may be on its way.
//!
//! Linux drops a `flock` in the last `close` of its open file, before `close` returns. Through
//! FUSE that is the RELEASE the kernel sends for the last close, which it queues before `close`
//! returns but does not wait for, and the daemon may serve a later request first, on another
//! thread. A process that another's `close` (or exit) let through, as a script running
//! `flock -n` after the previous holder ended, could then find the lock still held.
//!
//! Every `close` sends a FLUSH first, and waits for it. So an open file that holds a `flock`
//! and was flushed is marked here; a non-blocking `flock` that meets its lock is parked for up
//! to [`SETTLE`] (on a thread of its own, not one serving the kernel, since the RELEASE must
//! be served meanwhile), granted the moment the RELEASE drops the lock, and answered
//! `EWOULDBLOCK` if it does not come: the close was of one descriptor of several, and the
//! lock stays. The mark goes with the RELEASE, or with a settle that found the lock stayed.
//!
//! Bounded: at most [`MAX_CLOSING`] marks (a flush beyond marks nothing, and a lock call
//! meeting that file's lock is answered at once) and [`MAX_SETTLING`] settles at a time.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a non-blocking `flock` waits for the RELEASE of a flushed open file whose lock is
/// in its way.
pub(crate) const SETTLE: Duration = Duration::from_millis(200);

/// Most open files marked at once.
pub(crate) const MAX_CLOSING: usize = 4096;

/// Most settles waiting at once (each a thread for up to [`SETTLE`]); a request beyond is
/// answered at once.
pub(crate) const MAX_SETTLING: usize = 16;

/// Open files of the mount whose RELEASE may be on its way (see the
/// [module documentation](self)).
#[derive(Default)]
pub(crate) struct Closing {
    /// Engine handles of open files that held a `flock` when a descriptor of them closed.
    flushed: Mutex<HashSet<u64>>,
    /// Settles waiting.
    settling: AtomicUsize,
}

/// A place among the [`MAX_SETTLING`] settles; given back when dropped.
pub(crate) struct Settler(Arc<Closing>);

impl Drop for Settler {
    fn drop(&mut self) {
        self.0.settling.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Closing {
    fn flushed(&self) -> MutexGuard<'_, HashSet<u64>> {
        // A set of numbers cannot be left half-changed: a panic elsewhere must not stop closes.
        self.flushed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A descriptor of the open file `handle`, which holds a `flock`, was closed.
    pub(crate) fn closed(&self, handle: u64) {
        let mut flushed = self.flushed();
        if flushed.len() < MAX_CLOSING {
            flushed.insert(handle);
        }
    }

    /// The open file `handle` is gone, or a settle found its lock stayed: unmarks it.
    pub(crate) fn settled(&self, handle: u64) {
        self.flushed().remove(&handle);
    }

    /// Whether the open file `handle` may be about to be released.
    pub(crate) fn may_go(&self, handle: u64) -> bool {
        self.flushed().contains(&handle)
    }

    /// A place for one more settle, if there is room.
    pub(crate) fn settler(self: &Arc<Self>) -> Option<Settler> {
        self.settling
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_SETTLING).then_some(n + 1)
            })
            .ok()
            .map(|_| Settler(Arc::clone(self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_come_with_a_close_and_go_with_the_release() {
        let closing = Closing::default();
        assert!(!closing.may_go(3));
        closing.closed(3);
        assert!(closing.may_go(3));
        closing.settled(3);
        assert!(!closing.may_go(3));
    }

    #[test]
    fn marks_and_settles_are_bounded() {
        let closing = Arc::new(Closing::default());
        for handle in 0..MAX_CLOSING as u64 * 2 {
            closing.closed(handle);
        }
        assert_eq!(closing.flushed().len(), MAX_CLOSING);
        let settlers: Vec<Settler> = (0..MAX_SETTLING)
            .map(|_| closing.settler().expect("room"))
            .collect();
        assert!(closing.settler().is_none());
        drop(settlers);
        assert!(closing.settler().is_some());
    }
}
