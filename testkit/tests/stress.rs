//! Multi-threaded stress of `MemFs` with whole-filesystem invariant checks.
//!
//! Guards what a single-threaded property test cannot see: that concurrent operations from
//! several users on a small shared namespace never panic, never deadlock (a watchdog fails the
//! test when the threads stop finishing), never answer an error no caller can have caused (`EIO`,
//! `ENOSPC` on a nearly empty store, `EBADF` on a live handle), and leave a consistent
//! filesystem behind. The consistency checks use the public API only:
//!
//! - a walk from the root reaches every directory exactly once (no cycle, no orphan), each
//!   listing has `.`/`..` right, no name twice and strictly increasing cookies, and `find`
//!   agrees with `readdir`;
//! - every inode's `nlink` equals the entries naming it (directories: 2 + subdirectories);
//! - the blocks files report, plus the blocks charged for every inode's extended attributes,
//!   add up to the store's used blocks, the live inode count is exactly what the walk reached
//!   (nothing unlinked and released survives), and the inode budget in use is those inodes
//!   plus every hard link beyond a file's first name;
//! - deleting everything returns every block, inode, handle and byte of chunk memory.
//!
//! Scenarios: random mixed operations, some inside directories removed while a worker still
//! holds them (`random_operations_keep_invariants`, eight seeded rounds; `BTFUSE_STRESS_ROUNDS`
//! soaks longer); an appender racing readers and truncaters, with records laid out so a torn
//! append shows (`appends_are_never_torn`); directories moved in opposite directions and into
//! each other (`crossing_directory_renames_never_deadlock_or_cycle`); and a file exchanged with
//! a directory while linked into it, which pins the lock order between directories and files
//! (`file_swapped_with_directory_while_linked_into_it`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::panic;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use btfuse_core::{
    Attr, BlockStore, Config, Credentials, DirEntry, Errno, FallocateMode, Fh, FileType,
    Filesystem, Ino, MemFs, MemPool, OpenFlags, RenameMode, SetAttr, XattrMode,
};
use btfuse_daemon::SystemClock;

type Fs = MemFs<MemPool>;

/// Worker threads of the random test.
const THREADS: usize = 4;
/// Operations per worker and round of the random test.
const OPS_PER_THREAD: usize = 20_000;
/// Rounds of the random test, each on a fresh filesystem with its own seeds. Set
/// `BTFUSE_STRESS_ROUNDS` for a longer soak.
const ROUNDS: u64 = 8;
/// How long the threads of one test may take before the test calls it a deadlock. Generous:
/// a debug build on a busy two-core machine finishes each test in a few seconds.
const WATCHDOG: Duration = Duration::from_secs(120);
/// Directory names of the shared namespace: few, so that walks from the root meet the same
/// directories and threads collide.
const DIR_NAMES: [&[u8]; 3] = [b"d0", b"d1", b"d2"];
/// File names of the shared namespace.
const FILE_NAMES: [&[u8]; 16] = [
    b"f0", b"f1", b"f2", b"f3", b"f4", b"f5", b"f6", b"f7", b"f8", b"f9", b"f10", b"f11", b"f12",
    b"f13", b"f14", b"f15",
];
/// Files stay below this size, so a 1 GiB store never fills.
const MAX_OFFSET: u64 = 48 * 1024;

fn new_fs() -> Arc<Fs> {
    Arc::new(MemFs::new(
        MemPool::new(1 << 30),
        Config::default(),
        SystemClock,
    ))
}

fn root() -> Credentials {
    Credentials::root()
}

/// xorshift64* seeded through splitmix64: deterministic, dependency-free, good enough here.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// Mostly a file name, now and then a directory name (so kinds get mixed up).
    fn file_name(&mut self) -> &'static [u8] {
        if self.chance(7, 8) {
            FILE_NAMES[self.index(FILE_NAMES.len())]
        } else {
            DIR_NAMES[self.index(DIR_NAMES.len())]
        }
    }

    /// Mostly a directory name, now and then a file name.
    fn dir_name(&mut self) -> &'static [u8] {
        if self.chance(7, 8) {
            DIR_NAMES[self.index(DIR_NAMES.len())]
        } else {
            FILE_NAMES[self.index(FILE_NAMES.len())]
        }
    }

    /// Any name of the namespace.
    fn any_name(&mut self) -> &'static [u8] {
        if self.chance(1, 2) {
            self.file_name()
        } else {
            self.dir_name()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Watchdog and progress reporting

/// What each thread is doing, so that a deadlock report says where the threads are stuck.
struct Progress {
    names: &'static [&'static str],
    ops: Vec<AtomicU64>,
    current: Vec<AtomicUsize>,
}

/// `Progress::current` value of a thread between operations.
const IDLE: usize = usize::MAX;

impl Progress {
    fn new(threads: usize, names: &'static [&'static str]) -> Arc<Progress> {
        Arc::new(Progress {
            names,
            ops: (0..threads).map(|_| AtomicU64::new(0)).collect(),
            current: (0..threads).map(|_| AtomicUsize::new(IDLE)).collect(),
        })
    }

    fn start(&self, thread: usize, op: usize) {
        self.current[thread].store(op, Ordering::Relaxed);
    }

    fn finish(&self, thread: usize) {
        self.current[thread].store(IDLE, Ordering::Relaxed);
        self.ops[thread].fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (t, (ops, current)) in self.ops.iter().zip(&self.current).enumerate() {
            let op = match current.load(Ordering::Relaxed) {
                IDLE => "(between operations)",
                i => self.names.get(i).copied().unwrap_or("?"),
            };
            writeln!(
                f,
                "  thread {t}: {} ops done, in {op}",
                ops.load(Ordering::Relaxed)
            )?;
        }
        Ok(())
    }
}

/// Runs `body` (which spawns and joins the worker threads) and fails the test if it has not
/// returned within `limit`. A panic inside `body` is passed on unchanged.
fn run_watched(
    test: &str,
    limit: Duration,
    progress: &Arc<Progress>,
    body: impl FnOnce() + Send + 'static,
) {
    let (done_tx, done_rx) = mpsc::channel();
    let runner = thread::Builder::new()
        .name(format!("{test}-runner"))
        .spawn(move || {
            body();
            let _ = done_tx.send(());
        })
        .expect("spawn the runner thread");
    match done_rx.recv_timeout(limit) {
        Ok(()) => runner.join().expect("the runner finished"),
        Err(RecvTimeoutError::Disconnected) => match runner.join() {
            Err(payload) => panic::resume_unwind(payload),
            Ok(()) => unreachable!("the runner returned without reporting"),
        },
        Err(RecvTimeoutError::Timeout) => panic!(
            "{test}: the threads did not finish within {limit:?}: deadlock or livelock.\n\
             Where each thread is:\n{progress}"
        ),
    }
}

