//! Fixed-size blocks: the [`BlockStore`] trait, the in-memory [`MemPool`], and wrappers.
//!
//! File contents live in blocks of one size per store (4 KiB by default). The filesystem asks a
//! store for a block, reads and writes byte ranges inside it, and gives it back when a file
//! shrinks or is deleted. A store has a hard capacity: when it is full, [`BlockStore::allocate`]
//! fails with [`StoreError::Full`] (the filesystem's `ENOSPC`) and nothing already stored changes.
//!
//! Like smoltcp's `phy` devices, extra behaviour comes from wrappers around any store rather than
//! from flags inside one:
//!
//! - [`MemPool`]: the store behind `MemFs`, chunked arenas with a `bitvec` bitmap per chunk.
//! - [`FaultInjector`]: fails allocations or writes after a countdown, for tests that prove a
//!   failing store harms nothing already stored.
//! - [`Tracer`]: reports every call to a closure, for debugging.
//!
//! `&B`, `Box<B>` and `Arc<B>` are stores too when `B` is, so a pool can be shared with a
//! statistics reader while the filesystem owns it, and `dyn BlockStore` works.
//!
//! # Implementing a store
//!
//! Every method's documentation is a contract that `MemFs` relies on. A small but complete
//! implementation:
//!
//! ```
//! use std::sync::Mutex;
//!
//! use btfuse_core::block::{BlockNo, BlockStore, StoreError, block_byte_range};
//!
//! /// Eight 512-byte blocks behind one lock.
//! struct TinyStore {
//!     blocks: Mutex<[Option<Box<[u8; 512]>>; 8]>,
//! }
//!
//! impl TinyStore {
//!     fn slot(block: BlockNo) -> Result<usize, StoreError> {
//!         let index = usize::try_from(block.0).map_err(|_| StoreError::OutOfRange)?;
//!         if index < 8 { Ok(index) } else { Err(StoreError::OutOfRange) }
//!     }
//! }
//!
//! impl BlockStore for TinyStore {
//!     fn block_size(&self) -> usize {
//!         512
//!     }
//!     fn capacity_blocks(&self) -> u64 {
//!         8
//!     }
//!     fn used_blocks(&self) -> u64 {
//!         self.blocks.lock().unwrap().iter().filter(|b| b.is_some()).count() as u64
//!     }
//!     fn allocate(&self) -> Result<BlockNo, StoreError> {
//!         let mut blocks = self.blocks.lock().unwrap();
//!         let index = blocks.iter().position(Option::is_none).ok_or(StoreError::Full)?;
//!         blocks[index] = Some(Box::new([0; 512])); // a fresh block reads as zeros
//!         Ok(BlockNo(index as u32))
//!     }
//!     fn free(&self, block: BlockNo) -> Result<(), StoreError> {
//!         let index = Self::slot(block)?;
//!         let taken = self.blocks.lock().unwrap()[index].take();
//!         taken.map(drop).ok_or(StoreError::NotAllocated)
//!     }
//!     fn read(&self, block: BlockNo, offset: usize, buf: &mut [u8]) -> Result<(), StoreError> {
//!         let (index, range) = (Self::slot(block)?, block_byte_range(512, offset, buf.len())?);
//!         let blocks = self.blocks.lock().unwrap();
//!         let bytes = blocks[index].as_ref().ok_or(StoreError::NotAllocated)?;
//!         buf.copy_from_slice(&bytes[range]);
//!         Ok(())
//!     }
//!     fn write(&self, block: BlockNo, offset: usize, data: &[u8]) -> Result<(), StoreError> {
//!         let (index, range) = (Self::slot(block)?, block_byte_range(512, offset, data.len())?);
//!         let mut blocks = self.blocks.lock().unwrap();
//!         let bytes = blocks[index].as_mut().ok_or(StoreError::NotAllocated)?;
//!         bytes[range].copy_from_slice(data);
//!         Ok(())
//!     }
//!     fn zero(&self, block: BlockNo, offset: usize, len: usize) -> Result<(), StoreError> {
//!         let (index, range) = (Self::slot(block)?, block_byte_range(512, offset, len)?);
//!         let mut blocks = self.blocks.lock().unwrap();
//!         let bytes = blocks[index].as_mut().ok_or(StoreError::NotAllocated)?;
//!         bytes[range].fill(0);
//!         Ok(())
//!     }
//! }
//!
//! let store = TinyStore { blocks: Mutex::new(Default::default()) };
//! let block = store.allocate()?;
//! store.write(block, 10, b"hello")?;
//! let mut buf = [0xff; 7];
//! store.read(block, 9, &mut buf)?;
//! assert_eq!(&buf, b"\0hello\0");
//! store.free(block)?;
//! assert_eq!(store.free(block), Err(StoreError::NotAllocated));
//! # Ok::<(), StoreError>(())
//! ```

