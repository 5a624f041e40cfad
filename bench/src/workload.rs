//! The workloads, written once against [`Fs`] and run on two implementations of it: [`Posix`]
//! (libc calls on a path, which is what tmpfs, the FUSE mount and the preloaded fast path all
//! receive) and [`Ring`] (the Rust client of the ring, `btfuse_ring_client::Client`).
//!
//! Each workload has a fixed size (a full one and a `--quick` one) and, where it draws random
//! numbers, a fixed seed. A run has three parts: an untimed set-up (fixtures that later rounds
//! reuse, kept under `DIR/fixture`), a warm-up, and the timed part; what the timed part
//! created (`DIR/scratch`) is removed afterwards, untimed.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Bytes moved by one small-file read or write.
const SMALL: usize = 4096;
/// Bytes moved by one sequential read or write.
const CHUNK: usize = 1 << 20;
/// Seed of the random offsets of `randio` and `randread`.
pub(crate) const SEED: u64 = 0x6274_6675_7365;

/// One benchmark workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Workload {
    /// The first original experiment: open + read 4 KiB + close of one file, many times.
    Cat,
    /// The second original experiment: walk a tree and stat every entry, as find does.
    Find,
    /// Create + write 4 KiB + close of many new files in one directory.
    Create,
    /// Stat every file of a tree by its full path, several passes (no directory reads).
    Stat,
    /// mkdir, create, rename the file, rename the directory, unlink, rmdir: namespace churn.
    Churn,
    /// 4 KiB preads and pwrites at random aligned offsets of a large file.
    Randio,
    /// 4 KiB preads at random aligned offsets of a large file, nothing written: a database
    /// or an index read at random.
    Randread,
    /// Write a large file 1 MiB at a time, then read it back 1 MiB at a time.
    Seq,
    /// Read all entries of one directory of many files.
    Readdir,
    /// The `create` workload from 2 threads at once, each in its own directory.
    #[value(name = "create-2t")]
    #[serde(rename = "create-2t")]
    Create2t,
    /// The first experiment as the write-up ran it: one `cat` process per operation.
    CatProc,
    /// The second experiment as the write-up ran it: one `find` process per operation.
    FindProc,
    /// A process that touches no btfuse path, with the preload set and without it.
    Untouched,
    /// A shell script doing a small build: hundreds of short processes reading and writing.
    Script,
    /// `stat` of a tree's files from 1 thread: the base of the threads series.
    #[value(name = "stat-1t")]
    #[serde(rename = "stat-1t")]
    Stat1t,
    /// `stat` from 2 threads at once, the work shared between them.
    #[value(name = "stat-2t")]
    #[serde(rename = "stat-2t")]
    Stat2t,
    /// `stat` from 4 threads at once.
    #[value(name = "stat-4t")]
    #[serde(rename = "stat-4t")]
    Stat4t,
    /// `stat` from 8 threads at once.
    #[value(name = "stat-8t")]
    #[serde(rename = "stat-8t")]
    Stat8t,
    /// `cat` (open + read 4 KiB + close) from 1 thread: the base of the threads series.
    #[value(name = "cat-1t")]
    #[serde(rename = "cat-1t")]
    Cat1t,
    /// `cat` from 2 threads at once, each on a file of its own.
    #[value(name = "cat-2t")]
    #[serde(rename = "cat-2t")]
    Cat2t,
    /// `cat` from 4 threads at once.
    #[value(name = "cat-4t")]
    #[serde(rename = "cat-4t")]
    Cat4t,
    /// `cat` from 8 threads at once.
    #[value(name = "cat-8t")]
    #[serde(rename = "cat-8t")]
    Cat8t,
}

/// What each thread of a threads workload repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repeated {
    /// `stat` by full path, over the files of a tree.
    Stat,
    /// open + read 4 KiB + close of the thread's own file.
    Cat,
}

/// Most threads of a threads workload (the fixture has a file per thread for `cat`).
const MAX_THREADS: u64 = 8;

