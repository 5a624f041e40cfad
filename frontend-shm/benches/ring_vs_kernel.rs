//! A stat through the ring against `stat(2)` on tmpfs, side by side in one run.
//!
//! Run: `cargo bench -p btfuse-shm --bench ring_vs_kernel` (add `-- --quick` for a short run).
//! Starts a `btfuse-shm` server process, and uses a directory in `/dev/shm` (tmpfs) as the
//! kernel's side. Latency: batches of 1,000 calls, alternating between the two, median and
//! spread of the per-call time over the batches. Throughput: 1 and 2 client threads calling as
//! fast as they can for a fixed time.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use btfuse_ring_client::Client;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `btfuse-shm serve` with `extra` options and connects to it, with `/dir/file` made.
fn start_server(socket: &Path, extra: &[&str]) -> (Daemon, Client) {
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_btfuse-shm"))
            .args(["serve", "--size", "256M", "--socket"])
            .arg(socket)
            .args(extra)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start btfuse-shm"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let client = loop {
        if let Ok(c) = Client::connect(socket) {
            break c;
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(10));
    };
    client.create_dir("/dir").unwrap();
    client.write("/dir/file", b"x").unwrap();
    (daemon, client)
}

fn kernel_stat(path: &CString) {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `st` a live struct for stat to fill.
    let rc = unsafe { libc::stat(path.as_ptr(), &mut st) };
    assert_eq!(rc, 0);
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn throughput(threads: usize, time: Duration, op: impl Fn() + Send + Sync + 'static) -> f64 {
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (op, stop, count) = (Arc::clone(&op), Arc::clone(&stop), Arc::clone(&count));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..100 {
                        op();
                    }
                    n += 100;
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(time);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    println!(
        "floor: one cache line bounced between two threads, {:.0} ns per round trip",
        btfuse_ring_client::channel::cache_line_round_trip(1_000_000)
    );
    let batches = if quick { 50 } else { 400 };
    let per_batch = 1000;
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, client) = start_server(&dir.path().join("bench.sock"), &[]);
    // The same server with the Prometheus exporter on: what recording costs a ring stat.
    let (_metered_daemon, metered) = start_server(
        &dir.path().join("metered.sock"),
        &["--metrics", "127.0.0.1:0"],
    );
    let shm = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
    std::fs::create_dir(shm.path().join("dir")).unwrap();
    std::fs::write(shm.path().join("dir/file"), b"x").unwrap();
    let kpath = CString::new(shm.path().join("dir/file").as_os_str().as_bytes()).unwrap();
    let rpath = Path::new("/dir/file");

    // Warm-up.
    for _ in 0..10_000 {
        client.metadata(rpath).unwrap();
        metered.metadata(rpath).unwrap();
        kernel_stat(&kpath);
    }
    let (mut ring, mut kernel, mut ping, mut ring_metered) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..batches {
        let t = Instant::now();
        for _ in 0..per_batch {
            client.metadata(rpath).unwrap();
        }
        ring.push(t.elapsed().as_nanos() as f64 / per_batch as f64);
        let t = Instant::now();
        for _ in 0..per_batch {
            client.ping().unwrap();
        }
        ping.push(t.elapsed().as_nanos() as f64 / per_batch as f64);
        let t = Instant::now();
        for _ in 0..per_batch {
            metered.metadata(rpath).unwrap();
        }
        ring_metered.push(t.elapsed().as_nanos() as f64 / per_batch as f64);
        let t = Instant::now();
        for _ in 0..per_batch {
            kernel_stat(&kpath);
        }
        kernel.push(t.elapsed().as_nanos() as f64 / per_batch as f64);
    }
    ring.sort_by(f64::total_cmp);
    ping.sort_by(f64::total_cmp);
    ring_metered.sort_by(f64::total_cmp);
    kernel.sort_by(f64::total_cmp);
    println!(
        "stat latency, ns per call over {batches} batches of {per_batch} (p10 / median / p90):"
    );
    for (name, v) in [
        ("stat(2) on tmpfs", &kernel),
        ("ring stat", &ring),
        ("ring, no work", &ping),
        ("ring stat, metrics on", &ring_metered),
    ] {
        println!(
            "  {name:<22} {:>8.0} {:>8.0} {:>8.0}",
            percentile(v, 0.1),
            percentile(v, 0.5),
            percentile(v, 0.9)
        );
    }
    println!(
        "  ring speed-up over the kernel (median): {:.2}x",
        percentile(&kernel, 0.5) / percentile(&ring, 0.5)
    );
    println!(
        "floor again after the latency runs: {:.0} ns per round trip",
        btfuse_ring_client::channel::cache_line_round_trip(1_000_000)
    );

    let time = Duration::from_millis(if quick { 300 } else { 2000 });
    println!("stat throughput, calls per second:");
    for threads in [1, 2] {
        let k = kpath.clone();
        let kernel = throughput(threads, time, move || kernel_stat(&k));
        let c = client.clone();
        let ring = throughput(threads, time, move || {
            c.metadata("/dir/file").unwrap();
        });
        println!(
            "  {threads} thread(s): stat(2) on tmpfs {kernel:>12.0}   ring {ring:>12.0}   ratio {:.2}x",
            ring / kernel
        );
    }
}
