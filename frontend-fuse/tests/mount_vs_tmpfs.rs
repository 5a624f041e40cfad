//! Guards that a `btfuse-fuse` mount behaves like Linux tmpfs, as seen through the kernel.
//!
//! Each scenario below performs a sequence of system calls under a base directory and records
//! every step's outcome as a line: `Ok(..)` with the fields that must match (mode, nlink, owner,
//! size, a regular file's blocks, contents, sorted listings, xattr values, and how timestamps
//! moved), or `Err(ERRNO)`. Inode numbers, devices, absolute timestamps and statfs totals are
//! left out. Every scenario runs once on a fresh btfuse mount and once on a fresh tmpfs; the
//! transcripts must be equal, except for the steps in [`ALLOWED_DIFFERENCES`], each of which
//! says why it differs.
//!
//! Scenarios fork children that switch to uids 1000 and 1001, so the tests run as root, and
//! with `--test-threads=1` (a fork copies only the forking thread).
#![deny(unsafe_code)]

mod common;

use std::fmt::Display;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::fs::{chown, lchown, symlink};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use common::{Creds, DirEntry, Mount, TimeArg, Tmpfs, as_user, errno_name, join_bytes};

/// The btfuse mount every comparison uses: a root everyone may create in, as tmpfs's is, and
/// open to the other users the permission scenarios switch to.
const BTFUSE_ARGS: &[&str] = &["--mode", "1777", "--allow-other", "--size", "256M"];

/// A step whose outcome differs between btfuse and tmpfs for a reason that is not a btfuse
/// bug.
struct AllowedDifference {
    scenario: &'static str,
    /// The step's label, as recorded (the text before ` => `).
    step: &'static str,
    reason: &'static str,
}

/// Explained differences. A step listed here may differ; all others must match.
const ALLOWED_DIFFERENCES: &[AllowedDifference] = &[
    AllowedDifference {
        scenario: "open_read_write",
        step: "first read after write: times of f",
        reason: "FUSE leaves atime to the daemon (the kernel marks FUSE inodes S_NOATIME), and \
                 btfuse-fuse opens files with FOPEN_KEEP_CACHE, so a read served from the page \
                 cache never reaches the engine and cannot move atime",
    },
    AllowedDifference {
        scenario: "seek_data_hole",
        step: "reserved: SEEK_DATA 0",
        reason: "docs/semantics.md: blocks reserved by fallocate but never written count as data \
                 for SEEK_DATA/SEEK_HOLE in btfuse; tmpfs reports them as holes (its pages are \
                 not yet uptodate). Reads return zeros on both",
    },
    AllowedDifference {
        scenario: "seek_data_hole",
        step: "reserved: SEEK_HOLE 0",
        reason: "same as `reserved: SEEK_DATA 0`",
    },
];

// ---------------------------------------------------------------------------------------------
// Transcripts

/// A scenario stopped early because a step it builds on failed (already recorded).
struct Abort;

type Steps = Result<(), Abort>;

/// The lines a scenario records.
#[derive(Default)]
struct Transcript {
    lines: Vec<String>,
}

impl Transcript {
    /// Records `label => Ok(value)` or `label => Err(ERRNO)` and hands back the value.
    fn step<T: Show>(&mut self, label: &str, result: io::Result<T>) -> Option<T> {
        let outcome = match &result {
            Ok(value) => format!("Ok({})", value.show()),
            Err(err) => format!("Err({})", errno_name(err)),
        };
        self.lines.push(format!("{label} => {outcome}"));
        result.ok()
    }

    /// Like [`step`](Self::step) for a step the rest of the scenario needs.
    fn need<T: Show>(&mut self, label: &str, result: io::Result<T>) -> Result<T, Abort> {
        self.step(label, result).ok_or(Abort)
    }

    /// Records a derived fact (`label => value`).
    fn note(&mut self, label: &str, value: impl Display) {
        self.lines.push(format!("{label} => {value}"));
    }

    /// Appends a child's transcript, each line marked with who ran it.
    fn merge(&mut self, who: &str, lines: Vec<String>) {
        self.lines
            .extend(lines.into_iter().map(|line| format!("[{who}] {line}")));
    }
}

/// Runs a scenario body and returns its transcript.
fn record(body: impl FnOnce(&mut Transcript) -> Steps) -> Vec<String> {
    let mut transcript = Transcript::default();
    if body(&mut transcript).is_err() {
        transcript
            .lines
            .push("(stopped: a step the scenario needs failed)".to_owned());
    }
    transcript.lines
}

/// Runs `body` as another user in a forked child and merges its transcript under `who`.
fn as_other(
    t: &mut Transcript,
    who: &str,
    creds: &Creds,
    body: impl FnOnce(&mut Transcript) -> Steps,
) {
    let lines = as_user(creds, || record(body));
    t.merge(who, lines);
}

/// How a step's successful value appears in a transcript: only fields that must be equal on
/// btfuse and tmpfs.
trait Show {
    fn show(&self) -> String;
}

impl Show for () {
    fn show(&self) -> String {
        String::new()
    }
}

impl Show for usize {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for String {
    fn show(&self) -> String {
        self.clone()
    }
}

impl Show for bool {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for i64 {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for File {
    fn show(&self) -> String {
        "fd".to_owned()
    }
}

impl Show for Metadata {
    fn show(&self) -> String {
        show_metadata(self)
    }
}

impl Show for Vec<u8> {
    fn show(&self) -> String {
        show_bytes(self)
    }
}

impl Show for PathBuf {
    fn show(&self) -> String {
        show_bytes(self.as_os_str().as_encoded_bytes())
    }
}

/// A sorted directory listing.
struct Listing(Vec<String>);

impl Show for Listing {
    fn show(&self) -> String {
        format!("[{}]", self.0.join(" "))
    }
}

/// Timestamps, shown only through [`Times::relation`] (absolute values differ between runs).
#[derive(Clone, Copy)]
struct Times {
    atime: (i64, i64),
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Show for Times {
    fn show(&self) -> String {
        "times".to_owned()
    }
}

impl Times {
    fn of(meta: &Metadata) -> Times {
        Times {
            atime: (meta.atime(), meta.atime_nsec()),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// How each timestamp moved from `self` to `after`.
    fn relation(&self, after: &Times) -> String {
        let moved = |before: (i64, i64), after: (i64, i64)| match after.cmp(&before) {
            std::cmp::Ordering::Greater => "advanced",
            std::cmp::Ordering::Equal => "same",
            std::cmp::Ordering::Less => "went back",
        };
        format!(
            "atime {} mtime {} ctime {}",
            moved(self.atime, after.atime),
            moved(self.mtime, after.mtime),
            moved(self.ctime, after.ctime)
        )
    }
}

fn show_metadata(meta: &Metadata) -> String {
    let kind = meta.mode() & libc::S_IFMT;
    let mut text = format!(
        "mode={:o} nlink={} uid={} gid={} size={}",
        meta.mode(),
        meta.nlink(),
        meta.uid(),
        meta.gid(),
        meta.size()
    );
    if kind == libc::S_IFREG {
        text += &format!(" blocks={}", meta.blocks());
    }
    if kind == libc::S_IFCHR || kind == libc::S_IFBLK {
        let rdev = meta.rdev();
        text += &format!(" rdev={}:{}", libc::major(rdev), libc::minor(rdev));
    }
    text
}

/// Short contents verbatim; long ones as their length and a hash, or as a run of one byte.
fn show_bytes(bytes: &[u8]) -> String {
    if bytes.len() <= 48 {
        return format!("\"{}\"", bytes.escape_ascii());
    }
    if bytes.iter().all(|&byte| byte == bytes[0]) {
        return format!("{} x {:#04x}", bytes.len(), bytes[0]);
    }
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{} bytes fnv1a={hash:016x}", bytes.len())
}

/// A name as listings show it: long names by their length.
fn show_name(name: &[u8]) -> String {
    if name.len() <= 40 {
        name.escape_ascii().to_string()
    } else {
        format!("{}..({} bytes)", name[..8].escape_ascii(), name.len())
    }
}

// ---------------------------------------------------------------------------------------------
// Steps

fn stat(path: &Path) -> io::Result<Metadata> {
    fs::metadata(path)
}

fn lstat(path: &Path) -> io::Result<Metadata> {
    fs::symlink_metadata(path)
}

fn times(path: &Path) -> io::Result<Times> {
    lstat(path).map(|meta| Times::of(&meta))
}

fn listing(dir: &Path) -> io::Result<Listing> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        names.push(show_name(entry?.file_name().as_encoded_bytes()));
    }
    names.sort();
    Ok(Listing(names))
}

/// Opens with raw `open(2)` flags (access mode included) and creation mode.
fn open(path: &Path, flags: libc::c_int, mode: u32) -> io::Result<File> {
    let access = flags & libc::O_ACCMODE;
    OpenOptions::new()
        .read(access != libc::O_WRONLY)
        .write(access != libc::O_RDONLY)
        .custom_flags(flags & !libc::O_ACCMODE)
        .mode(mode)
        .open(path)
}

fn create(path: &Path, mode: u32) -> io::Result<File> {
    open(path, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode)
}

fn write_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    create(path, 0o644)?.write_all(contents)
}

fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let read = file.read_at(&mut buf, offset)?;
    buf.truncate(read);
    Ok(buf)
}

fn read_to_end(mut file: &File) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    Ok(buf)
}

fn chmod(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Lets timestamps move between two steps (tmpfs's clock ticks coarsely).
fn tick() {
    thread::sleep(Duration::from_millis(20));
}

/// Timestamps of some paths, taken before a step, to report how the step moved them.
struct Watch {
    paths: Vec<PathBuf>,
    before: Vec<io::Result<Times>>,
}

impl Watch {
    fn new(paths: &[&Path]) -> Watch {
        let before = paths.iter().map(|path| times(path)).collect();
        tick();
        Watch {
            paths: paths.iter().map(|path| path.to_path_buf()).collect(),
            before,
        }
    }

    /// Records, per path, how its timestamps moved since [`Watch::new`].
    fn report(self, t: &mut Transcript, label: &str) {
        for (path, before) in self.paths.iter().zip(self.before) {
            let name = path.file_name().map(show_name_os).unwrap_or_default();
            let moved = match (before, times(path)) {
                (Ok(before), Ok(after)) => before.relation(&after),
                (before, after) => format!(
                    "unobservable ({:?}, {:?})",
                    before.err().map(|err| errno_name(&err)),
                    after.err().map(|err| errno_name(&err))
                ),
            };
            t.note(&format!("{label}: times of {name}"), moved);
        }
    }
}

fn show_name_os(name: &std::ffi::OsStr) -> String {
    show_name(name.as_encoded_bytes())
}

// ---------------------------------------------------------------------------------------------
// Scenarios

type Scenario = fn(&Path) -> Vec<String>;

/// uid 1000, primary group 1000, also in group 2000.
fn alice() -> Creds {
    Creds::new(1000, 1000, &[1000, 2000])
}

/// uid 1001, only in group 1001.
fn bob() -> Creds {
    Creds::new(1001, 1001, &[1001])
}

fn lookup_and_stat(base: &Path) -> Vec<String> {
    record(|t| {
        let f = base.join("f");
        t.need("write f", write_new(&f, b"hello"))?;
        t.step("stat f", stat(&f));
        t.step("lstat f", lstat(&f));
        t.step("stat missing", stat(&base.join("missing")));
        t.step("stat f/x", stat(&f.join("x")));
        t.step("stat f/", stat(&base.join("f/")));
        t.step("stat base", stat(base));
        t.need("mkdir d", fs::create_dir(base.join("d")))?;
        t.step("stat base after mkdir", stat(base));
        t.step("stat d", stat(&base.join("d")));
        t.step("stat d/../f", stat(&base.join("d/../f")));
        t.step("stat d/./.", stat(&base.join("d/./.")));
        t.step("symlink l -> f", symlink("f", base.join("l")));
        t.step("lstat l", lstat(&base.join("l")));
        t.step("stat l", stat(&base.join("l")));
        t.step(
            "symlink dangling",
            symlink("nowhere", base.join("dangling")),
        );
        t.step("stat dangling", stat(&base.join("dangling")));
        t.step("lstat dangling", lstat(&base.join("dangling")));
        t.step("symlink loop -> loop", symlink("loop", base.join("loop")));
        t.step("stat loop", stat(&base.join("loop")));
        t.step("stat loop/x", stat(&base.join("loop/x")));
        t.step("stat base at end", stat(base));
        t.step("list base", listing(base));
        Ok(())
    })
}

fn mknod_kinds(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        t.step(
            "mknod reg 0640",
            common::mknod(&at("reg"), libc::S_IFREG | 0o640, 0),
        );
        t.step("stat reg", stat(&at("reg")));
        t.step(
            "mknod untyped 0644",
            common::mknod(&at("untyped"), 0o644, 0),
        );
        t.step("stat untyped", stat(&at("untyped")));
        t.step(
            "mknod special bits 07777",
            common::mknod(&at("bits"), libc::S_IFREG | 0o7777, 0),
        );
        t.step("stat bits", stat(&at("bits")));
        t.step("mkfifo fifo 0600", common::mkfifo(&at("fifo"), 0o600));
        t.step("stat fifo", stat(&at("fifo")));
        t.step(
            "mknod sock",
            common::mknod(&at("sock"), libc::S_IFSOCK | 0o755, 0),
        );
        t.step("stat sock", stat(&at("sock")));
        let null = libc::makedev(1, 3);
        t.step(
            "mknod chr 1:3",
            common::mknod(&at("chr"), libc::S_IFCHR | 0o666, null),
        );
        t.step("stat chr", stat(&at("chr")));
        let loop0 = libc::makedev(7, 0);
        t.step(
            "mknod blk 7:0",
            common::mknod(&at("blk"), libc::S_IFBLK | 0o600, loop0),
        );
        t.step("stat blk", stat(&at("blk")));
        t.step(
            "mknod dir",
            common::mknod(&at("dir"), libc::S_IFDIR | 0o755, 0),
        );
        t.step(
            "mknod reg again",
            common::mknod(&at("reg"), libc::S_IFREG | 0o644, 0),
        );
        t.step(
            "mknod over fifo",
            common::mknod(&at("fifo"), libc::S_IFIFO | 0o644, 0),
        );
        t.step(
            "mknod in missing dir",
            common::mknod(&at("missing/x"), libc::S_IFREG, 0),
        );
        t.step(
            "mknod under a file",
            common::mknod(&at("reg/x"), libc::S_IFREG, 0),
        );
        let reader = t.step(
            "open fifo read nonblock",
            open(&at("fifo"), libc::O_RDONLY | libc::O_NONBLOCK, 0),
        );
        let writer = t.step(
            "open fifo write nonblock",
            open(&at("fifo"), libc::O_WRONLY | libc::O_NONBLOCK, 0),
        );
        if let (Some(reader), Some(mut writer)) = (reader, writer) {
            t.step("write fifo", writer.write(b"through the pipe"));
            let mut buf = [0u8; 64];
            let read = (&reader).read(&mut buf);
            t.step("read fifo", read.map(|len| buf[..len].to_vec()));
        }
        t.step("open sock", open(&at("sock"), libc::O_RDONLY, 0));
        t.step("stat base", stat(base));
        t.step("list base", listing(base));
        Ok(())
    })
}

fn mkdir_rmdir(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        t.need("write f", write_new(&at("f"), b"x"))?;
        let watch = Watch::new(&[base]);
        t.need("mkdir a", fs::create_dir(at("a")))?;
        watch.report(t, "mkdir a");
        t.step("stat a", stat(&at("a")));
        t.step("stat base", stat(base));
        t.step("mkdir a again", fs::create_dir(at("a")));
        t.step("mkdir a/ trailing slash", fs::create_dir(at("b/")));
        t.step("mkdir f/x", fs::create_dir(at("f/x")));
        t.step("mkdir missing/x", fs::create_dir(at("missing/x")));
        t.step("mkdir over file", fs::create_dir(at("f")));
        t.step(
            "mkdir mode 07777",
            fs::DirBuilder::new().mode(0o7777).create(at("bits")),
        );
        t.step("stat bits", stat(&at("bits")));
        t.step(
            "mkdir mode 0",
            fs::DirBuilder::new().mode(0o000).create(at("closed")),
        );
        t.step("stat closed", stat(&at("closed")));
        t.step("mkdir a/c", fs::create_dir(at("a/c")));
        t.step("stat a with c", stat(&at("a")));
        t.step("rmdir a (not empty)", fs::remove_dir(at("a")));
        t.step("rmdir f", fs::remove_dir(at("f")));
        t.step("rmdir a/c/.", fs::remove_dir(at("a/c/.")));
        t.step("rmdir a/c/..", fs::remove_dir(at("a/c/..")));
        t.step("rmdir missing", fs::remove_dir(at("missing")));
        t.step("rmdir f/x", fs::remove_dir(at("f/x")));
        let watch = Watch::new(&[&at("a")]);
        t.step("rmdir a/c", fs::remove_dir(at("a/c")));
        watch.report(t, "rmdir a/c");
        t.step("stat a empty", stat(&at("a")));
        t.step("rmdir a", fs::remove_dir(at("a")));
        t.step("rmdir b/", fs::remove_dir(at("b/")));
        t.step("rmdir closed (mode 0, root)", fs::remove_dir(at("closed")));
        t.step("stat base at end", stat(base));
        t.step("list base", listing(base));
        Ok(())
    })
}

