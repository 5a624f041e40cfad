//! Prometheus metrics for both daemons, served by `--metrics ADDR`.
//!
//! Recording is per thread: each thread that records gets its own block of counters (plain
//! loads and stores of atomics it alone writes, no locked instructions and no shared lock),
//! and a scrape adds the blocks up. Durations come from the CPU's time-stamp counter
//! (`quanta`), about 9 ns a reading. With no `--metrics`, recording is one branch.
//!
//! Recording is this module's; `exporter` serves what was recorded ([`serve`],
//! [`serve_engine`]), and `metered` records every call of an engine ([`Metered`]).
//!
//! What is exported (OpenMetrics text, `GET /metrics`):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `btfuse_operations_total` | counter | `frontend` (`fuse`, `shm`), `operation` |
//! | `btfuse_operation_errors_total` | counter | `frontend`, `operation`, `errno` |
//! | `btfuse_operation_duration_seconds` | histogram | `frontend`, `operation` |
//! | `btfuse_read_bytes_total`, `btfuse_written_bytes_total` | counter | `frontend` |
//! | `btfuse_inodes_used`, `btfuse_inodes_total` | gauge | |
//! | `btfuse_blocks_used`, `btfuse_blocks_total`, `btfuse_block_size_bytes` | gauge | |
//! | `btfuse_open_handles` | gauge | |
//! | `btfuse_ring_clients`, `btfuse_ring_requests_waiting` | gauge | |
//! | `btfuse_build_info` | info | `version` |
//!
//! With `--bpf`, the programs' own metrics follow (listed in [`crate::bpf`]).
//!
//! The `fuse` frontend's operations are the engine calls the FUSE adapter makes (`lookup`,
//! `getattr`, `read`, ...); the `shm` frontend's are the ring's requests (`stat`, `open`,
//! `pread`, ...), each timed from the moment the server took it to the moment it answered.

mod exporter;
mod metered;

use std::cell::OnceCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use btfuse_core::Errno;
use btfuse_core::ring::Request;

pub use exporter::{Exporter, RingGauges, RingSlot, exposition, serve, serve_engine};
pub use metered::{EngineOp, Metered};

/// Where an operation came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frontend {
    /// The kernel, through the FUSE mount.
    Fuse = 0,
    /// The shared-memory ring.
    Shm = 1,
}

const FRONTENDS: [(Frontend, &str); 2] = [(Frontend::Fuse, "fuse"), (Frontend::Shm, "shm")];

impl Frontend {
    /// The names of this frontend's operations, by label index.
    fn operations(self) -> &'static [&'static str] {
        match self {
            Frontend::Fuse => FUSE_OPERATIONS,
            Frontend::Shm => &Request::NAMES,
        }
    }

    /// The `operation` labels of this frontend, by label index: for `shm`, the ring's
    /// requests ([`Request::NAMES`], indexed by [`Request::index`]) in lower case, `GetXattr`
    /// as `getxattr`.
    pub fn operation_labels(self) -> Vec<String> {
        self.operations()
            .iter()
            .map(|name| name.to_ascii_lowercase())
            .collect()
    }
}

/// Operation labels of the `fuse` frontend: the engine's calls, indexed by [`EngineOp`].
pub const FUSE_OPERATIONS: &[&str] = &[
    "lookup",
    "find",
    "forget",
    "getattr",
    "setattr",
    "mknod",
    "mkdir",
    "create",
    "unlink",
    "rmdir",
    "rename",
    "link",
    "symlink",
    "readlink",
    "open",
    "release",
    "read",
    "write",
    "fallocate",
    "lseek",
    "readdir",
    "statfs",
    "getxattr",
    "setxattr",
    "listxattr",
    "removexattr",
    "access",
    "fsync",
];

/// Upper bounds of the duration buckets, in nanoseconds (`+Inf` is implied).
const BUCKETS_NS: [u64; 26] = [
    50,
    100,
    150,
    200,
    250,
    350,
    500,
    750,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];

/// Every errno the engine reports, in label order.
const ERRNOS: [Errno; Errno::ALL.len()] = Errno::ALL;

/// A counter only its own thread writes: a load and a store, no locked instruction.
#[derive(Default)]
struct Cell(AtomicU64);

impl Cell {
    fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct OpCells {
    count: Cell,
    sum_ns: Cell,
    buckets: [Cell; BUCKETS_NS.len()],
    errors: [Cell; ERRNOS.len()],
}

/// One thread's counters.
struct ThreadCells {
    ops: [Box<[OpCells]>; 2],
    read_bytes: [Cell; 2],
    written_bytes: [Cell; 2],
}

impl ThreadCells {
    fn new() -> ThreadCells {
        let ops = |n: usize| (0..n).map(|_| OpCells::default()).collect::<Box<[_]>>();
        ThreadCells {
            ops: FRONTENDS.map(|(frontend, _)| ops(frontend.operations().len())),
            read_bytes: Default::default(),
            written_bytes: Default::default(),
        }
    }
}

/// Readings the daemon supplies at each scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Live inodes.
    pub inodes_used: u64,
    /// Most inodes.
    pub inodes_total: u64,
    /// Blocks holding data.
    pub blocks_used: u64,
    /// Blocks the store can hold.
    pub blocks_total: u64,
    /// Bytes per block.
    pub block_size: u64,
    /// Open engine handles.
    pub open_handles: u64,
    /// Connected ring channels.
    pub ring_clients: u64,
    /// Ring requests published and not yet taken, as the workers last saw them.
    pub ring_requests_waiting: u64,
}

