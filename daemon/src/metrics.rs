//! Prometheus metrics for both daemons, served by `--metrics ADDR`.
//!
//! Recording is per thread: each thread that records gets its own block of counters (plain
//! loads and stores of atomics it alone writes, no locked instructions and no shared lock),
//! and a scrape adds the blocks up. Durations come from the CPU's time-stamp counter
//! (`quanta`), about 9 ns a reading. With no `--metrics`, recording is one branch.
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
//! The `fuse` frontend's operations are the engine calls the FUSE adapter makes (`lookup`,
//! `getattr`, `read`, ...); the `shm` frontend's are the ring's requests (`stat`, `open`,
//! `pread`, ...), each timed from the moment the server took it to the moment it answered.

use std::cell::OnceCell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use btfuse_core::ring::Request;
use btfuse_core::{
    AccessMask, Attr, ContentWatch, Credentials, DirEntry, Errno, FallocateMode, Fh, FileType,
    Filesystem, Ino, OpenFlags, RenameMode, Result, SeekWhence, SetAttr, StatFs, XattrMode,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

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

/// The HTTP endpoint, running until dropped.
pub struct Exporter {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Exporter {
    /// The address it listens on (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Turns recording on and serves `GET /metrics` on `addr`. `gauges` is called at each
/// scrape. Fails if the address cannot be bound (in use, not local, no permission); only one
/// exporter may run in a process.
pub fn serve(
    addr: SocketAddr,
    gauges: impl Fn() -> Gauges + Send + Sync + 'static,
) -> io::Result<Exporter> {
    let server = tiny_http::Server::http(addr).map_err(|e| {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("cannot listen on {addr}: {e}"),
        )
    })?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| io::Error::other("metrics listener has no IP address"))?;
    let recorder = Recorder {
        threads: Mutex::new(Vec::new()),
        clock: quanta::Clock::new(),
        gauges: Box::new(gauges),
    };
    if RECORDER.set(recorder).is_err() {
        return Err(io::Error::other("metrics are already being served"));
    }
    let server = Arc::new(server);
    let serving = Arc::clone(&server);
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in serving.incoming_requests() {
                respond(request);
            }
        })?;
    Ok(Exporter {
        server,
        thread: Some(thread),
        addr: bound,
    })
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn respond(request: tiny_http::Request) {
    let path = request.url().split('?').next().unwrap_or("");
    let response = if *request.method() != tiny_http::Method::Get {
        tiny_http::Response::from_string("only GET\n").with_status_code(405)
    } else if path != "/metrics" {
        tiny_http::Response::from_string("metrics are at /metrics\n").with_status_code(404)
    } else {
        match exposition() {
            Ok(text) => {
                let header =
                    tiny_http::Header::from_bytes(&b"Content-Type"[..], CONTENT_TYPE.as_bytes())
                        .unwrap_or_else(|()| unreachable!("a constant header is valid"));
                tiny_http::Response::from_string(text).with_header(header)
            }
            Err(e) => tiny_http::Response::from_string(format!("{e}\n")).with_status_code(500),
        }
    };
    if let Err(e) = request.respond(response) {
        log::debug!("metrics response: {e}");
    }
}

/// What a ring server reports at each scrape.
pub trait RingGauges: Send + Sync {
    /// Channels being served right now.
    fn channels(&self) -> usize;

    /// Requests published by clients and not yet taken, as the workers last saw them.
    fn requests_waiting(&self) -> usize;
}

/// Where a daemon's ring server leaves its counters once it runs (the exporter starts first).
pub type RingSlot = Arc<OnceLock<Arc<dyn RingGauges>>>;

/// [`serve`] for a daemon over `fs` (at most `inodes_total` inodes) and the ring server that
/// will fill `ring`; logs the address it listens on.
pub fn serve_engine<B: btfuse_core::BlockStore + 'static>(
    addr: SocketAddr,
    fs: Arc<btfuse_core::MemFs<B>>,
    inodes_total: u64,
    ring: RingSlot,
) -> io::Result<Exporter> {
    let exporter = serve(addr, move || {
        let usage = fs.usage();
        let ring = ring.get();
        Gauges {
            // Hard links take units of the budget as inodes do: used + free = total.
            inodes_used: usage.inodes_charged,
            inodes_total,
            blocks_used: usage.blocks_used,
            blocks_total: usage.blocks_total,
            block_size: usage.block_size,
            open_handles: usage.handles,
            ring_clients: ring.map_or(0, |r| r.channels() as u64),
            ring_requests_waiting: ring.map_or(0, |r| r.requests_waiting() as u64),
        }
    })?;
    log::info!("metrics on http://{}/metrics", exporter.addr());
    Ok(exporter)
}

