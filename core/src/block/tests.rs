//! Unit tests of the block stores: the contract every [`BlockStore`] method states, checked on
//! [`MemPool`] (also against a reference model and from many threads) and through the wrappers.

extern crate std;

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};
use std::collections::BTreeMap;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::AtomicBool;
use std::thread;

use proptest::prelude::*;

use super::pool::{capacity_in_blocks, chunk_count};
use super::{
    BlockNo, BlockStore, FaultInjector, MemPool, PoolConfigError, StoreError, TraceOp, Tracer,
};

const SMALL: usize = 512;

fn pool(blocks: u64) -> MemPool {
    MemPool::with_block_size(blocks * SMALL as u64, SMALL).unwrap()
}

fn read_all(store: &impl BlockStore, block: BlockNo) -> Vec<u8> {
    let mut buf = vec![0xa5; store.block_size()];
    store.read(block, 0, &mut buf).unwrap();
    buf
}

#[test]
fn fresh_block_reads_zero_even_after_reuse() {
    let pool = pool(2);
    let first = pool.allocate().unwrap();
    let keep = pool.allocate().unwrap();
    assert!(read_all(&pool, first).iter().all(|&b| b == 0));
    pool.write(first, 0, &[0xff; SMALL]).unwrap();
    pool.write(keep, 0, &[0x11; SMALL]).unwrap();
    pool.free(first).unwrap();
    // `keep` holds the chunk's memory, so the old bytes are still there to be cleared.
    assert_eq!(pool.resident_chunks(), 1);
    let again = pool.allocate().unwrap();
    assert_eq!(again, first);
    assert!(read_all(&pool, again).iter().all(|&b| b == 0));
    assert!(read_all(&pool, keep).iter().all(|&b| b == 0x11));
}

#[test]
fn full_exactly_at_capacity_without_harm() {
    let pool = pool(600);
    let mut blocks = Vec::new();
    for i in 0..600u32 {
        let block = pool.allocate().unwrap();
        pool.write(block, 0, &i.to_le_bytes()).unwrap();
        blocks.push(block);
    }
    assert_eq!(pool.used_blocks(), 600);
    assert_eq!(pool.free_blocks(), 0);
    assert_eq!(pool.allocate(), Err(StoreError::Full));
    assert_eq!(pool.allocate(), Err(StoreError::Full));
    assert_eq!(pool.used_blocks(), 600);
    let mut sorted = blocks.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 600);
    for (i, &block) in (0u32..).zip(&blocks) {
        let mut buf = [0; 4];
        pool.read(block, 0, &mut buf).unwrap();
        assert_eq!(buf, i.to_le_bytes());
    }
    pool.free(blocks[300]).unwrap();
    assert_eq!(pool.allocate(), Ok(blocks[300]));
    assert_eq!(pool.allocate(), Err(StoreError::Full));
}

#[test]
fn double_free_reports_not_allocated() {
    let pool = pool(300);
    let a = pool.allocate().unwrap();
    let b = pool.allocate().unwrap();
    pool.free(a).unwrap();
    assert_eq!(pool.free(a), Err(StoreError::NotAllocated));
    assert_eq!(pool.free(BlockNo(299)), Err(StoreError::NotAllocated));
    assert_eq!(pool.used_blocks(), 1);
    pool.free(b).unwrap();
    assert_eq!(pool.free(b), Err(StoreError::NotAllocated));
    assert_eq!(pool.used_blocks(), 0);
    assert_eq!(pool.resident_chunks(), 0);
}