fn unlink_cases(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        t.need("write f", write_new(&at("f"), b"data"))?;
        t.need("link f g", fs::hard_link(at("f"), at("g")))?;
        t.need("mkdir d", fs::create_dir(at("d")))?;
        t.step("stat g", stat(&at("g")));
        let watch = Watch::new(&[base, &at("g")]);
        t.step("unlink f", fs::remove_file(at("f")));
        watch.report(t, "unlink f");
        t.step("stat g after", stat(&at("g")));
        t.step("read g", fs::read(at("g")));
        t.step("unlink f again", fs::remove_file(at("f")));
        t.step("unlink d", fs::remove_file(at("d")));
        t.step("unlink d/", fs::remove_file(at("d/")));
        t.step("unlink g/x", fs::remove_file(at("g/x")));
        t.step("unlink g/", fs::remove_file(at("g/")));
        t.step("unlink d/..", fs::remove_file(at("d/..")));
        t.step("symlink s -> g", symlink("g", at("s")));
        t.step("unlink s", fs::remove_file(at("s")));
        t.step("stat g after unlinking its symlink", stat(&at("g")));
        t.step("unlink g", fs::remove_file(at("g")));
        t.step("stat base", stat(base));
        t.step("list base", listing(base));
        Ok(())
    })
}

fn symlinks(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        t.need(
            "write target",
            write_new(&at("target"), b"through the link"),
        )?;
        t.need("mkdir dir", fs::create_dir(at("dir")))?;
        t.need("write dir/inner", write_new(&at("dir/inner"), b"inner"))?;
        t.step("symlink s -> target", symlink("target", at("s")));
        t.step("lstat s", lstat(&at("s")));
        t.step("readlink s", fs::read_link(at("s")));
        t.step("readlink s into 4 bytes", common::readlink(&at("s"), 4));
        t.step("readlink target (a file)", fs::read_link(at("target")));
        t.step("readlink missing", fs::read_link(at("missing")));
        t.step("read through s", fs::read(at("s")));
        t.step(
            "open s O_NOFOLLOW",
            open(&at("s"), libc::O_RDONLY | libc::O_NOFOLLOW, 0),
        );
        t.step("symlink empty target", symlink("", at("empty")));
        let long = "a/".repeat(2047) + "z";
        t.step("symlink 4095-byte target", symlink(&long, at("long")));
        t.step("lstat long", lstat(&at("long")));
        let read_back = fs::read_link(at("long"));
        let same = read_back.map(|target| target.as_os_str().as_encoded_bytes() == long.as_bytes());
        t.step("readlink long equal", same);
        let too_long = "a/".repeat(2048);
        t.step(
            "symlink 4096-byte target",
            symlink(&too_long, at("too_long")),
        );
        t.step("symlink over existing", symlink("target", at("target")));
        t.step("symlink ds -> dir", symlink("dir", at("ds")));
        t.step("stat ds", stat(&at("ds")));
        t.step("list ds/", listing(&at("ds/")));
        t.step("read ds/inner", fs::read(at("ds/inner")));
        t.step("symlink absolute", symlink(at("target"), at("abs")));
        t.step("read abs", fs::read(at("abs")));
        t.step("symlink chain c1 -> s", symlink("s", at("c1")));
        t.step("read c1", fs::read(at("c1")));
        t.step(
            "symlink dir/up -> ../target",
            symlink("../target", at("dir/up")),
        );
        t.step("read dir/up", fs::read(at("dir/up")));
        t.step("stat base", stat(base));
        t.step("list base", listing(base));
        Ok(())
    })
}

fn rename_cases(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        t.need("write a", write_new(&at("a"), b"A"))?;
        t.need("write b", write_new(&at("b"), b"B"))?;
        for dir in ["d1", "d2", "d3", "p", "q", "p/m"] {
            t.need(&format!("mkdir {dir}"), fs::create_dir(at(dir)))?;
        }
        t.need("write d2/x", write_new(&at("d2/x"), b"x"))?;
        let watch = Watch::new(&[base, &at("a")]);
        t.step("rename a -> b (replace)", fs::rename(at("a"), at("b")));
        watch.report(t, "rename a -> b");
        t.step("read b", fs::read(at("b")));
        t.step("stat a", stat(&at("a")));
        t.step(
            "rename d1 -> d3 (empty dir)",
            fs::rename(at("d1"), at("d3")),
        );
        t.step("stat d3", stat(&at("d3")));
        t.step("stat base", stat(base));
        t.step(
            "rename d3 -> d2 (not empty)",
            fs::rename(at("d3"), at("d2")),
        );
        t.step(
            "rename b -> d2 (file onto dir)",
            fs::rename(at("b"), at("d2")),
        );
        t.step(
            "rename d2 -> b (dir onto file)",
            fs::rename(at("d2"), at("b")),
        );
        t.step("mkdir d2/sub", fs::create_dir(at("d2/sub")));
        t.step(
            "rename d2 -> d2/sub/new",
            fs::rename(at("d2"), at("d2/sub/new")),
        );
        t.step("rename d2 -> d2/new", fs::rename(at("d2"), at("d2/new")));
        t.step(
            "rename d2/sub -> d2 (onto ancestor)",
            fs::rename(at("d2/sub"), at("d2")),
        );
        t.step("rename missing", fs::rename(at("missing"), at("x")));
        t.step(
            "rename b -> missing/x",
            fs::rename(at("b"), at("missing/x")),
        );
        t.step("rename d2/. -> z", fs::rename(at("d2/."), at("z")));
        t.step("rename b -> b/", fs::rename(at("b"), at("c/")));
        t.step("rename b -> b (itself)", fs::rename(at("b"), at("b")));
        let noreplace = libc::RENAME_NOREPLACE;
        let exchange = libc::RENAME_EXCHANGE;
        t.step(
            "noreplace b -> d2",
            common::renameat2(&at("b"), &at("d2"), noreplace),
        );
        t.step(
            "noreplace b -> c",
            common::renameat2(&at("b"), &at("c"), noreplace),
        );
        t.step("list base after noreplace", listing(base));
        let watch = Watch::new(&[&at("c"), &at("d2")]);
        t.step(
            "exchange c <-> d2",
            common::renameat2(&at("c"), &at("d2"), exchange),
        );
        watch.report(t, "exchange");
        t.step("lstat c", lstat(&at("c")));
        t.step("lstat d2", lstat(&at("d2")));
        t.step("list c", listing(&at("c")));
        t.step("read d2", fs::read(at("d2")));
        t.step(
            "exchange with missing",
            common::renameat2(&at("c"), &at("nx"), exchange),
        );
        t.step(
            "noreplace|exchange",
            common::renameat2(&at("c"), &at("d2"), exchange | noreplace),
        );
        t.step(
            "exchange c <-> c/sub",
            common::renameat2(&at("c"), &at("c/sub"), exchange),
        );
        t.step("link d2 h", fs::hard_link(at("d2"), at("h")));
        t.step("rename d2 -> h (same inode)", fs::rename(at("d2"), at("h")));
        t.step("list base after same-inode rename", listing(base));
        t.step("stat h", stat(&at("h")));
        let watch = Watch::new(&[&at("p"), &at("q"), &at("p/m")]);
        t.step("rename p/m -> q/m", fs::rename(at("p/m"), at("q/m")));
        watch.report(t, "move p/m to q");
        t.step("stat p", stat(&at("p")));
        t.step("stat q", stat(&at("q")));
        t.step("stat q/m/..", stat(&at("q/m/..")));
        t.step(
            "rename q/m -> p/m2 then stat",
            fs::rename(at("q/m"), at("p/m2")),
        );
        t.step("stat p again", stat(&at("p")));
        t.step("write q/file", write_new(&at("q/file"), b"file"));
        let exchange_across = common::renameat2(&at("p/m2"), &at("q/file"), exchange);
        t.step("exchange dir p/m2 <-> q/file", exchange_across);
        t.step("stat p after exchange", stat(&at("p")));
        t.step("stat q after exchange", stat(&at("q")));
        t.step("lstat p/m2", lstat(&at("p/m2")));
        t.step("stat q/file/..", stat(&at("q/file/..")));
        t.step("stat base at end", stat(base));
        t.step("list base at end", listing(base));
        Ok(())
    })
}