impl Workload {
    /// Every workload, in report order.
    pub(crate) const ALL: [Workload; 22] = [
        Workload::Cat,
        Workload::Find,
        Workload::Create,
        Workload::Stat,
        Workload::Churn,
        Workload::Randio,
        Workload::Randread,
        Workload::Seq,
        Workload::Readdir,
        Workload::Create2t,
        Workload::CatProc,
        Workload::FindProc,
        Workload::Untouched,
        Workload::Script,
        Workload::Stat1t,
        Workload::Stat2t,
        Workload::Stat4t,
        Workload::Stat8t,
        Workload::Cat1t,
        Workload::Cat2t,
        Workload::Cat4t,
        Workload::Cat8t,
    ];

    /// The name used on the command line, in files and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Cat => "cat",
            Workload::Find => "find",
            Workload::Create => "create",
            Workload::Stat => "stat",
            Workload::Churn => "churn",
            Workload::Randio => "randio",
            Workload::Randread => "randread",
            Workload::Seq => "seq",
            Workload::Readdir => "readdir",
            Workload::Create2t => "create-2t",
            Workload::CatProc => "cat-proc",
            Workload::FindProc => "find-proc",
            Workload::Untouched => "untouched",
            Workload::Script => "script",
            Workload::Stat1t => "stat-1t",
            Workload::Stat2t => "stat-2t",
            Workload::Stat4t => "stat-4t",
            Workload::Stat8t => "stat-8t",
            Workload::Cat1t => "cat-1t",
            Workload::Cat2t => "cat-2t",
            Workload::Cat4t => "cat-4t",
            Workload::Cat8t => "cat-8t",
        }
    }

    /// For a threads workload: what each thread repeats, and how many threads.
    pub(crate) fn threads(self) -> Option<(Repeated, u64)> {
        Some(match self {
            Workload::Stat1t => (Repeated::Stat, 1),
            Workload::Stat2t => (Repeated::Stat, 2),
            Workload::Stat4t => (Repeated::Stat, 4),
            Workload::Stat8t => (Repeated::Stat, 8),
            Workload::Cat1t => (Repeated::Cat, 1),
            Workload::Cat2t => (Repeated::Cat, 2),
            Workload::Cat4t => (Repeated::Cat, 4),
            Workload::Cat8t => (Repeated::Cat, 8),
            _ => return None,
        })
    }

    /// The workload's size: the count its description speaks of.
    pub(crate) fn size(self, quick: bool) -> u64 {
        let (full, small) = match self {
            Workload::Cat => (100_000, 2_000),
            Workload::Find | Workload::Stat => (10_000, 500),
            Workload::Create => (10_000, 500),
            Workload::Churn => (5_000, 200),
            Workload::Randio | Workload::Randread => (50_000, 2_000),
            // MiB written, then read.
            Workload::Seq => (1024, 16),
            Workload::Readdir => (100_000, 2_000),
            // Files per thread.
            Workload::Create2t => (5_000, 250),
            // Processes, or runs of the script.
            Workload::CatProc | Workload::Untouched => (400, 20),
            Workload::FindProc => (200, 10),
            Workload::Script => (10, 1),
            // Files in the tree, each stat-ed THREAD_STAT_PASSES times in all.
            Workload::Stat1t | Workload::Stat2t | Workload::Stat4t | Workload::Stat8t => {
                (10_000, 400)
            }
            // Reads in all, shared between the threads.
            Workload::Cat1t | Workload::Cat2t | Workload::Cat4t | Workload::Cat8t => {
                (40_000, 1_600)
            }
        };
        if quick { small } else { full }
    }

    /// What one operation of the report is, for a size.
    pub(crate) fn describe(self, size: u64) -> String {
        match self {
            Workload::Cat => format!("open + read 4 KiB + close of one file, {size} times"),
            Workload::Find => format!("walk a tree of {size} files and lstat every entry"),
            Workload::Create => format!("create + write 4 KiB + close, {size} new files"),
            Workload::Stat => {
                format!("stat each of {size} files by full path, {STAT_PASSES} passes")
            }
            Workload::Churn => format!(
                "{size} cycles of mkdir, create, rename file, rename dir, unlink, rmdir \
                 (one operation = one call)"
            ),
            Workload::Randio => format!(
                "{size} 4 KiB preads and pwrites (alternating) at random offsets of a \
                 {} MiB file",
                randio_file_mib(size)
            ),
            Workload::Randread => format!(
                "{size} 4 KiB preads at random offsets of a {} MiB file",
                randio_file_mib(size)
            ),
            Workload::Seq => {
                format!(
                    "write {size} MiB in 1 MiB writes, then read it back (one operation = 1 MiB)"
                )
            }
            Workload::Readdir => format!("read every entry of a directory of {size} files"),
            Workload::Create2t => {
                format!("create + write 4 KiB + close from 2 threads at once, {size} files each")
            }
            Workload::Stat1t | Workload::Stat2t | Workload::Stat4t | Workload::Stat8t => {
                let n = self.threads().map_or(1, |(_, n)| n);
                format!(
                    "stat of {size} files by full path, {THREAD_STAT_PASSES} passes in all, \
                     shared between {n} threads (each starts at its own place in the tree)"
                )
            }
            Workload::Cat1t | Workload::Cat2t | Workload::Cat4t | Workload::Cat8t => {
                let n = self.threads().map_or(1, |(_, n)| n);
                format!(
                    "open + read 4 KiB + close, {size} times in all, shared between {n} \
                     threads, each on a file of its own"
                )
            }
            Workload::CatProc => format!("one `cat` process of a 4 KiB file, {size} times"),
            Workload::FindProc => {
                format!("one `find` process over a tree of 1,000 entries, {size} times")
            }
            Workload::Untouched => format!(
                "one `cat` process of a 4 KiB file outside btfuse, {size} times: the tmpfs \
                 column without the preload, the preloaded one with it set"
            ),
            Workload::Script => format!(
                "a shell script of a small build ({} short processes reading and writing \
                 files), {size} runs",
                crate::process::SCRIPT_PROCESSES
            ),
        }
    }

    /// Whether each operation is a whole program run by the worker (see [`crate::process`]).
    pub(crate) fn runs_processes(self) -> bool {
        matches!(
            self,
            Workload::CatProc | Workload::FindProc | Workload::Untouched | Workload::Script
        )
    }

    /// Whether `target` has a column for this workload: programs cannot run on the Rust
    /// client, and a process that touches no btfuse path is the same on tmpfs and the mount.
    pub(crate) fn runs_on(self, target: crate::lab::Target) -> bool {
        use crate::lab::Target;
        match self {
            Workload::Untouched => matches!(target, Target::Tmpfs | Target::Fast),
            w if w.runs_processes() => target != Target::Client,
            _ => true,
        }
    }
}

