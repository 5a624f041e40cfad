//! File locks on the ring alone (a `btfuse-shm` server, no mount): the lock scenarios of
//! `testkit/c/locks.c` (see `frontend-fuse/tests/locks.rs`, which runs them through a mount)
//! under the preload at `/btfuse/...` and on tmpfs, transcripts identical, a `SETLKW`
//! interrupted by a signal included; and a counter that 4 processes add to under `flock` and
//! `lockf`.

mod common;

use common::{SH, compile_c, same_as_tmpfs};

const LOCKS_C: &str = include_str!("../../../testkit/c/locks.c");

#[test]
fn lock_scenarios_on_the_ring_match_tmpfs() {
    let (_build, binary) = compile_c(LOCKS_C, &["-O1", "-Wall", "-Werror"]);
    let script = format!("'{}' \"$D\"", binary.display());
    same_as_tmpfs(SH, "locks", &script);
}

#[test]
fn a_counter_under_flock_and_lockf_reaches_1000_on_the_ring() {
    let (_build, binary) = compile_c(LOCKS_C, &["-O1", "-Wall", "-Werror"]);
    let script = format!("'{}' counter \"$D\"", binary.display());
    same_as_tmpfs(SH, "counter", &script);
}