mod fault_injector;
mod pool;
mod tracer;

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::ops::Range;

pub use fault_injector::FaultInjector;
pub use pool::{MemPool, PoolConfigError};
pub use tracer::{TraceEvent, TraceOp, Tracer};

/// Number of a block in a store. `u32`: with 4 KiB blocks a store holds up to 16 TiB.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct BlockNo(pub u32);

impl fmt::Display for BlockNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block {}", self.0)
    }
}

/// Why a [`BlockStore`] call failed.
#[non_exhaustive]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StoreError {
    /// Every block is allocated: the store is at its capacity. Nothing stored was changed.
    Full,
    /// The block number is beyond the store's capacity, or `offset + len` exceeds the block size.
    OutOfRange,
    /// The block is within range but not currently allocated (for example, already freed).
    NotAllocated,
    /// The store failed to carry out the operation (an injected fault, or a device error in a
    /// store backed by one). The block's content is unspecified for the failed range only.
    Io,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreError::Full => "block store is full",
            StoreError::OutOfRange => "block number or byte range out of range",
            StoreError::NotAllocated => "block is not allocated",
            StoreError::Io => "block store I/O error",
        })
    }
}

impl core::error::Error for StoreError {}

/// Checks a request for `len` bytes at `offset` against `block_size`, the way every store must,
/// and returns the byte range inside the block.
///
/// Fails with [`StoreError::OutOfRange`] when `offset + len` overflows or exceeds `block_size`.
/// An empty range ending exactly at `block_size` is allowed.
pub fn block_byte_range(
    block_size: usize,
    offset: usize,
    len: usize,
) -> Result<Range<usize>, StoreError> {
    match offset.checked_add(len) {
        Some(end) if end <= block_size => Ok(offset..end),
        _ => Err(StoreError::OutOfRange),
    }
}

/// A store of fixed-size blocks with a hard capacity.
///
/// # Thread safety
///
/// All methods take `&self` and may be called from many threads at once; the store keeps its
/// own bookkeeping consistent under any interleaving. Concurrent calls on *different* blocks do
/// not affect each other. Concurrent `write`/`zero` and `read` of the *same* block are memory-safe
/// but the bytes a reader sees are unspecified (old, new or a mix): callers serialise access to
/// a block themselves (`MemFs` does so per file). Likewise, using a block after freeing it is
/// memory-safe but may touch whichever caller's data the block then holds.
///
/// # Errors
///
/// A call that fails changes nothing, except that a write or zero failing with
/// [`StoreError::Io`] may leave the addressed range of that one block unspecified. When several
/// errors apply, [`StoreError::OutOfRange`] is reported before [`StoreError::NotAllocated`].
pub trait BlockStore: Send + Sync {
    /// Size of every block in bytes: a power of two, at least 512, constant for the store's life.
    fn block_size(&self) -> usize;

    /// Number of blocks the store can hold at once. Constant for the store's life; block numbers
    /// run from `0` to `capacity_blocks() - 1`.
    fn capacity_blocks(&self) -> u64;

    /// Number of blocks currently allocated. Exact when no allocation or free is in progress;
    /// while some are, it may already count them.
    fn used_blocks(&self) -> u64;

    /// Number of blocks that can still be allocated: `capacity_blocks() - used_blocks()`, with
    /// the same precision as [`used_blocks`](BlockStore::used_blocks).
    fn free_blocks(&self) -> u64 {
        self.capacity_blocks().saturating_sub(self.used_blocks())
    }

    /// Allocates a block and returns its number.
    ///
    /// **A fresh block reads as zeros**, whatever it held before it was last freed. A block
    /// number is never handed out twice without a `free` in between, even under races.
    ///
    /// # Errors
    ///
    /// [`StoreError::Full`] when `capacity_blocks()` blocks are already allocated; nothing stored
    /// changes, and an allocation succeeds again as soon as a block is freed.
    fn allocate(&self) -> Result<BlockNo, StoreError>;

    /// Returns `block` to the store. Its content is gone; the number may be handed out again.
    ///
    /// # Errors
    ///
    /// [`StoreError::OutOfRange`] when `block` is beyond the capacity; [`StoreError::NotAllocated`]
    /// when it is not allocated. A double free is reported, never corrupts the store.
    fn free(&self, block: BlockNo) -> Result<(), StoreError>;