/// Sets a flag when the thread owning it unwinds, so the other workers stop early.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// A barrier that gives up (panics) when another thread has failed, instead of waiting for it
/// forever and making a plain test failure look like a deadlock.
struct Rendezvous {
    threads: usize,
    /// Threads arrived in this round, and the round number.
    state: Mutex<(usize, u64)>,
    all_arrived: Condvar,
}

impl Rendezvous {
    fn new(threads: usize) -> Rendezvous {
        Rendezvous {
            threads,
            state: Mutex::new((0, 0)),
            all_arrived: Condvar::new(),
        }
    }

    /// Waits for every thread; exactly one of them gets `true`.
    fn wait(&self, stop: &AtomicBool) -> bool {
        let mut state = self.state.lock().expect("rendezvous lock");
        let round = state.1;
        state.0 += 1;
        if state.0 == self.threads {
            *state = (0, round + 1);
            self.all_arrived.notify_all();
            return true;
        }
        while state.1 == round {
            assert!(!stop.load(Ordering::Relaxed), "another thread failed");
            let timeout = Duration::from_millis(50);
            state = self
                .all_arrived
                .wait_timeout(state, timeout)
                .expect("rendezvous lock")
                .0;
        }
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Invariant checks

/// What a quiescent walk from the root found.
struct Walk {
    /// Every inode reached (the root included) with its attributes.
    attrs: HashMap<Ino, Attr>,
    /// Directory entries naming each inode (the root: none).
    entries_naming: HashMap<Ino, u32>,
    /// Subdirectories of each directory.
    subdirs: HashMap<Ino, u32>,
}

/// Lists a whole directory in one `readdir` call, as root.
fn list(fs: &Fs, dir: Ino) -> Vec<(Ino, u64, FileType, Vec<u8>)> {
    let fh = fs
        .open(
            &root(),
            dir,
            OpenFlags {
                directory: true,
                ..OpenFlags::READ
            },
        )
        .unwrap_or_else(|e| panic!("open directory {dir:?}: {e:?}"));
    let mut out = Vec::new();
    fs.readdir(&root(), fh, 0, &mut |e: DirEntry<'_>| {
        out.push((e.ino, e.cookie, e.kind, e.name.to_vec()));
        true
    })
    .unwrap_or_else(|e| panic!("readdir {dir:?}: {e:?}"));
    fs.release(fh).expect("release a directory handle");
    out
}

/// Walks the tree from the root and checks the structure of every listing on the way.
fn walk(fs: &Fs) -> Walk {
    let cred = root();
    let mut walk = Walk {
        attrs: HashMap::new(),
        entries_naming: HashMap::new(),
        subdirs: HashMap::new(),
    };
    let mut dirs_seen = HashSet::from([Ino::ROOT]);
    let mut stack = vec![(Ino::ROOT, Ino::ROOT)];
    walk.attrs.insert(
        Ino::ROOT,
        fs.getattr(&cred, Ino::ROOT).expect("getattr root"),
    );
    while let Some((dir, parent)) = stack.pop() {
        let listing = list(fs, dir);
        assert!(
            listing.len() >= 2,
            "{dir:?}: no `.` and `..` in {listing:?}"
        );
        assert_eq!(
            (listing[0].0, listing[0].1, &listing[0].3[..]),
            (dir, 1, &b"."[..])
        );
        assert_eq!(
            (listing[1].0, listing[1].1, &listing[1].3[..]),
            (parent, 2, &b".."[..]),
            "`..` of {dir:?} must name the directory holding its entry"
        );
        let mut names = HashSet::new();
        let mut last_cookie = 0;
        let mut subdirs = 0;
        for (ino, cookie, kind, name) in &listing {
            assert!(
                *cookie > last_cookie,
                "{dir:?}: cookies not increasing: {listing:?}"
            );
            last_cookie = *cookie;
            assert!(names.insert(name.clone()), "{dir:?}: {name:?} listed twice");
            if *cookie <= 2 {
                continue;
            }
            let found = fs
                .find(&cred, dir, name)
                .unwrap_or_else(|e| panic!("{dir:?}: find listed {name:?}: {e:?}"));
            assert_eq!(
                (found.ino, found.kind),
                (*ino, *kind),
                "{dir:?}: find vs readdir"
            );
            *walk.entries_naming.entry(*ino).or_default() += 1;
            walk.attrs.entry(*ino).or_insert(found);
            if *kind == FileType::Directory {
                subdirs += 1;
                assert!(dirs_seen.insert(*ino), "directory {ino:?} reached twice");
                stack.push((*ino, dir));
            }
        }
        walk.subdirs.insert(dir, subdirs);
        let attr = fs
            .getattr(&cred, dir)
            .expect("getattr of a listed directory");
        assert_eq!(
            attr.size,
            (listing.len() as u64) * 20,
            "{dir:?}: nominal size"
        );
    }
    walk
}

/// Checks link counts, block accounting and the live inode count against a walk while nothing
/// changes the namespace; `readers_running` when other threads may still hold handles.
fn check_invariants(fs: &Fs, readers_running: bool) -> Walk {
    let walk = walk(fs);
    let block_size = fs.store().block_size() as u64;
    let mut blocks = 0;
    let mut extra_names = 0;
    for (&ino, walked) in &walk.attrs {
        // Attributes are read again now: the walk's copy may predate a later entry's listing.
        let attr = fs
            .getattr(&root(), ino)
            .expect("getattr of a reached inode");
        assert_eq!(attr.kind, walked.kind);
        let naming = walk.entries_naming.get(&ino).copied().unwrap_or(0);
        if attr.kind == FileType::Directory {
            assert_eq!(
                naming,
                u32::from(ino != Ino::ROOT),
                "{ino:?}: directory entries"
            );
            assert_eq!(
                attr.nlink,
                2 + walk.subdirs[&ino],
                "{ino:?}: directory nlink"
            );
            assert_eq!(attr.blocks, 0);
        } else {
            assert_eq!(attr.nlink, naming, "{ino:?}: nlink vs entries naming it");
            extra_names += u64::from(attr.nlink.saturating_sub(1));
        }
        if attr.kind == FileType::RegularFile {
            blocks += attr.blocks * 512 / block_size;
        } else {
            assert_eq!(attr.blocks, 0, "{ino:?}: only regular files hold blocks");
        }
        blocks += xattr_bytes(fs, ino).div_ceil(block_size);
    }
    let usage = fs.usage();
    if !readers_running {
        assert_eq!(usage.handles, 0, "every handle was released");
    }
    let used = fs.store().used_blocks();
    if blocks != used || usage.inodes != walk.attrs.len() as u64 {
        panic!(
            "the inodes reachable from the root hold {blocks} blocks (data and xattrs) of the \
             store's {used}, and are {} of its {} live inodes; live inodes the walk did not \
             reach:\n{}",
            walk.attrs.len(),
            usage.inodes,
            describe_unreached(fs, &walk)
        );
    }
    // Every name of a non-directory beyond its first takes a unit of the inode budget.
    assert_eq!(
        usage.inodes_charged,
        usage.inodes + extra_names,
        "inode budget in use vs inodes plus extra hard links"
    );
    let statfs = fs.statfs(&root()).expect("statfs");
    assert_eq!(statfs.files - statfs.files_free, usage.inodes_charged);
    walk
}

/// The bytes of `ino`'s extended attributes, names plus values, as root sees them (all of
/// them): what the store charges for them, in blocks rounded up.
fn xattr_bytes(fs: &Fs, ino: Ino) -> u64 {
    let cred = root();
    let len = fs.listxattr(&cred, ino, &mut []).expect("listxattr size");
    let mut names = vec![0u8; len];
    fs.listxattr(&cred, ino, &mut names).expect("listxattr");
    let mut bytes = 0;
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let value = fs
            .getxattr(&cred, ino, name, &mut [])
            .expect("getxattr size");
        bytes += (name.len() + value) as u64;
    }
    bytes
}

