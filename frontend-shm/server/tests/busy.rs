//! The ring on a busy machine, with the real code: every waiting policy (`waiting`: a long
//! spin on an idle machine, a short one or none at all on a contended one) is taken while
//! CPU hogs and more client threads than cores compete for the CPUs, and every call must
//! come back with exactly the right answer. A lost wake-up of the worker would leave a call
//! hanging (the test fails on its deadline); the protocol itself is model-checked in
//! `frontend-shm/client/tests/wake_protocol.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use btfuse_ring_client::Client;
use btfuse_ring_client::waiting::{self, MACHINE};

mod common;
use common::server;

/// Calls each client thread makes (`BTFUSE_BUSY_CALLS` overrides).
fn calls() -> u64 {
    std::env::var("BTFUSE_BUSY_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000)
}

/// Longest any one call may take before the test calls it lost (a lost wake-up of the
/// worker never comes back; a client's own lost wake-up would cost its 100 ms check).
const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `f` while `hogs` threads burn CPU and another thread flips the process between
/// "contended" and not every few milliseconds, so that calls meet every waiting policy.
fn under_pressure<T>(hogs: usize, f: impl FnOnce() -> T) -> T {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..hogs {
            s.spawn(|| {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1024 {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    }
                    std::hint::black_box(x);
                }
            });
        }
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                // A hold of 10 ms or more starts now (or goes on): the next waits spin little
                // or not at all; between holds they spin as on an idle machine.
                MACHINE.preempted(waiting::now_ns());
                std::thread::sleep(Duration::from_millis(37));
            }
        });
        let out = f();
        stop.store(true, Ordering::Relaxed);
        out
    })
}

/// `threads` client threads of one session, each writing its own file and reading back
/// exactly what it wrote, call after call; the longest call.
fn round_trips(client: &Client, threads: u64) -> Duration {
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let client = client.clone();
                s.spawn(move || {
                    let path = format!("/t{t}");
                    let mut longest = Duration::ZERO;
                    for i in 0..calls() {
                        let data = format!("thread {t} call {i}");
                        let start = Instant::now();
                        client.write(&path, data.as_bytes()).unwrap();
                        let back = client.read(&path).unwrap();
                        let took = start.elapsed();
                        assert_eq!(back, data.as_bytes(), "thread {t}, call {i}");
                        assert!(took < DEADLINE, "thread {t}, call {i} took {took:?}");
                        longest = longest.max(took);
                    }
                    longest
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap_or_default()
    })
}

#[test]
fn one_channel_on_one_worker_never_misses_a_wake_up() {
    let dir = tempfile::tempdir().unwrap();
    // One worker serving one channel: nothing else would wake it if a wake-up were lost.
    let (server, socket) = server(dir.path(), 1);
    let client = Client::connect(&socket).unwrap();
    let longest = under_pressure(2, || round_trips(&client, 1));
    eprintln!("one channel: longest call {longest:?}");
    drop(client);
    server.shutdown();
}

#[test]
fn more_client_threads_than_cores_all_get_their_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (server, socket) = server(dir.path(), 2);
    let client = Client::connect(&socket).unwrap();
    let longest = under_pressure(1, || round_trips(&client, 6));
    eprintln!("six threads: longest call {longest:?}");
    // Every file holds its thread's last write.
    for t in 0..6 {
        let last = format!("thread {t} call {}", calls() - 1);
        assert_eq!(client.read(format!("/t{t}")).unwrap(), last.as_bytes());
    }
    drop(client);
    server.shutdown();
}
