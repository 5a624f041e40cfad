//! Filesystem operations as data, the proptest strategies that draw them, and a driver that
//! applies them to two filesystems in lockstep.
//!
//! An [`Op`] names its targets the way a test author would: a path of names walked with
//! [`Filesystem::find`] from the root (or, rarely, a raw inode number, to reach unlinked and
//! freed inodes), a handle as a slot in the list of handles opened so far, a caller as one of four
//! fixed [`User`]s. [`run_pair`] resolves those on each filesystem separately, so the two sides
//! see the same inode only if their trees agree, and then compares every answer exactly, and the
//! whole tree after every step.

use crate::clock::ManualClock;
use btfuse_core::{
    AccessMask, Attr, Credentials, DirEntry, Errno, FallocateMode, Fh, FileType, Filesystem, Ino,
    MAX_FILE_SIZE, OpenFlags, RenameMode, SeekWhence, SetAttr, StatFs, TimeSet, Timestamp,
    XattrMode,
};
use proptest::prelude::*;
use proptest::strategy::Union;
use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;

/// A byte string (a name, a symlink target, an xattr name) that prints readably: runs of one
/// byte are abbreviated, so a 256-byte name shows as `b"{x×256}"`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    fn of(bytes: &[u8]) -> Bytes {
        Bytes(bytes.to_vec())
    }

    fn repeated(prefix: &[u8], byte: u8, len: usize) -> Bytes {
        let mut v = prefix.to_vec();
        v.resize(len, byte);
        Bytes(v)
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 48;
        let bytes = &self.0;
        if bytes.len() > SHOWN && !bytes.windows(8).any(|w| w.iter().all(|&b| b == w[0])) {
            // Long and not made of runs: file content. Enough to tell two apart.
            return write!(
                f,
                "<{} bytes, fnv {:016x}, starting {:?}>",
                bytes.len(),
                fnv(bytes),
                Bytes(bytes[..16].to_vec())
            );
        }
        f.write_str("b\"")?;
        let mut i = 0;
        while i < bytes.len() {
            let run = bytes[i..].iter().take_while(|&&b| b == bytes[i]).count();
            let escaped = std::ascii::escape_default(bytes[i]).to_string();
            if run >= 8 {
                write!(f, "{{{escaped}×{run}}}")?;
                i += run;
            } else {
                f.write_str(&escaped)?;
                i += 1;
            }
        }
        f.write_str("\"")
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Data to write: `pattern` repeated to `len` bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Data {
    /// The bytes repeated.
    pub pattern: Vec<u8>,
    /// Total length.
    pub len: usize,
}

impl Data {
    /// The bytes themselves.
    pub fn bytes(&self) -> Vec<u8> {
        if self.pattern.is_empty() {
            return vec![0; self.len];
        }
        self.pattern
            .iter()
            .copied()
            .cycle()
            .take(self.len)
            .collect()
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}×{}", Bytes(self.pattern.clone()), self.len)
    }
}

/// One of the fixed callers: 0 root, 1 `1000:1000`, 2 `1001:1001` with supplementary group
/// 1000, 3 `1002:100`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct User(pub u8);

impl User {
    /// Root.
    pub const ROOT: User = User(0);

    /// The caller's credentials.
    pub fn credentials(self) -> Credentials {
        match self.0 % 4 {
            0 => Credentials::root(),
            1 => Credentials::user(1000, 1000),
            2 => Credentials {
                groups: vec![1000],
                ..Credentials::user(1001, 1001)
            },
            _ => Credentials::user(1002, 100),
        }
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 % 4 {
            0 => f.write_str("root"),
            n => write!(f, "u{}", 999 + u32::from(n)),
        }
    }
}

/// Permission bits, printed in octal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0o{:o}", self.0)
    }
}

/// The inode an operation acts on.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// Walk these names from the root with `find` as root (empty: the root itself).
    Path(Vec<Bytes>),
    /// This inode number, whatever it is now (maybe unlinked, freed or never used).
    Ino(u64),
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Path(names) if names.is_empty() => f.write_str("/"),
            Target::Path(names) => {
                for name in names {
                    write!(f, "/{}", String::from_utf8_lossy(&name.0))?;
                }
                Ok(())
            }
            Target::Ino(ino) => write!(f, "#{ino}"),
        }
    }
}

/// A handle, as a slot in the list of handles open on both sides: slot `n` is handle
/// `n % len`, except that slots from [`HandleSlot::BOGUS`] up, and every slot while no handle is
/// open, stand for a handle that was never opened (`EBADF`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HandleSlot(pub u8);

impl HandleSlot {
    /// The first slot that names no handle.
    pub const BOGUS: u8 = 240;
}

impl fmt::Debug for HandleSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h{}", self.0)
    }
}

/// [`OpenFlags`], printed compactly (`r|w|append`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Flags(pub OpenFlags);

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        let names = [
            (o.read, "r"),
            (o.write, "w"),
            (o.append, "append"),
            (o.truncate, "trunc"),
            (o.exclusive, "excl"),
            (o.directory, "dir"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        if set.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&set.join("|"))
        }
    }
}

/// [`AccessMask`], printed compactly (`rwx`, `-` for `F_OK`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mask(pub AccessMask);

impl fmt::Debug for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        if m == AccessMask::EXISTS {
            return f.write_str("F_OK");
        }
        for (on, c) in [(m.read, "r"), (m.write, "w"), (m.execute, "x")] {
            f.write_str(if on { c } else { "-" })?;
        }
        Ok(())
    }
}

/// The fields of a `setattr` call ([`SetAttr`] with readable modes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct AttrChange {
    /// New permission bits.
    pub mode: Option<Mode>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size.
    pub size: Option<u64>,
    /// New access time.
    pub atime: TimeSet,
    /// New modification time.
    pub mtime: TimeSet,
    /// New change time.
    pub ctime: TimeSet,
    /// Clear set-ID bits as `chown(f, -1, -1)` would.
    pub kill_setid: bool,
}

impl AttrChange {
    /// The [`SetAttr`] this stands for.
    pub fn to_set_attr(self) -> SetAttr {
        SetAttr {
            mode: self.mode.map(|m| m.0),
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            kill_setid: self.kill_setid,
        }
    }
}