/// The OpenMetrics text of everything recorded so far.
pub fn exposition() -> std::result::Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Adds up the threads' counters at each scrape.
#[derive(Debug)]
struct Snapshot;

struct Totals {
    ops: [Vec<OpTotals>; 2],
    read_bytes: [u64; 2],
    written_bytes: [u64; 2],
}

#[derive(Clone, Default)]
struct OpTotals {
    count: u64,
    sum_ns: u64,
    buckets: [u64; BUCKETS_NS.len()],
    errors: [u64; ERRNOS.len()],
}

fn totals(recorder: &Recorder) -> Totals {
    let mut t = Totals {
        ops: FRONTENDS.map(|(frontend, _)| vec![OpTotals::default(); frontend.operations().len()]),
        read_bytes: [0; 2],
        written_bytes: [0; 2],
    };
    for cells in recorder
        .threads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        for f in 0..2 {
            for (sum, op) in t.ops[f].iter_mut().zip(cells.ops[f].iter()) {
                sum.count += op.count.get();
                sum.sum_ns += op.sum_ns.get();
                for (s, b) in sum.buckets.iter_mut().zip(&op.buckets) {
                    *s += b.get();
                }
                for (s, e) in sum.errors.iter_mut().zip(&op.errors) {
                    *s += e.get();
                }
            }
            t.read_bytes[f] += cells.read_bytes[f].get();
            t.written_bytes[f] += cells.written_bytes[f].get();
        }
    }
    t
}

/// A gauge value, encoded by prometheus-client's gauge encoder.
struct Value(i64);

impl EncodeMetric for Value {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
        encoder.encode_gauge(&self.0)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    Value(i64::try_from(value).unwrap_or(i64::MAX)).encode(metric)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let Some(recorder) = RECORDER.get() else {
            return Ok(());
        };
        let t = totals(recorder);
        let operations = FRONTENDS.map(|(frontend, _)| frontend.operation_labels());
        {
            let mut m = encoder.encode_descriptor(
                "btfuse_operations",
                "Operations served, by frontend and operation.",
                None,
                MetricType::Counter,
            )?;
            for (f, (_, frontend)) in FRONTENDS.iter().enumerate() {
                for (op, name) in t.ops[f].iter().zip(&operations[f]) {
                    if op.count == 0 {
                        continue;
                    }
                    let labels = [("frontend", *frontend), ("operation", name.as_str())];
                    m.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&op.count, None)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "btfuse_operation_errors",
                "Operations that failed, by frontend, operation and errno.",
                None,
                MetricType::Counter,
            )?;
            for (f, (_, frontend)) in FRONTENDS.iter().enumerate() {
                for (op, name) in t.ops[f].iter().zip(&operations[f]) {
                    for (count, errno) in op.errors.iter().zip(ERRNOS) {
                        if *count == 0 {
                            continue;
                        }
                        let labels = [
                            ("frontend", *frontend),
                            ("operation", name.as_str()),
                            ("errno", errno.name()),
                        ];
                        m.encode_family(&labels)?
                            .encode_counter::<NoLabelSet, _, u64>(count, None)?;
                    }
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "btfuse_operation_duration_seconds",
                "Time to serve an operation, from its arrival in the daemon to its answer.",
                None,
                MetricType::Histogram,
            )?;
            for (f, (_, frontend)) in FRONTENDS.iter().enumerate() {
                for (op, name) in t.ops[f].iter().zip(&operations[f]) {
                    if op.count == 0 {
                        continue;
                    }
                    // Per-bucket counts: the encoder makes them cumulative.
                    let mut buckets: Vec<(f64, u64)> = BUCKETS_NS
                        .iter()
                        .zip(op.buckets)
                        .map(|(&bound, n)| (bound as f64 / 1e9, n))
                        .collect();
                    let bounded: u64 = op.buckets.iter().sum();
                    buckets.push((f64::INFINITY, op.count.saturating_sub(bounded)));
                    let labels = [("frontend", *frontend), ("operation", name.as_str())];
                    m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                        op.sum_ns as f64 / 1e9,
                        op.count,
                        &buckets,
                        None,
                    )?;
                }
            }
        }
        for (metric, help, values) in [
            ("btfuse_read_bytes", "Bytes read from files.", t.read_bytes),
            (
                "btfuse_written_bytes",
                "Bytes written to files.",
                t.written_bytes,
            ),
        ] {
            let mut m = encoder.encode_descriptor(metric, help, None, MetricType::Counter)?;
            for ((_, frontend), value) in FRONTENDS.iter().zip(values) {
                m.encode_family(&[("frontend", *frontend)])?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }
        let g = (recorder.gauges)();
        gauge(
            &mut encoder,
            "btfuse_inodes_used",
            "Live inodes.",
            g.inodes_used,
        )?;
        gauge(
            &mut encoder,
            "btfuse_inodes_total",
            "Most inodes the filesystem may hold.",
            g.inodes_total,
        )?;
        gauge(
            &mut encoder,
            "btfuse_blocks_used",
            "Blocks holding file data.",
            g.blocks_used,
        )?;
        gauge(
            &mut encoder,
            "btfuse_blocks_total",
            "Blocks the store can hold.",
            g.blocks_total,
        )?;
        gauge(
            &mut encoder,
            "btfuse_block_size_bytes",
            "Bytes per block.",
            g.block_size,
        )?;
        gauge(
            &mut encoder,
            "btfuse_open_handles",
            "Open file and directory handles.",
            g.open_handles,
        )?;
        gauge(
            &mut encoder,
            "btfuse_ring_clients",
            "Connected ring channels.",
            g.ring_clients,
        )?;
        gauge(
            &mut encoder,
            "btfuse_ring_requests_waiting",
            "Ring requests published and not yet taken, as the workers last saw them.",
            g.ring_requests_waiting,
        )?;
        let mut m = encoder.encode_descriptor(
            "btfuse_build",
            "The running build.",
            None,
            MetricType::Info,
        )?;
        m.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        Ok(())
    }
}

