//! The FUSE mount against tmpfs, side by side in one run: the same workloads on a fresh
//! `btfuse-fuse` mount and on a fresh tmpfs, each repeated, medians compared as ratios.
//!
//! Run as root: `cargo bench -p btfuse-fuse --bench fuse_vs_tmpfs` (add `-- --quick` for a
//! short run; `BTFUSE_BENCH_ARGS="--threads 1"` passes options to the daemon, to compare
//! settings). It mounts and unmounts what it uses, also when a workload fails.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A mounted directory that unmounts itself.
struct Mounted {
    dir: PathBuf,
    daemon: Option<Child>,
}

impl Mounted {
    fn btfuse() -> Mounted {
        let dir = scratch("btfuse");
        let daemon = Command::new(env!("CARGO_BIN_EXE_btfuse-fuse"))
            .args(["--size", "3G", "--mode", "1777"])
            .args(extra_daemon_args())
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start btfuse-fuse");
        let m = Mounted {
            dir,
            daemon: Some(daemon),
        };
        wait_mounted(&m.dir, "fuse.btfuse-fuse");
        m
    }

    fn tmpfs() -> Mounted {
        let dir = scratch("tmpfs");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=3G", "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(ok.success(), "mounting tmpfs failed (run as root)");
        Mounted { dir, daemon: None }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        match self.daemon.take() {
            Some(mut child) => {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string())
                    .status();
                let _ = child.wait();
            }
            None => {
                let _ = Command::new("umount").arg(&self.dir).status();
            }
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// More daemon options, from `BTFUSE_BENCH_ARGS` (space-separated), to compare settings.
fn extra_daemon_args() -> Vec<String> {
    std::env::var("BTFUSE_BENCH_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("btfuse-bench-{tag}-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn wait_mounted(dir: &Path, fstype: &str) {
    let want = dir.to_string_lossy().into_owned();
    for _ in 0..200 {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if info
            .lines()
            .any(|l| l.contains(&format!(" {want} ")) && l.contains(fstype))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{want} did not get mounted");
}

/// One workload: prepares in `dir`, then returns the time of the measured part and the
/// number of operations in it.
type Workload = fn(&Path) -> (Duration, u64);

fn open_read_close(dir: &Path) -> (Duration, u64) {
    let path = dir.join("hot");
    fs::write(&path, vec![7u8; 4096]).unwrap();
    let n = 100_000;
    let mut buf = [0u8; 4096];
    let t = Instant::now();
    for _ in 0..n {
        let mut f = File::open(&path).unwrap();
        f.read_exact(&mut buf).unwrap();
    }
    (t.elapsed(), n)
}

fn stat_files(dir: &Path) -> (Duration, u64) {
    let n = 10_000;
    let d = dir.join("stat");
    fs::create_dir(&d).unwrap();
    for i in 0..n {
        File::create(d.join(format!("f{i}"))).unwrap();
    }
    let t = Instant::now();
    for i in 0..n {
        fs::metadata(d.join(format!("f{i}"))).unwrap();
    }
    (t.elapsed(), n)
}

fn create_write_close(dir: &Path) -> (Duration, u64) {
    let n = 10_000;
    let d = dir.join("create");
    fs::create_dir(&d).unwrap();
    let data = [1u8; 4096];
    let t = Instant::now();
    for i in 0..n {
        let mut f = File::create(d.join(format!("f{i}"))).unwrap();
        f.write_all(&data).unwrap();
    }
    (t.elapsed(), n)
}

fn sequential(dir: &Path, total: u64) -> (Duration, u64) {
    let path = dir.join("seq");
    let chunk = vec![3u8; 1 << 20];
    let chunks = total >> 20;
    let t = Instant::now();
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    for _ in 0..chunks {
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    let mut f = File::open(&path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..chunks {
        f.read_exact(&mut buf).unwrap();
    }
    let elapsed = t.elapsed();
    fs::remove_file(&path).unwrap();
    (elapsed, 2 * chunks)
}

fn seq_1g(dir: &Path) -> (Duration, u64) {
    sequential(dir, 1 << 30)
}

fn seq_128m(dir: &Path) -> (Duration, u64) {
    sequential(dir, 128 << 20)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 7 };
    let seq: (&str, Workload) = if quick {
        ("1 MiB write+read, 128 MiB", seq_128m)
    } else {
        ("1 MiB write+read, 1 GiB", seq_1g)
    };
    let workloads: [(&str, Workload); 4] = [
        ("open+read 4 KiB+close (100k)", open_read_close),
        ("stat (10k files)", stat_files),
        ("create+write 4 KiB+close (10k)", create_write_close),
        seq,
    ];
    println!(
        "{:<34} {:>14} {:>14} {:>8}",
        "workload (ns/op, median)", "tmpfs", "btfuse-fuse", "ratio"
    );
    for (name, work) in workloads {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for run in 0..runs {
            // Alternate which side goes first; each run on fresh mounts.
            let order = if run % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for fuse in order {
                let m = if fuse {
                    Mounted::btfuse()
                } else {
                    Mounted::tmpfs()
                };
                let (t, ops) = work(&m.dir);
                let ns = t.as_nanos() as f64 / ops as f64;
                if fuse { b.push(ns) } else { a.push(ns) }
            }
        }
        let (ta, tb) = (median(a), median(b));
        println!("{name:<34} {ta:>14.0} {tb:>14.0} {:>7.2}x", tb / ta);
    }
}