/// One step of a property test: a [`Filesystem`] call with its arguments, or a clock jump.
#[derive(Clone, PartialEq, Eq, Debug)]
#[allow(missing_docs)] // The fields are the trait method's arguments of the same names.
pub enum Op {
    /// [`Filesystem::lookup`].
    Lookup {
        user: User,
        parent: Target,
        name: Bytes,
    },
    /// [`Filesystem::forget`].
    Forget { target: Target, nlookup: u64 },
    /// [`Filesystem::getattr`].
    Getattr { user: User, target: Target },
    /// [`Filesystem::setattr`]; the handle is passed only if it is open on the target.
    Setattr {
        user: User,
        target: Target,
        change: AttrChange,
        handle: Option<HandleSlot>,
    },
    /// [`Filesystem::mknod`].
    Mknod {
        user: User,
        parent: Target,
        name: Bytes,
        kind: FileType,
        mode: Mode,
        rdev: u32,
    },
    /// [`Filesystem::mkdir`].
    Mkdir {
        user: User,
        parent: Target,
        name: Bytes,
        mode: Mode,
    },
    /// [`Filesystem::create`].
    Create {
        user: User,
        parent: Target,
        name: Bytes,
        mode: Mode,
        flags: Flags,
    },
    /// [`Filesystem::unlink`].
    Unlink {
        user: User,
        parent: Target,
        name: Bytes,
    },
    /// [`Filesystem::rmdir`].
    Rmdir {
        user: User,
        parent: Target,
        name: Bytes,
    },
    /// [`Filesystem::rename`].
    Rename {
        user: User,
        parent: Target,
        name: Bytes,
        new_parent: Target,
        new_name: Bytes,
        mode: RenameMode,
    },
    /// [`Filesystem::link`].
    Link {
        user: User,
        target: Target,
        new_parent: Target,
        new_name: Bytes,
    },
    /// [`Filesystem::symlink`].
    Symlink {
        user: User,
        parent: Target,
        name: Bytes,
        link: Bytes,
    },
    /// [`Filesystem::readlink`].
    Readlink { user: User, target: Target },
    /// [`Filesystem::open`].
    Open {
        user: User,
        target: Target,
        flags: Flags,
    },
    /// [`Filesystem::release`].
    Release { handle: HandleSlot },
    /// [`Filesystem::read`] into a buffer of `len` bytes.
    Read {
        user: User,
        handle: HandleSlot,
        offset: u64,
        len: usize,
    },
    /// [`Filesystem::write`].
    Write {
        user: User,
        handle: HandleSlot,
        offset: u64,
        data: Data,
    },
    /// [`Filesystem::fallocate`].
    Fallocate {
        user: User,
        handle: HandleSlot,
        mode: FallocateMode,
        offset: u64,
        len: u64,
    },
    /// [`Filesystem::lseek`].
    Lseek {
        user: User,
        handle: HandleSlot,
        offset: u64,
        whence: SeekWhence,
    },
    /// [`Filesystem::readdir`], collecting every entry, or only the first `limit`.
    Readdir {
        user: User,
        handle: HandleSlot,
        cookie: u64,
        limit: Option<usize>,
    },
    /// [`Filesystem::statfs`].
    Statfs { user: User },
    /// [`Filesystem::getxattr`] into a buffer of `buf_len` bytes.
    Getxattr {
        user: User,
        target: Target,
        name: Bytes,
        buf_len: usize,
    },
    /// [`Filesystem::setxattr`].
    Setxattr {
        user: User,
        target: Target,
        name: Bytes,
        value: Data,
        mode: XattrMode,
    },
    /// [`Filesystem::listxattr`] into a buffer of `buf_len` bytes.
    Listxattr {
        user: User,
        target: Target,
        buf_len: usize,
    },
    /// [`Filesystem::removexattr`].
    Removexattr {
        user: User,
        target: Target,
        name: Bytes,
    },
    /// [`Filesystem::access`].
    Access {
        user: User,
        target: Target,
        mask: Mask,
    },
    /// [`Filesystem::fsync`].
    Fsync {
        user: User,
        handle: HandleSlot,
        datasync: bool,
    },
    /// Advance the clock by `secs` seconds (on top of the 1 ns every step gets).
    Sleep { secs: u32 },
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Picks one of `choices` with the given weights.
fn weighted<T: Clone + fmt::Debug + 'static>(choices: Vec<(u32, T)>) -> BoxedStrategy<T> {
    Union::new_weighted(
        choices
            .into_iter()
            .map(|(w, v)| (w, Just(v).boxed()))
            .collect(),
    )
    .boxed()
}

/// A block-boundary value most of the time, anything in `0..spread` otherwise.
fn around_blocks(spread: u64) -> BoxedStrategy<u64> {
    let edges = weighted(
        [0, 1, 4095, 4096, 4097, 8192, 20000]
            .into_iter()
            .map(|v| (1, v))
            .collect(),
    );
    prop_oneof![3 => edges, 2 => 0..spread].boxed()
}

fn user() -> BoxedStrategy<User> {
    weighted(vec![(3, User(0)), (2, User(1)), (1, User(2)), (1, User(3))])
}

/// A short name, mostly `a`..`d`, sometimes one that is invalid or special.
fn name() -> BoxedStrategy<Bytes> {
    weighted(vec![
        (16, Bytes::of(b"a")),
        (12, Bytes::of(b"b")),
        (7, Bytes::of(b"c")),
        (5, Bytes::of(b"d")),
        (1, Bytes::of(b".")),
        (1, Bytes::of(b"..")),
        (1, Bytes::of(b"")),
        (1, Bytes::repeated(b"", b'x', 256)),
        (1, Bytes::repeated(b"", b'y', 255)),
        // Either side of the longest name MemFs keeps inline in a directory entry.
        (2, Bytes::repeated(b"", b'e', 22)),
        (2, Bytes::repeated(b"", b'f', 23)),
        (1, Bytes::of(b"a/b")),
        (1, Bytes::of(b"a\0")),
    ])
}

fn plain_name() -> BoxedStrategy<Bytes> {
    weighted(vec![
        (8, Bytes::of(b"a")),
        (6, Bytes::of(b"b")),
        (3, Bytes::of(b"c")),
        (2, Bytes::of(b"d")),
    ])
}

/// A path of depth 0 to 3, shallow ones more often.
fn path() -> BoxedStrategy<Vec<Bytes>> {
    let element = weighted(vec![
        (16, Bytes::of(b"a")),
        (12, Bytes::of(b"b")),
        (6, Bytes::of(b"c")),
        (4, Bytes::of(b"d")),
        (1, Bytes::of(b"..")),
    ]);
    weighted(vec![(3, 0usize), (5, 1), (2, 2), (1, 3)])
        .prop_flat_map(move |depth| prop::collection::vec(element.clone(), depth))
        .boxed()
}