/// Passes over the tree that the `stat-Nt` workloads make in all.
const THREAD_STAT_PASSES: u64 = 2;

/// Passes of the `stat` workload over its tree.
const STAT_PASSES: u64 = 5;

/// The size of `randio`'s and `randread`'s file: 256 MiB for the full run, 16 MiB for the
/// quick one.
fn randio_file_mib(ops: u64) -> u64 {
    if ops >= 10_000 { 256 } else { 16 }
}

/// What a timed run measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Measured {
    /// Operations done in the timed part.
    pub(crate) ops: u64,
    /// Wall time of the timed part, in nanoseconds.
    pub(crate) nanos: u64,
}

/// The calls the workloads make. Paths are absolute: for [`Posix`] in the kernel's namespace,
/// for [`Ring`] in the filesystem's own.
pub(crate) trait Fs: Sync {
    /// An open file.
    type File;
    /// `open(O_WRONLY | O_CREAT | O_TRUNC, 0644)`.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// `open(O_RDONLY)`.
    fn open_read(&self, path: &Path) -> io::Result<Self::File>;
    /// `open(O_RDWR)`.
    fn open_rw(&self, path: &Path) -> io::Result<Self::File>;
    /// `read(2)` at the file's offset.
    fn read(&self, file: &mut Self::File, buf: &mut [u8]) -> io::Result<usize>;
    /// `write(2)` at the file's offset.
    fn write(&self, file: &mut Self::File, buf: &[u8]) -> io::Result<usize>;
    /// `pread(2)`.
    fn pread(&self, file: &mut Self::File, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// `pwrite(2)`.
    fn pwrite(&self, file: &mut Self::File, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// `close(2)`.
    fn close(&self, file: Self::File) -> io::Result<()>;
    /// `lstat(2)`; says whether `path` is a directory.
    fn lstat_is_dir(&self, path: &Path) -> io::Result<bool>;
    /// Every name in a directory but `.` and `..` (opendir, readdir until the end, closedir).
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;
    /// `mkdir(path, 0755)`.
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    /// `rename(2)`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// `unlink(2)`.
    fn unlink(&self, path: &Path) -> io::Result<()>;
    /// `rmdir(2)`.
    fn rmdir(&self, path: &Path) -> io::Result<()>;
}

/// `read` until `buf` is full or the file ends; the count read.
fn read_full<F: Fs>(fs: &F, file: &mut F::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match fs.read(file, &mut buf[done..])? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// `write` all of `buf`.
fn write_all<F: Fs>(fs: &F, file: &mut F::File, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match fs.write(file, buf)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "write wrote nothing",
                ));
            }
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

fn exactly(what: &str, got: usize, want: usize) -> io::Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what}: {got} bytes instead of {want}"
        )))
    }
}