fn hard_links(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        t.need("write f", write_new(&at("f"), b"data"))?;
        t.need("mkdir d", fs::create_dir(at("d")))?;
        let watch = Watch::new(&[&at("f"), base]);
        t.step("link f g", fs::hard_link(at("f"), at("g")));
        watch.report(t, "link f g");
        t.step("stat f", stat(&at("f")));
        t.step("link d e", fs::hard_link(at("d"), at("e")));
        t.step("link f g again", fs::hard_link(at("f"), at("g")));
        t.step("link missing", fs::hard_link(at("missing"), at("m")));
        t.step("link f missing/x", fs::hard_link(at("f"), at("missing/x")));
        t.step("link f d/f", fs::hard_link(at("f"), at("d/f")));
        t.step("stat d/f", stat(&at("d/f")));
        t.step("symlink s -> f", symlink("f", at("s")));
        t.step(
            "link s sl (the symlink itself)",
            fs::hard_link(at("s"), at("sl")),
        );
        t.step("lstat sl", lstat(&at("sl")));
        t.step("stat f after", stat(&at("f")));
        t.step("unlink f", fs::remove_file(at("f")));
        t.step("stat g", stat(&at("g")));
        t.step("read g", fs::read(at("g")));
        t.step("read sl (dangling now)", fs::read(at("sl")));
        t.step("write through g", fs::write(at("g"), b"new"));
        t.step("read d/f", fs::read(at("d/f")));
        t.step("stat base", stat(base));
        t.step("list base", listing(base));
        Ok(())
    })
}

fn open_read_write(base: &Path) -> Vec<String> {
    record(|t| {
        let f = base.join("f");
        let file = t.need(
            "create f excl 0640",
            open(&f, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o640),
        )?;
        t.step("stat new f", stat(&f));
        t.step(
            "create f excl again",
            open(&f, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0),
        );
        t.step("write hello world", (&file).write(b"hello world"));
        t.step("stat after write", stat(&f));
        t.step("read f", fs::read(&f));
        t.step("read from write-only fd", read_at(&file, 0, 4));
        drop(file);
        let appender = t.need("open append", open(&f, libc::O_WRONLY | libc::O_APPEND, 0))?;
        t.step("append !", (&appender).write(b"!"));
        t.step("pwrite at 0 with O_APPEND", appender.write_at(b"?", 0));
        t.step("read after appends", fs::read(&f));
        drop(appender);
        let reader = t.need("open read-only", open(&f, libc::O_RDONLY, 0))?;
        t.step("write to read-only fd", (&reader).write(b"x"));
        t.step("read at offset 6", read_at(&reader, 6, 100));
        t.step("read at EOF", read_at(&reader, 13, 10));
        t.step("read past EOF", read_at(&reader, 1000, 10));
        drop(reader);
        t.step(
            "open existing O_CREAT 0600",
            open(&f, libc::O_RDWR | libc::O_CREAT, 0o600),
        );
        t.step("stat after O_CREAT of existing", stat(&f));
        t.step(
            "open O_RDONLY|O_TRUNC",
            open(&f, libc::O_RDONLY | libc::O_TRUNC, 0),
        );
        t.step("stat after O_RDONLY|O_TRUNC", stat(&f));
        t.step("rewrite f", fs::write(&f, b"hello world!?"));
        let watch = Watch::new(&[&f]);
        t.step("open O_TRUNC", open(&f, libc::O_WRONLY | libc::O_TRUNC, 0));
        watch.report(t, "O_TRUNC");
        t.step("stat after O_TRUNC", stat(&f));
        let watch = Watch::new(&[&f]);
        t.step(
            "open O_TRUNC empty",
            open(&f, libc::O_WRONLY | libc::O_TRUNC, 0),
        );
        watch.report(t, "O_TRUNC of an empty file");
        t.step(
            "open missing",
            open(&base.join("missing"), libc::O_RDONLY, 0),
        );
        t.need("mkdir d", fs::create_dir(base.join("d")))?;
        t.step("open d for write", open(&base.join("d"), libc::O_WRONLY, 0));
        t.step(
            "open d O_CREAT",
            open(&base.join("d"), libc::O_RDWR | libc::O_CREAT, 0o644),
        );
        t.step(
            "open f O_DIRECTORY",
            open(&f, libc::O_RDONLY | libc::O_DIRECTORY, 0),
        );
        t.step("open f/ ", open(&base.join("f/"), libc::O_RDONLY, 0));
        let dir = t.step("open d read-only", open(&base.join("d"), libc::O_RDONLY, 0));
        if let Some(dir) = dir {
            t.step("read d", read_to_end(&dir));
        }
        let file = t.need("open f rw", open(&f, libc::O_RDWR, 0))?;
        t.step("pwrite at 100", file.write_at(b"x", 100));
        t.step("stat after pwrite at 100", stat(&f));
        t.step("read with hole", read_to_end(&file));
        let watch = Watch::new(&[&f]);
        t.step("pwrite 3 bytes", file.write_at(b"abc", 0));
        watch.report(t, "write");
        let watch = Watch::new(&[&f]);
        t.step("write 0 bytes", (&file).write(b""));
        watch.report(t, "empty write");
        drop(file);
        let watch = Watch::new(&[&f]);
        t.step("read in a new open", fs::read(&f));
        watch.report(t, "first read after write");
        let watch = Watch::new(&[&f]);
        t.step("read again", fs::read(&f));
        watch.report(t, "second read");
        t.step("create mode 0", create(&base.join("zero"), 0));
        t.step("stat zero", stat(&base.join("zero")));
        t.step(
            "open zero rw as root",
            open(&base.join("zero"), libc::O_RDWR, 0),
        );
        t.step("list base", listing(base));
        Ok(())
    })
}

fn truncate_sizes(base: &Path) -> Vec<String> {
    record(|t| {
        let f = base.join("f");
        let pattern: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        t.need("write 10000 bytes", write_new(&f, &pattern))?;
        t.step("stat f", stat(&f));
        t.step("truncate to 5000", common::truncate(&f, 5000));
        t.step("stat after shrink", stat(&f));
        t.step("truncate to 20000", common::truncate(&f, 20_000));
        t.step("stat after grow", stat(&f));
        let kept = fs::read(&f).map(|bytes| bytes.get(..5000) == pattern.get(..5000));
        t.step("bytes 0..5000 kept", kept);
        let grown = fs::read(&f).map(|bytes| bytes.get(5000..).unwrap_or_default().to_vec());
        t.step("bytes 5000..20000", grown);
        let file = t.need("open rw", open(&f, libc::O_RDWR, 0))?;
        t.step("ftruncate to 3", common::ftruncate(&file, 3));
        t.step("read after ftruncate", fs::read(&f));
        t.step("ftruncate -1", common::ftruncate(&file, -1));
        let watch = Watch::new(&[&f]);
        t.step("ftruncate to the same size", common::ftruncate(&file, 3));
        watch.report(t, "ftruncate same size");
        let watch = Watch::new(&[&f]);
        t.step("truncate to the same size", common::truncate(&f, 3));
        watch.report(t, "truncate same size");
        let watch = Watch::new(&[&f]);
        t.step("truncate to 4096", common::truncate(&f, 4096));
        watch.report(t, "truncate grow");
        t.step("truncate -1", common::truncate(&f, -1));
        t.step("truncate 1 TiB", common::truncate(&f, 1 << 40));
        t.step("stat 1 TiB", stat(&f));
        t.step("truncate i64::MAX", common::truncate(&f, i64::MAX));
        t.step("stat i64::MAX", stat(&f));
        t.step("read at 1 TiB", read_at(&file, 1 << 40, 8));
        t.step("truncate back to 0", common::truncate(&f, 0));
        t.step("stat empty", stat(&f));
        let reader = t.need("open read-only", open(&f, libc::O_RDONLY, 0))?;
        t.step("ftruncate read-only fd", common::ftruncate(&reader, 10));
        t.need("mkdir d", fs::create_dir(base.join("d")))?;
        t.step("truncate d", common::truncate(&base.join("d"), 0));
        t.step(
            "truncate missing",
            common::truncate(&base.join("missing"), 0),
        );
        t.step("mkfifo p", common::mkfifo(&base.join("p"), 0o644));
        t.step("truncate fifo", common::truncate(&base.join("p"), 0));
        Ok(())
    })
}

fn clone_err(err: &io::Error) -> io::Error {
    match err.raw_os_error() {
        Some(errno) => io::Error::from_raw_os_error(errno),
        None => io::Error::new(err.kind(), err.to_string()),
    }
}

const MIB: u64 = 1 << 20;

fn sparse_files(base: &Path) -> Vec<String> {
    record(|t| {
        let f = base.join("f");
        let file = t.need("create f", create(&f, 0o644))?;
        t.step("write 4096 x at 1 MiB", file.write_at(&[b'x'; 4096], MIB));
        t.step("stat", stat(&f));
        t.step("read the hole at 0", read_at(&file, 0, 4096));
        t.step("read the hole at 1 MiB - 10", read_at(&file, MIB - 10, 20));
        t.step("read at 1 MiB", read_at(&file, MIB, 4096));
        t.step(
            "write 1 byte at 3 MiB + 100",
            file.write_at(b"y", 3 * MIB + 100),
        );
        t.step("stat after second write", stat(&f));
        t.step(
            "write 10 bytes across a block edge",
            file.write_at(b"0123456789", 8190),
        );
        t.step("stat after straddling write", stat(&f));
        t.step("read whole file", fs::read(&f));
        t.step("read across the edge", read_at(&file, 8186, 18));
        t.step(
            "write 64 KiB at 10 MiB",
            file.write_at(&[b'z'; 65536], 10 * MIB),
        );
        t.step("stat after 64 KiB", stat(&f));
        t.step("read 64 KiB back", read_at(&file, 10 * MIB - 4, 65540));
        // One write larger than the biggest FUSE request, at an unaligned offset.
        let big: Vec<u8> = (0..3 * MIB as usize + 123)
            .map(|i| (i % 253) as u8)
            .collect();
        t.step("write 3 MiB + 123 at 5", file.write_at(&big, 5));
        t.step("stat after 3 MiB write", stat(&f));
        t.step("read 3 MiB back", read_at(&file, 5, big.len()));
        t.step(
            "read around its end",
            read_at(&file, 5 + big.len() as u64 - 8, 16),
        );
        Ok(())
    })
}