fn target() -> BoxedStrategy<Target> {
    prop_oneof![12 => path().prop_map(Target::Path), 1 => (1u64..24).prop_map(Target::Ino)].boxed()
}

/// A directory to create in: a path of depth 0 to 2.
fn parent() -> BoxedStrategy<Target> {
    prop_oneof![
        12 => weighted(vec![(5, 0usize), (3, 1), (1, 2)])
            .prop_flat_map(|depth| prop::collection::vec(plain_name(), depth))
            .prop_map(Target::Path),
        1 => (1u64..24).prop_map(Target::Ino),
    ]
    .boxed()
}

fn mode() -> BoxedStrategy<Mode> {
    let common = weighted(
        [
            0o000, 0o644, 0o755, 0o777, 0o1777, 0o2755, 0o4755, 0o2775, 0o600, 0o640, 0o700, 0o6777,
        ]
        .into_iter()
        .map(|m| (1, Mode(m)))
        .collect(),
    );
    prop_oneof![6 => common, 1 => (0u32..=0o7777).prop_map(Mode)].boxed()
}

fn handle() -> BoxedStrategy<HandleSlot> {
    any::<u8>().prop_map(HandleSlot).boxed()
}

fn flags() -> BoxedStrategy<Flags> {
    (
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.75),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(read, write, append, truncate, exclusive, directory)| {
            Flags(OpenFlags {
                read,
                write,
                append,
                truncate,
                exclusive,
                directory,
            })
        })
        .boxed()
}

fn offset() -> BoxedStrategy<u64> {
    prop_oneof![
        40 => around_blocks(30_000),
        1 => Just(1u64 << 40),
        1 => Just(MAX_FILE_SIZE - 1),
        1 => Just(MAX_FILE_SIZE),
    ]
    .boxed()
}

fn data() -> BoxedStrategy<Data> {
    (
        prop::collection::vec(any::<u8>(), 1..=3),
        around_blocks(20_001),
    )
        .prop_map(|(pattern, len)| Data {
            pattern,
            len: len.min(20_000) as usize,
        })
        .boxed()
}

fn time_set() -> BoxedStrategy<TimeSet> {
    let at = (
        // 1 s is "now" when a test starts: 1.999999999 is just ahead of the clock.
        prop_oneof![Just(0i64), Just(1), Just(5), Just(100_000), Just(-1)],
        prop_oneof![Just(0u32), Just(999_999_999)],
    )
        .prop_map(|(secs, nanos)| TimeSet::At(Timestamp { secs, nanos }));
    prop_oneof![6 => Just(TimeSet::Omit), 2 => Just(TimeSet::Now), 2 => at].boxed()
}

fn attr_change() -> BoxedStrategy<AttrChange> {
    let ids = || weighted(vec![(1, 0u32), (1, 100), (2, 1000), (1, 1001), (1, 1002)]);
    let size = prop_oneof![
        8 => around_blocks(30_000),
        1 => Just(1u64 << 40),
        1 => Just(MAX_FILE_SIZE + 1),
    ];
    (
        prop::option::weighted(0.3, mode()),
        prop::option::weighted(0.15, ids()),
        prop::option::weighted(0.15, ids()),
        prop::option::weighted(0.3, size),
        time_set(),
        time_set(),
        prop_oneof![8 => Just(TimeSet::Omit), 1 => Just(TimeSet::Now), 1 => time_set()],
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(mode, uid, gid, size, atime, mtime, ctime, kill_setid)| AttrChange {
                mode,
                uid,
                gid,
                size,
                atime,
                mtime,
                ctime,
                kill_setid,
            },
        )
        .boxed()
}

fn node_kind() -> BoxedStrategy<FileType> {
    weighted(vec![
        (3, FileType::RegularFile),
        (1, FileType::NamedPipe),
        (1, FileType::Socket),
        (1, FileType::CharDevice),
        (1, FileType::BlockDevice),
    ])
}

fn symlink_target() -> BoxedStrategy<Bytes> {
    weighted(vec![
        (4, Bytes::of(b"a")),
        (2, Bytes::of(b"../b/c")),
        (2, Bytes::of(b"/etc/passwd")),
        (1, Bytes::of(b"")),
        (1, Bytes::repeated(b"", b'z', 4095)),
        (1, Bytes::repeated(b"", b'z', 4096)),
        (1, Bytes::of(b"a\0b")),
    ])
}

fn xattr_name() -> BoxedStrategy<Bytes> {
    weighted(vec![
        (6, Bytes::of(b"user.a")),
        (4, Bytes::of(b"user.b")),
        (2, Bytes::of(b"user.c")),
        (1, Bytes::of(b"user.")),
        (1, Bytes::of(b"trusted.")),
        (2, Bytes::of(b"trusted.t")),
        (2, Bytes::of(b"security.s")),
        (1, Bytes::of(b"system.posix_acl_access")),
        (1, Bytes::of(b"other.o")),
        (1, Bytes::of(b"")),
        (1, Bytes::repeated(b"user.", b'n', 255)),
        (1, Bytes::repeated(b"user.", b'n', 256)),
    ])
}

fn xattr_value() -> BoxedStrategy<Data> {
    let len = weighted(vec![
        (2, 0usize),
        (3, 1),
        (3, 10),
        (2, 40),
        (1, 30_000),
        (1, 65_536),
        (1, 65_537),
    ]);
    (prop::collection::vec(any::<u8>(), 1..=3), len)
        .prop_map(|(pattern, len)| Data { pattern, len })
        .boxed()
}

fn buf_len() -> BoxedStrategy<usize> {
    weighted(vec![
        (3, 0usize),
        (1, 1),
        (1, 3),
        (1, 8),
        (2, 64),
        (1, 300),
        (2, 70_000),
    ])
}