/// The live inodes a walk did not reach, found by asking `getattr` about every inode number
/// handed out so far (a probe file made now has the highest).
fn describe_unreached(fs: &Fs, walk: &Walk) -> String {
    let cred = root();
    let probe = fs
        .mknod(&cred, Ino::ROOT, b".probe", FileType::RegularFile, 0o600, 0)
        .expect("mknod a probe");
    fs.forget(probe.ino, 1);
    fs.unlink(&cred, Ino::ROOT, b".probe")
        .expect("unlink the probe");
    let mut out = String::new();
    for n in 1..probe.ino.0 {
        let ino = Ino(n);
        if let (Ok(attr), false) = (fs.getattr(&cred, ino), walk.attrs.contains_key(&ino)) {
            out += &format!("  {attr:?}\n");
        }
    }
    if out.is_empty() {
        out = "  none: the missing blocks belong to no live inode (leaked)\n".into();
    }
    out
}

/// Removes everything below `dir`, depth first, as root.
fn remove_tree(fs: &Fs, dir: Ino) {
    for (ino, cookie, kind, name) in list(fs, dir) {
        if cookie <= 2 {
            continue;
        }
        if kind == FileType::Directory {
            remove_tree(fs, ino);
            fs.rmdir(&root(), dir, &name)
                .unwrap_or_else(|e| panic!("rmdir {dir:?}/{name:?}: {e:?}"));
        } else {
            fs.unlink(&root(), dir, &name)
                .unwrap_or_else(|e| panic!("unlink {dir:?}/{name:?}: {e:?}"));
        }
    }
}

/// Deletes everything and checks that every resource came back.
fn check_empties_completely(fs: &Fs) {
    remove_tree(fs, Ino::ROOT);
    assert_eq!(list(fs, Ino::ROOT).len(), 2, "root is empty");
    let usage = fs.usage();
    assert_eq!(
        fs.store().used_blocks(),
        0,
        "blocks left after deleting everything"
    );
    assert_eq!(
        (usage.inodes, usage.inodes_charged),
        (1, 1),
        "inodes left after deleting everything (root only)"
    );
    assert_eq!(usage.handles, 0);
    assert_eq!(
        fs.store().resident_bytes(),
        0,
        "chunk memory left after deleting everything"
    );
    assert_eq!(fs.getattr(&root(), Ino::ROOT).expect("root").nlink, 2);
}

// ---------------------------------------------------------------------------------------------
// Random mixed operations

/// The operations of the random test, with their weights.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Create,
    Write,
    Read,
    Truncate,
    Unlink,
    Mkdir,
    Rmdir,
    Rename,
    Link,
    Symlink,
    Xattr,
    OpenUnlinkRead,
    Fallocate,
    Readdir,
    LookupForget,
    Chmod,
}

const OPS: [(Op, u64); 16] = [
    (Op::Create, 10),
    (Op::Write, 8),
    (Op::Read, 8),
    (Op::Truncate, 4),
    (Op::Unlink, 8),
    (Op::Mkdir, 6),
    (Op::Rmdir, 5),
    (Op::Rename, 14),
    (Op::Link, 5),
    (Op::Symlink, 3),
    (Op::Xattr, 4),
    (Op::OpenUnlinkRead, 3),
    (Op::Fallocate, 4),
    (Op::Readdir, 4),
    (Op::LookupForget, 4),
    (Op::Chmod, 2),
];

const OP_NAMES: [&str; 16] = [
    "create",
    "write",
    "read",
    "truncate",
    "unlink",
    "mkdir",
    "rmdir",
    "rename",
    "link",
    "symlink",
    "xattr",
    "open-unlink-read",
    "fallocate",
    "readdir",
    "lookup-forget",
    "chmod",
];

impl Op {
    fn index(self) -> usize {
        OPS.iter()
            .position(|&(op, _)| op == self)
            .expect("listed op")
    }

    fn draw(rng: &mut Rng) -> Op {
        let total: u64 = OPS.iter().map(|&(_, w)| w).sum();
        let mut x = rng.below(total);
        for &(op, weight) in &OPS {
            if x < weight {
                return op;
            }
            x -= weight;
        }
        unreachable!("weights cover the draw")
    }
}

/// Errors a caller can cause with a valid request on a namespace others are changing.
fn expected(e: Errno) -> bool {
    matches!(
        e,
        Errno::NotFound
            | Errno::Exists
            | Errno::NotEmpty
            | Errno::InvalidArgument
            | Errno::NotADirectory
            | Errno::IsADirectory
            | Errno::PermissionDenied
            | Errno::NotPermitted
            | Errno::Busy
            | Errno::NoData
            | Errno::TooManySymlinks
    )
}

/// One worker's view: its random source and its counts of outcomes per operation.
struct Worker<'a> {
    fs: &'a Fs,
    rng: Rng,
    creds: [Credentials; 4],
    /// Successful and failed (with an expected error) calls per operation.
    outcomes: [[u64; 2]; 16],
    current: Op,
    /// Number of the current operation.
    step_no: usize,
    /// References kept until the operation numbered with them.
    held: Vec<(usize, Held)>,
}