type GaugeSource = Box<dyn Fn() -> Gauges + Send + Sync>;

struct Recorder {
    threads: Mutex<Vec<Arc<ThreadCells>>>,
    clock: quanta::Clock,
    gauges: GaugeSource,
}

static RECORDER: OnceLock<Recorder> = OnceLock::new();

thread_local! {
    static LOCAL: OnceCell<Arc<ThreadCells>> = const { OnceCell::new() };
}

fn with_cells(f: impl FnOnce(&ThreadCells)) {
    let Some(recorder) = RECORDER.get() else {
        return;
    };
    LOCAL.with(|local| {
        let cells = local.get_or_init(|| {
            let cells = Arc::new(ThreadCells::new());
            recorder
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Arc::clone(&cells));
            cells
        });
        f(cells);
    });
}

/// The start of a timed operation; `None` when metrics are off.
#[derive(Clone, Copy, Debug)]
pub struct Start(u64);

/// Starts timing an operation.
#[inline]
pub fn start() -> Option<Start> {
    RECORDER.get().map(|r| Start(r.clock.raw()))
}

/// Records one operation of `frontend` (label index `operation`) that began at `start` and
/// ended with `outcome`.
#[inline]
pub fn record(frontend: Frontend, operation: usize, start: Option<Start>, outcome: Option<Errno>) {
    let Some(Start(began)) = start else {
        return;
    };
    let Some(recorder) = RECORDER.get() else {
        return;
    };
    let ns = recorder.clock.delta_as_nanos(began, recorder.clock.raw());
    record_ns(frontend, operation, ns, outcome);
}

/// [`record`] with the duration already measured.
fn record_ns(frontend: Frontend, operation: usize, ns: u64, outcome: Option<Errno>) {
    with_cells(|cells| {
        let Some(op) = cells.ops[frontend as usize].get(operation) else {
            return;
        };
        op.count.add(1);
        op.sum_ns.add(ns);
        if let Some(bucket) = BUCKETS_NS.iter().position(|&b| ns <= b) {
            op.buckets[bucket].add(1);
        }
        if let Some(errno) = outcome
            && let Some(i) = ERRNOS.iter().position(|&e| e == errno)
        {
            op.errors[i].add(1);
        }
    });
}

/// Counts bytes read from and written to files through `frontend`.
#[inline]
pub fn add_bytes(frontend: Frontend, read: u64, written: u64) {
    if RECORDER.get().is_none() || (read == 0 && written == 0) {
        return;
    }
    with_cells(|cells| {
        cells.read_bytes[frontend as usize].add(read);
        cells.written_bytes[frontend as usize].add(written);
    });
}

/// Whether recording is on.
pub fn enabled() -> bool {
    RECORDER.get().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ring_opcode_has_its_label() {
        let labels = Frontend::Shm.operation_labels();
        let samples: [(Request<'_>, &str); 5] = [
            (Request::Hello { version: 1 }, "hello"),
            (Request::Fork, "fork"),
            (
                Request::ListXattr {
                    target: btfuse_core::ring::Target::Fd(3),
                    max: 0,
                },
                "listxattr",
            ),
            (Request::Close { fd: 3 }, "close"),
            (Request::Handoff { fd: 3 }, "handoff"),
        ];
        for (request, label) in samples {
            assert_eq!(labels.get(request.index()).map(String::as_str), Some(label));
        }
        // The labels dashboards and queries name: a renamed request must show here first.
        assert_eq!(
            labels,
            [
                "hello",
                "attach",
                "fork",
                "stat",
                "statstamped",
                "statdir",
                "access",
                "open",
                "mkdir",
                "rmdir",
                "unlink",
                "rename",
                "link",
                "symlink",
                "readlink",
                "truncate",
                "chmod",
                "chown",
                "utimens",
                "statfs",
                "getxattr",
                "setxattr",
                "listxattr",
                "removexattr",
                "read",
                "pread",
                "write",
                "pwrite",
                "lseek",
                "fsync",
                "fallocate",
                "dup",
                "close",
                "getdents",
                "getflags",
                "setflags",
                "handoff",
                "mapfile",
                "copyrange",
                "getlock",
                "setlock",
                "lockwait",
            ]
        );
        assert_eq!(Frontend::Fuse.operation_labels(), FUSE_OPERATIONS);
        assert_eq!(FUSE_OPERATIONS.len(), EngineOp::Fsync as usize + 1);
        assert_eq!(
            ERRNOS.len(),
            ERRNOS
                .iter()
                .map(|e| e.code())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        );
    }
}
