//! Runs operation sequences decoded from the fuzzer's bytes on `MemFs` and on the reference
//! model, and fails on any difference or panic.
//!
//! The bytes feed proptest's pass-through RNG, so the fuzzer explores the same operation space
//! as the property test (`testkit/tests/model_vs_memfs.rs`), guided by coverage instead of
//! chance. Small stores and inode budgets make `ENOSPC` reachable.

#![no_main]

use std::sync::Arc;

use btfuse_core::{Config, MemFs, MemPool};
use btfuse_testkit::clock::ManualClock;
use btfuse_testkit::model::Model;
use btfuse_testkit::ops::{ops_strategy, run_pair};
use libfuzzer_sys::fuzz_target;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};

fuzz_target!(|data: &[u8]| {
    let Some((&shape, data)) = data.split_first() else { return };
    let rng = TestRng::from_seed(RngAlgorithm::PassThrough, data);
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