/// A reference a worker keeps across later operations, as a process keeps a directory open or
/// the kernel keeps a looked-up inode: whatever others remove meanwhile must stay usable (and
/// must not take anything moved into it down with it when it finally goes).
enum Held {
    Handle(Fh, Attr),
    Lookup(Attr),
    /// The lookup `mkdir` counted, with where the directory was made.
    NewDir(Attr, Ino, &'static [u8]),
}

impl Held {
    fn attr(&self) -> &Attr {
        match self {
            Held::Handle(_, attr) | Held::Lookup(attr) | Held::NewDir(attr, ..) => attr,
        }
    }
}

impl<'a> Worker<'a> {
    /// Passes an expected error on as `None` and fails the test on any other.
    fn allow<T>(&self, what: &str, r: Result<T, Errno>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) if expected(e) => None,
            Err(e) => panic!("{:?}: {what}: unexpected {e:?} ({e})", self.current),
        }
    }

    /// A call on a handle this worker holds: only success is acceptable.
    fn must<T>(&self, what: &str, r: Result<T, Errno>) -> T {
        r.unwrap_or_else(|e| panic!("{:?}: {what} on a live handle: {e:?}", self.current))
    }

    /// Keeps `held` for the next few operations.
    fn hold(&mut self, held: Held) {
        let until = self.step_no + 1 + self.rng.index(32);
        self.held.push((until, held));
    }

    /// Gives back the references whose time is up (all of them with `all`).
    fn release_held(&mut self, all: bool) {
        let mut i = 0;
        while i < self.held.len() {
            if !all && self.held[i].0 > self.step_no {
                i += 1;
                continue;
            }
            match self.held.swap_remove(i).1 {
                Held::Handle(fh, _) => {
                    self.must("release a held handle", self.fs.release(fh));
                }
                Held::Lookup(attr) | Held::NewDir(attr, ..) => self.fs.forget(attr.ino, 1),
            }
        }
    }

    /// A directory reached by walking random names from the root or, now and then, from a
    /// directory this worker holds (like a process working in a directory someone else may
    /// have removed meanwhile).
    fn pick_dir(&mut self, cred: &Credentials) -> Ino {
        let mut dir = Ino::ROOT;
        if !self.held.is_empty() && self.rng.chance(1, 4) {
            let attr = self.held[self.rng.index(self.held.len())].1.attr();
            if attr.kind == FileType::Directory {
                dir = attr.ino;
            }
        }
        for _ in 0..3 {
            if !self.rng.chance(1, 2) {
                break;
            }
            match self.fs.find(cred, dir, self.rng.dir_name()) {
                Ok(attr) if attr.kind == FileType::Directory => dir = attr.ino,
                _ => break,
            }
        }
        dir
    }

    /// A random file name in a random directory.
    fn pick_entry(&mut self, cred: &Credentials) -> (Ino, &'static [u8]) {
        let dir = self.pick_dir(cred);
        (dir, self.rng.file_name())
    }

    /// A random directory name in a random directory.
    fn pick_dir_entry(&mut self, cred: &Credentials) -> (Ino, &'static [u8]) {
        let dir = self.pick_dir(cred);
        (dir, self.rng.dir_name())
    }

    /// Any random name in a random directory.
    fn pick_any_entry(&mut self, cred: &Credentials) -> (Ino, &'static [u8]) {
        let dir = self.pick_dir(cred);
        (dir, self.rng.any_name())
    }

    /// The regular file at a random name, if there is one.
    fn pick_file(&mut self, cred: &Credentials) -> Option<Attr> {
        let (dir, name) = self.pick_entry(cred);
        let attr = self.allow("find", self.fs.find(cred, dir, name))?;
        (attr.kind == FileType::RegularFile).then_some(attr)
    }

    fn data(&mut self) -> Vec<u8> {
        let len = self.rng.index(12 * 1024);
        let byte = 1 + self.rng.below(255) as u8;
        vec![byte; len]
    }

    fn offset(&mut self) -> u64 {
        self.rng.below(MAX_OFFSET - 12 * 1024)
    }

    /// Opens a regular file found at a random name; retries nothing.
    fn open_file(&mut self, cred: &Credentials, flags: OpenFlags) -> Option<(Attr, Fh)> {
        let attr = self.pick_file(cred)?;
        let fh = self.allow("open", self.fs.open(cred, attr.ino, flags))?;
        Some((attr, fh))
    }

    /// Runs one operation; `None` when it failed with an expected error.
    fn step(&mut self, cred: &Credentials, op: Op) -> Option<()> {
        let fs = self.fs;
        match op {
            Op::Create => {
                let (dir, name) = self.pick_entry(cred);
                let perm = *self.rng.pick(&[0o644, 0o666, 0o600, 0o664]);
                let flags = OpenFlags {
                    exclusive: self.rng.chance(1, 2),
                    truncate: self.rng.chance(1, 4),
                    ..OpenFlags::READ_WRITE
                };
                let (attr, fh) = self.allow("create", fs.create(cred, dir, name, perm, flags))?;
                fs.forget(attr.ino, 1);
                let (data, offset) = (self.data(), self.offset());
                self.must("write", fs.write(cred, fh, offset, &data));
                self.must("release", fs.release(fh));
            }
            Op::Write => {
                let append = self.rng.chance(1, 4);
                let flags = OpenFlags {
                    append,
                    ..OpenFlags::WRITE
                };
                let (_, fh) = self.open_file(cred, flags)?;
                let (data, offset) = (self.data(), self.offset());
                let (n, _) = self.must("write", fs.write(cred, fh, offset, &data));
                assert_eq!(n, data.len(), "short write with a nearly empty store");
                self.must("release", fs.release(fh));
            }
            Op::Read => {
                let (_, fh) = self.open_file(cred, OpenFlags::READ)?;
                let mut buf = vec![0u8; self.rng.index(16 * 1024)];
                let offset = self.rng.below(MAX_OFFSET);
                let n = self.must("read", fs.read(cred, fh, offset, &mut buf));
                assert!(n <= buf.len());
                self.must("release", fs.release(fh));
            }
            Op::Truncate => {
                let attr = self.pick_file(cred)?;
                let size = Some(self.rng.below(MAX_OFFSET));
                let set = SetAttr {
                    size,
                    ..SetAttr::default()
                };
                self.allow("truncate", fs.setattr(cred, attr.ino, &set, None))?;
            }
            Op::Unlink => {
                let (dir, name) = self.pick_entry(cred);
                self.allow("unlink", fs.unlink(cred, dir, name))?;
            }
            Op::Mkdir => {
                let (dir, name) = self.pick_dir_entry(cred);
                let perm = *self.rng.pick(&[0o777, 0o777, 0o755, 0o1777]);
                let attr = self.allow("mkdir", fs.mkdir(cred, dir, name, perm))?;
                if self.rng.chance(1, 2) {
                    self.hold(Held::NewDir(attr, dir, name));
                } else {
                    fs.forget(attr.ino, 1);
                }
            }
            Op::Rmdir => {
                // Often a directory this worker still holds, to work inside removed ones.
                let new_dirs: Vec<_> = (self.held.iter())
                    .filter_map(|(_, h)| match h {
                        Held::NewDir(_, dir, name) => Some((*dir, *name)),
                        _ => None,
                    })
                    .collect();
                let (dir, name) = if !new_dirs.is_empty() && self.rng.chance(1, 2) {
                    *self.rng.pick(&new_dirs)
                } else {
                    self.pick_dir_entry(cred)
                };
                self.allow("rmdir", fs.rmdir(cred, dir, name))?;
            }
            Op::Rename => {
                let (from, name) = self.pick_any_entry(cred);
                let to = if self.rng.chance(1, 2) {
                    from
                } else {
                    self.pick_dir(cred)
                };
                let new_name = self.rng.any_name();
                let mode = *self.rng.pick(&[
                    RenameMode::Replace,
                    RenameMode::Replace,
                    RenameMode::NoReplace,
                    RenameMode::Exchange,
                ]);
                self.allow("rename", fs.rename(cred, from, name, to, new_name, mode))?;
            }
            Op::Link => {
                let (dir, name) = self.pick_entry(cred);
                let source = self.allow("find", fs.find(cred, dir, name))?;
                let (to, new_name) = self.pick_entry(cred);
                let attr = self.allow("link", fs.link(cred, source.ino, to, new_name))?;
                assert_eq!(attr.ino, source.ino);
                fs.forget(attr.ino, 1);
            }
            Op::Symlink => {
                let (dir, name) = self.pick_entry(cred);
                let target = *self.rng.pick(&[&b"a"[..], b"../b", b"/c/d/e"]);
                let attr = self.allow("symlink", fs.symlink(cred, dir, name, target))?;
                fs.forget(attr.ino, 1);
                if let Some(read) = self.allow("readlink", fs.readlink(cred, attr.ino)) {
                    assert_eq!(read, target, "a symlink's target never changes");
                }
            }
            Op::Xattr => {
                let (dir, name) = self.pick_any_entry(cred);
                let attr = self.allow("find", fs.find(cred, dir, name))?;
                let key = *self.rng.pick(&[&b"user.k0"[..], b"user.k1", b"trusted.k2"]);
                match self.rng.below(4) {
                    0 => self.allow("removexattr", fs.removexattr(cred, attr.ino, key))?,
                    1 => {
                        let mut buf = [0u8; 256];
                        self.allow("listxattr", fs.listxattr(cred, attr.ino, &mut buf))?;
                    }
                    _ => {
                        let value = vec![b'v'; self.rng.index(64)];
                        let mode = *self.rng.pick(&[
                            XattrMode::Set,
                            XattrMode::Create,
                            XattrMode::Replace,
                        ]);
                        self.allow("setxattr", fs.setxattr(cred, attr.ino, key, &value, mode))?;
                        let mut buf = [0u8; 64];
                        self.allow("getxattr", fs.getxattr(cred, attr.ino, key, &mut buf))?;
                    }
                }
            }
            Op::OpenUnlinkRead => {
                let (dir, name) = self.pick_entry(cred);
                let flags = OpenFlags {
                    exclusive: true,
                    ..OpenFlags::READ_WRITE
                };
                let (attr, fh) = self.allow("create", fs.create(cred, dir, name, 0o600, flags))?;
                fs.forget(attr.ino, 1);
                let data = self.data();
                self.must("write", fs.write(cred, fh, 0, &data));
                self.allow("unlink", fs.unlink(cred, dir, name));
                // Whoever else reached the name meanwhile, the handle must still read and write.
                let mut buf = vec![0u8; data.len() + 16];
                let n = self.must("read after unlink", fs.read(cred, fh, 0, &mut buf));
                assert!(n <= buf.len());
                self.must("write after unlink", fs.write(cred, fh, n as u64, b"tail"));
                self.must("getattr after unlink", fs.getattr(cred, attr.ino));
                self.must("release", fs.release(fh));
            }
            Op::Fallocate => {
                let (_, fh) = self.open_file(cred, OpenFlags::WRITE)?;
                let mode = *self.rng.pick(&[
                    FallocateMode::Allocate,
                    FallocateMode::KeepSize,
                    FallocateMode::PunchHole,
                ]);
                let offset = self.rng.below(MAX_OFFSET / 2);
                let len = 1 + self.rng.below(MAX_OFFSET / 2 - 1);
                self.must("fallocate", fs.fallocate(cred, fh, mode, offset, len));
                self.must("release", fs.release(fh));
            }
            Op::Readdir => {
                let dir = self.pick_dir(cred);
                let flags = OpenFlags {
                    directory: true,
                    ..OpenFlags::READ
                };
                let fh = self.allow("opendir", fs.open(cred, dir, flags))?;
                // Listed in slices, resuming by cookie while others change the directory.
                let (mut cookie, mut seen) = (0, 0);
                loop {
                    let budget = 1 + self.rng.index(5);
                    let (mut got, mut last) = (0, cookie);
                    let mut sink = |e: DirEntry<'_>| {
                        assert!(e.cookie > last, "cookies must increase within a listing");
                        last = e.cookie;
                        got += 1;
                        got < budget
                    };
                    self.must("readdir", fs.readdir(cred, fh, cookie, &mut sink));
                    seen += got;
                    if got == 0 || seen > 10_000 {
                        break;
                    }
                    cookie = last;
                }
                if self.rng.chance(1, 2) {
                    let attr = self.must("getattr of an open directory", fs.getattr(cred, dir));
                    self.hold(Held::Handle(fh, attr));
                } else {
                    self.must("release", fs.release(fh));
                }
            }
            Op::LookupForget => {
                let (dir, name) = self.pick_any_entry(cred);
                let attr = self.allow("lookup", fs.lookup(cred, dir, name))?;
                self.allow("getattr", fs.getattr(cred, attr.ino));
                if attr.kind == FileType::Symlink {
                    let e = fs.open(cred, attr.ino, OpenFlags::READ);
                    assert!(matches!(e, Err(Errno::TooManySymlinks | Errno::NotFound)));
                }
                if self.rng.chance(1, 2) {
                    self.hold(Held::Lookup(attr));
                } else {
                    fs.forget(attr.ino, 1);
                }
            }
            Op::Chmod => {
                let (dir, name) = self.pick_any_entry(cred);
                let attr = self.allow("find", fs.find(cred, dir, name))?;
                let mode = if attr.kind == FileType::Directory {
                    *self.rng.pick(&[0o777, 0o755, 0o1777])
                } else {
                    *self.rng.pick(&[0o644, 0o666, 0o4755, 0o600])
                };
                let set = SetAttr {
                    mode: Some(mode),
                    ..SetAttr::default()
                };
                self.allow("chmod", fs.setattr(cred, attr.ino, &set, None))?;
            }
        }
        Some(())
    }
}