#[test]
fn out_of_range_and_unallocated_are_errors_not_panics() {
    let pool = pool(300);
    let block = pool.allocate().unwrap();
    let mut buf = [0u8; 8];
    for bad in [BlockNo(300), BlockNo(511), BlockNo(u32::MAX)] {
        assert_eq!(pool.read(bad, 0, &mut buf), Err(StoreError::OutOfRange));
        assert_eq!(pool.write(bad, 0, &buf), Err(StoreError::OutOfRange));
        assert_eq!(pool.zero(bad, 0, 1), Err(StoreError::OutOfRange));
        assert_eq!(pool.free(bad), Err(StoreError::OutOfRange));
    }
    assert_eq!(
        pool.read(block, SMALL - 7, &mut buf),
        Err(StoreError::OutOfRange)
    );
    assert_eq!(
        pool.write(block, usize::MAX, &buf),
        Err(StoreError::OutOfRange)
    );
    assert_eq!(pool.zero(block, 1, usize::MAX), Err(StoreError::OutOfRange));
    assert_eq!(pool.zero(block, 0, SMALL + 1), Err(StoreError::OutOfRange));
    // Ranges that end exactly at the block's end are fine, empty ones included.
    pool.read(block, SMALL - 8, &mut buf).unwrap();
    pool.write(block, SMALL, &[]).unwrap();
    pool.zero(block, 0, SMALL).unwrap();
    // Unallocated: in a resident chunk, in a chunk without memory, in the partial chunk.
    for idle in [BlockNo(1), BlockNo(256), BlockNo(299)] {
        assert_eq!(pool.read(idle, 0, &mut buf), Err(StoreError::NotAllocated));
        assert_eq!(pool.write(idle, 0, &buf), Err(StoreError::NotAllocated));
        assert_eq!(pool.zero(idle, 0, 8), Err(StoreError::NotAllocated));
    }
    // Range errors win over allocation errors.
    assert_eq!(
        pool.read(BlockNo(1), SMALL, &mut buf),
        Err(StoreError::OutOfRange)
    );
}

#[test]
fn chunk_memory_follows_its_blocks() {
    let pool = pool(600);
    assert_eq!((pool.resident_chunks(), pool.resident_bytes()), (0, 0));
    let blocks: Vec<_> = (0..600).map(|_| pool.allocate().unwrap()).collect();
    assert_eq!(pool.resident_chunks(), 3);
    assert_eq!(pool.resident_bytes(), 600 * SMALL as u64);
    // Free the whole first chunk: its memory goes, the others stay.
    for &block in &blocks[..256] {
        pool.free(block).unwrap();
    }
    assert_eq!(pool.resident_chunks(), 2);
    assert_eq!(pool.resident_bytes(), 344 * SMALL as u64);
    // One block left in a chunk keeps the whole chunk resident.
    for &block in &blocks[256..511] {
        pool.free(block).unwrap();
    }
    assert_eq!(pool.resident_chunks(), 2);
    for &block in &blocks[511..] {
        pool.free(block).unwrap();
    }
    assert_eq!((pool.resident_chunks(), pool.resident_bytes()), (0, 0));
    assert_eq!(pool.used_blocks(), 0);
}

#[test]
fn configuration_is_checked_and_capacity_rounded_down() {
    for bad in [0, 256, 1000, 4097, 131_072] {
        assert_eq!(
            MemPool::with_block_size(1 << 20, bad).unwrap_err(),
            PoolConfigError::BlockSize(bad)
        );
    }
    let pool = MemPool::with_block_size(3 * 65536 + 65535, 65536).unwrap();
    assert_eq!((pool.block_size(), pool.capacity_blocks()), (65536, 3));
    let pool = MemPool::new(4096 * 257 + 4095);
    assert_eq!((pool.block_size(), pool.capacity_blocks()), (4096, 257));
    assert_eq!(capacity_in_blocks(u64::MAX, 512), u32::MAX);
    assert_eq!(chunk_count(u32::MAX), 1 << 24);
    let empty = MemPool::new(4095);
    assert_eq!(empty.capacity_blocks(), 0);
    assert_eq!(empty.allocate(), Err(StoreError::Full));
    assert_eq!(empty.free(BlockNo(0)), Err(StoreError::OutOfRange));
    assert_eq!(empty.used_blocks(), 0);
}

#[test]
fn shared_handles_and_trait_objects_are_stores() {
    let pool = Arc::new(pool(4));
    let dynamic: Box<dyn BlockStore> = Box::new(Arc::clone(&pool));
    let block = dynamic.allocate().unwrap();
    fn write_through<S: BlockStore>(store: S, block: BlockNo) {
        store.write(block, 0, b"via ref").unwrap();
    }
    write_through(&*pool, block);
    assert_eq!(&read_all(&dynamic, block)[..7], b"via ref");
    assert_eq!(pool.used_blocks(), 1);
}