    /// Copies `buf.len()` bytes starting at byte `offset` of `block` into `buf`.
    ///
    /// # Errors
    ///
    /// [`StoreError::OutOfRange`] when `block` is beyond the capacity or `offset + buf.len()`
    /// exceeds [`block_size`](BlockStore::block_size); [`StoreError::NotAllocated`] when `block`
    /// is not allocated. `buf` is left unchanged on error.
    fn read(&self, block: BlockNo, offset: usize, buf: &mut [u8]) -> Result<(), StoreError>;

    /// Copies `data` into `block` starting at byte `offset`; the rest of the block is unchanged.
    ///
    /// # Errors
    ///
    /// As [`read`](BlockStore::read), with `data.len()` as the length; and [`StoreError::Io`] when
    /// the store fails to write, which leaves only the addressed range unspecified.
    fn write(&self, block: BlockNo, offset: usize, data: &[u8]) -> Result<(), StoreError>;

    /// Sets `len` bytes of `block` starting at byte `offset` to zero, like a
    /// [`write`](BlockStore::write) of zeros without a buffer.
    ///
    /// # Errors
    ///
    /// As [`write`](BlockStore::write).
    fn zero(&self, block: BlockNo, offset: usize, len: usize) -> Result<(), StoreError>;

    /// Allocates a block for bytes `index * block_size..` of file `owner` (an inode number),
    /// as [`allocate`](BlockStore::allocate) does and with its contract. The filesystem calls
    /// it, instead of `allocate`, for a file it has [placed](crate::MemFs::place_file): a
    /// store that shows some files' data outside the engine (a mapping per file, say) puts
    /// such a block where that file's `index` is; the default puts it anywhere.
    fn allocate_for(&self, owner: u64, index: u64) -> Result<BlockNo, StoreError> {
        let _ = (owner, index);
        self.allocate()
    }

    /// Whether `block` is already where [`allocate_for`](BlockStore::allocate_for)`(owner,
    /// index)` would put it, so that placing a file leaves it. The default: never.
    fn placed_at(&self, block: BlockNo, owner: u64, index: u64) -> bool {
        let _ = (block, owner, index);
        false
    }

    /// Told, for a placed file, its size after every change to its content or size, once the
    /// change is stored. The default does nothing.
    fn file_changed(&self, owner: u64, size: u64) {
        let _ = (owner, size);
    }

    /// Told that file `owner` is placed no more: it is gone (every block it had is freed, and
    /// the number names no file of this filesystem again) or its blocks were moved back to
    /// [`allocate`](BlockStore::allocate)'s ([`Filesystem::unplace_file`](crate::Filesystem::unplace_file)).
    /// The default does nothing.
    fn file_gone(&self, owner: u64) {
        let _ = owner;
    }
}

/// Forwards every method to the store behind a reference or smart pointer.
macro_rules! forward_block_store {
    ($($target:ty),+ $(,)?) => {$(
        impl<B: BlockStore + ?Sized> BlockStore for $target {
            fn block_size(&self) -> usize {
                (**self).block_size()
            }
            fn capacity_blocks(&self) -> u64 {
                (**self).capacity_blocks()
            }
            fn used_blocks(&self) -> u64 {
                (**self).used_blocks()
            }
            fn free_blocks(&self) -> u64 {
                (**self).free_blocks()
            }
            fn allocate(&self) -> Result<BlockNo, StoreError> {
                (**self).allocate()
            }
            fn free(&self, block: BlockNo) -> Result<(), StoreError> {
                (**self).free(block)
            }
            fn read(
                &self,
                block: BlockNo,
                offset: usize,
                buf: &mut [u8],
            ) -> Result<(), StoreError> {
                (**self).read(block, offset, buf)
            }
            fn write(&self, block: BlockNo, offset: usize, data: &[u8]) -> Result<(), StoreError> {
                (**self).write(block, offset, data)
            }
            fn zero(&self, block: BlockNo, offset: usize, len: usize) -> Result<(), StoreError> {
                (**self).zero(block, offset, len)
            }
            fn allocate_for(&self, owner: u64, index: u64) -> Result<BlockNo, StoreError> {
                (**self).allocate_for(owner, index)
            }
            fn placed_at(&self, block: BlockNo, owner: u64, index: u64) -> bool {
                (**self).placed_at(block, owner, index)
            }
            fn file_changed(&self, owner: u64, size: u64) {
                (**self).file_changed(owner, size)
            }
            fn file_gone(&self, owner: u64) {
                (**self).file_gone(owner)
            }
        }
    )+};
}

forward_block_store!(&B, Box<B>, Arc<B>);

#[cfg(test)]
mod tests;