/// Any operation, with every argument drawn from a small domain so that operations meet.
pub fn op_strategy() -> impl Strategy<Value = Op> {
    let nlookup = weighted(vec![(3, 1u64), (1, 2), (1, u64::MAX)]);
    let rename_mode = weighted(vec![
        (3, RenameMode::Replace),
        (1, RenameMode::NoReplace),
        (1, RenameMode::Exchange),
    ]);
    let fallocate_mode = weighted(vec![
        (1, FallocateMode::Allocate),
        (1, FallocateMode::KeepSize),
        (1, FallocateMode::PunchHole),
    ]);
    let fallocate_len = prop_oneof![
        12 => around_blocks(30_000),
        1 => Just(1u64 << 40),
        1 => Just(MAX_FILE_SIZE),
    ];
    let whence = weighted(vec![(1, SeekWhence::Data), (1, SeekWhence::Hole)]);
    let cookie = prop_oneof![3 => Just(0u64), 1 => Just(1), 1 => Just(2), 2 => 3u64..12];
    let limit = prop::option::weighted(0.2, 1usize..4);
    let xattr_mode = weighted(vec![
        (3, XattrMode::Set),
        (1, XattrMode::Create),
        (1, XattrMode::Replace),
    ]);
    let mask = (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(read, write, execute)| {
        Mask(AccessMask {
            read,
            write,
            execute,
        })
    });
    let read_len = prop_oneof![8 => around_blocks(20_001), 1 => Just(70_000usize as u64)]
        .prop_map(|len| len as usize);
    // 25 h passes relatime's day; 86 400 s after an atime of 1.999999999 s (a time setattr
    // draws, just ahead of the clock's start) is a day in whole seconds, not in nanoseconds.
    let sleep = weighted(vec![(4, 25 * 60 * 60u32), (1, 86_400), (1, 86_404), (2, 1)]);

    let arms: Vec<(u32, BoxedStrategy<Op>)> = vec![
        (
            4,
            (user(), parent(), name())
                .prop_map(|(user, parent, name)| Op::Lookup { user, parent, name })
                .boxed(),
        ),
        (
            2,
            (target(), nlookup)
                .prop_map(|(target, nlookup)| Op::Forget { target, nlookup })
                .boxed(),
        ),
        (
            2,
            (user(), target())
                .prop_map(|(user, target)| Op::Getattr { user, target })
                .boxed(),
        ),
        (
            6,
            (
                user(),
                target(),
                attr_change(),
                prop::option::weighted(0.3, handle()),
            )
                .prop_map(|(user, target, change, handle)| Op::Setattr {
                    user,
                    target,
                    change,
                    handle,
                })
                .boxed(),
        ),
        (
            3,
            (
                user(),
                parent(),
                name(),
                node_kind(),
                mode(),
                prop_oneof![Just(0u32), Just(0x801)],
            )
                .prop_map(|(user, parent, name, kind, mode, rdev)| Op::Mknod {
                    user,
                    parent,
                    name,
                    kind,
                    mode,
                    rdev,
                })
                .boxed(),
        ),
        (
            6,
            (user(), parent(), name(), mode())
                .prop_map(|(user, parent, name, mode)| Op::Mkdir {
                    user,
                    parent,
                    name,
                    mode,
                })
                .boxed(),
        ),
        (
            8,
            (user(), parent(), name(), mode(), flags())
                .prop_map(|(user, parent, name, mode, flags)| Op::Create {
                    user,
                    parent,
                    name,
                    mode,
                    flags,
                })
                .boxed(),
        ),
        (
            4,
            (user(), parent(), name())
                .prop_map(|(user, parent, name)| Op::Unlink { user, parent, name })
                .boxed(),
        ),
        (
            3,
            (user(), parent(), name())
                .prop_map(|(user, parent, name)| Op::Rmdir { user, parent, name })
                .boxed(),
        ),
        (
            6,
            (user(), parent(), name(), parent(), name(), rename_mode)
                .prop_map(
                    |(user, parent, name, new_parent, new_name, mode)| Op::Rename {
                        user,
                        parent,
                        name,
                        new_parent,
                        new_name,
                        mode,
                    },
                )
                .boxed(),
        ),
        (
            3,
            (user(), target(), parent(), name())
                .prop_map(|(user, target, new_parent, new_name)| Op::Link {
                    user,
                    target,
                    new_parent,
                    new_name,
                })
                .boxed(),
        ),
        (
            3,
            (user(), parent(), name(), symlink_target())
                .prop_map(|(user, parent, name, link)| Op::Symlink {
                    user,
                    parent,
                    name,
                    link,
                })
                .boxed(),
        ),
        (
            1,
            (user(), target())
                .prop_map(|(user, target)| Op::Readlink { user, target })
                .boxed(),
        ),
        (
            6,
            (user(), target(), flags())
                .prop_map(|(user, target, flags)| Op::Open {
                    user,
                    target,
                    flags,
                })
                .boxed(),
        ),
        (
            3,
            handle().prop_map(|handle| Op::Release { handle }).boxed(),
        ),
        (
            6,
            (user(), handle(), offset(), read_len)
                .prop_map(|(user, handle, offset, len)| Op::Read {
                    user,
                    handle,
                    offset,
                    len,
                })
                .boxed(),
        ),
        (
            10,
            (user(), handle(), offset(), data())
                .prop_map(|(user, handle, offset, data)| Op::Write {
                    user,
                    handle,
                    offset,
                    data,
                })
                .boxed(),
        ),
        (
            4,
            (user(), handle(), fallocate_mode, offset(), fallocate_len)
                .prop_map(|(user, handle, mode, offset, len)| Op::Fallocate {
                    user,
                    handle,
                    mode,
                    offset,
                    len,
                })
                .boxed(),
        ),
        (
            3,
            (user(), handle(), offset(), whence)
                .prop_map(|(user, handle, offset, whence)| Op::Lseek {
                    user,
                    handle,
                    offset,
                    whence,
                })
                .boxed(),
        ),
        (
            3,
            (user(), handle(), cookie, limit)
                .prop_map(|(user, handle, cookie, limit)| Op::Readdir {
                    user,
                    handle,
                    cookie,
                    limit,
                })
                .boxed(),
        ),
        (1, user().prop_map(|user| Op::Statfs { user }).boxed()),
        (
            3,
            (user(), target(), xattr_name(), buf_len())
                .prop_map(|(user, target, name, buf_len)| Op::Getxattr {
                    user,
                    target,
                    name,
                    buf_len,
                })
                .boxed(),
        ),
        (
            4,
            (user(), target(), xattr_name(), xattr_value(), xattr_mode)
                .prop_map(|(user, target, name, value, mode)| Op::Setxattr {
                    user,
                    target,
                    name,
                    value,
                    mode,
                })
                .boxed(),
        ),
        (
            2,
            (user(), target(), buf_len())
                .prop_map(|(user, target, buf_len)| Op::Listxattr {
                    user,
                    target,
                    buf_len,
                })
                .boxed(),
        ),
        (
            2,
            (user(), target(), xattr_name())
                .prop_map(|(user, target, name)| Op::Removexattr { user, target, name })
                .boxed(),
        ),
        (
            2,
            (user(), target(), mask)
                .prop_map(|(user, target, mask)| Op::Access { user, target, mask })
                .boxed(),
        ),
        (
            1,
            (user(), handle(), any::<bool>())
                .prop_map(|(user, handle, datasync)| Op::Fsync {
                    user,
                    handle,
                    datasync,
                })
                .boxed(),
        ),
        (1, sleep.prop_map(|secs| Op::Sleep { secs }).boxed()),
    ];
    Union::new_weighted(arms)
}

