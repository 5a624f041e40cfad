//! [`FaultInjector`]: a [`BlockStore`] wrapper that fails calls on demand, for tests.

use core::sync::atomic::{AtomicU64, Ordering};

use super::{BlockNo, BlockStore, StoreError};

/// Countdown value meaning "no fault armed".
const DISARMED: u64 = u64::MAX;

/// Takes one step of a fault countdown: `true` when the call must fail.
fn countdown_fires(countdown: &AtomicU64) -> bool {
    // Relaxed: the countdown orders nothing but itself.
    let step = countdown.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| match left {
        DISARMED | 0 => None,
        left => Some(left - 1),
    });
    step == Err(0)
}

/// A [`BlockStore`] wrapper that makes calls fail on demand, for tests (smoltcp's
/// `FaultInjector`, redb's `FuzzerBackend`).
///
/// Once armed with [`fail_allocations_after(n)`](FaultInjector::fail_allocations_after), the
/// next `n` allocations pass through and every later one fails with [`StoreError::Full`] until
/// [`heal`](FaultInjector::heal). [`fail_writes_after(n)`](FaultInjector::fail_writes_after)
/// does the same for `write` and `zero` (one shared countdown) with [`StoreError::Io`]. A call
/// that fails never reaches the inner store, so it changes nothing there. Everything else
/// passes through untouched.
///
/// ```
/// use btfuse_core::block::{BlockStore, FaultInjector, MemPool, StoreError};
///
/// let store = FaultInjector::new(MemPool::new(1 << 20));
/// store.fail_allocations_after(1);
/// let kept = store.allocate()?;
/// assert_eq!(store.allocate(), Err(StoreError::Full));
/// store.heal();
/// assert!(store.allocate().is_ok());
/// # let _ = kept;
/// # Ok::<(), StoreError>(())
/// ```
#[derive(Debug)]
pub struct FaultInjector<B> {
    inner: B,
    allocations_left: AtomicU64,
    writes_left: AtomicU64,
    injected: AtomicU64,
}

impl<B: BlockStore> FaultInjector<B> {
    /// Wraps `inner` with no fault armed.
    pub fn new(inner: B) -> FaultInjector<B> {
        FaultInjector {
            inner,
            allocations_left: AtomicU64::new(DISARMED),
            writes_left: AtomicU64::new(DISARMED),
            injected: AtomicU64::new(0),
        }
    }

    /// Lets the next `successes` allocations through, then fails every allocation with
    /// [`StoreError::Full`]. `u64::MAX` disarms.
    pub fn fail_allocations_after(&self, successes: u64) {
        self.allocations_left.store(successes, Ordering::Relaxed);
    }

    /// Lets the next `successes` writes and zeroings through, then fails every one with
    /// [`StoreError::Io`]. `u64::MAX` disarms.
    pub fn fail_writes_after(&self, successes: u64) {
        self.writes_left.store(successes, Ordering::Relaxed);
    }

    /// Disarms every fault: all calls pass through again.
    pub fn heal(&self) {
        self.allocations_left.store(DISARMED, Ordering::Relaxed);
        self.writes_left.store(DISARMED, Ordering::Relaxed);
    }

    /// Number of calls failed on purpose so far.
    pub fn injected_faults(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Unwraps the store.
    pub fn into_inner(self) -> B {
        self.inner
    }

    fn inject(&self, countdown: &AtomicU64) -> bool {
        let fires = countdown_fires(countdown);
        if fires {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        fires
    }
}

impl<B: BlockStore> BlockStore for FaultInjector<B> {
    fn block_size(&self) -> usize {
        self.inner.block_size()
    }

    fn capacity_blocks(&self) -> u64 {
        self.inner.capacity_blocks()
    }

    fn used_blocks(&self) -> u64 {
        self.inner.used_blocks()
    }

    fn free_blocks(&self) -> u64 {
        self.inner.free_blocks()
    }

    fn allocate(&self) -> Result<BlockNo, StoreError> {
        if self.inject(&self.allocations_left) {
            return Err(StoreError::Full);
        }
        self.inner.allocate()
    }

    fn free(&self, block: BlockNo) -> Result<(), StoreError> {
        self.inner.free(block)
    }

    fn read(&self, block: BlockNo, offset: usize, buf: &mut [u8]) -> Result<(), StoreError> {
        self.inner.read(block, offset, buf)
    }

    fn write(&self, block: BlockNo, offset: usize, data: &[u8]) -> Result<(), StoreError> {
        if self.inject(&self.writes_left) {
            return Err(StoreError::Io);
        }
        self.inner.write(block, offset, data)
    }

    fn zero(&self, block: BlockNo, offset: usize, len: usize) -> Result<(), StoreError> {
        if self.inject(&self.writes_left) {
            return Err(StoreError::Io);
        }
        self.inner.zero(block, offset, len)
    }

    fn allocate_for(&self, owner: u64, index: u64) -> Result<BlockNo, StoreError> {
        if self.inject(&self.allocations_left) {
            return Err(StoreError::Full);
        }
        self.inner.allocate_for(owner, index)
    }

    fn placed_at(&self, block: BlockNo, owner: u64, index: u64) -> bool {
        self.inner.placed_at(block, owner, index)
    }

    fn file_changed(&self, owner: u64, size: u64) {
        self.inner.file_changed(owner, size);
    }

    fn file_gone(&self, owner: u64) {
        self.inner.file_gone(owner);
    }
}
