//! [`MemPool`]: the in-memory [`BlockStore`], chunked arenas with a `bitvec` bitmap per chunk.
//!
//! # Layout and invariants
//!
//! The pool's blocks are grouped into chunks of [`MemPool::BLOCKS_PER_CHUNK`] (256) blocks; block
//! `n` is slot `n % 256` of chunk `n / 256`, and only the last chunk may be partial. The table of
//! chunks is made up front (112 bytes per chunk on 64-bit targets, no block memory); each chunk
//! holds:
//!
//! - `state`, a `spin::Mutex` over the chunk's allocation bitmap (`bitvec`, 256 bits) and used
//!   count: the allocator's view and the only place a block changes hands.
//! - `memory`, a `spin::RwLock<Option<ChunkMemory>>`: the chunk's bytes, allocated zeroed when
//!   its first block is allocated and dropped when its last block is freed, so memory returns
//!   to the system as files are deleted. Beside the bytes sits a mirror of the bitmap, so that
//!   `read`, `write` and `zero` check "is this block allocated" under this lock alone.
//! - `free`, an `AtomicU32` count of free blocks, changed only under `state` and read without
//!   it so the allocator can skip full chunks without locking them.
//!
//! Invariants, whenever no thread holds the chunk's `state` mutex:
//!
//! - `memory` is `Some` exactly when `state.used > 0`, and its mirror equals `state`'s bitmap;
//! - `free + state.used` is the number of blocks in the chunk;
//! - the pool's `used` counter is at least the number of set bits over all chunks, and exceeds
//!   it only by allocations and frees in progress.
//!
//! **Lock order:** a chunk's `state` mutex before its `memory` lock; never two chunks at once.
//! `allocate` and `free` take both; `read` takes only the `memory` read lock, `write` and `zero`
//! only the `memory` write lock.
//!
//! **Capacity:** `allocate` first reserves one unit of the pool-wide `AtomicU64` used counter
//! with a compare-exchange loop that refuses to pass the capacity, and only then looks for a free
//! bit. `Full` is therefore exact and the pool never hands out more blocks than its capacity,
//! however many threads race. A reservation guarantees that a free bit exists somewhere (bits are
//! set only after a reservation and cleared before its release), so the search always ends.
//!
//! **Spreading the load:** the search starts at the chunk where the last allocation succeeded
//! (an atomic hint) and skips full chunks by their `free` count. Its first sweep only
//! `try_lock`s, passing over chunks another thread is working in, so concurrent allocators
//! spread over chunks instead of queueing on one mutex; later sweeps wait for each lock.
//!
//! **Zeroing:** a block is zeroed when it is allocated, under the chunk's `memory` write lock,
//! not when it is freed. `free` then only flips two bits (or drops the whole chunk), so deleting
//! a large file touches none of its bytes; a block of a freshly made chunk needs no zeroing at
//! all, since that memory comes from a zeroed allocation; and zeroing work is spent only on
//! blocks that are used again. The cost is that a freed block's old bytes stay in the daemon's
//! memory until the block is reused or its chunk is released.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use bitvec::array::BitArray;
use bitvec::order::Lsb0;
use spin::{Mutex, RwLock};

use super::{BlockNo, BlockStore, StoreError, block_byte_range};

/// Why a [`MemPool`] could not be made.
#[non_exhaustive]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PoolConfigError {
    /// The block size (carried) is not a power of two between [`MemPool::MIN_BLOCK_SIZE`] and
    /// [`MemPool::MAX_BLOCK_SIZE`].
    BlockSize(usize),
    /// The chunk table for the requested capacity could not be allocated.
    ChunkTable,
}

impl fmt::Display for PoolConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolConfigError::BlockSize(size) => write!(
                f,
                "block size {size} is not a power of two in {}..={}",
                MemPool::MIN_BLOCK_SIZE,
                MemPool::MAX_BLOCK_SIZE
            ),
            PoolConfigError::ChunkTable => f.write_str("cannot allocate the chunk table"),
        }
    }
}

impl core::error::Error for PoolConfigError {}

/// Blocks per chunk as the `u32` that block numbers use.
const CHUNK_BLOCKS: u32 = 256;