/// Operations that build a tree: directories, files with data, a few links and attributes.
pub fn prefill_strategy() -> impl Strategy<Value = Op> {
    let builder = weighted(vec![(4, User(0)), (2, User(1)), (1, User(2)), (1, User(3))]);
    let dir_mode = weighted(
        [0o755, 0o777, 0o1777, 0o2775, 0o700]
            .into_iter()
            .map(|m| (1, Mode(m)))
            .collect(),
    );
    let file_mode = weighted(
        [0o644, 0o666, 0o600, 0o2755, 0o4755]
            .into_iter()
            .map(|m| (1, Mode(m)))
            .collect(),
    );
    let arms: Vec<(u32, BoxedStrategy<Op>)> = vec![
        (
            3,
            (builder.clone(), parent(), plain_name(), dir_mode)
                .prop_map(|(user, parent, name, mode)| Op::Mkdir {
                    user,
                    parent,
                    name,
                    mode,
                })
                .boxed(),
        ),
        (
            4,
            (builder.clone(), parent(), plain_name(), file_mode)
                .prop_map(|(user, parent, name, mode)| Op::Create {
                    user,
                    parent,
                    name,
                    mode,
                    flags: Flags(OpenFlags::READ_WRITE),
                })
                .boxed(),
        ),
        (
            4,
            (builder.clone(), handle(), around_blocks(30_000), data())
                .prop_map(|(user, handle, offset, data)| Op::Write {
                    user,
                    handle,
                    offset,
                    data,
                })
                .boxed(),
        ),
        (
            1,
            (builder.clone(), parent(), plain_name(), symlink_target())
                .prop_map(|(user, parent, name, link)| Op::Symlink {
                    user,
                    parent,
                    name,
                    link,
                })
                .boxed(),
        ),
        (
            1,
            (builder.clone(), target(), parent(), plain_name())
                .prop_map(|(user, target, new_parent, new_name)| Op::Link {
                    user,
                    target,
                    new_parent,
                    new_name,
                })
                .boxed(),
        ),
        (
            1,
            (builder, target(), xattr_name(), xattr_value())
                .prop_map(|(user, target, name, value)| Op::Setxattr {
                    user,
                    target,
                    name,
                    value,
                    mode: XattrMode::Set,
                })
                .boxed(),
        ),
    ];
    Union::new_weighted(arms)
}

/// Up to 8 tree-building operations followed by `len` arbitrary ones.
pub fn ops_strategy(len: Range<usize>) -> impl Strategy<Value = Vec<Op>> {
    (
        prop::collection::vec(prefill_strategy(), 0..8),
        prop::collection::vec(op_strategy(), len),
    )
        .prop_map(|(mut ops, more)| {
            ops.extend(more);
            ops
        })
}

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

/// A handle number no filesystem hands out in a test: stands for "never opened".
const BOGUS_FH: Fh = Fh(u64::MAX);
/// Content of files up to this size is compared whole; beyond it, per data segment.
const WHOLE_FILE_LIMIT: u64 = 1 << 20;
/// How much of one data segment of a large file is compared.
const SEGMENT_READ: u64 = 64 << 10;

/// Which of the two filesystems.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// One handle opened by the same step on both sides.
struct OpenPair {
    a: Fh,
    b: Fh,
    ino: Ino,
}

impl OpenPair {
    fn get(&self, side: Side) -> Fh {
        match side {
            Side::A => self.a,
            Side::B => self.b,
        }
    }
}

/// One entry as `readdir` gave it.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Listed {
    ino: u64,
    cookie: u64,
    kind: FileType,
    name: Bytes,
}

/// What one call returned, in a form the two sides can be compared by.
#[derive(Clone, PartialEq, Eq, Debug)]
enum Outcome {
    Done,
    Attr(AttrView),
    /// A handle was opened on this inode (`open`), or created with these attributes.
    Opened(Ino),
    Created(AttrView),
    /// `read`, `getxattr`, `listxattr`: the count and the bytes of the buffer it covers.
    Count(usize, Bytes),
    Written(usize, u64),
    Offset(u64),
    Target(Bytes),
    Entries(Vec<Listed>),
    StatFs(StatFs),
    /// `SEEK_DATA`/`SEEK_HOLE` pairs from the start of a file, and the error that ended them.
    Segments(Vec<(u64, u64)>, Option<Errno>),
    Failed(Errno),
    /// The operation's target path did not resolve.
    Unresolved(Errno),
}

/// [`Attr`] with a compact `Debug`: permissions in octal, times as `secs.nanos`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct AttrView(Attr);

impl fmt::Debug for AttrView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.0;
        let time = |t: Timestamp| format!("{}.{:09}", t.secs, t.nanos);
        write!(
            f,
            "{{ino {} {:?} 0o{:o} nlink {} uid {} gid {} rdev {:#x} size {} blocks {} blksize {} \
             atime {} mtime {} ctime {}}}",
            a.ino.0,
            a.kind,
            a.perm,
            a.nlink,
            a.uid,
            a.gid,
            a.rdev,
            a.size,
            a.blocks,
            a.blksize,
            time(a.atime),
            time(a.mtime),
            time(a.ctime),
        )
    }
}

fn attr_outcome(attr: Attr) -> Outcome {
    Outcome::Attr(AttrView(attr))
}

fn settle(result: btfuse_core::Result<Outcome>) -> Outcome {
    result.unwrap_or_else(Outcome::Failed)
}

/// Walks `target` from the root with `find` as root.
fn resolve(fs: &dyn Filesystem, target: &Target) -> btfuse_core::Result<Ino> {
    match target {
        Target::Ino(ino) => Ok(Ino(*ino)),
        Target::Path(names) => {
            let root = Credentials::root();
            let mut ino = Ino::ROOT;
            for name in names {
                ino = fs.find(&root, ino, &name.0)?.ino;
            }
            Ok(ino)
        }
    }
}