fn fallocate_modes(base: &Path) -> Vec<String> {
    record(|t| {
        let f = base.join("f");
        let file = t.need("create f", create(&f, 0o644))?;
        let keep = libc::FALLOC_FL_KEEP_SIZE;
        let punch = libc::FALLOC_FL_PUNCH_HOLE;
        let watch = Watch::new(&[&f]);
        t.step("allocate 0..8192", common::fallocate(&file, 0, 0, 8192));
        watch.report(t, "allocate");
        t.step("stat after allocate", stat(&f));
        let watch = Watch::new(&[&f]);
        t.step(
            "keep-size 16384..20480",
            common::fallocate(&file, keep, 16384, 4096),
        );
        watch.report(t, "keep-size allocate");
        t.step("stat after keep-size", stat(&f));
        t.step("read all", fs::read(&f));
        t.step("write data at 0", file.write_at(&[b'd'; 8192], 0));
        t.step("stat after write", stat(&f));
        let watch = Watch::new(&[&f]);
        t.step(
            "punch 0..4096",
            common::fallocate(&file, punch | keep, 0, 4096),
        );
        watch.report(t, "punch");
        t.step("stat after punch", stat(&f));
        t.step("read punched", read_at(&file, 0, 8));
        t.step("read unpunched", read_at(&file, 4096, 8));
        t.step(
            "punch 4196..4396 (inside a block)",
            common::fallocate(&file, punch | keep, 4196, 200),
        );
        t.step("stat after partial punch", stat(&f));
        t.step("read around partial punch", read_at(&file, 4190, 212));
        t.step(
            "punch without keep-size",
            common::fallocate(&file, punch, 0, 4096),
        );
        t.step(
            "punch past EOF",
            common::fallocate(&file, punch | keep, 100_000, 4096),
        );
        t.step("stat after punch past EOF", stat(&f));
        t.step(
            "zero range",
            common::fallocate(&file, libc::FALLOC_FL_ZERO_RANGE, 0, 4096),
        );
        t.step(
            "collapse range",
            common::fallocate(&file, libc::FALLOC_FL_COLLAPSE_RANGE, 0, 4096),
        );
        t.step(
            "insert range",
            common::fallocate(&file, libc::FALLOC_FL_INSERT_RANGE, 0, 4096),
        );
        t.step("len 0", common::fallocate(&file, 0, 0, 0));
        t.step("negative offset", common::fallocate(&file, 0, -1, 10));
        t.step(
            "past max size",
            common::fallocate(&file, 0, i64::MAX - 10, 100),
        );
        t.step("grow to 10100", common::fallocate(&file, 0, 10_000, 100));
        t.step("stat after grow", stat(&f));
        t.step("read tail", read_at(&file, 10_000, 200));
        let reader = t.need("open read-only", open(&f, libc::O_RDONLY, 0))?;
        t.step(
            "allocate on read-only fd",
            common::fallocate(&reader, 0, 0, 4096),
        );
        let dir = t.need("open base", open(base, libc::O_RDONLY, 0))?;
        t.step(
            "allocate on a directory",
            common::fallocate(&dir, 0, 0, 4096),
        );
        Ok(())
    })
}

fn seek_data_hole(base: &Path) -> Vec<String> {
    record(|t| {
        let f = base.join("f");
        let file = t.need("create f", create(&f, 0o644))?;
        t.step("write at 1 MiB", file.write_at(&[1; 4096], MIB));
        t.step("write at 3 MiB", file.write_at(&[3; 4096], 3 * MIB));
        let size = (3 * MIB + 4096) as i64;
        let mib = MIB as i64;
        let (data, hole) = (libc::SEEK_DATA, libc::SEEK_HOLE);
        t.step("SEEK_DATA 0", common::lseek(&file, 0, data));
        t.step("SEEK_HOLE 0", common::lseek(&file, 0, hole));
        t.step(
            "SEEK_DATA 1 MiB + 100",
            common::lseek(&file, mib + 100, data),
        );
        t.step("SEEK_HOLE 1 MiB", common::lseek(&file, mib, hole));
        t.step(
            "SEEK_DATA after first extent",
            common::lseek(&file, mib + 4096, data),
        );
        t.step("SEEK_HOLE 3 MiB", common::lseek(&file, 3 * mib, hole));
        t.step("SEEK_DATA at size", common::lseek(&file, size, data));
        t.step("SEEK_HOLE at size", common::lseek(&file, size, hole));
        t.step("SEEK_HOLE size - 1", common::lseek(&file, size - 1, hole));
        t.step("SEEK_DATA -1", common::lseek(&file, -1, data));
        t.step("SEEK_END -1", common::lseek(&file, -1, libc::SEEK_END));
        t.step("SEEK_SET -1", common::lseek(&file, -1, libc::SEEK_SET));
        t.step(
            "punch the 1 MiB extent",
            common::fallocate(
                &file,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                mib,
                4096,
            ),
        );
        t.step("SEEK_DATA 0 after punch", common::lseek(&file, 0, data));
        t.step("truncate to 1 MiB", common::ftruncate(&file, mib));
        t.step("SEEK_DATA 0 after truncate", common::lseek(&file, 0, data));
        t.step("SEEK_HOLE 0 after truncate", common::lseek(&file, 0, hole));
        let empty = t.need("create empty", create(&base.join("empty"), 0o644))?;
        t.step("empty: SEEK_DATA 0", common::lseek(&empty, 0, data));
        t.step("empty: SEEK_HOLE 0", common::lseek(&empty, 0, hole));
        let reserved = t.need("create reserved", create(&base.join("reserved"), 0o644))?;
        t.step(
            "reserved: allocate 8192",
            common::fallocate(&reserved, 0, 0, 8192),
        );
        t.step("reserved: SEEK_DATA 0", common::lseek(&reserved, 0, data));
        t.step("reserved: SEEK_HOLE 0", common::lseek(&reserved, 0, hole));
        t.step("reserved: read", fs::read(base.join("reserved")));
        Ok(())
    })
}

/// `(seconds, nanoseconds)` of a timestamp set explicitly, so comparable across runs.
fn explicit_times(meta: &Metadata) -> String {
    format!(
        "atime={}.{:09} mtime={}.{:09}",
        meta.atime(),
        meta.atime_nsec(),
        meta.mtime(),
        meta.mtime_nsec()
    )
}

fn timestamps(base: &Path) -> Vec<String> {
    record(|t| {
        let f = base.join("f");
        t.need("write f", write_new(&f, b"data"))?;
        let set = |t: &mut Transcript, label: &str, path: &Path, atime, mtime, flags| {
            t.step(label, common::utimensat(path, atime, mtime, flags));
            let after = lstat(path);
            t.step(
                &format!("{label}: times"),
                after.map(|meta| explicit_times(&meta)),
            );
        };
        let (now, omit) = (TimeArg::Now, TimeArg::Omit);
        let at = TimeArg::At;
        set(
            t,
            "set both",
            &f,
            at(1_000_000_000, 123_456_789),
            at(1_100_000_000, 987_654_321),
            0,
        );
        set(t, "omit atime", &f, omit, at(1_200_000_000, 5), 0);
        set(t, "omit mtime", &f, at(1_300_000_000, 0), omit, 0);
        set(t, "before 1970", &f, at(-100, 0), at(-1, 999_999_999), 0);
        set(
            t,
            "after 2038",
            &f,
            at(4_000_000_000, 1),
            at(4_102_444_800, 0),
            0,
        );
        set(
            t,
            "nanoseconds out of range",
            &f,
            at(0, 1_000_000_000),
            omit,
            0,
        );
        let watch = Watch::new(&[&f]);
        t.step("atime now", common::utimensat(&f, now, omit, 0));
        watch.report(t, "atime now");
        let watch = Watch::new(&[&f]);
        t.step("both now", common::utimensat(&f, now, now, 0));
        watch.report(t, "both now");
        let watch = Watch::new(&[&f]);
        t.step("both omit", common::utimensat(&f, omit, omit, 0));
        watch.report(t, "both omit");
        set(t, "set f again", &f, at(7, 0), at(8, 0), 0);
        t.step("symlink s -> f", symlink("f", base.join("s")));
        let nofollow = libc::AT_SYMLINK_NOFOLLOW;
        set(
            t,
            "symlink itself",
            &base.join("s"),
            at(5, 0),
            at(6, 0),
            nofollow,
        );
        t.step(
            "f after the symlink's times",
            lstat(&f).map(|meta| explicit_times(&meta)),
        );
        t.step(
            "through symlink",
            common::utimensat(&base.join("s"), at(9, 0), at(10, 0), 0),
        );
        t.step(
            "f after times through s",
            lstat(&f).map(|meta| explicit_times(&meta)),
        );
        // Following the symlink read it, which may move its atime (relatime): mtime only.
        let symlink_mtime = lstat(&base.join("s"))
            .map(|meta| format!("mtime={}.{:09}", meta.mtime(), meta.mtime_nsec()));
        t.step("symlink after", symlink_mtime);
        t.step(
            "missing",
            common::utimensat(&base.join("missing"), now, now, 0),
        );
        let watch = Watch::new(&[&f]);
        t.step("chmod 600", chmod(&f, 0o600));
        watch.report(t, "chmod");
        let watch = Watch::new(&[base]);
        t.step("create g", write_new(&base.join("g"), b""));
        watch.report(t, "create in base");
        let watch = Watch::new(&[base]);
        t.step("list base", listing(base));
        watch.report(t, "list base");
        let watch = Watch::new(&[base]);
        t.step("list base again", listing(base));
        watch.report(t, "list base again");
        t.step("symlink fresh -> f", symlink("f", base.join("fresh")));
        let watch = Watch::new(&[&base.join("fresh")]);
        t.step("readlink fresh", fs::read_link(base.join("fresh")));
        watch.report(t, "readlink");
        Ok(())
    })
}

fn owner_and_mode_as_root(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        let f = at("f");
        t.need("write f", write_new(&f, b"data"))?;
        for mode in [0o4755, 0, 0o7777, 0o1644] {
            t.step(&format!("chmod {mode:o}"), chmod(&f, mode));
            t.step(&format!("stat after chmod {mode:o}"), stat(&f));
        }
        t.step("chmod 7777 again", chmod(&f, 0o7777));
        t.step("chown 1000:2000", chown(&f, Some(1000), Some(2000)));
        t.step("stat after chown of 7777", stat(&f));
        t.step("chmod 6755", chmod(&f, 0o6755));
        let watch = Watch::new(&[&f]);
        t.step("chown -1:-1", chown(&f, None, None));
        watch.report(t, "chown -1:-1 of 6755");
        t.step("stat after chown -1:-1", stat(&f));
        t.step("chmod 2745", chmod(&f, 0o2745));
        t.step("chown 1000:-1 of 2745", chown(&f, Some(1000), None));
        t.step("stat 2745 after chown", stat(&f));
        let watch = Watch::new(&[&f]);
        t.step("chown -1:-1 plain", chown(&f, None, None));
        watch.report(t, "chown -1:-1 of a plain file");
        t.step("mkdir d", fs::create_dir(at("d")));
        t.step("chmod d 7755", chmod(&at("d"), 0o7755));
        t.step("chown d 1000:2000", chown(at("d"), Some(1000), Some(2000)));
        t.step("stat d", stat(&at("d")));
        t.step("symlink s -> f", symlink("f", at("s")));
        t.step(
            "lchown s 1001:1001",
            lchown(at("s"), Some(1001), Some(1001)),
        );
        t.step("lstat s", lstat(&at("s")));
        t.step("stat f via s", stat(&at("s")));
        t.step("chown s (follows) 0:0", chown(at("s"), Some(0), Some(0)));
        t.step("lstat s after chown", lstat(&at("s")));
        t.step("stat f after chown via s", stat(&f));
        t.step("chmod via s 640", chmod(&at("s"), 0o640));
        t.step("stat f after chmod via s", stat(&f));
        t.step("chown missing", chown(at("missing"), Some(1), Some(1)));
        t.step("chmod missing", chmod(&at("missing"), 0o644));
        t.step("mkfifo p", common::mkfifo(&at("p"), 0o644));
        t.step("chmod p 4777", chmod(&at("p"), 0o4777));
        t.step("chown p 5:5", chown(at("p"), Some(5), Some(5)));
        t.step("stat p", stat(&at("p")));
        Ok(())
    })
}