/// One allocation bit per block of a chunk.
type ChunkBits = BitArray<[u64; 4], Lsb0>;

const _: () = assert!(core::mem::size_of::<ChunkBits>() * 8 == CHUNK_BLOCKS as usize);

/// The allocator's view of a chunk, guarded by [`Chunk::state`].
struct ChunkState {
    /// Bit `i` is set while slot `i` is allocated.
    allocated: ChunkBits,
    /// Number of set bits in `allocated`.
    used: u32,
}

/// A chunk's block bytes, present while at least one of its blocks is allocated.
struct ChunkMemory {
    /// `blocks_in_chunk * block_size` bytes; slot `i` is `i * block_size..(i + 1) * block_size`.
    bytes: Box<[u8]>,
    /// Mirror of [`ChunkState::allocated`], so block access checks allocation under this lock.
    allocated: ChunkBits,
}

impl ChunkMemory {
    /// The bytes of `slot` if it is allocated.
    fn block(&self, slot: usize, block_size: usize) -> Option<&[u8]> {
        if !self.allocated.get(slot).is_some_and(|bit| *bit) {
            return None;
        }
        self.bytes.get(slot_range(slot, block_size)?)
    }

    /// The bytes of `slot` if it is allocated, for writing.
    fn block_mut(&mut self, slot: usize, block_size: usize) -> Option<&mut [u8]> {
        if !self.allocated.get(slot).is_some_and(|bit| *bit) {
            return None;
        }
        self.bytes.get_mut(slot_range(slot, block_size)?)
    }

    fn set_allocated(&mut self, slot: usize, value: bool) {
        if let Some(mut bit) = self.allocated.get_mut(slot) {
            *bit = value;
        }
    }
}

/// Byte range of `slot` inside its chunk's memory.
fn slot_range(slot: usize, block_size: usize) -> Option<Range<usize>> {
    let start = slot.checked_mul(block_size)?;
    Some(start..start.checked_add(block_size)?)
}

/// 256 blocks' worth of bookkeeping and (lazily) memory. See the module documentation for the
/// invariants that tie the fields together.
struct Chunk {
    /// Allocation bitmap and used count. Locked before `memory`.
    state: Mutex<ChunkState>,
    /// Block bytes plus the bitmap mirror; `None` while no block of the chunk is allocated.
    memory: RwLock<Option<ChunkMemory>>,
    /// Free blocks in the chunk. Changed only under `state`; read without it as a hint.
    free: AtomicU32,
}

impl Chunk {
    fn new(blocks: u32) -> Chunk {
        Chunk {
            state: Mutex::new(ChunkState {
                allocated: ChunkBits::ZERO,
                used: 0,
            }),
            memory: RwLock::new(None),
            free: AtomicU32::new(blocks),
        }
    }
}

/// An in-memory [`BlockStore`] with a hard capacity, memory allocated chunk by chunk on demand.
///
/// Blocks are grouped in chunks of [`BLOCKS_PER_CHUNK`](MemPool::BLOCKS_PER_CHUNK); a chunk's
/// memory exists only while at least one of its blocks is allocated. The documentation at the
/// top of its source file, `block/pool.rs`, describes the layout, the lock order and the
/// invariants.
///
/// ```
/// use btfuse_core::block::{BlockStore, MemPool, StoreError};
///
/// let pool = MemPool::new(8 * 4096);
/// let block = pool.allocate()?;
/// pool.write(block, 0, b"data")?;
/// assert_eq!(pool.used_blocks(), 1);
/// assert_eq!(pool.resident_chunks(), 1);
/// pool.free(block)?;
/// assert_eq!(pool.resident_bytes(), 0);
/// # Ok::<(), StoreError>(())
/// ```
pub struct MemPool {
    block_size: usize,
    capacity_blocks: u32,
    chunks: Box<[Chunk]>,
    /// Allocated blocks plus reservations in progress; never above `capacity_blocks`.
    used: AtomicU64,
    /// Chunk where the last allocation succeeded: where the next search starts.
    next_chunk: AtomicU32,
    /// Chunks whose memory is present; changed under the chunk's locks.
    resident_chunks: AtomicUsize,
    /// Bytes of chunk memory present; changed under the chunk's locks.
    resident_bytes: AtomicU64,
}