fn slot_index(handles: &[OpenPair], slot: HandleSlot) -> Option<usize> {
    if handles.is_empty() || slot.0 >= HandleSlot::BOGUS {
        return None;
    }
    Some(usize::from(slot.0) % handles.len())
}

fn collect_entries(
    fs: &dyn Filesystem,
    cred: &Credentials,
    fh: Fh,
    cookie: u64,
    limit: Option<usize>,
) -> btfuse_core::Result<Vec<Listed>> {
    let mut listed = Vec::new();
    fs.readdir(cred, fh, cookie, &mut |entry: DirEntry<'_>| {
        listed.push(Listed {
            ino: entry.ino.0,
            cookie: entry.cookie,
            kind: entry.kind,
            name: Bytes::of(entry.name),
        });
        limit.is_none_or(|limit| listed.len() < limit)
    })?;
    Ok(listed)
}

/// Applies `op` to one side; returns what happened and the handle it opened, if any.
fn apply(fs: &dyn Filesystem, side: Side, handles: &[OpenPair], op: &Op) -> (Outcome, Option<Fh>) {
    let fh =
        |slot: HandleSlot| slot_index(handles, slot).map_or(BOGUS_FH, |i| handles[i].get(side));
    macro_rules! resolved {
        ($target:expr) => {
            match resolve(fs, $target) {
                Ok(ino) => ino,
                Err(e) => return (Outcome::Unresolved(e), None),
            }
        };
    }
    let outcome = match op {
        Op::Lookup { user, parent, name } => {
            let parent = resolved!(parent);
            settle(
                fs.lookup(&user.credentials(), parent, &name.0)
                    .map(attr_outcome),
            )
        }
        Op::Forget { target, nlookup } => {
            fs.forget(resolved!(target), *nlookup);
            Outcome::Done
        }
        Op::Getattr { user, target } => settle(
            fs.getattr(&user.credentials(), resolved!(target))
                .map(attr_outcome),
        ),
        Op::Setattr {
            user,
            target,
            change,
            handle,
        } => {
            let ino = resolved!(target);
            let fh = handle
                .and_then(|slot| slot_index(handles, slot))
                .filter(|&i| handles[i].ino == ino)
                .map(|i| handles[i].get(side));
            let set = change.to_set_attr();
            settle(
                fs.setattr(&user.credentials(), ino, &set, fh)
                    .map(attr_outcome),
            )
        }
        Op::Mknod {
            user,
            parent,
            name,
            kind,
            mode,
            rdev,
        } => {
            let parent = resolved!(parent);
            let result = fs.mknod(&user.credentials(), parent, &name.0, *kind, mode.0, *rdev);
            settle(result.map(attr_outcome))
        }
        Op::Mkdir {
            user,
            parent,
            name,
            mode,
        } => {
            let parent = resolved!(parent);
            settle(
                fs.mkdir(&user.credentials(), parent, &name.0, mode.0)
                    .map(attr_outcome),
            )
        }
        Op::Create {
            user,
            parent,
            name,
            mode,
            flags,
        } => {
            let parent = resolved!(parent);
            match fs.create(&user.credentials(), parent, &name.0, mode.0, flags.0) {
                Ok((attr, fh)) => return (Outcome::Created(AttrView(attr)), Some(fh)),
                Err(e) => Outcome::Failed(e),
            }
        }
        Op::Unlink { user, parent, name } => {
            let parent = resolved!(parent);
            settle(
                fs.unlink(&user.credentials(), parent, &name.0)
                    .map(|()| Outcome::Done),
            )
        }
        Op::Rmdir { user, parent, name } => {
            let parent = resolved!(parent);
            settle(
                fs.rmdir(&user.credentials(), parent, &name.0)
                    .map(|()| Outcome::Done),
            )
        }
        Op::Rename {
            user,
            parent,
            name,
            new_parent,
            new_name,
            mode,
        } => {
            let (parent, new_parent) = (resolved!(parent), resolved!(new_parent));
            let cred = user.credentials();
            let result = fs.rename(&cred, parent, &name.0, new_parent, &new_name.0, *mode);
            settle(result.map(|()| Outcome::Done))
        }
        Op::Link {
            user,
            target,
            new_parent,
            new_name,
        } => {
            let (ino, new_parent) = (resolved!(target), resolved!(new_parent));
            let result = fs.link(&user.credentials(), ino, new_parent, &new_name.0);
            settle(result.map(attr_outcome))
        }
        Op::Symlink {
            user,
            parent,
            name,
            link,
        } => {
            let parent = resolved!(parent);
            settle(
                fs.symlink(&user.credentials(), parent, &name.0, &link.0)
                    .map(attr_outcome),
            )
        }
        Op::Readlink { user, target } => {
            let ino = resolved!(target);
            settle(
                fs.readlink(&user.credentials(), ino)
                    .map(|t| Outcome::Target(Bytes(t))),
            )
        }
        Op::Open {
            user,
            target,
            flags,
        } => {
            let ino = resolved!(target);
            match fs.open(&user.credentials(), ino, flags.0) {
                Ok(fh) => return (Outcome::Opened(ino), Some(fh)),
                Err(e) => Outcome::Failed(e),
            }
        }
        Op::Release { handle } => settle(fs.release(fh(*handle)).map(|()| Outcome::Done)),
        Op::Read {
            user,
            handle,
            offset,
            len,
        } => {
            let mut buf = vec![0; *len];
            settle(
                fs.read(&user.credentials(), fh(*handle), *offset, &mut buf)
                    .map(|n| Outcome::Count(n, Bytes::of(&buf[..n.min(buf.len())]))),
            )
        }
        Op::Write {
            user,
            handle,
            offset,
            data,
        } => {
            let result = fs.write(&user.credentials(), fh(*handle), *offset, &data.bytes());
            settle(result.map(|(n, end)| Outcome::Written(n, end)))
        }
        Op::Fallocate {
            user,
            handle,
            mode,
            offset,
            len,
        } => {
            let result = fs.fallocate(&user.credentials(), fh(*handle), *mode, *offset, *len);
            settle(result.map(|()| Outcome::Done))
        }
        Op::Lseek {
            user,
            handle,
            offset,
            whence,
        } => {
            let result = fs.lseek(&user.credentials(), fh(*handle), *offset, *whence);
            settle(result.map(Outcome::Offset))
        }
        Op::Readdir {
            user,
            handle,
            cookie,
            limit,
        } => {
            let result = collect_entries(fs, &user.credentials(), fh(*handle), *cookie, *limit);
            settle(result.map(Outcome::Entries))
        }
        Op::Statfs { user } => settle(fs.statfs(&user.credentials()).map(Outcome::StatFs)),
        Op::Getxattr {
            user,
            target,
            name,
            buf_len,
        } => {
            let ino = resolved!(target);
            let mut buf = vec![0; *buf_len];
            settle(
                fs.getxattr(&user.credentials(), ino, &name.0, &mut buf)
                    .map(|n| Outcome::Count(n, Bytes::of(&buf[..n.min(buf.len())]))),
            )
        }
        Op::Setxattr {
            user,
            target,
            name,
            value,
            mode,
        } => {
            let ino = resolved!(target);
            let result = fs.setxattr(&user.credentials(), ino, &name.0, &value.bytes(), *mode);
            settle(result.map(|()| Outcome::Done))
        }
        Op::Listxattr {
            user,
            target,
            buf_len,
        } => {
            let ino = resolved!(target);
            let mut buf = vec![0; *buf_len];
            settle(
                fs.listxattr(&user.credentials(), ino, &mut buf)
                    .map(|n| Outcome::Count(n, Bytes::of(&buf[..n.min(buf.len())]))),
            )
        }
        Op::Removexattr { user, target, name } => {
            let ino = resolved!(target);
            settle(
                fs.removexattr(&user.credentials(), ino, &name.0)
                    .map(|()| Outcome::Done),
            )
        }
        Op::Access { user, target, mask } => {
            let ino = resolved!(target);
            settle(
                fs.access(&user.credentials(), ino, mask.0)
                    .map(|()| Outcome::Done),
            )
        }
        Op::Fsync {
            user,
            handle,
            datasync,
        } => {
            let result = fs.fsync(&user.credentials(), fh(*handle), *datasync);
            settle(result.map(|()| Outcome::Done))
        }
        Op::Sleep { .. } => Outcome::Done,
    };
    (outcome, None)
}

