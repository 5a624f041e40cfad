//! Runs operation sequences decoded from the fuzzer's bytes on `MemFs` and on the reference
//! model, and fails on any difference or panic.
//!
//! The bytes seed proptest's ChaCha generator, so the fuzzer draws from the same operation space
//! as the property test (`testkit/tests/model_vs_memfs.rs`) and keeps the seeds whose
//! sequences reach new code. (Proptest's pass-through generator, which would let the fuzzer
//! steer each choice, splits its bytes in half at every nested strategy and then yields zeros,
//! on which rejection sampling spins forever.) Small stores and inode budgets make `ENOSPC`
//! reachable.

#![no_main]

use std::sync::Arc;

use btfuse_core::{Config, MemFs, MemPool};
use btfuse_testkit::clock::ManualClock;
use btfuse_testkit::model::Model;
use btfuse_testkit::ops::{ops_strategy, run_pair};
use libfuzzer_sys::fuzz_target;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};

/// A 32-byte generator seed that depends on every byte of `data` (four FNV-1a lanes).
fn seed(data: &[u8]) -> [u8; 32] {
    let mut lanes = [0xCBF2_9CE4_8422_2325u64; 4];
    for (i, &b) in data.iter().enumerate() {
        let lane = &mut lanes[i % 4];
        *lane = (*lane ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
    }
    let mut out = [0u8; 32];
    for (chunk, lane) in out.chunks_mut(8).zip(lanes) {
        chunk.copy_from_slice(&lane.to_le_bytes());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, data)) = data.split_first() else { return };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed(data));
    let mut runner = TestRunner::new_with_rng(RunnerConfig::default(), rng);
    let Ok(tree) = ops_strategy(1..64).new_tree(&mut runner) else { return };
    let ops = tree.current();

    // The first byte picks the store and inode budget: roomy, or tight enough to fill.
    let (blocks, max_inodes) = match shape % 4 {
        0 => (8, 6),
        1 => (64, 16),
        _ => (1024, 1 << 20),
    };
    let config = Config { max_inodes, ..Config::default() };
    let clock = Arc::new(ManualClock::new());
    let memfs = MemFs::new(MemPool::new(blocks * 4096), config.clone(), clock.clone());
    let model = Model::new(config, 4096, blocks, clock.clone());
    if let Err(report) = run_pair(&memfs, &model, &clock, &ops) {
        panic!("MemFs and the model differ:\n{report}");
    }
});
