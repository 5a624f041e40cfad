//! Where a worker runs: one that finds its only client on its own CPU, on a machine with
//! another CPU free, moves there, so that the client gets its CPU back and the two stop
//! handing one CPU back and forth. A test binary of its own: it pins threads by name, and
//! the only server threads in this process are its server's.

#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use btfuse_core::ring::{Request, Response, Target};
use btfuse_ring_client::handshake::Hello;
use btfuse_ring_client::raw::RawChannel;
use btfuse_ring_client::waiting;

mod common;

/// A set of one CPU.
fn only(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes one bit of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

/// Lets thread `tid` (0: the calling one) run on `cpu` only.
fn pin(tid: libc::pid_t, cpu: usize) {
    let set = only(cpu);
    // SAFETY: `set` is a valid cpu_set_t of the size given.
    let rc = unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

/// How many CPUs this process may run on.
fn cpus() -> usize {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it; CPU_COUNT reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        libc::CPU_COUNT(&set) as usize
    }
}

/// The ids of this process's threads called `name`.
fn threads_named(name: &str) -> Vec<libc::pid_t> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let task = task.ok()?;
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            (comm.trim_end() == name).then(|| task.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

#[test]
fn a_worker_beside_its_only_client_moves_to_another_cpu() {
    if cpus() < 2 {
        eprintln!("one CPU: nowhere to move to; nothing to test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, socket) = common::server(dir.path(), 2);
    let stat = Request::Stat {
        target: Target::Path {
            at: None,
            path: b"/",
            follow: true,
        },
    };
    let call = |channel: &mut RawChannel, tag| {
        channel
            .call(tag, &stat, |response| {
                assert!(matches!(response, Response::Attr(_)), "{response:?}");
                Ok(())
            })
            .unwrap();
    };
    // A channel for each worker (each goes to the one with fewest), answered before any
    // pinning: a worker learns the CPUs it may use when it starts, and both have started
    // once both have answered.
    let (mut channel, _, _) = RawChannel::connect(&socket, Hello::NewSession).unwrap();
    let (mut other, _, _) = RawChannel::connect(&socket, Hello::NewSession).unwrap();
    call(&mut channel, 1);
    call(&mut other, 1);
    let cpu = waiting::current_cpu() as usize - 1;
    let mine = (cpu + 1) as u32;
    pin(0, cpu);
    // The workers put beside the client, where the scheduler often puts a thread it wakes:
    // beside its waker.
    let workers: Vec<_> = (0..2)
        .flat_map(|i| threads_named(&format!("ring-{i}")))
        .collect();
    assert_eq!(workers.len(), 2, "the server's two workers");
    for tid in workers {
        pin(tid, cpu);
    }
    // Calls until the worker says it runs elsewhere. It stays where it is only while the
    // machine counts as contended (a preemption seen holds that for 80 ms at most).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut calls = 1;
    let moved = loop {
        calls += 1;
        call(&mut channel, calls);
        let server_cpu = channel
            .region()
            .server_cpu()
            .load(std::sync::atomic::Ordering::Relaxed);
        if server_cpu != 0 && server_cpu != mine {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    assert_eq!(
        channel
            .region()
            .client_cpu()
            .load(std::sync::atomic::Ordering::Relaxed),
        mine
    );
    assert!(
        moved,
        "the worker stayed on its client's CPU through {calls} calls"
    );
    server.shutdown();
}