#[test]
fn concurrent_allocation_never_hands_a_block_out_twice() {
    const CAPACITY: usize = 1000;
    const THREADS: u8 = 4;
    let pool = pool(CAPACITY as u64);
    let owned: Vec<AtomicBool> = (0..CAPACITY).map(|_| AtomicBool::new(false)).collect();
    let full_seen = AtomicU64::new(0);
    let tag = |thread: u8, block: BlockNo| {
        let mut bytes = [thread; SMALL];
        bytes[..4].copy_from_slice(&block.0.to_le_bytes());
        bytes
    };
    let held: Vec<Vec<BlockNo>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (pool, owned, full_seen) = (&pool, &owned, &full_seen);
                scope.spawn(move || {
                    let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(thread);
                    let mut held = Vec::new();
                    for _ in 0..20_000 {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        if held.is_empty() || !rng.is_multiple_of(3) {
                            match pool.allocate() {
                                Ok(block) => {
                                    let flag = &owned[block.0 as usize];
                                    assert!(!flag.swap(true, Ordering::SeqCst), "{block} twice");
                                    assert!(read_all(pool, block).iter().all(|&b| b == 0));
                                    pool.write(block, 0, &tag(thread, block)).unwrap();
                                    held.push(block);
                                }
                                Err(StoreError::Full) => {
                                    full_seen.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(other) => panic!("allocate failed: {other}"),
                            }
                        } else {
                            let index = (rng >> 32) as usize % held.len();
                            let block = held.swap_remove(index);
                            assert_eq!(read_all(pool, block), tag(thread, block));
                            owned[block.0 as usize].store(false, Ordering::SeqCst);
                            pool.free(block).unwrap();
                        }
                    }
                    held
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .collect()
    });
    assert!(
        full_seen.load(Ordering::Relaxed) > 0,
        "the test never reached capacity"
    );
    let total: usize = held.iter().map(Vec::len).sum();
    assert_eq!(pool.used_blocks(), total as u64);
    for (thread, blocks) in (0..THREADS).zip(&held) {
        for &block in blocks {
            assert_eq!(read_all(&pool, block), tag(thread, block));
            pool.free(block).unwrap();
        }
    }
    assert_eq!(pool.used_blocks(), 0);
    assert_eq!(pool.resident_chunks(), 0);
}

#[test]
fn failed_allocations_leave_stored_data_intact() {
    let store = FaultInjector::new(pool(8));
    let a = store.allocate().unwrap();
    store.write(a, 0, b"precious").unwrap();
    store.fail_allocations_after(2);
    let b = store.allocate().unwrap();
    let c = store.allocate().unwrap();
    assert_eq!(store.allocate(), Err(StoreError::Full));
    assert_eq!(store.allocate(), Err(StoreError::Full));
    assert_eq!(store.injected_faults(), 2);
    assert_eq!(store.used_blocks(), 3);
    assert_eq!(&read_all(&store, a)[..8], b"precious");
    store.free(b).unwrap();
    store.heal();
    assert_eq!(store.allocate(), Ok(b));
    store.free(c).unwrap();
    assert_eq!(store.inner().used_blocks(), 2);
}

#[test]
fn failed_writes_change_nothing() {
    let store = FaultInjector::new(pool(8));
    let block = store.allocate().unwrap();
    store.fail_writes_after(1);
    store.write(block, 0, b"kept").unwrap();
    assert_eq!(store.write(block, 0, b"lost"), Err(StoreError::Io));
    assert_eq!(store.zero(block, 0, 4), Err(StoreError::Io));
    assert_eq!(&read_all(&store, block)[..4], b"kept");
    // Allocation is not affected by the write countdown.
    assert!(store.allocate().is_ok());
    store.fail_writes_after(0);
    assert_eq!(store.write(block, 0, b"x"), Err(StoreError::Io));
    store.heal();
    store.zero(block, 0, 4).unwrap();
    assert_eq!(&read_all(&store, block)[..4], [0; 4]);
    assert_eq!(store.injected_faults(), 3);
    assert_eq!(store.into_inner().used_blocks(), 2);
}

#[test]
fn tracer_reports_every_call() {
    let events = StdMutex::new(Vec::new());
    let store = Tracer::new(pool(1), |event| events.lock().unwrap().push(event));
    let block = store.allocate().unwrap();
    assert_eq!(store.allocate(), Err(StoreError::Full));
    store.write(block, 3, b"ab").unwrap();
    store.read(block, 0, &mut [0; 4]).unwrap();
    store.zero(block, 1, SMALL).unwrap_err();
    store.free(block).unwrap();
    let events = events.into_inner().unwrap();
    let summary: Vec<_> = events.iter().map(|e| std::format!("{e}")).collect();
    assert_eq!(
        summary,
        [
            "allocate block 0: ok",
            "allocate: block store is full",
            "write block 0 [3..+2]: ok",
            "read block 0 [0..+4]: ok",
            "zero block 0 [1..+512]: block number or byte range out of range",
            "free block 0: ok",
        ]
    );
    assert_eq!(events[2].op, TraceOp::Write);
    assert_eq!(events[2].len, 2);
}

/// One step of the model-based test. `pick` chooses among the live blocks.
#[derive(Clone, Debug)]
enum Op {
    Allocate(usize),
    Free(usize),
    FreeRun {
        pick: usize,
        count: usize,
    },
    FreeAny(u32),
    Write {
        pick: usize,
        offset: usize,
        len: usize,
        byte: u8,
    },
    Zero {
        pick: usize,
        offset: usize,
        len: usize,
    },
    Read {
        pick: usize,
        offset: usize,
        len: usize,
    },
    ReadAny(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let offset = 0..=SMALL + 8;
    let len = 0..=SMALL + 8;
    prop_oneof![
        3 => (1..=40usize).prop_map(Op::Allocate),
        1 => (1..=600usize).prop_map(Op::Allocate),
        2 => any::<usize>().prop_map(Op::Free),
        1 => (any::<usize>(), 1..=300usize)
            .prop_map(|(pick, count)| Op::FreeRun { pick, count }),
        1 => (0..700u32).prop_map(Op::FreeAny),
        3 => (any::<usize>(), offset.clone(), len.clone(), any::<u8>())
            .prop_map(|(pick, offset, len, byte)| Op::Write { pick, offset, len, byte }),
        1 => (any::<usize>(), offset.clone(), len.clone())
            .prop_map(|(pick, offset, len)| Op::Zero { pick, offset, len }),
        2 => (any::<usize>(), offset, len)
            .prop_map(|(pick, offset, len)| Op::Read { pick, offset, len }),
        1 => (0..700u32).prop_map(Op::ReadAny),
    ]
}

/// The reference: every live block and its bytes.
struct Model {
    capacity: usize,
    blocks: BTreeMap<BlockNo, Vec<u8>>,
}

impl Model {
    fn pick(&self, pick: usize) -> Option<BlockNo> {
        let live = self.blocks.len();
        (live > 0).then(|| *self.blocks.keys().nth(pick % live).unwrap())
    }

    fn range(offset: usize, len: usize) -> Result<Range<usize>, StoreError> {
        if offset + len <= SMALL {
            Ok(offset..offset + len)
        } else {
            Err(StoreError::OutOfRange)
        }
    }

    fn lookup(&self, block: BlockNo) -> Result<&Vec<u8>, StoreError> {
        if block.0 as usize >= self.capacity {
            return Err(StoreError::OutOfRange);
        }
        self.blocks.get(&block).ok_or(StoreError::NotAllocated)
    }
}

fn apply(pool: &MemPool, model: &mut Model, op: Op) -> Result<(), TestCaseError> {
    match op {
        Op::Allocate(times) => {
            for _ in 0..times {
                match pool.allocate() {
                    Ok(block) => {
                        prop_assert!((block.0 as usize) < model.capacity);
                        let old = model.blocks.insert(block, vec![0; SMALL]);
                        prop_assert!(old.is_none(), "{} handed out twice", block);
                        prop_assert_eq!(read_all(pool, block), vec![0; SMALL]);
                    }
                    Err(error) => {
                        prop_assert_eq!(error, StoreError::Full);
                        prop_assert_eq!(model.blocks.len(), model.capacity);
                    }
                }
            }
        }
        Op::Free(pick) => {
            if let Some(block) = model.pick(pick) {
                model.blocks.remove(&block);
                prop_assert_eq!(pool.free(block), Ok(()));
                prop_assert_eq!(pool.free(block), Err(StoreError::NotAllocated));
            }
        }
        Op::FreeRun { pick, count } => {
            // Consecutive block numbers, so that whole chunks empty out.
            let Some(first) = model.pick(pick) else {
                return Ok(());
            };
            let run: Vec<BlockNo> = model
                .blocks
                .range(first..)
                .take(count)
                .map(|(&b, _)| b)
                .collect();
            for block in run {
                model.blocks.remove(&block);
                prop_assert_eq!(pool.free(block), Ok(()));
            }
        }
        Op::FreeAny(number) => {
            let block = BlockNo(number);
            let expected = model.lookup(block).map(drop);
            prop_assert_eq!(pool.free(block), expected);
            model.blocks.remove(&block);
        }
        Op::Write {
            pick,
            offset,
            len,
            byte,
        } => {
            let Some(block) = model.pick(pick) else {
                return Ok(());
            };
            let data: Vec<u8> = (0..len).map(|i| byte.wrapping_add(i as u8)).collect();
            let expected = Model::range(offset, len);
            prop_assert_eq!(pool.write(block, offset, &data), expected.clone().map(drop));
            if let Ok(range) = expected {
                model.blocks.get_mut(&block).unwrap()[range].copy_from_slice(&data);
            }
        }
        Op::Zero { pick, offset, len } => {
            let Some(block) = model.pick(pick) else {
                return Ok(());
            };
            let expected = Model::range(offset, len);
            prop_assert_eq!(pool.zero(block, offset, len), expected.clone().map(drop));
            if let Ok(range) = expected {
                model.blocks.get_mut(&block).unwrap()[range].fill(0);
            }
        }
        Op::Read { pick, offset, len } => {
            let Some(block) = model.pick(pick) else {
                return Ok(());
            };
            let mut buf = vec![0xee; len];
            let expected = Model::range(offset, len);
            prop_assert_eq!(
                pool.read(block, offset, &mut buf),
                expected.clone().map(drop)
            );
            match expected {
                Ok(range) => prop_assert_eq!(&buf[..], &model.blocks[&block][range]),
                Err(_) => prop_assert!(buf.iter().all(|&b| b == 0xee)),
            }
        }
        Op::ReadAny(number) => {
            let block = BlockNo(number);
            let mut buf = vec![0; SMALL];
            match model.lookup(block) {
                Ok(bytes) => {
                    prop_assert_eq!(pool.read(block, 0, &mut buf), Ok(()));
                    prop_assert_eq!(&buf, bytes);
                }
                Err(error) => prop_assert_eq!(pool.read(block, 0, &mut buf), Err(error)),
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn matches_reference_model(ops in proptest::collection::vec(op(), 1..200)) {
        let capacity = 600;
        let pool = pool(capacity as u64);
        let mut model = Model { capacity, blocks: BTreeMap::new() };
        for op in ops {
            apply(&pool, &mut model, op)?;
            prop_assert_eq!(pool.used_blocks(), model.blocks.len() as u64);
            let mut chunks: Vec<u32> = model.blocks.keys().map(|b| b.0 / 256).collect();
            chunks.dedup();
            prop_assert_eq!(pool.resident_chunks(), chunks.len());
            let resident_blocks: u64 =
                chunks.iter().map(|&c| if c == 2 { 88 } else { 256 }).sum();
            prop_assert_eq!(pool.resident_bytes(), resident_blocks * SMALL as u64);
        }
    }
}