/// `mkdir -p`.
fn mkdir_all<F: Fs>(fs: &F, path: &Path) -> io::Result<()> {
    match fs.lstat_is_dir(path) {
        Ok(true) => return Ok(()),
        Ok(false) => {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                path.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = path.parent() {
        mkdir_all(fs, parent)?;
    }
    fs.mkdir(path)
}

/// `rm -r`; nothing to do when `path` does not exist.
pub(crate) fn remove_tree<F: Fs>(fs: &F, path: &Path) -> io::Result<()> {
    match fs.lstat_is_dir(path) {
        Ok(true) => {
            for name in fs.list(path)? {
                remove_tree(fs, &path.join(name))?;
            }
            fs.rmdir(path)
        }
        Ok(false) => fs.unlink(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes a new file of `len` bytes (of `byte`), `CHUNK` bytes per write.
fn write_file<F: Fs>(fs: &F, path: &Path, len: u64, byte: u8) -> io::Result<()> {
    let chunk = vec![byte; CHUNK];
    let mut file = fs.create(path)?;
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        write_all(fs, &mut file, &chunk[..n])?;
        left -= n as u64;
    }
    fs.close(file)
}

/// Runs `workload` of `size` in directory `dir` (created if missing): set-up, warm-up, the
/// timed part, clean-up of what it created.
pub(crate) fn run<F: Fs>(
    fs: &F,
    workload: Workload,
    size: u64,
    dir: &Path,
) -> io::Result<Measured> {
    mkdir_all(fs, dir)?;
    let fixture = dir.join("fixture");
    let scratch = dir.join("scratch");
    // A run interrupted earlier may have left its scratch directory behind.
    remove_tree(fs, &scratch)?;
    prepare(fs, workload, size, &fixture)?;
    let warm = scratch.join("warm-up");
    mkdir_all(fs, &warm)?;
    timed(fs, workload, size, true, &fixture, &warm)?;
    let work = scratch.join("timed");
    fs.mkdir(&work)?;
    let measured = timed(fs, workload, size, false, &fixture, &work)?;
    remove_tree(fs, &scratch)?;
    Ok(measured)
}

/// Builds the fixture a workload reads, unless an earlier run already did: the `READY` file
/// is written last.
fn prepare<F: Fs>(fs: &F, workload: Workload, size: u64, fixture: &Path) -> io::Result<()> {
    let ready = fixture.join("READY");
    if fs.lstat_is_dir(&ready).is_ok() {
        return Ok(());
    }
    remove_tree(fs, fixture)?;
    fs.mkdir(fixture)?;
    match workload {
        Workload::Cat => write_file(fs, &fixture.join("hot"), SMALL as u64, 7)?,
        Workload::Cat1t | Workload::Cat2t | Workload::Cat4t | Workload::Cat8t => {
            for t in 0..MAX_THREADS {
                write_file(fs, &fixture.join(format!("hot-{t}")), SMALL as u64, 7)?;
            }
        }
        Workload::Find
        | Workload::Stat
        | Workload::Stat1t
        | Workload::Stat2t
        | Workload::Stat4t
        | Workload::Stat8t => {
            let (dirs, files) = tree_shape(size);
            for d in 0..dirs {
                let sub = fixture.join(format!("d{d}"));
                fs.mkdir(&sub)?;
                for f in 0..files {
                    fs.close(fs.create(&sub.join(format!("f{f}")))?)?;
                }
            }
        }
        Workload::Randio | Workload::Randread => {
            write_file(fs, &fixture.join("big"), randio_file_mib(size) << 20, 1)?;
        }
        Workload::Readdir => {
            let big = fixture.join("dir");
            fs.mkdir(&big)?;
            for f in 0..size {
                fs.close(fs.create(&big.join(format!("entry-{f:06}")))?)?;
            }
        }
        Workload::Create | Workload::Churn | Workload::Seq | Workload::Create2t => {}
        // Set up by `crate::process`, which runs them.
        Workload::CatProc | Workload::FindProc | Workload::Untouched | Workload::Script => {}
    }
    fs.close(fs.create(&ready)?)
}

/// A tree of `files` files: directories of 100 files each (fewer for small trees).
fn tree_shape(files: u64) -> (u64, u64) {
    let per_dir = files.min(100);
    (files.div_ceil(per_dir), per_dir)
}

/// The timed part: `workload` of `size` on `fixture`, writing under `work`. A warm-up does a
/// tenth of the repetitions (one pass for the workloads that read their whole fixture).
fn timed<F: Fs>(
    fs: &F,
    workload: Workload,
    size: u64,
    warm_up: bool,
    fixture: &Path,
    work: &Path,
) -> io::Result<Measured> {
    let fixture_size = size;
    let size = if warm_up { (size / 10).max(1) } else { size };
    let start = Instant::now();
    let ops = match workload {
        Workload::Cat => {
            let hot = fixture.join("hot");
            let mut buf = [0u8; SMALL];
            for _ in 0..size {
                let mut file = fs.open_read(&hot)?;
                exactly(
                    "read of the hot file",
                    read_full(fs, &mut file, &mut buf)?,
                    SMALL,
                )?;
                fs.close(file)?;
            }
            size
        }
        Workload::Find => {
            let (dirs, files) = tree_shape(fixture_size);
            let seen = walk(fs, fixture)?;
            // The tree's directories and files, and the READY marker.
            let want = dirs + dirs * files + 1;
            if seen != want {
                return Err(io::Error::other(format!(
                    "find saw {seen} entries, not {want}"
                )));
            }
            seen
        }
        Workload::Stat => {
            let (dirs, files) = tree_shape(fixture_size);
            let paths: Vec<PathBuf> = (0..dirs)
                .flat_map(|d| (0..files).map(move |f| fixture.join(format!("d{d}/f{f}"))))
                .collect();
            let start = Instant::now();
            let passes = if warm_up { 1 } else { STAT_PASSES };
            for _ in 0..passes {
                for path in &paths {
                    if fs.lstat_is_dir(path)? {
                        return Err(io::Error::other(format!(
                            "{} is a directory",
                            path.display()
                        )));
                    }
                }
            }
            return Ok(Measured {
                ops: passes * paths.len() as u64,
                nanos: nanos(start.elapsed()),
            });
        }
        Workload::Create => create_files(fs, work, size)?,
        Workload::CatProc | Workload::FindProc | Workload::Untouched | Workload::Script => {
            return Err(io::Error::other(format!(
                "{} runs programs: crate::process runs it",
                workload.name()
            )));
        }
        Workload::Stat1t
        | Workload::Stat2t
        | Workload::Stat4t
        | Workload::Stat8t
        | Workload::Cat1t
        | Workload::Cat2t
        | Workload::Cat4t
        | Workload::Cat8t => {
            let (repeated, threads) = workload.threads().unwrap_or((Repeated::Stat, 1));
            return threaded(fs, repeated, threads, fixture_size, warm_up, fixture);
        }
        Workload::Create2t => {
            let (a, b) = (work.join("a"), work.join("b"));
            fs.mkdir(&a)?;
            fs.mkdir(&b)?;
            let start = Instant::now();
            let (ra, rb) = std::thread::scope(|s| {
                let other = s.spawn(|| create_files(fs, &b, size));
                let mine = create_files(fs, &a, size);
                (mine, other.join().expect("a benchmark thread panicked"))
            });
            return Ok(Measured {
                ops: ra? + rb?,
                nanos: nanos(start.elapsed()),
            });
        }
        Workload::Churn => {
            for i in 0..size {
                let a = work.join(format!("a{i}"));
                let b = work.join(format!("b{i}"));
                fs.mkdir(&a)?;
                fs.close(fs.create(&a.join("x"))?)?;
                fs.rename(&a.join("x"), &a.join("y"))?;
                fs.rename(&a, &b)?;
                fs.unlink(&b.join("y"))?;
                fs.rmdir(&b)?;
            }
            6 * size
        }
        Workload::Randio => {
            let blocks = randio_file_mib(fixture_size) << 20 >> 12;
            let mut rng = fastrand::Rng::with_seed(SEED);
            let mut file = fs.open_rw(&fixture.join("big"))?;
            let mut buf = [3u8; SMALL];
            for i in 0..size {
                let offset = rng.u64(0..blocks) << 12;
                let n = if i % 2 == 0 {
                    fs.pread(&mut file, &mut buf, offset)?
                } else {
                    fs.pwrite(&mut file, &buf, offset)?
                };
                exactly("random 4 KiB I/O", n, SMALL)?;
            }
            fs.close(file)?;
            size
        }
        Workload::Randread => {
            let blocks = randio_file_mib(fixture_size) << 20 >> 12;
            let mut rng = fastrand::Rng::with_seed(SEED);
            let mut file = fs.open_read(&fixture.join("big"))?;
            let mut buf = [0u8; SMALL];
            for _ in 0..size {
                let offset = rng.u64(0..blocks) << 12;
                let n = fs.pread(&mut file, &mut buf, offset)?;
                exactly("random 4 KiB read", n, SMALL)?;
            }
            fs.close(file)?;
            size
        }
        Workload::Seq => {
            let path = work.join("seq");
            let mut buf = vec![5u8; CHUNK];
            let mut file = fs.create(&path)?;
            for _ in 0..size {
                write_all(fs, &mut file, &buf)?;
            }
            fs.close(file)?;
            let mut file = fs.open_read(&path)?;
            for _ in 0..size {
                exactly(
                    "sequential read",
                    read_full(fs, &mut file, &mut buf)?,
                    CHUNK,
                )?;
            }
            fs.close(file)?;
            2 * size
        }
        Workload::Readdir => {
            let n = fs.list(&fixture.join("dir"))?.len() as u64;
            if n != fixture_size {
                return Err(io::Error::other(format!(
                    "readdir saw {n} entries, not {fixture_size}"
                )));
            }
            n
        }
    };
    Ok(Measured {
        ops,
        nanos: nanos(start.elapsed()),
    })
}

/// The timed part of a threads workload: `threads` threads at once share the work of
/// `repeated` over a fixture of `size`; a warm-up does a tenth of it.
fn threaded<F: Fs>(
    fs: &F,
    repeated: Repeated,
    threads: u64,
    size: u64,
    warm_up: bool,
    fixture: &Path,
) -> io::Result<Measured> {
    let paths: Vec<PathBuf> = match repeated {
        Repeated::Stat => {
            let (dirs, files) = tree_shape(size);
            (0..dirs)
                .flat_map(|d| (0..files).map(move |f| fixture.join(format!("d{d}/f{f}"))))
                .collect()
        }
        Repeated::Cat => (0..threads)
            .map(|t| fixture.join(format!("hot-{t}")))
            .collect(),
    };
    let total = match repeated {
        Repeated::Stat => THREAD_STAT_PASSES * paths.len() as u64,
        Repeated::Cat => size,
    };
    let total = if warm_up {
        (total / 10).max(threads)
    } else {
        total
    };
    let each = total / threads;
    let one_thread = |t: u64| -> io::Result<u64> {
        match repeated {
            Repeated::Stat => {
                // Each thread starts at its own place, so they do not walk in step.
                let start = (t * paths.len() as u64 / threads) as usize;
                for path in paths.iter().cycle().skip(start).take(each as usize) {
                    if fs.lstat_is_dir(path)? {
                        return Err(io::Error::other(format!(
                            "{} is a directory",
                            path.display()
                        )));
                    }
                }
            }
            Repeated::Cat => {
                let mut buf = [0u8; SMALL];
                for _ in 0..each {
                    let mut file = fs.open_read(&paths[t as usize])?;
                    exactly(
                        "read of a hot file",
                        read_full(fs, &mut file, &mut buf)?,
                        SMALL,
                    )?;
                    fs.close(file)?;
                }
            }
        }
        Ok(each)
    };
    let start = Instant::now();
    let done: Vec<io::Result<u64>> = std::thread::scope(|s| {
        let others: Vec<_> = (1..threads)
            .map(|t| s.spawn(move || one_thread(t)))
            .collect();
        let mut done = vec![one_thread(0)];
        done.extend(
            others
                .into_iter()
                .map(|h| h.join().expect("a benchmark thread panicked")),
        );
        done
    });
    let nanos = nanos(start.elapsed());
    let mut ops = 0;
    for d in done {
        ops += d?;
    }
    Ok(Measured { ops, nanos })
}

fn create_files<F: Fs>(fs: &F, dir: &Path, n: u64) -> io::Result<u64> {
    let data = [9u8; SMALL];
    for i in 0..n {
        let mut file = fs.create(&dir.join(format!("f{i}")))?;
        write_all(fs, &mut file, &data)?;
        fs.close(file)?;
    }
    Ok(n)
}

/// Walks `dir` as find does: list, lstat each entry, descend into directories. Counts entries.
fn walk<F: Fs>(fs: &F, dir: &Path) -> io::Result<u64> {
    let mut seen = 0;
    for name in fs.list(dir)? {
        let path = dir.join(&name);
        seen += 1;
        if fs.lstat_is_dir(&path)? {
            seen += walk(fs, &path)?;
        }
    }
    Ok(seen)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use btfuse_core::{Config, MemFs, MemPool, ZeroClock};
    use btfuse_ring_server::{Server, ServerConfig};

    use super::*;
    use crate::fs::{Posix, Ring};

    /// Every name under `dir`, relative to it, with `/` after directories.
    fn tree<F: Fs>(fs: &F, dir: &Path) -> BTreeSet<String> {
        fn visit<F: Fs>(fs: &F, dir: &Path, rel: &str, out: &mut BTreeSet<String>) {
            for name in fs.list(dir).unwrap() {
                let path = dir.join(&name);
                let rel = format!("{rel}{}", name.to_string_lossy());
                if fs.lstat_is_dir(&path).unwrap() {
                    out.insert(format!("{rel}/"));
                    visit(fs, &path, &format!("{rel}/"), out);
                } else {
                    out.insert(rel);
                }
            }
        }
        let mut out = BTreeSet::new();
        visit(fs, dir, "", &mut out);
        out
    }

    /// Small sizes, and the operation count each must report.
    const CASES: [(Workload, u64, u64); 18] = [
        (Workload::Cat, 50, 50),
        // 3 directories of 100 files, the directories and READY.
        (Workload::Find, 250, 3 + 300 + 1),
        (Workload::Stat, 120, STAT_PASSES * 200),
        (Workload::Create, 30, 30),
        (Workload::Churn, 20, 120),
        (Workload::Randio, 100, 100),
        (Workload::Randread, 100, 100),
        (Workload::Seq, 4, 8),
        (Workload::Readdir, 300, 300),
        (Workload::Create2t, 20, 40),
        // 2 directories of 100 files, 2 passes, shared between the threads.
        (Workload::Stat1t, 120, 400),
        (Workload::Stat2t, 120, 400),
        (Workload::Stat4t, 120, 400),
        (Workload::Stat8t, 120, 400),
        // Reads in all, shared between the threads (whole shares only).
        (Workload::Cat1t, 50, 50),
        (Workload::Cat2t, 50, 50),
        (Workload::Cat4t, 50, 48),
        (Workload::Cat8t, 50, 48),
    ];

    #[test]
    fn every_workload_does_the_same_through_libc_and_through_the_ring() {
        let kernel = tempfile::tempdir().unwrap();
        let fs = Arc::new(MemFs::new(
            MemPool::new(512 << 20),
            Config::default(),
            ZeroClock,
        ));
        let server = Server::start(
            fs,
            &ServerConfig {
                socket: kernel.path().join("ring.sock"),
                threads: 1,
                socket_mode: 0o600,
                max_connections_per_user: btfuse_ring_server::DEFAULT_MAX_CONNECTIONS_PER_USER,
            },
        )
        .unwrap();
        let ring =
            Ring(btfuse_ring_client::Client::connect(kernel.path().join("ring.sock")).unwrap());
        for (workload, size, ops) in CASES {
            let on_kernel = kernel.path().join(workload.name());
            let on_ring = Path::new("/").join(workload.name());
            for round in 0..2 {
                let a = run(&Posix, workload, size, &on_kernel).unwrap();
                let b = run(&ring, workload, size, &on_ring).unwrap();
                assert_eq!((a.ops, b.ops), (ops, ops), "{workload:?}, round {round}");
                // Only the fixture stays, the same on both sides.
                let left = tree(&Posix, &on_kernel);
                assert_eq!(left, tree(&ring, &on_ring), "{workload:?}");
                assert!(left.contains("fixture/READY"), "{workload:?}: {left:?}");
                assert!(
                    !left.iter().any(|p| p.starts_with("scratch")),
                    "{workload:?}"
                );
            }
        }
        // The fixtures are what the workloads say.
        let cat = std::fs::read(kernel.path().join("cat/fixture/hot")).unwrap();
        assert_eq!(cat, vec![7u8; SMALL]);
        let big = std::fs::metadata(kernel.path().join("randio/fixture/big")).unwrap();
        assert_eq!(big.len(), 16 << 20);
        assert_eq!(
            ring.0.metadata("/randio/fixture/big").unwrap().len(),
            16 << 20
        );
        assert_eq!(
            std::fs::read_dir(kernel.path().join("readdir/fixture/dir"))
                .unwrap()
                .count(),
            300
        );
        drop(ring);
        server.shutdown();
    }

    #[test]
    fn random_offsets_are_fixed_by_the_seed() {
        let draw = || {
            let mut rng = fastrand::Rng::with_seed(SEED);
            (0..8).map(|_| rng.u64(0..4096)).collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
    }

    #[test]
    fn a_failing_call_is_an_error_not_a_result() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        // A workload directory below a regular file cannot be created.
        let err = run(&Posix, Workload::Cat, 10, &file.join("below")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR), "{err}");
    }
}