impl MemPool {
    /// Block size of [`MemPool::new`]: 4 KiB.
    pub const DEFAULT_BLOCK_SIZE: usize = 4096;
    /// Smallest block size [`MemPool::with_block_size`] accepts.
    pub const MIN_BLOCK_SIZE: usize = 512;
    /// Largest block size [`MemPool::with_block_size`] accepts.
    pub const MAX_BLOCK_SIZE: usize = 65536;
    /// Blocks per chunk: the unit in which memory is allocated and released.
    pub const BLOCKS_PER_CHUNK: usize = CHUNK_BLOCKS as usize;

    /// A pool of 4 KiB blocks holding at most `capacity_bytes` (rounded down to whole blocks,
    /// and to at most `u32::MAX` blocks).
    ///
    /// No block memory is allocated yet. The chunk table costs 112 bytes per 256 blocks (per MiB
    /// of capacity) on 64-bit targets and is allocated like any `Vec`: an allocation failure
    /// aborts. Use [`with_block_size`](MemPool::with_block_size) to get an error instead.
    pub fn new(capacity_bytes: u64) -> MemPool {
        let capacity_blocks = capacity_in_blocks(capacity_bytes, Self::DEFAULT_BLOCK_SIZE);
        let mut chunks = Vec::with_capacity(chunk_count(capacity_blocks));
        fill_chunk_table(&mut chunks, capacity_blocks);
        Self::from_table(Self::DEFAULT_BLOCK_SIZE, capacity_blocks, chunks)
    }

    /// A pool of `block_size`-byte blocks holding at most `capacity_bytes` (rounded down to whole
    /// blocks, and to at most `u32::MAX` blocks).
    ///
    /// # Errors
    ///
    /// [`PoolConfigError::BlockSize`] unless `block_size` is a power of two in
    /// [`MIN_BLOCK_SIZE`](MemPool::MIN_BLOCK_SIZE)`..=`[`MAX_BLOCK_SIZE`](MemPool::MAX_BLOCK_SIZE);
    /// [`PoolConfigError::ChunkTable`] if the chunk table cannot be allocated.
    pub fn with_block_size(
        capacity_bytes: u64,
        block_size: usize,
    ) -> Result<MemPool, PoolConfigError> {
        if !block_size.is_power_of_two()
            || !(Self::MIN_BLOCK_SIZE..=Self::MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(PoolConfigError::BlockSize(block_size));
        }
        let capacity_blocks = capacity_in_blocks(capacity_bytes, block_size);
        let mut chunks = Vec::new();
        chunks
            .try_reserve_exact(chunk_count(capacity_blocks))
            .map_err(|_| PoolConfigError::ChunkTable)?;
        fill_chunk_table(&mut chunks, capacity_blocks);
        Ok(Self::from_table(block_size, capacity_blocks, chunks))
    }

    fn from_table(block_size: usize, capacity_blocks: u32, chunks: Vec<Chunk>) -> MemPool {
        MemPool {
            block_size,
            capacity_blocks,
            chunks: chunks.into_boxed_slice(),
            used: AtomicU64::new(0),
            next_chunk: AtomicU32::new(0),
            resident_chunks: AtomicUsize::new(0),
            resident_bytes: AtomicU64::new(0),
        }
    }

    /// Number of chunks whose memory is currently allocated.
    pub fn resident_chunks(&self) -> usize {
        self.resident_chunks.load(Ordering::Relaxed)
    }

    /// Bytes of block memory currently allocated (whole chunks, used blocks or not). Excludes the
    /// chunk table.
    pub fn resident_bytes(&self) -> u64 {
        self.resident_bytes.load(Ordering::Relaxed)
    }

    /// Number of blocks in chunk `index` (256, or fewer for the last chunk).
    fn blocks_in_chunk(&self, index: usize) -> usize {
        let first = (index as u64).saturating_mul(CHUNK_BLOCKS.into());
        let left = u64::from(self.capacity_blocks).saturating_sub(first);
        // At most 256, so the conversion cannot fail.
        usize::try_from(left.min(CHUNK_BLOCKS.into())).unwrap_or(0)
    }