fn xattrs_as_root(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        let f = at("f");
        t.need("write f", write_new(&f, b"data"))?;
        let (create, replace) = (libc::XATTR_CREATE, libc::XATTR_REPLACE);
        let set = |path: &Path, name: &str, value: &[u8], flags| {
            common::setxattr(path, name, value, flags, false)
        };
        let get = |path: &Path, name: &str, len| common::getxattr(path, name, len, false);
        let list = |path: &Path| {
            common::listxattr(path, 1 << 20, false).map(|names| {
                let mut names: Vec<String> = names
                    .split(|&byte| byte == 0)
                    .filter(|name| !name.is_empty())
                    .map(show_name)
                    .collect();
                names.sort();
                Listing(names)
            })
        };
        t.step("list empty", list(&f));
        let watch = Watch::new(&[&f]);
        t.step("set user.a", set(&f, "user.a", b"1", 0));
        watch.report(t, "setxattr");
        t.step("get user.a", get(&f, "user.a", 64));
        t.step(
            "size of user.a",
            get(&f, "user.a", 0).map(|value| value.len()),
        );
        t.step("create user.a", set(&f, "user.a", b"x", create));
        t.step("replace user.b", set(&f, "user.b", b"x", replace));
        t.step("replace user.a", set(&f, "user.a", b"22", replace));
        t.step("get user.a after replace", get(&f, "user.a", 64));
        t.step("create user.b empty", set(&f, "user.b", b"", create));
        t.step("get user.b", get(&f, "user.b", 64));
        t.step("get user.a into 1 byte", get(&f, "user.a", 1));
        t.step("get user.a into 2 bytes", get(&f, "user.a", 2));
        t.step("get user.missing", get(&f, "user.missing", 64));
        t.step("list", list(&f));
        let listed = common::listxattr(&f, 0, false).map(|names| names.len());
        t.step("list size", listed);
        t.step("list into 1 byte", common::listxattr(&f, 1, false));
        t.step("list into 7 bytes", common::listxattr(&f, 7, false));
        let watch = Watch::new(&[&f]);
        t.step("remove user.b", common::removexattr(&f, "user.b", false));
        watch.report(t, "removexattr");
        t.step(
            "remove user.b again",
            common::removexattr(&f, "user.b", false),
        );
        t.step("get user.b removed", get(&f, "user.b", 64));
        let big = at("big");
        t.need("write big", write_new(&big, b""))?;
        t.step(
            "set 60000-byte value",
            set(&big, "user.large", &[6; 60000], 0),
        );
        t.step("get 60000-byte value", get(&big, "user.large", 65536));
        t.step(
            "remove 60000-byte value",
            common::removexattr(&big, "user.large", false),
        );
        t.step(
            "set 65536-byte value",
            set(&big, "user.big", &[7; 65536], 0),
        );
        t.step("get 65536-byte value", get(&big, "user.big", 65536));
        t.step(
            "set 65537-byte value",
            set(&big, "user.huge", &[7; 65537], 0),
        );
        let name255 = format!("user.{}", "n".repeat(250));
        let name256 = format!("user.{}", "n".repeat(251));
        t.step("set 255-byte name", set(&f, &name255, b"v", 0));
        t.step("get 255-byte name", get(&f, &name255, 64));
        t.step("set 256-byte name", set(&f, &name256, b"v", 0));
        t.step("get 256-byte name", get(&f, &name256, 64));
        t.step("set bare user.", set(&f, "user.", b"v", 0));
        t.step("get bare user.", get(&f, "user.", 64));
        t.step("set unknown namespace", set(&f, "other.x", b"v", 0));
        t.step("get unknown namespace", get(&f, "other.x", 64));
        t.step("set empty name", set(&f, "", b"v", 0));
        t.step("set trusted.t", set(&f, "trusted.t", b"trust", 0));
        t.step("get trusted.t", get(&f, "trusted.t", 64));
        t.step("set security.s", set(&f, "security.s", b"sec", 0));
        t.step("get security.s", get(&f, "security.s", 64));
        t.step("list all", list(&f));
        t.step("mkdir d", fs::create_dir(at("d")));
        t.step("set user.d on dir", set(&at("d"), "user.d", b"dir", 0));
        t.step("get user.d on dir", get(&at("d"), "user.d", 64));
        t.step("symlink s -> f", symlink("f", at("s")));
        let lset = |name: &str| common::setxattr(&at("s"), name, b"l", 0, true);
        t.step("lset user.u on symlink", lset("user.u"));
        t.step(
            "lget user.u on symlink",
            common::getxattr(&at("s"), "user.u", 64, true),
        );
        t.step("lset trusted.u on symlink", lset("trusted.u"));
        t.step("llist symlink", common::listxattr(&at("s"), 4096, true));
        t.step("get user.a through symlink", get(&at("s"), "user.a", 64));
        t.step("mkfifo p", common::mkfifo(&at("p"), 0o666));
        t.step("set user.p on fifo", set(&at("p"), "user.p", b"p", 0));
        t.step("set trusted.p on fifo", set(&at("p"), "trusted.p", b"p", 0));
        t.step("get trusted.p on fifo", get(&at("p"), "trusted.p", 64));
        t.step("get on missing", get(&at("missing"), "user.a", 64));
        t.step("set on missing", set(&at("missing"), "user.a", b"v", 0));
        t.step("chmod f 000", chmod(&f, 0));
        t.step("get user.a mode 000 as root", get(&f, "user.a", 64));
        Ok(())
    })
}

fn xattrs_as_users(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        t.need("chmod base 777", chmod(base, 0o777))?;
        t.need("write f", write_new(&at("f"), b"data"))?;
        t.step(
            "set user.a",
            common::setxattr(&at("f"), "user.a", b"a", 0, false),
        );
        t.step(
            "set trusted.t",
            common::setxattr(&at("f"), "trusted.t", b"t", 0, false),
        );
        t.step(
            "mkdir sticky 1777",
            fs::DirBuilder::new().mode(0o1777).create(at("sticky")),
        );
        t.step("chmod sticky 1777", chmod(&at("sticky"), 0o1777));
        t.step("write g 600", create(&at("g"), 0o600).map(drop));
        t.step(
            "set user.g",
            common::setxattr(&at("g"), "user.g", b"g", 0, false),
        );
        as_other(t, "alice", &alice(), |t| {
            let get = |name: &str, path: &Path| common::getxattr(path, name, 64, false);
            t.step("get user.a (readable)", get("user.a", &at("f")));
            t.step("get trusted.t", get("trusted.t", &at("f")));
            t.step(
                "set user.b (not writable)",
                common::setxattr(&at("f"), "user.b", b"b", 0, false),
            );
            t.step(
                "set trusted.b",
                common::setxattr(&at("f"), "trusted.b", b"b", 0, false),
            );
            t.step(
                "remove user.a",
                common::removexattr(&at("f"), "user.a", false),
            );
            let names = common::listxattr(&at("f"), 4096, false);
            t.step("list f (no trusted.)", names);
            t.step("get user.g (not readable)", get("user.g", &at("g")));
            t.step(
                "list g (not readable)",
                common::listxattr(&at("g"), 4096, false),
            );
            t.step(
                "set user.s on sticky dir of root",
                common::setxattr(&at("sticky"), "user.s", b"s", 0, false),
            );
            t.step("write own", write_new(&at("own"), b"mine"));
            t.step(
                "set user.o on own",
                common::setxattr(&at("own"), "user.o", b"o", 0, false),
            );
            t.step("chmod own 000", chmod(&at("own"), 0));
            t.step("get user.o mode 000", get("user.o", &at("own")));
            t.step(
                "set user.o mode 000",
                common::setxattr(&at("own"), "user.o", b"p", 0, false),
            );
            Ok(())
        });
        Ok(())
    })
}

fn access_checks(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        let (r, w, x, f_ok) = (libc::R_OK, libc::W_OK, libc::X_OK, libc::F_OK);
        t.need("write f 644", write_new(&at("f"), b"root's data"))?;
        t.need("create g 755", create(&at("g"), 0o755).map(drop))?;
        t.need("create n 000", create(&at("n"), 0).map(drop))?;
        t.need("create h 640", create(&at("h"), 0o640).map(drop))?;
        t.need("chown h 0:2000", chown(at("h"), Some(0), Some(2000)))?;
        t.need("create o 077", create(&at("o"), 0o077).map(drop))?;
        t.need("chown o 1000", chown(at("o"), Some(1000), None))?;
        t.need(
            "mkdir d 000",
            fs::DirBuilder::new().mode(0o000).create(at("d")),
        )?;
        t.need("create x 001", create(&at("x"), 0o001).map(drop))?;
        let check = |t: &mut Transcript, label: &str, name: &str, mode| {
            t.step(
                &format!("{label}: access {name} {mode}"),
                common::access(&at(name), mode),
            );
        };
        check(t, "root", "f", r | w);
        check(t, "root", "f", x);
        check(t, "root", "g", x);
        check(t, "root", "n", r | w);
        check(t, "root", "n", x);
        check(t, "root", "x", x);
        check(t, "root", "d", r | w | x);
        check(t, "root", "d/inner", f_ok);
        check(t, "root", "missing", f_ok);
        check(t, "root", "f/x", f_ok);
        check(t, "root", "f", f_ok);
        as_other(t, "alice", &alice(), |t| {
            check(t, "alice", "f", r);
            check(t, "alice", "f", w);
            check(t, "alice", "g", x);
            check(t, "alice", "n", r);
            check(t, "alice", "h", r);
            check(t, "alice", "h", w);
            check(t, "alice", "o", r);
            check(t, "alice", "d", x);
            check(t, "alice", "d/inner", f_ok);
            check(t, "alice", "x", x);
            t.step(
                "open h read (group 2000)",
                open(&at("h"), libc::O_RDONLY, 0),
            );
            t.step(
                "open o read (owner class denies)",
                open(&at("o"), libc::O_RDONLY, 0),
            );
            t.step("open f write", open(&at("f"), libc::O_WRONLY, 0));
            t.step(
                "open f O_TRUNC read-only",
                open(&at("f"), libc::O_RDONLY | libc::O_TRUNC, 0),
            );
            t.step("stat f after O_TRUNC attempt", stat(&at("f")));
            t.step("list d", listing(&at("d")));
            Ok(())
        });
        as_other(t, "bob", &bob(), |t| {
            check(t, "bob", "h", r);
            check(t, "bob", "o", r);
            t.step("open h read", open(&at("h"), libc::O_RDONLY, 0));
            Ok(())
        });
        Ok(())
    })
}

fn statfs_fields(base: &Path) -> Vec<String> {
    record(|t| {
        let statfs =
            |t: &mut Transcript, label: &str| t.need(label, common::statfs(base).map(Statfs));
        let Statfs(before) = statfs(t, "statfs")?;
        t.note("f_namelen", before.f_namelen);
        t.note("f_bsize", before.f_bsize);
        t.note("f_frsize", before.f_frsize);
        for i in 0..3 {
            t.step(
                &format!("create f{i}"),
                create(&base.join(format!("f{i}")), 0o644).map(drop),
            );
        }
        let Statfs(after_create) = statfs(t, "statfs after creates")?;
        t.note(
            "ffree used by 3 files",
            before.f_ffree.saturating_sub(after_create.f_ffree),
        );
        t.step(
            "write 1 MiB",
            fs::write(base.join("f0"), vec![b'q'; MIB as usize]),
        );
        let Statfs(after_write) = statfs(t, "statfs after write")?;
        let bytes = |stat: &libc::statfs| stat.f_bfree * stat.f_bsize as u64;
        let used = bytes(&after_create).saturating_sub(bytes(&after_write));
        t.note("bytes used by a 1 MiB file", used);
        t.note(
            "bavail == bfree",
            after_write.f_bavail == after_write.f_bfree,
        );
        t.step("unlink the 1 MiB file", fs::remove_file(base.join("f0")));
        // Through FUSE the inode is freed when the kernel's RELEASE and FORGET for it, sent
        // asynchronously after close and unlink, reach the daemon: allow them a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let returned = |now: &libc::statfs| {
            now.f_ffree > after_write.f_ffree && bytes(now) > bytes(&after_write)
        };
        let mut after_unlink = statfs(t, "statfs after unlink")?.0;
        while !returned(&after_unlink) && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
            let Ok(now) = common::statfs(base) else {
                return Err(Abort);
            };
            after_unlink = now;
        }
        let freed = bytes(&after_unlink).saturating_sub(bytes(&after_write));
        t.note("bytes back after unlink", freed);
        let inode_back = after_unlink.f_ffree.saturating_sub(after_write.f_ffree);
        t.note("ffree back after unlink", inode_back);
        t.step(
            "statfs missing",
            common::statfs(&base.join("missing")).map(Statfs),
        );
        Ok(())
    })
}