fn random_worker(
    fs: &Fs,
    seed: u64,
    thread: usize,
    progress: &Progress,
    stop: &AtomicBool,
) -> [[u64; 2]; 16] {
    let _stop = StopOnPanic(stop);
    let mut worker = Worker {
        fs,
        rng: Rng::new(seed),
        creds: [
            Credentials::root(),
            Credentials::user(1000, 1000),
            Credentials::user(1001, 1000),
            Credentials::user(1002, 1002),
        ],
        outcomes: [[0; 2]; 16],
        current: Op::Create,
        step_no: 0,
        held: Vec::new(),
    };
    for step_no in 0..OPS_PER_THREAD {
        worker.step_no = step_no;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let cred = worker.creds[worker.rng.index(4)].clone();
        let op = Op::draw(&mut worker.rng);
        worker.current = op;
        progress.start(thread, op.index());
        let succeeded = worker.step(&cred, op).is_some();
        worker.outcomes[op.index()][usize::from(!succeeded)] += 1;
        worker.release_held(false);
        progress.finish(thread);
    }
    worker.release_held(true);
    worker.outcomes
}

/// One round: a fresh filesystem, [`THREADS`] workers seeded from `round`, then the checks.
/// Returns the outcome counts per operation.
fn random_round(round: u64) -> [[u64; 2]; 16] {
    let fs = new_fs();
    let cred = root();
    let open_root = SetAttr {
        mode: Some(0o777),
        ..SetAttr::default()
    };
    fs.setattr(&cred, Ino::ROOT, &open_root, None)
        .expect("chmod root");
    for (name, perm) in DIR_NAMES.into_iter().zip([0o777, 0o755, 0o1777]) {
        let attr = fs.mkdir(&cred, Ino::ROOT, name, perm).expect("mkdir");
        fs.forget(attr.ino, 1);
    }

    let progress = Progress::new(THREADS, &OP_NAMES);
    let outcomes = Arc::new(Mutex::new([[0u64; 2]; 16]));
    let (fs_in, progress_in, outcomes_in) = (fs.clone(), progress.clone(), outcomes.clone());
    let test = format!("random_operations_keep_invariants, round {round}");
    run_watched(&test, WATCHDOG, &progress, move || {
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (fs, progress, stop) = (&*fs_in, &*progress_in, &stop);
                    let seed = (round << 8) + t as u64;
                    s.spawn(move || random_worker(fs, seed, t, progress, stop))
                })
                .collect();
            for w in workers {
                let counts = w.join().unwrap_or_else(|p| panic::resume_unwind(p));
                let mut total = outcomes_in.lock().expect("outcomes");
                for (sum, c) in total.iter_mut().zip(counts) {
                    sum[0] += c[0];
                    sum[1] += c[1];
                }
            }
        });
    });

    let walk = check_invariants(&fs, false);
    println!(
        "round {round}: {} inodes and {} blocks left after the run",
        walk.attrs.len(),
        fs.store().used_blocks()
    );
    check_empties_completely(&fs);
    *outcomes.lock().expect("outcomes")
}

