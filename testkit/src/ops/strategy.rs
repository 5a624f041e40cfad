//! The proptest strategies that draw [`Op`]s: every argument from a small domain, so that
//! operations meet (the same few names, offsets around block boundaries, four users).

use btfuse_core::{
    AccessMask, FallocateMode, FileType, MAX_FILE_SIZE, OpenFlags, RenameMode, SeekWhence, TimeSet,
    Timestamp, XattrMode,
};
use proptest::prelude::*;
use proptest::strategy::Union;
use std::fmt;
use std::ops::Range;

use super::{AttrChange, Bytes, Data, Flags, HandleSlot, Mask, Mode, Op, Target, User};

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
                // Only the kernel opens a file to run it; the model knows no execution.
                exec: false,
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