/// An engine that records each call as an operation of `frontend`: how the FUSE frontend is
/// metered, since its adapter makes one engine call per kernel request.
pub struct Metered<F> {
    inner: Arc<F>,
    frontend: Frontend,
}

impl<F> Metered<F> {
    /// Meters calls to `inner` as operations of `frontend`.
    pub fn new(inner: Arc<F>, frontend: Frontend) -> Metered<F> {
        Metered { inner, frontend }
    }

    /// The engine underneath.
    pub fn inner(&self) -> &Arc<F> {
        &self.inner
    }

    #[inline]
    fn done<T>(&self, op: EngineOp, start: Option<Start>, result: &Result<T>) {
        record(
            self.frontend,
            op as usize,
            start,
            result.as_ref().err().copied(),
        );
    }
}

/// The engine's calls, in [`FUSE_OPERATIONS`] order.
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs)]
pub enum EngineOp {
    Lookup,
    Find,
    Forget,
    Getattr,
    Setattr,
    Mknod,
    Mkdir,
    Create,
    Unlink,
    Rmdir,
    Rename,
    Link,
    Symlink,
    Readlink,
    Open,
    Release,
    Read,
    Write,
    Fallocate,
    Lseek,
    Readdir,
    Statfs,
    Getxattr,
    Setxattr,
    Listxattr,
    Removexattr,
    Access,
    Fsync,
}

macro_rules! metered {
    ($self:ident, $op:ident, $call:expr) => {{
        let start = start();
        let result = $call;
        $self.done(EngineOp::$op, start, &result);
        result
    }};
}