/// A statfs result, whose fields the scenario notes one by one.
struct Statfs(libc::statfs);

impl Show for Statfs {
    fn show(&self) -> String {
        "statfs".to_owned()
    }
}

fn fsync_and_copy(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        t.need("write a", write_new(&at("a"), b"0123456789abcdef"))?;
        let a = t.need("open a rw", open(&at("a"), libc::O_RDWR, 0))?;
        t.step("fsync a", a.sync_all());
        t.step("fdatasync a", a.sync_data());
        let dir = t.need(
            "open base",
            open(base, libc::O_RDONLY | libc::O_DIRECTORY, 0),
        )?;
        t.step("fsync base", dir.sync_all());
        let reader = t.need("open a read-only", open(&at("a"), libc::O_RDONLY, 0))?;
        t.step("fsync read-only fd", reader.sync_all());
        let b = t.need("create b", create(&at("b"), 0o644))?;
        let copy = common::copy_file_range;
        t.step("copy a@2 -> b@0 len 5", copy(&a, Some(2), &b, Some(0), 5));
        t.step("read b", fs::read(at("b")));
        t.step(
            "copy a@14 -> b@5 len 10 (short)",
            copy(&a, Some(14), &b, Some(5), 10),
        );
        t.step("read b after short copy", fs::read(at("b")));
        t.step(
            "copy a@100 (past EOF)",
            copy(&a, Some(100), &b, Some(0), 10),
        );
        t.step(
            "copy a@0 -> a@4 overlapping",
            copy(&a, Some(0), &a, Some(4), 8),
        );
        t.step(
            "copy a@0 -> a@8 disjoint",
            copy(&a, Some(0), &a, Some(8), 8),
        );
        t.step("read a after self copy", fs::read(at("a")));
        t.step(
            "copy to b@8192 (hole)",
            copy(&a, Some(0), &b, Some(8192), 4),
        );
        t.step("stat b", stat(&at("b")));
        t.step("read b hole", read_at(&b, 4090, 20));
        let appender = t.need(
            "open b append",
            open(&at("b"), libc::O_WRONLY | libc::O_APPEND, 0),
        )?;
        t.step(
            "copy into O_APPEND fd",
            copy(&a, Some(0), &appender, None, 4),
        );
        let writer = t.need("open a write-only", open(&at("a"), libc::O_WRONLY, 0))?;
        t.step(
            "copy from write-only fd",
            copy(&writer, Some(0), &b, Some(0), 4),
        );
        t.step(
            "copy to read-only fd",
            copy(&a, Some(0), &reader, Some(0), 4),
        );
        t.step("copy with file offsets", copy(&reader, None, &b, None, 6));
        t.step("read b at its offset", read_to_end(&b));
        t.step("read a at its offset", read_to_end(&reader));
        t.step("copy len 0", copy(&a, Some(0), &b, Some(0), 0));
        let d = t.need("open d", open(base, libc::O_RDONLY, 0))?;
        t.step("copy from a directory", copy(&d, Some(0), &b, Some(0), 4));
        Ok(())
    })
}

fn long_names(base: &Path) -> Vec<String> {
    record(|t| {
        let name255 = base.join("n".repeat(255));
        let name256 = base.join("n".repeat(256));
        let f = base.join("f");
        t.need("write f", write_new(&f, b"f"))?;
        t.step("create 255-byte name", create(&name255, 0o644).map(drop));
        t.step("stat 255-byte name", stat(&name255));
        t.step("create 256-byte name", create(&name256, 0o644).map(drop));
        t.step("open 256-byte name", open(&name256, libc::O_RDONLY, 0));
        t.step("stat 256-byte name", stat(&name256));
        t.step("mkdir 256-byte name", fs::create_dir(&name256));
        t.step(
            "mknod 256-byte name",
            common::mknod(&name256, libc::S_IFREG | 0o644, 0),
        );
        t.step("symlink at 256-byte name", symlink("f", &name256));
        t.step("link to 256-byte name", fs::hard_link(&f, &name256));
        t.step("rename to 256-byte name", fs::rename(&f, &name256));
        t.step("rename from 256-byte name", fs::rename(&name256, &f));
        t.step("unlink 256-byte name", fs::remove_file(&name256));
        t.step("rmdir 256-byte name", fs::remove_dir(&name256));
        t.step("access 256-byte name", common::access(&name256, libc::F_OK));
        t.step(
            "mkdir 255-byte dir",
            fs::create_dir(base.join("d".repeat(255))),
        );
        t.step(
            "rename f to 255-byte name",
            fs::rename(&f, base.join("r".repeat(255))),
        );
        t.step("list base", listing(base));
        Ok(())
    })
}

fn readdir_listing(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        let d = at("d");
        t.need("mkdir d", fs::create_dir(&d))?;
        let entries = (0..300).try_for_each(|i| {
            let name = format!("entry-{i:03}-{}", "x".repeat(i % 40));
            create(&d.join(name), 0o644).map(drop)
        });
        t.need("create 300 entries", entries)?;
        t.step("mkdir d/sub", fs::create_dir(d.join("sub")));
        t.step("symlink d/link", symlink("sub", d.join("link")));
        t.step("mkfifo d/fifo", common::mkfifo(&d.join("fifo"), 0o644));
        t.step(
            "mknod d/sock",
            common::mknod(&d.join("sock"), libc::S_IFSOCK | 0o644, 0),
        );
        t.step("stat d", stat(&d));
        let raw = common::read_dir_raw(&d, |_| {});
        let summary = raw.map(|entries| {
            let mut entries = entries;
            entries.sort();
            let dots: Vec<String> = entries
                .iter()
                .filter(|entry| entry.name.starts_with(b"."))
                .map(|entry| format!("{}:{}", show_name(&entry.name), entry.d_type))
                .collect();
            let types: Vec<String> = entries
                .iter()
                .filter(|entry| !entry.name.starts_with(b"entry-"))
                .map(|entry| format!("{}:{}", show_name(&entry.name), entry.d_type))
                .collect();
            let regular = entries
                .iter()
                .filter(|entry| entry.d_type == libc::DT_REG)
                .count();
            format!(
                "{} entries, {regular} regular, types {types:?}, dots {dots:?}",
                entries.len()
            )
        });
        t.step("readdir d", summary);
        t.step("list d", listing(&d).map(|list| list.0.len()));
        // Unlink each entry right after readdir returns it, as `rm -r` does: every entry that
        // was there when the listing started must still come back exactly once.
        let before: Vec<DirEntry> = common::read_dir_raw(&d, |_| {}).unwrap_or_default();
        let mut removed = 0usize;
        let seen = common::read_dir_raw(&d, |so_far| {
            if let Some(entry) = so_far.last() {
                let path = join_bytes(&d, &entry.name);
                if entry.name.starts_with(b"entry-") && fs::remove_file(path).is_ok() {
                    removed += 1;
                }
            }
        });
        t.step(
            "readdir while unlinking: seen",
            seen.as_ref().map(Vec::len).map_err(clone_err),
        );
        if let Ok(seen) = seen {
            t.note(
                "readdir while unlinking: every entry once",
                same_entries(&before, &seen),
            );
        }
        t.note("readdir while unlinking: removed", removed);
        t.step("list d after", listing(&d));
        t.step("stat d after", stat(&d));
        // Add entries while listing: the entries that were there all along come back once.
        let olds =
            (0..100).try_for_each(|i| create(&d.join(format!("old-{i:03}")), 0o644).map(drop));
        t.need("create 100 old entries", olds)?;
        // Bounded: a listing that keeps returning the entries it causes would never end.
        let before: Vec<DirEntry> = common::read_dir_raw(&d, |_| {}).unwrap_or_default();
        let mut added = 0;
        let seen = common::read_dir_raw(&d, |_| {
            if added < 300 && create(&d.join(format!("new-{added:03}")), 0o644).is_ok() {
                added += 1;
            }
        });
        t.note("readdir while adding: added", added);
        if let Ok(seen) = seen {
            let (new, old): (Vec<DirEntry>, Vec<DirEntry>) = seen
                .into_iter()
                .partition(|entry| entry.name.starts_with(b"new-"));
            t.note(
                "readdir while adding: every old entry once",
                same_entries(&before, &old),
            );
            t.note(
                "readdir while adding: entries created after opendir returned",
                new.len(),
            );
        }
        t.step("list d after adding", listing(&d).map(|list| list.0.len()));
        t.step("list empty dir", listing(&d.join("sub")));
        let sub_raw = common::read_dir_raw(&d.join("sub"), |_| {});
        t.step(
            "readdir empty dir",
            sub_raw.map(|entries| {
                let mut names: Vec<String> = entries.iter().map(|e| show_name(&e.name)).collect();
                names.sort();
                Listing(names)
            }),
        );
        t.step("list a file", listing(&at("d/fifo")));
        t.step("list missing", listing(&at("missing")));
        Ok(())
    })
}

/// Whether `seen` holds each entry of `expected` exactly once (and no other).
fn same_entries(expected: &[DirEntry], seen: &[DirEntry]) -> bool {
    let mut expected = expected.to_vec();
    let mut seen = seen.to_vec();
    expected.sort();
    seen.sort();
    expected == seen
}

fn perm_private_dir(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        t.need(
            "mkdir p 700",
            fs::DirBuilder::new().mode(0o700).create(at("p")),
        )?;
        t.need("write p/f", write_new(&at("p/f"), b"secret"))?;
        t.need(
            "mkdir w 777",
            fs::DirBuilder::new().mode(0o777).create(at("w")),
        )?;
        t.need("chmod w 777", chmod(&at("w"), 0o777))?;
        t.need("write root600", create(&at("root600"), 0o600).map(drop))?;
        let alice_steps = |t: &mut Transcript| {
            t.step("stat p", stat(&at("p")));
            t.step("stat p/f", stat(&at("p/f")));
            t.step("list p", listing(&at("p")));
            t.step("create p/g", create(&at("p/g"), 0o644).map(drop));
            t.step("open p/f", open(&at("p/f"), libc::O_RDONLY, 0));
            t.step("unlink p/f", fs::remove_file(at("p/f")));
            t.step("access p R_OK", common::access(&at("p"), libc::R_OK));
            t.step("open root600", open(&at("root600"), libc::O_RDONLY, 0));
            t.step("write root600", open(&at("root600"), libc::O_WRONLY, 0));
            t.step("create in base (755)", create(&at("nope"), 0o644).map(drop));
            Ok(())
        };
        as_other(t, "alice 700", &alice(), alice_steps);
        t.step("chmod p 711", chmod(&at("p"), 0o711));
        as_other(t, "alice 711", &alice(), alice_steps);
        t.step("chmod p 755", chmod(&at("p"), 0o755));
        as_other(t, "alice 755", &alice(), alice_steps);
        as_other(t, "alice in w", &alice(), |t| {
            t.step("create w/a 640", create(&at("w/a"), 0o640).map(drop));
            t.step("stat w/a", stat(&at("w/a")));
            t.step("mkdir w/ad", fs::create_dir(at("w/ad")));
            t.step("stat w/ad", stat(&at("w/ad")));
            t.step("chmod w/a 400", chmod(&at("w/a"), 0o400));
            t.step(
                "open own 400 for write",
                open(&at("w/a"), libc::O_WRONLY, 0),
            );
            t.step(
                "open own 400 O_TRUNC",
                open(&at("w/a"), libc::O_RDONLY | libc::O_TRUNC, 0),
            );
            t.step("truncate own 400", common::truncate(&at("w/a"), 0));
            t.step(
                "mknod chr as user",
                common::mknod(&at("w/c"), libc::S_IFCHR | 0o644, 0x103),
            );
            t.step("mkfifo as user", common::mkfifo(&at("w/fifo"), 0o644));
            t.step(
                "mknod sock as user",
                common::mknod(&at("w/s"), libc::S_IFSOCK | 0o644, 0),
            );
            Ok(())
        });
        as_other(t, "bob in w", &bob(), |t| {
            t.step("unlink alice's w/a (no sticky)", fs::remove_file(at("w/a")));
            t.step("rename alice's w/ad", fs::rename(at("w/ad"), at("w/bd")));
            t.step("list w", listing(&at("w")));
            Ok(())
        });
        t.step(
            "open root600 as root",
            open(&at("root600"), libc::O_RDWR, 0).map(drop),
        );
        Ok(())
    })
}

