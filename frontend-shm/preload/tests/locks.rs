//! File locks on the ring alone (a `btfuse-shm` server, no mount): the lock scenarios of
//! `testkit/c/locks.c` (see `frontend-fuse/tests/locks.rs`, which runs them through a mount)
//! under the preload at `/btfuse/...` and on tmpfs, transcripts identical, a `SETLKW`
//! interrupted by a signal included; a counter that 4 processes add to under `flock` and
//! `lockf`; and `mmap`, whose private mappings are filled from the ring, and whose shared
//! writable ones fail with `ENODEV` with no mount.

mod common;

use common::{SH, Server, compile_c, run, same_as_tmpfs};

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

const MMAP_C: &str = include_str!("../../../testkit/c/mmap.c");

#[test]
fn private_mappings_on_the_ring_match_tmpfs() {
    let (_build, binary) = compile_c(MMAP_C, &["-O1", "-Wall", "-Werror"]);
    let script = format!("'{}' \"$D\" private-only", binary.display());
    same_as_tmpfs(SH, "mmap", &script);
}

#[test]
fn a_shared_writable_mapping_without_a_mount_is_enodev() {
    let (_build, binary) = compile_c(MMAP_C, &["-O1", "-Wall", "-Werror"]);
    let server = Server::start();
    let setup = btfuse_ring_client::Client::connect(&server.socket).unwrap();
    setup.create_dir_mode("/shared", 0o755).unwrap();
    let script = format!("'{}' \"$D\"", binary.display());
    let transcript = run(SH, &script, "/btfuse/shared", Some(&server));
    assert!(
        transcript.contains("status Some(1)") && transcript.contains("shared map: ENODEV"),
        "{transcript}"
    );
}

/// An `exec` closes the close-on-exec descriptors, and with the last one a `flock` goes: a
/// program that keeps one descriptor (so the next program takes a table over) and locked a
/// file through a close-on-exec one starts a program that finds the file unlocked, as on
/// tmpfs.
#[test]
fn a_flock_through_a_close_on_exec_descriptor_goes_at_exec() {
    let script = r#"
import fcntl, os
d = os.environ["D"]
kept = os.open(d + "/kept", os.O_WRONLY | os.O_CREAT, 0o644)
os.set_inheritable(kept, True)
locked = os.open(d + "/locked", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
fcntl.flock(locked, fcntl.LOCK_EX)
os.execvp("sh", ["sh", "-c", 'flock -n "$D/locked" echo free; echo "status $?"; echo kept >&%d' % kept])
"#;
    same_as_tmpfs(common::PYTHON, "cloexec-flock", script);
}
