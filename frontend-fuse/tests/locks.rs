//! File locks, and `mmap`, on a `btfuse-fuse` mount, through the kernel and under the
//! preload, against tmpfs call for call.
//!
//! The C program `testkit/c/locks.c` runs every scenario of the lock semantics (conflicting
//! ranges, upgrade and downgrade, split and merge, `F_GETLK`'s holder, close of another
//! descriptor, read-only and write-only descriptors, fork and what it shares, OFD against POSIX
//! and `flock` apart, `flock` going with the description's last close, `lockf`, a holder killed
//! with SIGKILL, a granted wait and `EDEADLK`, a `SETLKW` and a `flock` wait interrupted by a
//! signal) and prints a transcript; the transcript on the mount, plain or under the preload,
//! must be the one on tmpfs. Its `hold` and `probe` modes put a holder and a prober in two
//! separate processes, so one can run through the kernel and the other under the preload: the
//! two frontends must see each other's locks, `flock` included; and its `add` mode lets plain
//! and preloaded processes share one counter under `flock` or `lockf`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Mount, Tmpfs, compile_source, preloaded, wait_bounded};

const LOCKS_C: &str = include_str!("../../testkit/c/locks.c");
const MMAP_C: &str = include_str!("../../testkit/c/mmap.c");
/// A whole run of the scenarios takes about a second; this bounds a hang.
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn compile(build: &Path) -> PathBuf {
    compile_source(build, "locks", LOCKS_C)
}

/// Runs `binary ARGS` (under the preload or not) to its end and returns its standard output;
/// fails on a non-zero status, output on standard error, or a hang.
fn transcript(binary: &Path, args: &[&str], under_preload: bool) -> String {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env_remove("LD_PRELOAD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if under_preload {
        preloaded(&mut command);
    }
    let mut child = command.spawn().expect("run the lock program");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        text
    });
    let status = wait_bounded(&mut child, RUN_LIMIT);
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let text = reader.join().unwrap();
    assert!(
        status.is_some_and(|s| s.success()) && stderr.is_empty(),
        "locks {args:?} ended with {status:?}; stderr:\n{stderr}\nstdout:\n{text}"
    );
    text
}

fn scenarios_match_tmpfs(under_preload: bool) {
    let build = tempfile::tempdir().unwrap();
    let binary = compile(build.path());
    let mount = Mount::start(&[]);
    let tmpfs = Tmpfs::new();
    let on_mount = mount.path().join("locks");
    let on_tmpfs = tmpfs.path().join("locks");
    std::fs::create_dir(&on_mount).unwrap();
    std::fs::create_dir(&on_tmpfs).unwrap();
    let reference = transcript(&binary, &[on_tmpfs.to_str().unwrap()], false);
    let btfuse = transcript(&binary, &[on_mount.to_str().unwrap()], under_preload);
    assert_eq!(
        btfuse, reference,
        "lock scenarios on btfuse (left, preload {under_preload}) and tmpfs (right)"
    );
    assert!(reference.contains("EDEADLK") && reference.contains("pid holder"));
    assert!(
        reference.contains("child setlkw: EINTR\nchild flock: EINTR\n")
            && reference.contains("after the last close: ok\n"),
        "{reference}"
    );
}

#[test]
fn lock_scenarios_through_the_mount_match_tmpfs() {
    scenarios_match_tmpfs(false);
}

#[test]
fn lock_scenarios_under_the_preload_match_tmpfs() {
    scenarios_match_tmpfs(true);
}

/// `hold FILE` in one process (preloaded or not) and `probe FILE PID` in another: the prober's
/// transcript, with the holder's own.
fn hold_and_probe(
    binary: &Path,
    file: &Path,
    holder_preloaded: bool,
    prober_preloaded: bool,
) -> String {
    let file = file.to_str().unwrap();
    let mut command = Command::new(binary);
    command
        .args(["hold", file])
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if holder_preloaded {
        preloaded(&mut command);
    }
    let mut holder = command.spawn().expect("run the holder");
    let mut lines = BufReader::new(holder.stdout.take().unwrap());
    let mut held = String::new();
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap() == 0 {
            break;
        }
        held.push_str(&line);
        if line == "held\n" {
            break;
        }
    }
    let pid = holder.id().to_string();
    let probe = transcript(binary, &["probe", file, &pid], prober_preloaded);
    holder.stdin.take().unwrap().write_all(b"").unwrap();
    let status = wait_bounded(&mut holder, RUN_LIMIT);
    assert!(
        status.is_some_and(|s| s.success()),
        "holder ended with {status:?}"
    );
    format!("{held}--- probe\n{probe}")
}