impl<F: Filesystem> Filesystem for Metered<F> {
    fn lookup(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<Attr> {
        metered!(self, Lookup, self.inner.lookup(cred, parent, name))
    }

    fn find(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<Attr> {
        metered!(self, Find, self.inner.find(cred, parent, name))
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        let start = start();
        self.inner.forget(ino, nlookup);
        record(self.frontend, EngineOp::Forget as usize, start, None);
    }

    fn looked_up(&self, ino: Ino) -> bool {
        self.inner.looked_up(ino)
    }

    fn getattr(&self, cred: &Credentials, ino: Ino) -> Result<Attr> {
        metered!(self, Getattr, self.inner.getattr(cred, ino))
    }

    fn setattr(&self, cred: &Credentials, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr> {
        metered!(self, Setattr, self.inner.setattr(cred, ino, set, fh))
    }

    fn mknod(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        kind: FileType,
        perm: u32,
        rdev: u32,
    ) -> Result<Attr> {
        metered!(
            self,
            Mknod,
            self.inner.mknod(cred, parent, name, kind, perm, rdev)
        )
    }

    fn mkdir(&self, cred: &Credentials, parent: Ino, name: &[u8], perm: u32) -> Result<Attr> {
        metered!(self, Mkdir, self.inner.mkdir(cred, parent, name, perm))
    }

    fn create(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        perm: u32,
        flags: OpenFlags,
    ) -> Result<(Attr, Fh)> {
        metered!(
            self,
            Create,
            self.inner.create(cred, parent, name, perm, flags)
        )
    }

    fn unlink(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<()> {
        metered!(self, Unlink, self.inner.unlink(cred, parent, name))
    }

    fn rmdir(&self, cred: &Credentials, parent: Ino, name: &[u8]) -> Result<()> {
        metered!(self, Rmdir, self.inner.rmdir(cred, parent, name))
    }

    fn rename(
        &self,
        cred: &Credentials,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        mode: RenameMode,
    ) -> Result<()> {
        metered!(
            self,
            Rename,
            self.inner
                .rename(cred, parent, name, new_parent, new_name, mode)
        )
    }

    fn link(&self, cred: &Credentials, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        metered!(self, Link, self.inner.link(cred, ino, new_parent, new_name))
    }

    fn symlink(&self, cred: &Credentials, parent: Ino, name: &[u8], target: &[u8]) -> Result<Attr> {
        metered!(
            self,
            Symlink,
            self.inner.symlink(cred, parent, name, target)
        )
    }

    fn readlink(&self, cred: &Credentials, ino: Ino) -> Result<Vec<u8>> {
        metered!(self, Readlink, self.inner.readlink(cred, ino))
    }

    fn open(&self, cred: &Credentials, ino: Ino, flags: OpenFlags) -> Result<Fh> {
        metered!(self, Open, self.inner.open(cred, ino, flags))
    }

    fn release(&self, fh: Fh) -> Result<()> {
        metered!(self, Release, self.inner.release(fh))
    }

    fn read(&self, cred: &Credentials, fh: Fh, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let result = metered!(self, Read, self.inner.read(cred, fh, offset, buf));
        if let Ok(n) = result {
            add_bytes(self.frontend, n as u64, 0);
        }
        result
    }

    fn write(&self, cred: &Credentials, fh: Fh, offset: u64, data: &[u8]) -> Result<(usize, u64)> {
        let result = metered!(self, Write, self.inner.write(cred, fh, offset, data));
        if let Ok((n, _)) = result {
            add_bytes(self.frontend, 0, n as u64);
        }
        result
    }

    fn fallocate(
        &self,
        cred: &Credentials,
        fh: Fh,
        mode: FallocateMode,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        metered!(
            self,
            Fallocate,
            self.inner.fallocate(cred, fh, mode, offset, len)
        )
    }

    fn lseek(&self, cred: &Credentials, fh: Fh, offset: u64, whence: SeekWhence) -> Result<u64> {
        metered!(self, Lseek, self.inner.lseek(cred, fh, offset, whence))
    }

    fn readdir(
        &self,
        cred: &Credentials,
        fh: Fh,
        cookie: u64,
        sink: &mut dyn FnMut(DirEntry<'_>) -> bool,
    ) -> Result<()> {
        metered!(self, Readdir, self.inner.readdir(cred, fh, cookie, sink))
    }

    fn statfs(&self, cred: &Credentials) -> Result<StatFs> {
        metered!(self, Statfs, self.inner.statfs(cred))
    }

    fn getxattr(&self, cred: &Credentials, ino: Ino, name: &[u8], buf: &mut [u8]) -> Result<usize> {
        metered!(self, Getxattr, self.inner.getxattr(cred, ino, name, buf))
    }

    fn setxattr(
        &self,
        cred: &Credentials,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<()> {
        metered!(
            self,
            Setxattr,
            self.inner.setxattr(cred, ino, name, value, mode)
        )
    }

    fn listxattr(&self, cred: &Credentials, ino: Ino, buf: &mut [u8]) -> Result<usize> {
        metered!(self, Listxattr, self.inner.listxattr(cred, ino, buf))
    }

    fn removexattr(&self, cred: &Credentials, ino: Ino, name: &[u8]) -> Result<()> {
        metered!(self, Removexattr, self.inner.removexattr(cred, ino, name))
    }

    fn access(&self, cred: &Credentials, ino: Ino, mask: AccessMask) -> Result<()> {
        metered!(self, Access, self.inner.access(cred, ino, mask))
    }

    fn fsync(&self, cred: &Credentials, fh: Fh, datasync: bool) -> Result<()> {
        metered!(self, Fsync, self.inner.fsync(cred, fh, datasync))
    }
    fn watch_content(&self, watch: std::sync::Arc<dyn ContentWatch>) -> bool {
        self.inner.watch_content(watch)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    }

    /// The only test that turns recording on: the recorder is one per process.
    #[test]
    fn recorded_operations_reach_the_exposition_exactly() {
        let exporter = serve("127.0.0.1:0".parse().unwrap(), || Gauges {
            inodes_used: 7,
            inodes_total: 100,
            ring_clients: 3,
            ..Gauges::default()
        })
        .unwrap();
        assert!(
            serve("127.0.0.1:0".parse().unwrap(), Gauges::default).is_err(),
            "one per process"
        );
        let stat = Request::Stat {
            target: btfuse_core::ring::Target::Fd(0),
        }
        .index();
        record_ns(Frontend::Shm, stat, 300, None);
        // From another thread: its own cells, added up at the scrape.
        std::thread::spawn(move || {
            record_ns(Frontend::Shm, stat, 2_000_000_000, Some(Errno::NotFound));
            add_bytes(Frontend::Fuse, 10, 20);
        })
        .join()
        .unwrap();
        record_ns(Frontend::Fuse, EngineOp::Getattr as usize, 1_000, None);
        let text = exposition().unwrap();
        for line in [
            r#"btfuse_operations_total{frontend="shm",operation="stat"} 2"#,
            r#"btfuse_operation_errors_total{frontend="shm",operation="stat",errno="ENOENT"} 1"#,
            r#"btfuse_operation_duration_seconds_bucket{le="2.5e-7",frontend="shm",operation="stat"} 0"#,
            r#"btfuse_operation_duration_seconds_bucket{le="3.5e-7",frontend="shm",operation="stat"} 1"#,
            r#"btfuse_operation_duration_seconds_bucket{le="5e-7",frontend="shm",operation="stat"} 1"#,
            r#"btfuse_operation_duration_seconds_bucket{le="1.0",frontend="shm",operation="stat"} 1"#,
            r#"btfuse_operation_duration_seconds_bucket{le="+Inf",frontend="shm",operation="stat"} 2"#,
            r#"btfuse_operation_duration_seconds_count{frontend="shm",operation="stat"} 2"#,
            r#"btfuse_operation_duration_seconds_sum{frontend="shm",operation="stat"} 2.0000003"#,
            r#"btfuse_operation_duration_seconds_bucket{le="0.000001",frontend="fuse",operation="getattr"} 1"#,
            r#"btfuse_read_bytes_total{frontend="fuse"} 10"#,
            r#"btfuse_written_bytes_total{frontend="fuse"} 20"#,
            "btfuse_inodes_used 7",
            "btfuse_inodes_total 100",
            "btfuse_ring_clients 3",
            "btfuse_ring_requests_waiting 0",
            r#"btfuse_build_info{version=""#,
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(line)),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(
            !text.contains(r#"operation="fork""#),
            "operations never seen are not listed"
        );
        assert!(text.ends_with("# EOF\n"));
        let response = get(exporter.addr(), "/metrics");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains(CONTENT_TYPE));
        assert!(response.contains(r#"btfuse_operations_total{frontend="shm",operation="stat"} 2"#));
        assert!(get(exporter.addr(), "/").starts_with("HTTP/1.1 404"));
    }

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