fn perm_sticky_dir(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        t.need("mkdir s", fs::create_dir(at("s")))?;
        t.need("chmod s 1777", chmod(&at("s"), 0o1777))?;
        t.step("stat s", stat(&at("s")));
        t.need("mkdir s/rootdir", fs::create_dir(at("s/rootdir")))?;
        as_other(t, "alice", &alice(), |t| {
            t.step("create s/a", create(&at("s/a"), 0o666).map(drop));
            t.step(
                "mkdir s/da",
                fs::DirBuilder::new().mode(0o777).create(at("s/da")),
            );
            Ok(())
        });
        as_other(t, "bob", &bob(), |t| {
            t.step("unlink s/a", fs::remove_file(at("s/a")));
            t.step("rename s/a -> s/b", fs::rename(at("s/a"), at("s/b")));
            t.step("rmdir s/da", fs::remove_dir(at("s/da")));
            t.step("create s/c", create(&at("s/c"), 0o644).map(drop));
            t.step("rename s/c over s/a", fs::rename(at("s/c"), at("s/a")));
            t.step(
                "write into s/a (mode 644 after umask)",
                open(&at("s/a"), libc::O_WRONLY, 0),
            );
            t.step(
                "create s/da/x (da is 755)",
                create(&at("s/da/x"), 0o644).map(drop),
            );
            t.step(
                "rename s/c -> s/c2 (own)",
                fs::rename(at("s/c"), at("s/c2")),
            );
            t.step(
                "exchange s/c2 <-> s/a",
                common::renameat2(&at("s/c2"), &at("s/a"), libc::RENAME_EXCHANGE),
            );
            t.step("rmdir s/rootdir", fs::remove_dir(at("s/rootdir")));
            Ok(())
        });
        as_other(t, "alice again", &alice(), |t| {
            t.step("unlink bob's s/c2", fs::remove_file(at("s/c2")));
            t.step("unlink own s/a", fs::remove_file(at("s/a")));
            Ok(())
        });
        t.step("chown s to bob", chown(at("s"), Some(1001), None));
        as_other(t, "bob owns s", &bob(), |t| {
            t.step("rmdir alice's s/da", fs::remove_dir(at("s/da")));
            Ok(())
        });
        t.step("unlink s/c2 as root", fs::remove_file(at("s/c2")));
        t.step("list s", listing(&at("s")));
        // A directory that changes parent needs write permission on itself, for its `..`.
        t.need("chmod base 777", chmod(base, 0o777))?;
        t.need("mkdir p", fs::DirBuilder::new().mode(0o777).create(at("p")))?;
        t.need("chmod p 777", chmod(&at("p"), 0o777))?;
        t.need("mkdir q", fs::DirBuilder::new().mode(0o777).create(at("q")))?;
        t.need("chmod q 777", chmod(&at("q"), 0o777))?;
        t.need("mkdir p/rd", fs::create_dir(at("p/rd")))?;
        as_other(t, "alice moves dirs", &alice(), |t| {
            t.step("move root's p/rd to q", fs::rename(at("p/rd"), at("q/rd")));
            t.step(
                "rename root's p/rd within p",
                fs::rename(at("p/rd"), at("p/rd2")),
            );
            t.step("mkdir p/ad", fs::create_dir(at("p/ad")));
            t.step("move own p/ad to q", fs::rename(at("p/ad"), at("q/ad")));
            Ok(())
        });
        t.step("list p", listing(&at("p")));
        t.step("list q", listing(&at("q")));
        Ok(())
    })
}

fn perm_setgid_dir(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        let g = at("g");
        t.need("mkdir g", fs::create_dir(&g))?;
        t.need("chown g 0:2000", chown(&g, Some(0), Some(2000)))?;
        t.need("chmod g 2777", chmod(&g, 0o2777))?;
        t.step("stat g", stat(&g));
        as_other(t, "alice (in 2000)", &alice(), |t| {
            t.step("create g/f 644", create(&g.join("f"), 0o644).map(drop));
            t.step("stat g/f", stat(&g.join("f")));
            t.step("create g/x 2755", create(&g.join("x"), 0o2755).map(drop));
            t.step("stat g/x", stat(&g.join("x")));
            t.step("mkdir g/sub", fs::create_dir(g.join("sub")));
            t.step("stat g/sub", stat(&g.join("sub")));
            t.step(
                "create g/sub/deeper",
                create(&g.join("sub/deeper"), 0o644).map(drop),
            );
            t.step("stat g/sub/deeper", stat(&g.join("sub/deeper")));
            t.step(
                "create own-dir file 2755",
                create(&at("own"), 0o2755).map(drop),
            );
            Ok(())
        });
        as_other(t, "bob (not in 2000)", &bob(), |t| {
            t.step("create g/y 2755", create(&g.join("y"), 0o2755).map(drop));
            t.step("stat g/y", stat(&g.join("y")));
            t.step(
                "create g/y2 2745 (no group exec)",
                create(&g.join("y2"), 0o2745).map(drop),
            );
            t.step("stat g/y2", stat(&g.join("y2")));
            t.step(
                "mknod g/z 2755",
                common::mknod(&g.join("z"), libc::S_IFREG | 0o2755, 0),
            );
            t.step("stat g/z", stat(&g.join("z")));
            t.step(
                "mkdir g/bsub 2755",
                fs::DirBuilder::new().mode(0o2755).create(g.join("bsub")),
            );
            t.step("stat g/bsub", stat(&g.join("bsub")));
            t.step("symlink g/sl", symlink("f", g.join("sl")));
            t.step("lstat g/sl", lstat(&g.join("sl")));
            Ok(())
        });
        t.step("create g/r as root", create(&g.join("r"), 0o2755).map(drop));
        t.step("stat g/r", stat(&g.join("r")));
        t.step("mkdir g/rsub as root", fs::create_dir(g.join("rsub")));
        t.step("stat g/rsub", stat(&g.join("rsub")));
        t.step("chmod g 777 (drop setgid)", chmod(&g, 0o777));
        t.step("stat g after chmod", stat(&g));
        t.step("stat g/sub keeps setgid", stat(&g.join("sub")));
        Ok(())
    })
}

fn perm_chmod_chown_nonowner(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        t.need("chmod base 777", chmod(base, 0o777))?;
        t.need("write f", write_new(&at("f"), b"root's"))?;
        t.need("write g", write_new(&at("g"), b"alice's"))?;
        t.need("chown g 1000:1000", chown(at("g"), Some(1000), Some(1000)))?;
        t.need("write h 666", create(&at("h"), 0o666).map(drop))?;
        t.need("chmod h 666", chmod(&at("h"), 0o666))?;
        let at_time = TimeArg::At(1_000_000, 0);
        as_other(t, "alice", &alice(), |t| {
            t.step("chmod root's f", chmod(&at("f"), 0o777));
            t.step("chown root's f to alice", chown(at("f"), Some(1000), None));
            t.step("chown root's f -1:-1", chown(at("f"), None, None));
            t.step(
                "chown root's f to group 2000",
                chown(at("f"), None, Some(2000)),
            );
            t.step(
                "utimes root's f explicit",
                common::utimensat(&at("f"), at_time, at_time, 0),
            );
            let now = TimeArg::Now;
            t.step(
                "utimes root's f now (no write)",
                common::utimensat(&at("f"), now, now, 0),
            );
            t.step(
                "utimes root's h now (writable)",
                common::utimensat(&at("h"), now, now, 0),
            );
            t.step(
                "utimes root's h explicit",
                common::utimensat(&at("h"), at_time, at_time, 0),
            );
            t.step(
                "utimes root's h omit/now",
                common::utimensat(&at("h"), TimeArg::Omit, now, 0),
            );
            t.step(
                "chown own g to group 3000",
                chown(at("g"), None, Some(3000)),
            );
            t.step(
                "chown own g to group 2000",
                chown(at("g"), None, Some(2000)),
            );
            t.step("stat g", stat(&at("g")));
            t.step("chown own g to bob", chown(at("g"), Some(1001), None));
            t.step("chown own g to itself", chown(at("g"), Some(1000), None));
            t.step("chmod own g 2755 (in 2000)", chmod(&at("g"), 0o2755));
            t.step("stat g after 2755", stat(&at("g")));
            t.step(
                "utimes own g explicit",
                common::utimensat(&at("g"), at_time, at_time, 0),
            );
            t.step(
                "chown own g to group 1000",
                chown(at("g"), None, Some(1000)),
            );
            t.step("stat g after regroup", stat(&at("g")));
            Ok(())
        });
        t.step("chown g 1000:3000", chown(at("g"), Some(1000), Some(3000)));
        as_other(t, "alice not in 3000", &alice(), |t| {
            t.step("chmod g 2755", chmod(&at("g"), 0o2755));
            t.step("stat g", stat(&at("g")));
            t.step("chmod g 4755", chmod(&at("g"), 0o4755));
            t.step("stat g after 4755", stat(&at("g")));
            t.step("chmod g 1755", chmod(&at("g"), 0o1755));
            t.step("stat g after 1755", stat(&at("g")));
            Ok(())
        });
        t.step("chmod g 6755", chmod(&at("g"), 0o6755));
        as_other(t, "alice chowns own setid file", &alice(), |t| {
            t.step("chown g -1:-1", chown(at("g"), None, None));
            t.step("stat g", stat(&at("g")));
            Ok(())
        });
        t.step("chmod g 6755 again", chmod(&at("g"), 0o6755));
        t.step("chown g -1:2000 as root", chown(at("g"), None, Some(2000)));
        as_other(t, "alice regroups own setid file", &alice(), |t| {
            t.step("chmod g 6755", chmod(&at("g"), 0o6755));
            t.step("chown g -1:1000", chown(at("g"), None, Some(1000)));
            t.step("stat g", stat(&at("g")));
            Ok(())
        });
        // Protected hard links: linking someone else's file needs read and write access to it.
        t.need("write r600", create(&at("r600"), 0o600).map(drop))?;
        t.need("write r666", create(&at("r666"), 0o666).map(drop))?;
        t.need("chmod r666", chmod(&at("r666"), 0o666))?;
        as_other(t, "alice links", &alice(), |t| {
            t.step(
                "link root's 600 file",
                fs::hard_link(at("r600"), at("l600")),
            );
            t.step(
                "link root's 666 file",
                fs::hard_link(at("r666"), at("l666")),
            );
            t.step("link own file", fs::hard_link(at("g"), at("lg")));
            Ok(())
        });
        Ok(())
    })
}