    /// The chunk holding `block` and the block's slot in it.
    fn locate(&self, block: BlockNo) -> Result<(&Chunk, usize), StoreError> {
        if block.0 >= self.capacity_blocks {
            return Err(StoreError::OutOfRange);
        }
        let index = (block.0 / CHUNK_BLOCKS) as usize;
        let slot = (block.0 % CHUNK_BLOCKS) as usize;
        let chunk = self.chunks.get(index).ok_or(StoreError::OutOfRange)?;
        Ok((chunk, slot))
    }

    /// Takes one unit of capacity, or reports `Full` without changing anything.
    fn reserve(&self) -> Result<(), StoreError> {
        let capacity = u64::from(self.capacity_blocks);
        // Acquire pairs with the Release decrement in `free`, so that a reservation made
        // possible by a free also sees the bit that free cleared.
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < capacity).then_some(used + 1)
            })
            .map(drop)
            .map_err(|_| StoreError::Full)
    }

    /// Finds and claims a free block for a reservation already taken.
    fn claim_reserved(&self) -> Option<BlockNo> {
        let count = self.chunks.len();
        if count == 0 {
            return None;
        }
        let start = self.next_chunk.load(Ordering::Relaxed) as usize % count;
        // The reservation guarantees a free bit exists, but it may move while we sweep (freed
        // behind us, taken ahead of us), so sweep again until we catch one.
        let mut wait_for_locks = false;
        loop {
            for step in 0..count {
                let index = (start + step) % count;
                let Some(chunk) = self.chunks.get(index) else {
                    continue;
                };
                if chunk.free.load(Ordering::Relaxed) == 0 {
                    continue;
                }
                let state = if wait_for_locks {
                    Some(chunk.state.lock())
                } else {
                    chunk.state.try_lock()
                };
                let Some(mut state) = state else { continue };
                if let Some(block) = self.claim_in_chunk(index, chunk, &mut state) {
                    // `index` < chunk count <= 2^24, so it fits.
                    self.next_chunk.store(index as u32, Ordering::Relaxed);
                    return Some(block);
                }
            }
            wait_for_locks = true;
            core::hint::spin_loop();
        }
    }

    /// Claims the first free slot of chunk `index`, whose `state` the caller holds, and hands it
    /// out zeroed.
    fn claim_in_chunk(
        &self,
        index: usize,
        chunk: &Chunk,
        state: &mut ChunkState,
    ) -> Option<BlockNo> {
        let blocks = self.blocks_in_chunk(index);
        let slot = state.allocated.get(..blocks)?.first_zero()?;
        let block = u32::try_from(index)
            .ok()?
            .checked_mul(CHUNK_BLOCKS)?
            .checked_add(u32::try_from(slot).ok()?)?;
        let mut memory = chunk.memory.write();
        match memory.as_mut() {
            Some(memory) => {
                memory.set_allocated(slot, true);
                if let Some(bytes) = memory.block_mut(slot, self.block_size) {
                    bytes.fill(0);
                }
            }
            None => {
                // First block of the chunk: fresh zeroed memory, nothing to clear.
                let len = blocks * self.block_size;
                let mut fresh = ChunkMemory {
                    bytes: vec![0u8; len].into_boxed_slice(),
                    allocated: ChunkBits::ZERO,
                };
                fresh.set_allocated(slot, true);
                *memory = Some(fresh);
                self.resident_chunks.fetch_add(1, Ordering::Relaxed);
                self.resident_bytes.fetch_add(len as u64, Ordering::Relaxed);
            }
        }
        drop(memory);
        if let Some(mut bit) = state.allocated.get_mut(slot) {
            *bit = true;
        }
        state.used += 1;
        chunk.free.fetch_sub(1, Ordering::Relaxed);
        Some(BlockNo(block))
    }
}

/// `capacity_bytes` in whole blocks, capped at `u32::MAX`.
pub(super) fn capacity_in_blocks(capacity_bytes: u64, block_size: usize) -> u32 {
    let blocks = capacity_bytes / (block_size as u64).max(1);
    u32::try_from(blocks).unwrap_or(u32::MAX)
}