#[test]
fn random_operations_keep_invariants() {
    let mut outcomes = [[0u64; 2]; 16];
    let rounds = std::env::var("BTFUSE_STRESS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS);
    for round in 0..rounds {
        for (sum, c) in outcomes.iter_mut().zip(random_round(round)) {
            sum[0] += c[0];
            sum[1] += c[1];
        }
    }
    for (name, [ok, failed]) in OP_NAMES.iter().zip(outcomes) {
        println!("{name:>17}: {ok:>7} succeeded, {failed:>7} failed as expected");
        assert!(
            ok > 0,
            "{name} never succeeded: the test exercises only error paths"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Appends racing reads and truncations

/// Appends in the append test.
const APPENDS: u64 = 20_000;

/// Every record is `record_len(b)` copies of byte `b`; byte values run 1, 2, ..., 251, 1, ...
/// so a reader can tell a record cut short (a torn append) from a complete one, and a zero
/// byte (exposed stale or unwritten space) from data.
fn record_len(byte: u8) -> usize {
    1 + (usize::from(byte) * 97) % 6007
}

fn next_byte(byte: u8) -> u8 {
    byte % 251 + 1
}

/// Checks that `content` is whole consecutive records; the last one may be cut only when the
/// read filled the caller's buffer (`full`).
fn check_records(content: &[u8], full: bool) -> Result<(), String> {
    let mut pos = 0;
    let mut expect: Option<u8> = None;
    while pos < content.len() {
        let byte = content[pos];
        if byte == 0 {
            return Err(format!("zero byte at {pos}"));
        }
        if let Some(e) = expect
            && byte != e
        {
            return Err(format!("record {byte} at {pos}, expected {e}"));
        }
        let len = record_len(byte);
        let end = (pos + len).min(content.len());
        if let Some(off) = content[pos..end].iter().position(|&b| b != byte) {
            return Err(format!("record {byte} at {pos} broken at +{off}"));
        }
        if end - pos < len && !full {
            return Err(format!(
                "torn record {byte} at {pos}: {} of {len} bytes",
                end - pos
            ));
        }
        pos = end;
        expect = Some(next_byte(byte));
    }
    Ok(())
}

#[test]
fn record_check_catches_torn_and_zeroed_content() {
    let mut content = Vec::new();
    for byte in 1..=3u8 {
        content.extend(vec![byte; record_len(byte)]);
    }
    assert_eq!(check_records(&content, false), Ok(()));
    let torn = &content[..content.len() - 1];
    assert!(check_records(torn, false).is_err(), "a record cut short");
    assert_eq!(check_records(torn, true), Ok(()), "cut by the buffer's end");
    let mut zeroed = content.clone();
    zeroed[record_len(1) + 2] = 0;
    assert!(check_records(&zeroed, false).is_err(), "a zero byte");
    let skipped: Vec<u8> = content[record_len(1)..]
        .iter()
        .chain(&content[..record_len(1)])
        .copied()
        .collect();
    assert!(
        check_records(&skipped, false).is_err(),
        "records out of order"
    );
}

#[test]
fn appends_are_never_torn() {
    let fs = new_fs();
    let cred = root();
    let (attr, setup_fh) = fs
        .create(&cred, Ino::ROOT, b"log", 0o666, OpenFlags::READ_WRITE)
        .expect("create the log");
    fs.forget(attr.ino, 1);
    fs.release(setup_fh).expect("release");
    let ino = attr.ino;

    let names = &["append", "read", "truncate"];
    let progress = Progress::new(4, names);
    let (fs_in, progress_in) = (fs.clone(), progress.clone());
    run_watched("appends_are_never_torn", WATCHDOG, &progress, move || {
        let (fs, progress) = (&*fs_in, &*progress_in);
        let writing = AtomicBool::new(true);
        let stop = AtomicBool::new(false);
        // The appender starts once every other thread runs, so that they overlap.
        let started = Barrier::new(4);
        let (reads, truncations) = (AtomicU64::new(0), AtomicU64::new(0));
        thread::scope(|s| {
            let (writing, stop, started) = (&writing, &stop, &started);
            let (reads, truncations) = (&reads, &truncations);
            s.spawn(move || {
                let _stop = StopOnPanic(stop);
                let cred = Credentials::user(1000, 1000);
                let flags = OpenFlags {
                    append: true,
                    ..OpenFlags::WRITE
                };
                let fh = fs.open(&cred, ino, flags).expect("open for appending");
                started.wait();
                let mut byte = 1u8;
                for _ in 0..APPENDS {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    progress.start(0, 0);
                    let record = vec![byte; record_len(byte)];
                    // The offset is ignored on an append handle: the record goes at the end.
                    let (n, end) = fs.write(&cred, fh, 0, &record).expect("append");
                    assert_eq!(n, record.len());
                    assert!(end >= n as u64);
                    byte = next_byte(byte);
                    progress.finish(0);
                }
                fs.release(fh).expect("release the append handle");
                writing.store(false, Ordering::Release);
            });
            for t in 1..=2 {
                s.spawn(move || {
                    let _stop = StopOnPanic(stop);
                    let cred = Credentials::user(1001, 1000);
                    let fh = fs
                        .open(&cred, ino, OpenFlags::READ)
                        .expect("open for reading");
                    let mut buf = vec![0u8; 256 * 1024];
                    started.wait();
                    for read in 0u64.. {
                        if !writing.load(Ordering::Acquire) || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        progress.start(t, 1);
                        // Now and then through a fresh handle, as a new reader would.
                        let handle = if read % 16 == 0 {
                            fs.open(&cred, ino, OpenFlags::READ).expect("open")
                        } else {
                            fh
                        };
                        let n = fs.read(&cred, handle, 0, &mut buf).expect("read");
                        if let Err(why) = check_records(&buf[..n], n == buf.len()) {
                            panic!("read {read} of {n} bytes is not whole records: {why}");
                        }
                        if handle != fh {
                            fs.release(handle).expect("release");
                        }
                        reads.fetch_add(1, Ordering::Relaxed);
                        progress.finish(t);
                    }
                    fs.release(fh).expect("release the read handle");
                });
            }
            s.spawn(move || {
                let _stop = StopOnPanic(stop);
                let cred = Credentials::user(1002, 1002);
                let mut i = 0u64;
                started.wait();
                while writing.load(Ordering::Acquire) && !stop.load(Ordering::Relaxed) {
                    progress.start(3, 2);
                    let size = fs.getattr(&cred, ino).expect("getattr").size;
                    if size > 64 * 1024 || i.is_multiple_of(64) {
                        truncations.fetch_add(1, Ordering::Relaxed);
                        if i.is_multiple_of(2) {
                            let set = SetAttr {
                                size: Some(0),
                                ..SetAttr::default()
                            };
                            fs.setattr(&cred, ino, &set, None).expect("truncate");
                        } else {
                            let flags = OpenFlags {
                                truncate: true,
                                ..OpenFlags::WRITE
                            };
                            let fh = fs.open(&cred, ino, flags).expect("open with truncate");
                            fs.release(fh).expect("release");
                        }
                    }
                    i += 1;
                    progress.finish(3);
                }
            });
        });
        println!(
            "{APPENDS} appends, {} whole-file reads, {} truncations",
            reads.load(Ordering::Relaxed),
            truncations.load(Ordering::Relaxed)
        );
    });

    let mut buf = vec![0u8; 1 << 20];
    let fh = fs.open(&cred, ino, OpenFlags::READ).expect("open");
    let n = fs.read(&cred, fh, 0, &mut buf).expect("read");
    fs.release(fh).expect("release");
    check_records(&buf[..n], n == buf.len()).expect("final content is whole records");
    check_invariants(&fs, false);
    check_empties_completely(&fs);
}

// ---------------------------------------------------------------------------------------------
// Directories moved across each other

/// Rounds of each mover in the rename test.
const MOVES: usize = 20_000;
/// Every this many rounds, the movers stop together and one of them walks the tree.
const CHECK_EVERY: usize = 1_000;

/// Directories `/a`, `/c`, `/a/b`, `/c/d` and `/x`; each mover owns the names it moves, so it
/// knows where they are and which outcomes are legal:
///
/// - mover 0 moves `b` between `a` and `c` (always succeeds);
/// - mover 1 moves `d` between `c` and `a`, and exchanges it with `x` (always succeeds);
/// - mover 2 moves `a` into its sibling `c` and back (`EINVAL` while `c` is inside `a`);
/// - mover 3 moves `c` into `a` and back (`EINVAL` while `a` is inside `c`);
/// - a fifth thread keeps resolving `..` and listing, to add readers to the lock traffic.
#[test]
fn crossing_directory_renames_never_deadlock_or_cycle() {
    let fs = new_fs();
    let cred = root();
    let mkdir = |parent: Ino, name: &[u8]| {
        let attr = fs.mkdir(&cred, parent, name, 0o777).expect("mkdir");
        fs.forget(attr.ino, 1);
        attr.ino
    };
    let a = mkdir(Ino::ROOT, b"a");
    let c = mkdir(Ino::ROOT, b"c");
    let b = mkdir(a, b"b");
    let d = mkdir(c, b"d");
    let x = mkdir(Ino::ROOT, b"x");
    let all_dirs = [Ino::ROOT, a, b, c, d, x];

    let names = &[
        "move b",
        "move/exchange d",
        "move a into c",
        "move c into a",
        "walk up",
    ];
    let progress = Progress::new(5, names);
    let (fs_in, progress_in) = (fs.clone(), progress.clone());
    run_watched(
        "crossing_directory_renames",
        WATCHDOG,
        &progress,
        move || {
            let (fs, progress) = (&*fs_in, &*progress_in);
            let cred = root();
            let rendezvous = Rendezvous::new(4);
            let stop = AtomicBool::new(false);
            let moving = AtomicUsize::new(4);
            let check = |mover: usize| {
                if rendezvous.wait(&stop) {
                    // The walker thread still reads, and may hold a directory handle.
                    let walk = check_invariants(fs, true);
                    let dirs: HashSet<Ino> = walk
                        .attrs
                        .iter()
                        .filter(|(_, attr)| attr.kind == FileType::Directory)
                        .map(|(&ino, _)| ino)
                        .collect();
                    assert_eq!(
                        dirs,
                        HashSet::from(all_dirs),
                        "mover {mover}: a directory is lost"
                    );
                }
                rendezvous.wait(&stop);
            };
            // Moves `name` from `from` to `to` and reports whether it worked; `EINVAL` only where
            // the move would put a directory under itself.
            let mv = |from: Ino, name: &[u8], to: Ino, mode: RenameMode, may_cycle: bool| match fs
                .rename(&cred, from, name, to, name, mode)
            {
                Ok(()) => true,
                Err(Errno::InvalidArgument) if may_cycle => false,
                Err(e) => panic!("rename {from:?}/{name:?} -> {to:?}: {e:?}"),
            };
            let cred = &cred;
            thread::scope(|s| {
                let (check, mv, stop, moving) = (&check, &mv, &stop, &moving);
                s.spawn(move || {
                    let _stop = StopOnPanic(stop);
                    let mut at = a;
                    for round in 0..MOVES {
                        progress.start(0, 0);
                        let to = if at == a { c } else { a };
                        let mode = if round % 2 == 0 {
                            RenameMode::NoReplace
                        } else {
                            RenameMode::Replace
                        };
                        assert!(mv(at, b"b", to, mode, false));
                        at = to;
                        progress.finish(0);
                        if (round + 1) % CHECK_EVERY == 0 {
                            check(0);
                        }
                    }
                    moving.fetch_sub(1, Ordering::Release);
                });
                s.spawn(move || {
                    let _stop = StopOnPanic(stop);
                    // Where `d` and `x` are: (parent, name) of each.
                    let (mut d_at, mut x_at) = ((c, &b"d"[..]), (Ino::ROOT, &b"x"[..]));
                    for round in 0..MOVES {
                        progress.start(1, 1);
                        if round % 3 == 2 {
                            fs.rename(cred, d_at.0, d_at.1, x_at.0, x_at.1, RenameMode::Exchange)
                                .unwrap_or_else(|e| panic!("exchange d and x: {e:?}"));
                            (d_at, x_at) = (x_at, d_at);
                        } else {
                            let to = if d_at.0 == a { c } else { a };
                            fs.rename(cred, d_at.0, d_at.1, to, d_at.1, RenameMode::NoReplace)
                                .unwrap_or_else(|e| panic!("move d: {e:?}"));
                            d_at.0 = to;
                        }
                        progress.finish(1);
                        if (round + 1) % CHECK_EVERY == 0 {
                            check(1);
                        }
                    }
                    moving.fetch_sub(1, Ordering::Release);
                });
                for (mover, (name, sibling)) in [(&b"a"[..], c), (&b"c"[..], a)]
                    .into_iter()
                    .enumerate()
                    .map(|(i, m)| (i + 2, m))
                {
                    s.spawn(move || {
                        let _stop = StopOnPanic(stop);
                        let (mut inside, mut refused) = (0, 0);
                        for round in 0..MOVES {
                            progress.start(mover, mover);
                            if mv(Ino::ROOT, name, sibling, RenameMode::NoReplace, true) {
                                inside += 1;
                                // Back out again; this can never put anything under itself.
                                assert!(mv(sibling, name, Ino::ROOT, RenameMode::Replace, false));
                            } else {
                                refused += 1;
                            }
                            progress.finish(mover);
                            if (round + 1) % CHECK_EVERY == 0 {
                                check(mover);
                            }
                        }
                        println!("mover {mover}: {inside} moves in and out, {refused} refused");
                        moving.fetch_sub(1, Ordering::Release);
                    });
                }
                s.spawn(move || {
                    let _stop = StopOnPanic(stop);
                    let mut steps = 0u64;
                    while moving.load(Ordering::Acquire) > 0 && !stop.load(Ordering::Relaxed) {
                        progress.start(4, 4);
                        for start in [b, d] {
                            let up = fs
                                .find(cred, start, b"..")
                                .expect("`..` of a live directory");
                            assert_eq!(up.kind, FileType::Directory);
                            let upper = fs.find(cred, up.ino, b"..").expect("`..` of its parent");
                            assert_eq!(upper.kind, FileType::Directory);
                            steps += 2;
                        }
                        let fh = fs
                            .open(
                                cred,
                                a,
                                OpenFlags {
                                    directory: true,
                                    ..OpenFlags::READ
                                },
                            )
                            .expect("open a");
                        fs.readdir(cred, fh, 0, &mut |_| true).expect("readdir a");
                        fs.release(fh).expect("release");
                        progress.finish(4);
                        thread::yield_now();
                    }
                    assert!(steps > 0);
                });
            });
        },
    );

    let walk = check_invariants(&fs, false);
    let dirs = walk
        .attrs
        .values()
        .filter(|attr| attr.kind == FileType::Directory)
        .count();
    assert_eq!(dirs, all_dirs.len(), "every directory reached exactly once");
    check_empties_completely(&fs);
}

// ---------------------------------------------------------------------------------------------
// Directory and file locks in one order

/// Rounds of each thread in the lock-order test.
const SWAPS: usize = 20_000;
/// The lock-order test does about a second of work; a deadlock shows within milliseconds.
const SWAP_WATCHDOG: Duration = Duration::from_secs(30);

/// `link`, `unlink` and `create` lock a directory and then an entry inside it; `rename` locks
/// the entries it moves. A file exchanged with a directory while it is being linked into (and
/// unlinked from) that directory must therefore not deadlock, whichever of the two has the
/// lower inode number: `f1` is made before `d` and `f2` after it.
#[test]
fn file_swapped_with_directory_while_linked_into_it() {
    let fs = new_fs();
    let cred = root();
    let mknod = |name: &[u8]| {
        let attr = fs
            .mknod(&cred, Ino::ROOT, name, FileType::RegularFile, 0o644, 0)
            .expect("mknod");
        fs.forget(attr.ino, 1);
        attr.ino
    };
    let f1 = mknod(b"f1");
    let d = fs.mkdir(&cred, Ino::ROOT, b"d", 0o755).expect("mkdir").ino;
    fs.forget(d, 1);
    let f2 = mknod(b"f2");
    assert!(f1 < d && d < f2);

    let names = &["exchange", "link and unlink", "find and unlink"];
    let progress = Progress::new(3, names);
    let (fs_in, progress_in) = (fs.clone(), progress.clone());
    run_watched(
        "file_swapped_with_directory",
        SWAP_WATCHDOG,
        &progress,
        move || {
            let (fs, progress) = (&*fs_in, &*progress_in);
            let stop = AtomicBool::new(false);
            let cred = root();
            let (cred, stop) = (&cred, &stop);
            thread::scope(|s| {
                s.spawn(move || {
                    let _stop = StopOnPanic(stop);
                    for round in 0..SWAPS {
                        progress.start(0, 0);
                        // Whatever the names hold now (a file and the directory, or two files).
                        let other = if round % 2 == 0 { &b"f1"[..] } else { b"f2" };
                        fs.rename(
                            cred,
                            Ino::ROOT,
                            other,
                            Ino::ROOT,
                            b"d",
                            RenameMode::Exchange,
                        )
                        .expect("exchange");
                        progress.finish(0);
                    }
                });
                s.spawn(move || {
                    let _stop = StopOnPanic(stop);
                    for round in 0..SWAPS {
                        progress.start(1, 1);
                        let file = if round % 2 == 0 { f1 } else { f2 };
                        match fs.link(cred, file, d, b"l") {
                            Ok(attr) => fs.forget(attr.ino, 1),
                            Err(Errno::Exists) => {}
                            Err(e) => panic!("link into d: {e:?}"),
                        }
                        match fs.unlink(cred, d, b"l") {
                            Ok(()) | Err(Errno::NotFound) => {}
                            Err(e) => panic!("unlink from d: {e:?}"),
                        }
                        progress.finish(1);
                    }
                });
                s.spawn(move || {
                    let _stop = StopOnPanic(stop);
                    for _ in 0..SWAPS {
                        progress.start(2, 2);
                        // Both lock `d` and then whichever file `d/l` names right now.
                        match fs.find(cred, d, b"l") {
                            Ok(attr) => assert!(attr.ino == f1 || attr.ino == f2),
                            Err(Errno::NotFound) => {}
                            Err(e) => panic!("find d/l: {e:?}"),
                        }
                        match fs.unlink(cred, d, b"l") {
                            Ok(()) | Err(Errno::NotFound) => {}
                            Err(e) => panic!("unlink d/l: {e:?}"),
                        }
                        progress.finish(2);
                    }
                });
            });
        },
    );
    check_invariants(&fs, false);
    check_empties_completely(&fs);
}