/// Where two outcomes carrying bytes first differ, to point at it in a report.
fn byte_difference(a: &Outcome, b: &Outcome) -> String {
    let (Outcome::Count(_, x), Outcome::Count(_, y)) = (a, b) else {
        return String::new();
    };
    match x.0.iter().zip(&y.0).position(|(p, q)| p != q) {
        Some(i) => format!(
            "\n  first differing byte at {i}: a {:#04x}, b {:#04x}",
            x.0[i], y.0[i]
        ),
        None => String::new(),
    }
}

/// Everything observable about a tree, as (what, outcome) facts in a fixed walk order.
fn snapshot(fs: &dyn Filesystem) -> Vec<(String, Outcome)> {
    let root = Credentials::root();
    let mut facts = vec![(
        "statfs".to_string(),
        settle(fs.statfs(&root).map(Outcome::StatFs)),
    )];
    let mut seen = BTreeSet::new();
    visit(fs, Ino::ROOT, "/".to_string(), &mut seen, &mut facts);
    facts
}

fn visit(
    fs: &dyn Filesystem,
    ino: Ino,
    path: String,
    seen: &mut BTreeSet<Ino>,
    facts: &mut Vec<(String, Outcome)>,
) {
    let root = Credentials::root();
    // Attributes first: reading content below may move atime.
    let attr = match fs.getattr(&root, ino) {
        Ok(attr) => attr,
        Err(e) => return facts.push((format!("{path} getattr"), Outcome::Failed(e))),
    };
    facts.push((format!("{path} getattr"), attr_outcome(attr)));
    if !seen.insert(ino) {
        return; // Another name of an inode already walked.
    }
    xattr_facts(fs, ino, &path, facts);
    match attr.kind {
        FileType::Directory => {
            let dir = OpenFlags {
                directory: true,
                ..OpenFlags::READ
            };
            let listing = fs.open(&root, ino, dir).and_then(|fh| {
                let listing = collect_entries(fs, &root, fh, 0, None);
                fs.release(fh)?;
                listing
            });
            facts.push((
                format!("{path} readdir"),
                settle(listing.clone().map(Outcome::Entries)),
            ));
            for entry in listing.unwrap_or_default() {
                if entry.name.0 == b"." || entry.name.0 == b".." {
                    continue;
                }
                let name = String::from_utf8_lossy(&entry.name.0);
                let child = if path == "/" {
                    format!("/{name}")
                } else {
                    format!("{path}/{name}")
                };
                visit(fs, Ino(entry.ino), child, seen, facts);
            }
        }
        FileType::RegularFile => match fs.open(&root, ino, OpenFlags::READ) {
            Ok(fh) => {
                file_facts(fs, fh, attr.size, &path, facts);
                let released = settle(fs.release(fh).map(|()| Outcome::Done));
                facts.push((format!("{path} release"), released));
            }
            Err(e) => facts.push((format!("{path} open"), Outcome::Failed(e))),
        },
        FileType::Symlink => {
            let target = fs.readlink(&root, ino).map(|t| Outcome::Target(Bytes(t)));
            facts.push((format!("{path} readlink"), settle(target)));
        }
        _ => {}
    }
}

fn xattr_facts(fs: &dyn Filesystem, ino: Ino, path: &str, facts: &mut Vec<(String, Outcome)>) {
    let root = Credentials::root();
    let names = fs.listxattr(&root, ino, &mut []).and_then(|len| {
        let mut buf = vec![0; len];
        let n = fs.listxattr(&root, ino, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    });
    let Ok(names) = names else {
        return facts.push((
            format!("{path} listxattr"),
            settle(names.map(|_| Outcome::Done)),
        ));
    };
    facts.push((
        format!("{path} listxattr"),
        Outcome::Count(names.len(), Bytes(names.clone())),
    ));
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut buf = vec![0; 65_536];
        let value = fs.getxattr(&root, ino, name, &mut buf).map(|n| {
            buf.truncate(n);
            Outcome::Count(n, Bytes(buf))
        });
        let name = String::from_utf8_lossy(name);
        facts.push((format!("{path} getxattr {name}"), settle(value)));
    }
}