/// Chunks needed for `capacity_blocks` blocks (the last one may be partial).
pub(super) fn chunk_count(capacity_blocks: u32) -> usize {
    capacity_blocks.div_ceil(CHUNK_BLOCKS) as usize
}

/// Appends the chunks for `capacity_blocks` blocks to an empty table.
fn fill_chunk_table(chunks: &mut Vec<Chunk>, capacity_blocks: u32) {
    let mut left = capacity_blocks;
    while left > 0 {
        let blocks = left.min(CHUNK_BLOCKS);
        chunks.push(Chunk::new(blocks));
        left -= blocks;
    }
}

impl fmt::Debug for MemPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemPool")
            .field("block_size", &self.block_size)
            .field("capacity_blocks", &self.capacity_blocks)
            .field("used_blocks", &self.used_blocks())
            .field("resident_chunks", &self.resident_chunks())
            .finish_non_exhaustive()
    }
}

impl BlockStore for MemPool {
    fn block_size(&self) -> usize {
        self.block_size
    }

    fn capacity_blocks(&self) -> u64 {
        self.capacity_blocks.into()
    }

    fn used_blocks(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    fn allocate(&self) -> Result<BlockNo, StoreError> {
        self.reserve()?;
        match self.claim_reserved() {
            Some(block) => Ok(block),
            None => {
                // Unreachable while the invariants hold; give the reservation back regardless.
                self.used.fetch_sub(1, Ordering::Release);
                Err(StoreError::Full)
            }
        }
    }

    fn free(&self, block: BlockNo) -> Result<(), StoreError> {
        let (chunk, slot) = self.locate(block)?;
        let mut state = chunk.state.lock();
        match state.allocated.get_mut(slot) {
            Some(mut bit) if *bit => *bit = false,
            _ => return Err(StoreError::NotAllocated),
        }
        state.used = state.used.saturating_sub(1);
        chunk.free.fetch_add(1, Ordering::Relaxed);
        let mut memory = chunk.memory.write();
        if state.used == 0 {
            if let Some(released) = memory.take() {
                self.resident_chunks.fetch_sub(1, Ordering::Relaxed);
                self.resident_bytes
                    .fetch_sub(released.bytes.len() as u64, Ordering::Relaxed);
            }
        } else if let Some(memory) = memory.as_mut() {
            memory.set_allocated(slot, false);
        }
        drop(memory);
        drop(state);
        // Release pairs with the Acquire in `reserve`: see there.
        self.used.fetch_sub(1, Ordering::Release);
        Ok(())
    }

    fn read(&self, block: BlockNo, offset: usize, buf: &mut [u8]) -> Result<(), StoreError> {
        let (chunk, slot) = self.locate(block)?;
        let range = block_byte_range(self.block_size, offset, buf.len())?;
        let memory = chunk.memory.read();
        let bytes = memory
            .as_ref()
            .and_then(|memory| memory.block(slot, self.block_size))
            .and_then(|bytes| bytes.get(range))
            .ok_or(StoreError::NotAllocated)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn write(&self, block: BlockNo, offset: usize, data: &[u8]) -> Result<(), StoreError> {
        let (chunk, slot) = self.locate(block)?;
        let range = block_byte_range(self.block_size, offset, data.len())?;
        let mut memory = chunk.memory.write();
        let bytes = memory
            .as_mut()
            .and_then(|memory| memory.block_mut(slot, self.block_size))
            .and_then(|bytes| bytes.get_mut(range))
            .ok_or(StoreError::NotAllocated)?;
        bytes.copy_from_slice(data);
        Ok(())
    }

    fn zero(&self, block: BlockNo, offset: usize, len: usize) -> Result<(), StoreError> {
        let (chunk, slot) = self.locate(block)?;
        let range = block_byte_range(self.block_size, offset, len)?;
        let mut memory = chunk.memory.write();
        let bytes = memory
            .as_mut()
            .and_then(|memory| memory.block_mut(slot, self.block_size))
            .and_then(|bytes| bytes.get_mut(range))
            .ok_or(StoreError::NotAllocated)?;
        bytes.fill(0);
        Ok(())
    }
}