#[test]
fn a_plain_process_and_a_preloaded_one_see_each_others_locks() {
    let build = tempfile::tempdir().unwrap();
    let binary = compile(build.path());
    let mount = Mount::start(&[]);
    let tmpfs = Tmpfs::new();
    let reference = hold_and_probe(&binary, &tmpfs.path().join("shared"), false, false);
    assert!(reference.contains("pid holder") && reference.contains("EAGAIN"));
    assert!(
        reference.contains("flock ex: EAGAIN\nflock sh: EAGAIN\n"),
        "{reference}"
    );
    for (holder, prober) in [(false, false), (true, false), (false, true), (true, true)] {
        let file = mount.path().join(format!("shared-{holder}-{prober}"));
        assert_eq!(
            hold_and_probe(&binary, &file, holder, prober),
            reference,
            "holder preloaded {holder}, prober preloaded {prober} (left) and tmpfs (right)"
        );
    }
}

/// Four processes add 1 to a counter 250 times each under `flock`, then under `lockf`: on
/// the mount and under the preload the total is 1000 as on tmpfs.
#[test]
fn a_counter_under_flock_and_lockf_reaches_1000() {
    let build = tempfile::tempdir().unwrap();
    let binary = compile(build.path());
    let mount = Mount::start(&[]);
    let tmpfs = Tmpfs::new();
    let reference = transcript(&binary, &["counter", tmpfs.path().to_str().unwrap()], false);
    assert_eq!(
        reference,
        "flock counter: 1000 (0 failed)\nlockf counter: 1000 (0 failed)\n"
    );
    for preload in [false, true] {
        let dir = mount.path().join(format!("counter-{preload}"));
        std::fs::create_dir(&dir).unwrap();
        let counted = transcript(&binary, &["counter", dir.to_str().unwrap()], preload);
        assert_eq!(counted, reference, "preload {preload}");
    }
}

/// `testkit/c/mmap.c` maps a file private and shared, stores, `msync`s, reads back through
/// `read`, closes the descriptor under a live mapping, and maps descriptors whose access
/// forbids it: through the mount and under the preload (where a shared mapping maps a kernel
/// file of the same inode) the transcript is tmpfs's.
#[test]
fn mmap_through_the_mount_and_under_the_preload_matches_tmpfs() {
    let build = tempfile::tempdir().unwrap();
    let binary = compile_source(build.path(), "mmap", MMAP_C);
    let mount = Mount::start(&[]);
    let tmpfs = Tmpfs::new();
    let reference = transcript(&binary, &[tmpfs.path().to_str().unwrap()], false);
    assert!(reference.contains("file after shared store: read 19 [hello, MAPPED world]"));
    for preload in [false, true] {
        let dir = mount.path().join(format!("mmap-{preload}"));
        std::fs::create_dir(&dir).unwrap();
        let mapped = transcript(&binary, &[dir.to_str().unwrap()], preload);
        assert_eq!(
            mapped, reference,
            "preload {preload} (left) and tmpfs (right)"
        );
    }
}

/// Four processes started apart, two plain and two under the preload, add 1 to one counter
/// on the mount 250 times each under `flock`, then under `lockf`: the total is exactly 1000
/// each time, so a `flock` (or a `lockf`) through the kernel excludes one over the ring and
/// the other way round.
#[test]
fn plain_and_preloaded_processes_share_a_counter_under_flock_and_lockf() {
    let build = tempfile::tempdir().unwrap();
    let binary = compile(build.path());
    let mount = Mount::start(&[]);
    let counter = mount.path().join("mixed-counter");
    for lock in ["flock", "lockf"] {
        std::fs::write(&counter, "0").unwrap();
        let adders: Vec<_> = [false, true, false, true]
            .into_iter()
            .map(|preload| {
                let mut command = Command::new(&binary);
                command
                    .args(["add", counter.to_str().unwrap(), "250", lock])
                    .env_remove("LD_PRELOAD")
                    .stdout(Stdio::piped());
                if preload {
                    preloaded(&mut command);
                }
                (preload, command.spawn().expect("run an adder"))
            })
            .collect();
        for (preload, mut adder) in adders {
            let status = wait_bounded(&mut adder, RUN_LIMIT);
            let mut said = String::new();
            std::io::Read::read_to_string(adder.stdout.as_mut().unwrap(), &mut said).unwrap();
            assert!(
                status.is_some_and(|s| s.success()),
                "{lock} adder (preload {preload}) ended with {status:?}: {said}"
            );
        }
        assert_eq!(std::fs::read_to_string(&counter).unwrap(), "1000", "{lock}");
    }
}