/// The `SEEK_DATA`/`SEEK_HOLE` map and the content of a regular file open on `fh`.
fn file_facts(
    fs: &dyn Filesystem,
    fh: Fh,
    size: u64,
    path: &str,
    facts: &mut Vec<(String, Outcome)>,
) {
    let root = Credentials::root();
    let mut segments = Vec::new();
    let mut end_error = None;
    let mut pos = 0;
    // The bound only stops a runaway walk over a broken map.
    while pos < size && segments.len() < 4096 {
        let data = match fs.lseek(&root, fh, pos, SeekWhence::Data) {
            Ok(data) => data,
            Err(e) => {
                end_error = Some(e);
                break;
            }
        };
        match fs.lseek(&root, fh, data, SeekWhence::Hole) {
            Ok(hole) => {
                segments.push((data, hole));
                if hole <= pos {
                    break;
                }
                pos = hole;
            }
            Err(e) => {
                segments.push((data, u64::MAX));
                end_error = Some(e);
                break;
            }
        }
    }
    let mut reads = Vec::new();
    if size <= WHOLE_FILE_LIMIT {
        reads.push((0, size));
    } else {
        reads.push((0, SEGMENT_READ));
        for &(data, hole) in &segments {
            reads.push((data, hole.saturating_sub(data).min(SEGMENT_READ)));
        }
    }
    facts.push((
        format!("{path} seek map"),
        Outcome::Segments(segments, end_error),
    ));
    for (offset, len) in reads {
        let mut buf = vec![0; len as usize];
        let result = fs.read(&root, fh, offset, &mut buf).map(|n| {
            buf.truncate(n);
            Outcome::Count(n, Bytes(buf))
        });
        facts.push((format!("{path} read {offset}+{len}"), settle(result)));
    }
}

/// Compares the trees of `a` and `b`; `when` says at which point, for the report.
fn compare_trees(a: &dyn Filesystem, b: &dyn Filesystem, when: &str) -> Result<(), String> {
    let (facts_a, facts_b) = (snapshot(a), snapshot(b));
    for i in 0..facts_a.len().max(facts_b.len()) {
        match (facts_a.get(i), facts_b.get(i)) {
            (Some(x), Some(y)) if x == y => continue,
            (x, y) => {
                let detail = match (x, y) {
                    (Some((_, p)), Some((_, q))) => byte_difference(p, q),
                    _ => String::new(),
                };
                return Err(format!(
                    "{when}: the trees differ\n  a: {x:?}\n  b: {y:?}{detail}"
                ));
            }
        }
    }
    Ok(())
}

/// Applies `ops` to `a` and `b` in lockstep and compares them after every step.
///
/// Before each step the clock advances by 1 ns ([`Op::Sleep`] adds its own jump). Each result
/// must be identical on both sides: attributes field by field (inode numbers included), errors,
/// bytes, directory listings with their cookies, xattr values. After each step the whole tree is
/// walked on both sides as root (statfs, then depth-first by `readdir`: attributes, xattrs,
/// listings, the `SEEK_DATA`/`SEEK_HOLE` map and content of files, symlink targets) and the
/// walks must agree; the walk's reads move atimes, equally on both sides. At the end every
/// handle still open is released, every lookup forgotten, and the trees compared once more.
///
/// # Errors
///
/// A report naming the step, the operation and both sides' results, at the first difference.
pub fn run_pair(
    a: &dyn Filesystem,
    b: &dyn Filesystem,
    clock: &ManualClock,
    ops: &[Op],
) -> Result<(), String> {
    let mut handles: Vec<OpenPair> = Vec::new();
    compare_trees(a, b, "before the first step")?;
    for (step, op) in ops.iter().enumerate() {
        clock.tick();
        if let Op::Sleep { secs } = op {
            clock.advance(i64::from(*secs) * 1_000_000_000);
        }
        let (out_a, fh_a) = apply(a, Side::A, &handles, op);
        let (out_b, fh_b) = apply(b, Side::B, &handles, op);
        let at = format!("step {step} of {}: {op:?}", ops.len());
        if out_a != out_b {
            let detail = byte_difference(&out_a, &out_b);
            return Err(format!("{at}\n  a: {out_a:?}\n  b: {out_b:?}{detail}"));
        }
        match (fh_a, fh_b, &out_a) {
            (Some(fa), Some(fb), Outcome::Created(AttrView(attr))) => {
                handles.push(OpenPair {
                    a: fa,
                    b: fb,
                    ino: attr.ino,
                });
            }
            (Some(fa), Some(fb), Outcome::Opened(ino)) => {
                handles.push(OpenPair {
                    a: fa,
                    b: fb,
                    ino: *ino,
                });
            }
            _ => {}
        }
        if let (Op::Release { handle }, Outcome::Done) = (op, &out_a)
            && let Some(i) = slot_index(&handles, *handle)
        {
            handles.remove(i);
        }
        compare_trees(a, b, &format!("after {at}"))?;
    }
    clock.tick();
    for (i, pair) in handles.iter().enumerate() {
        let (ra, rb) = (a.release(pair.a), b.release(pair.b));
        if ra != rb {
            return Err(format!(
                "releasing handle {i} at the end\n  a: {ra:?}\n  b: {rb:?}"
            ));
        }
    }
    // Inode numbers are never reused and each step creates at most one inode, so every inode
    // ever made is at most the root's 1 plus the number of steps.
    for ino in 2..=ops.len() as u64 + 1 {
        a.forget(Ino(ino), u64::MAX);
        b.forget(Ino(ino), u64::MAX);
    }
    compare_trees(
        a,
        b,
        "after releasing every handle and forgetting every lookup",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use btfuse_core::{Clock, Config};
    use std::sync::Arc;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// The driver itself is deterministic: two models agree on any sequence.
        #[test]
        fn two_models_agree(ops in ops_strategy(1..80)) {
            let clock = Arc::new(ManualClock::new());
            let config = Config { max_inodes: 12, ..Config::default() };
            let a = Model::new(config.clone(), 4096, 64, clock.clone() as Arc<dyn Clock>);
            let b = Model::new(config, 4096, 64, clock.clone() as Arc<dyn Clock>);
            run_pair(&a, &b, &clock, &ops).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn long_names_print_abbreviated() {
        assert_eq!(
            format!("{:?}", Bytes::repeated(b"user.", b'n', 12)),
            "b\"user.nnnnnnn\""
        );
        assert_eq!(
            format!("{:?}", Bytes::repeated(b"", b'x', 256)),
            "b\"{x×256}\""
        );
        assert_eq!(
            format!("{:?}", Target::Path(vec![Bytes::of(b"a"), Bytes::of(b"b")])),
            "/a/b"
        );
    }
}