fn perm_write_clears_setid(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        t.need("chmod base 777", chmod(base, 0o777))?;
        for (name, mode) in [
            ("u", 0o4777),
            ("ug", 0o6777),
            ("g_noexec", 0o2767),
            ("t", 0o4777),
            ("f", 0o6777),
        ] {
            t.need(
                &format!("write {name}"),
                write_new(&at(name), b"0123456789"),
            )?;
            t.need(&format!("chmod {name} {mode:o}"), chmod(&at(name), mode))?;
        }
        t.need("write r", write_new(&at("r"), b"0123456789"))?;
        t.need("chmod r 6777", chmod(&at("r"), 0o6777))?;
        t.need("write gm (group 2000)", write_new(&at("gm"), b"0123456789"))?;
        t.need("chown gm 0:2000", chown(at("gm"), None, Some(2000)))?;
        t.need("chmod gm 2767", chmod(&at("gm"), 0o2767))?;
        for (name, mode) in [("locked", 0o4755), ("glocked", 0o2755)] {
            t.need(&format!("write {name}"), write_new(&at(name), b"x"))?;
            t.need(&format!("chmod {name} {mode:o}"), chmod(&at(name), mode))?;
        }
        as_other(t, "alice", &alice(), |t| {
            // chown(f, -1, -1) by a non-owner who may not write the file: the set-ID bits
            // it would clear make it a mode change, which only the owner may make (EPERM).
            for name in ["locked", "glocked"] {
                t.step(&format!("chown {name} -1 -1"), chown(at(name), None, None));
                t.step(&format!("stat {name} after chown"), stat(&at(name)));
            }
            for name in ["u", "ug", "g_noexec", "gm"] {
                let file = open(&at(name), libc::O_WRONLY, 0);
                if let Some(file) = t.step(&format!("open {name} for write"), file) {
                    t.step(&format!("write 1 byte to {name}"), file.write_at(b"x", 0));
                }
                t.step(&format!("stat {name} after write"), stat(&at(name)));
            }
            t.step("truncate t", common::truncate(&at("t"), 3));
            t.step("stat t after truncate", stat(&at("t")));
            let file = t.step("open f", open(&at("f"), libc::O_WRONLY, 0));
            if let Some(file) = file {
                t.step("empty write to f", (&file).write(b""));
                t.step("stat f after empty write", stat(&at("f")));
                t.step("fallocate f", common::fallocate(&file, 0, 0, 100));
                t.step("stat f after fallocate", stat(&at("f")));
            }
            t.step("create own", write_new(&at("own"), b"mine"));
            t.step("chmod own 4755", chmod(&at("own"), 0o4755));
            t.step(
                "append to own",
                open(&at("own"), libc::O_WRONLY | libc::O_APPEND, 0)
                    .and_then(|mut file| file.write_all(b"more")),
            );
            t.step("stat own after write", stat(&at("own")));
            Ok(())
        });
        let file = t.step("open r as root", open(&at("r"), libc::O_WRONLY, 0));
        if let Some(file) = file {
            t.step("write r as root", file.write_at(b"x", 0));
        }
        t.step("stat r after root's write", stat(&at("r")));
        t.step("truncate r as root", common::truncate(&at("r"), 1));
        t.step("stat r after root's truncate", stat(&at("r")));
        Ok(())
    })
}

fn unlinked_open_file(base: &Path) -> Vec<String> {
    record(|t| {
        let at = |name: &str| base.join(name);
        t.need("chmod base 777", chmod(base, 0o777))?;
        as_other(t, "alice", &alice(), |t| {
            t.need("write f", write_new(&at("f"), b"persistent data"))?;
            let reader = t.need("open f read", open(&at("f"), libc::O_RDONLY, 0))?;
            let writer = t.need("open f write", open(&at("f"), libc::O_WRONLY, 0))?;
            t.step("unlink f", fs::remove_file(at("f")));
            t.step("stat f", stat(&at("f")));
            t.step("read via fd", read_at(&reader, 0, 100));
            t.step("fstat via fd", reader.metadata());
            t.step("write via fd", writer.write_at(b"PERSISTENT", 0));
            t.step("read again", read_at(&reader, 0, 100));
            t.step("ftruncate via fd", common::ftruncate(&writer, 4));
            t.step("fstat after ftruncate", writer.metadata());
            t.step("list base", listing(base));
            t.step("create f again", write_new(&at("f"), b"new"));
            t.step("old fd still reads old data", read_at(&reader, 0, 100));
            Ok(())
        });
        t.need("write old", write_new(&at("old"), b"old contents"))?;
        t.need("write new", write_new(&at("new"), b"new contents"))?;
        let reader = t.need("open old", open(&at("old"), libc::O_RDONLY, 0))?;
        t.step("rename new over old", fs::rename(at("new"), at("old")));
        t.step("read open replaced file", read_at(&reader, 0, 100));
        t.step("fstat replaced file", reader.metadata());
        t.step("read old by name", fs::read(at("old")));
        t.need("mkdir d", fs::create_dir(at("d")))?;
        let dir = t.need(
            "open d",
            open(&at("d"), libc::O_RDONLY | libc::O_DIRECTORY, 0),
        )?;
        t.step("rmdir d", fs::remove_dir(at("d")));
        t.step("fstat removed dir", dir.metadata());
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Comparison

const SCENARIOS: &[(&str, Scenario)] = &[
    ("lookup_and_stat", lookup_and_stat),
    ("mknod_kinds", mknod_kinds),
    ("mkdir_rmdir", mkdir_rmdir),
    ("unlink_cases", unlink_cases),
    ("symlinks", symlinks),
    ("rename_cases", rename_cases),
    ("hard_links", hard_links),
    ("open_read_write", open_read_write),
    ("truncate_sizes", truncate_sizes),
    ("sparse_files", sparse_files),
    ("fallocate_modes", fallocate_modes),
    ("seek_data_hole", seek_data_hole),
    ("timestamps", timestamps),
    ("owner_and_mode_as_root", owner_and_mode_as_root),
    ("xattrs_as_root", xattrs_as_root),
    ("xattrs_as_users", xattrs_as_users),
    ("access_checks", access_checks),
    ("statfs_fields", statfs_fields),
    ("fsync_and_copy", fsync_and_copy),
    ("long_names", long_names),
    ("readdir_listing", readdir_listing),
    ("perm_private_dir", perm_private_dir),
    ("perm_sticky_dir", perm_sticky_dir),
    ("perm_setgid_dir", perm_setgid_dir),
    ("perm_chmod_chown_nonowner", perm_chmod_chown_nonowner),
    ("perm_write_clears_setid", perm_write_clears_setid),
    ("unlinked_open_file", unlinked_open_file),
];

/// Runs one scenario in a fresh subdirectory of `root`; a panic becomes the last line.
fn run_scenario(root: &Path, name: &str, scenario: Scenario) -> Vec<String> {
    let base = root.join(name);
    if let Err(err) = fs::create_dir(&base) {
        return vec![format!("mkdir {name}: {err}")];
    }
    match panic::catch_unwind(AssertUnwindSafe(|| scenario(&base))) {
        Ok(lines) => lines,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            vec![format!("scenario panicked: {message}")]
        }
    }
}

fn step_label(line: &str) -> &str {
    line.split_once(" => ").map_or(line, |(label, _)| label)
}

fn allowed(scenario: &str, line: &str) -> Option<&'static AllowedDifference> {
    ALLOWED_DIFFERENCES
        .iter()
        .find(|allowed| allowed.scenario == scenario && allowed.step == step_label(line))
}

/// Compares the transcripts step by step. Returns the report of the first unexplained
/// difference (with the steps before it and a list of the later ones), if any.
fn compare(scenario: &str, btfuse: &[String], tmpfs: &[String]) -> Result<(), String> {
    let missing = "(no such step)".to_owned();
    let steps = btfuse.len().max(tmpfs.len());
    let mut differing = Vec::new();
    for index in 0..steps {
        let ours = btfuse.get(index).unwrap_or(&missing);
        let theirs = tmpfs.get(index).unwrap_or(&missing);
        if ours == theirs {
            continue;
        }
        if step_label(ours) == step_label(theirs)
            && let Some(allowed) = allowed(scenario, ours)
        {
            eprintln!(
                "{scenario}: allowed difference at `{}`\n  btfuse: {ours}\n  tmpfs:  {theirs}\n  \
                 because {}",
                allowed.step, allowed.reason
            );
            continue;
        }
        differing.push(index);
    }
    for allowed in ALLOWED_DIFFERENCES
        .iter()
        .filter(|allowed| allowed.scenario == scenario)
    {
        let same = btfuse
            .iter()
            .zip(tmpfs)
            .any(|(ours, theirs)| step_label(ours) == allowed.step && ours == theirs);
        if same {
            eprintln!(
                "{scenario}: allowed difference `{}` no longer differs",
                allowed.step
            );
        }
    }
    let Some(&first) = differing.first() else {
        return Ok(());
    };
    let mut report = format!("scenario `{scenario}` differs at step {first}:\n");
    for line in &btfuse[first.saturating_sub(3)..first.min(btfuse.len())] {
        report += &format!("      (same) {line}\n");
    }
    report += &format!("  >> btfuse: {}\n", btfuse.get(first).unwrap_or(&missing));
    report += &format!("  >> tmpfs:  {}\n", tmpfs.get(first).unwrap_or(&missing));
    if differing.len() > 1 {
        report += &format!("  {} more differing steps:\n", differing.len() - 1);
        for &index in &differing[1..] {
            report += &format!(
                "    step {index}\n      btfuse: {}\n      tmpfs:  {}\n",
                btfuse.get(index).unwrap_or(&missing),
                tmpfs.get(index).unwrap_or(&missing)
            );
        }
    }
    Err(report)
}

/// Runs the scenarios whose names `filter` accepts on btfuse and tmpfs and fails with a report
/// of every scenario that differs.
fn check_scenarios(filter: impl Fn(&str) -> bool) {
    common::set_umask(0o022);
    let mut btfuse = Mount::start(BTFUSE_ARGS);
    let tmpfs = Tmpfs::new();
    let mut reports = Vec::new();
    let mut ran = 0;
    for &(name, scenario) in SCENARIOS.iter().filter(|(name, _)| filter(name)) {
        ran += 1;
        let ours = run_scenario(btfuse.path(), name, scenario);
        let theirs = run_scenario(tmpfs.path(), name, scenario);
        if std::env::var_os("BTFUSE_SHOW_TRANSCRIPTS").is_some() {
            eprintln!(
                "== {name} (btfuse)\n{}\n== {name} (tmpfs)\n{}",
                ours.join("\n"),
                theirs.join("\n")
            );
        }
        if let Err(report) = compare(name, &ours, &theirs) {
            reports.push(report);
        }
    }
    drop(tmpfs);
    let stopped = btfuse.stop();
    assert!(ran > 0, "no scenario matched");
    assert!(
        reports.is_empty(),
        "{} of {ran} scenarios differ between btfuse and tmpfs:\n\n{}",
        reports.len(),
        reports.join("\n")
    );
    assert!(
        stopped.unmounted && stopped.status.is_some_and(|status| status.success()),
        "btfuse-fuse did not exit 0 and unmount on SIGTERM: {stopped:?}\n{}",
        btfuse.output()
    );
}

/// Every scenario, compared with tmpfs. `BTFUSE_SCENARIO=name[,name]` runs only those;
/// `BTFUSE_SHOW_TRANSCRIPTS=1` prints both transcripts of each.
#[test]
fn scenarios_match_tmpfs() {
    let only = std::env::var("BTFUSE_SCENARIO").ok();
    check_scenarios(|name| {
        only.as_deref()
            .is_none_or(|only| only.split(',').any(|wanted| wanted == name))
    });
}

/// The daemon's lifecycle contract: it serves until `SIGINT` or `SIGTERM`, then unmounts and
/// exits 0.
#[test]
fn daemon_unmounts_and_exits_0_on_sigint_and_sigterm() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mut mount = Mount::start(BTFUSE_ARGS);
        fs::write(mount.path().join("f"), b"x").expect("write through the mount");
        let stopped = mount.stop_with(signal);
        assert!(
            stopped.unmounted && stopped.status.is_some_and(|status| status.success()),
            "after signal {signal}: {stopped:?}\n{}",
            mount.output()
        );
    }
}
