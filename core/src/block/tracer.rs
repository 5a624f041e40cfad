//! [`Tracer`]: a [`BlockStore`] wrapper that reports every call to a closure, for debugging.

use core::fmt;

use super::{BlockNo, BlockStore, StoreError};

/// Which [`BlockStore`] method a [`TraceEvent`] reports.
#[non_exhaustive]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TraceOp {
    /// [`BlockStore::allocate`].
    Allocate,
    /// [`BlockStore::free`].
    Free,
    /// [`BlockStore::read`].
    Read,
    /// [`BlockStore::write`].
    Write,
    /// [`BlockStore::zero`].
    Zero,
}

/// One call seen by a [`Tracer`].
#[non_exhaustive]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TraceEvent {
    /// The method called.
    pub op: TraceOp,
    /// The block operated on; for `allocate`, the block handed out (`None` if it failed).
    pub block: Option<BlockNo>,
    /// Byte offset inside the block (0 for `allocate` and `free`).
    pub offset: usize,
    /// Bytes read, written or zeroed (0 for `allocate` and `free`).
    pub len: usize,
    /// What the call returned.
    pub result: Result<(), StoreError>,
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            TraceOp::Allocate => "allocate",
            TraceOp::Free => "free",
            TraceOp::Read => "read",
            TraceOp::Write => "write",
            TraceOp::Zero => "zero",
        };
        f.write_str(op)?;
        if let Some(block) = self.block {
            write!(f, " {block}")?;
        }
        if matches!(self.op, TraceOp::Read | TraceOp::Write | TraceOp::Zero) {
            write!(f, " [{}..+{}]", self.offset, self.len)?;
        }
        match self.result {
            Ok(()) => f.write_str(": ok"),
            Err(error) => write!(f, ": {error}"),
        }
    }
}

/// A [`BlockStore`] wrapper that reports every allocate, free, read, write and zero to a closure
/// after the call returns, for debugging (smoltcp's `Tracer`). Queries such as `used_blocks`
/// are not reported.
///
/// ```
/// use btfuse_core::block::{BlockStore, MemPool, StoreError, TraceOp, Tracer};
///
/// let store = Tracer::new(MemPool::new(1 << 20), |event| {
///     if event.op == TraceOp::Write {
///         assert_eq!(event.len, 3);
///     }
/// });
/// let block = store.allocate()?;
/// store.write(block, 0, b"abc")?;
/// # Ok::<(), StoreError>(())
/// ```
pub struct Tracer<B, F> {
    inner: B,
    trace: F,
}

impl<B: BlockStore, F: Fn(TraceEvent) + Send + Sync> Tracer<B, F> {
    /// Wraps `inner`, calling `trace` with one event per call.
    pub fn new(inner: B, trace: F) -> Tracer<B, F> {
        Tracer { inner, trace }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Unwraps the store.
    pub fn into_inner(self) -> B {
        self.inner
    }

    fn report(
        &self,
        op: TraceOp,
        block: Option<BlockNo>,
        offset: usize,
        len: usize,
        result: Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        (self.trace)(TraceEvent {
            op,
            block,
            offset,
            len,
            result,
        });
        result
    }
}

impl<B: fmt::Debug, F> fmt::Debug for Tracer<B, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracer")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B: BlockStore, F: Fn(TraceEvent) + Send + Sync> BlockStore for Tracer<B, F> {
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
        let result = self.inner.allocate();
        self.report(TraceOp::Allocate, result.ok(), 0, 0, result.map(drop))?;
        result
    }

    fn free(&self, block: BlockNo) -> Result<(), StoreError> {
        let result = self.inner.free(block);
        self.report(TraceOp::Free, Some(block), 0, 0, result)
    }

    fn read(&self, block: BlockNo, offset: usize, buf: &mut [u8]) -> Result<(), StoreError> {
        let result = self.inner.read(block, offset, buf);
        self.report(TraceOp::Read, Some(block), offset, buf.len(), result)
    }

    fn write(&self, block: BlockNo, offset: usize, data: &[u8]) -> Result<(), StoreError> {
        let result = self.inner.write(block, offset, data);
        self.report(TraceOp::Write, Some(block), offset, data.len(), result)
    }

    fn zero(&self, block: BlockNo, offset: usize, len: usize) -> Result<(), StoreError> {
        let result = self.inner.zero(block, offset, len);
        self.report(TraceOp::Zero, Some(block), offset, len, result)
    }

    fn allocate_for(&self, owner: u64, index: u64) -> Result<BlockNo, StoreError> {
        let result = self.inner.allocate_for(owner, index);
        self.report(TraceOp::Allocate, result.ok(), 0, 0, result.map(drop))?;
        result
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
