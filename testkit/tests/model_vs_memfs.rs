//! Guards `MemFs` against the reference model of `btfuse_testkit::model`.
//!
//! `memfs_matches_model` draws random operation sequences (a tree-building prefix, then up to
//! 120 arbitrary calls by four different users) and runs them on a fresh `MemFs` and a fresh
//! `Model` in lockstep with `run_pair`: every answer must be identical and so must the whole tree
//! after every step. Setups vary the store (64 blocks, so `ENOSPC` paths run, or 4096), the inode
//! budget (12 or the default), the xattr budget, the atime policy, protected hard links and the
//! root directory. `BTFUSE_PROPTEST_CASES` sets the number of cases (default 256).
//!
//! The plain tests below pin the model itself to known Linux behaviours, so that agreement with
//! it means something.

use btfuse_core::{
    AccessMask, AtimePolicy, Config, Credentials, Errno, FallocateMode, FileType, Filesystem, Ino,
    MAX_FILE_SIZE, MemFs, MemPool, OpenFlags, RenameMode, SeekWhence, SetAttr, TimeSet, Timestamp,
    XattrMode,
};
use btfuse_testkit::clock::ManualClock;
use btfuse_testkit::model::Model;
use btfuse_testkit::ops::{
    AttrChange, Bytes, Data, Flags, HandleSlot, Mode, Op, Target, User, ops_strategy, run_pair,
};
use proptest::prelude::*;
use std::sync::Arc;

const BLOCK: usize = 4096;

/// The filesystem-wide parameters of one case.
#[derive(Clone, Debug)]
struct Setup {
    capacity_blocks: u64,
    max_inodes: u64,
    max_xattr_bytes: usize,
    atime: Atime,
    protected_hardlinks: bool,
    root_perm: Mode,
    root_owner: u32,
}

impl Setup {
    fn config(&self) -> Config {
        Config {
            max_inodes: self.max_inodes,
            max_xattr_bytes: self.max_xattr_bytes,
            atime: match self.atime {
                Atime::Relatime => AtimePolicy::Relatime,
                Atime::Strict => AtimePolicy::Strict,
                Atime::Never => AtimePolicy::Never,
            },
            protected_hardlinks: self.protected_hardlinks,
            root_perm: self.root_perm.0,
            root_uid: self.root_owner,
            root_gid: self.root_owner,
        }
    }
}

/// [`AtimePolicy`], as a plain copyable value for the strategy.
#[derive(Clone, Copy, Debug)]
enum Atime {
    Relatime,
    Strict,
    Never,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![Just(64u64), Just(4096)],
        prop_oneof![Just(12u64), Just(1 << 24)],
        prop_oneof![1 => Just(64usize), 3 => Just(65_536)],
        prop_oneof![
            3 => Just(Atime::Relatime),
            1 => Just(Atime::Strict),
            1 => Just(Atime::Never),
        ],
        prop::bool::weighted(0.8),
        prop_oneof![
            Just(Mode(0o755)),
            Just(Mode(0o777)),
            Just(Mode(0o1777)),
            Just(Mode(0o2775))
        ],
        prop_oneof![3 => Just(0u32), 1 => Just(1000)],
    )
        .prop_map(
            |(
                capacity_blocks,
                max_inodes,
                max_xattr_bytes,
                atime,
                protected_hardlinks,
                root_perm,
                root_owner,
            )| Setup {
                capacity_blocks,
                max_inodes,
                max_xattr_bytes,
                atime,
                protected_hardlinks,
                root_perm,
                root_owner,
            },
        )
}

fn cases() -> u32 {
    std::env::var("BTFUSE_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Sequences are long: shrink well even when few cases run.
        max_shrink_iters: cases().saturating_mul(4).max(4096),
        ..ProptestConfig::default()
    })]

    #[test]
    fn memfs_matches_model(setup in setup(), ops in ops_strategy(1..120)) {
        let clock = Arc::new(ManualClock::new());
        let store = MemPool::with_block_size(setup.capacity_blocks * BLOCK as u64, BLOCK)
            .expect("a valid block size");
        let memfs = MemFs::new(store, setup.config(), clock.clone());
        let model = Model::new(setup.config(), BLOCK, setup.capacity_blocks, clock.clone());
        run_pair(&memfs, &model, &clock, &ops).map_err(TestCaseError::fail)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Seed corpus: every divergence the property test has found, shrunk, kept as a named case.
// ---------------------------------------------------------------------------------------------

fn bytes(s: &str) -> Bytes {
    Bytes(s.as_bytes().to_vec())
}

fn at(names: &[&str]) -> Target {
    Target::Path(names.iter().map(|n| bytes(n)).collect())
}

const ROOT: User = User(0);
const ALICE: User = User(1);
const CAROL: User = User(3);
const H0: HandleSlot = HandleSlot(0);

fn create(name: &str, mode: u32) -> Op {
    Op::Create {
        user: ROOT,
        parent: at(&[]),
        name: bytes(name),
        mode: Mode(mode),
        flags: Flags(OpenFlags::READ_WRITE),
    }
}

fn write(user: User, offset: u64, data: &[u8]) -> Op {
    Op::Write {
        user,
        handle: H0,
        offset,
        data: Data {
            pattern: data.to_vec(),
            len: data.len(),
        },
    }
}

fn setattr(target: Target, change: AttrChange) -> Op {
    Op::Setattr {
        user: ROOT,
        target,
        change,
        handle: None,
    }
}

fn mkdir(user: User, parent: Target, name: &str) -> Op {
    Op::Mkdir {
        user,
        parent,
        name: bytes(name),
        mode: Mode(0o755),
    }
}

fn rmdir(name: &str) -> Op {
    Op::Rmdir {
        user: ROOT,
        parent: at(&[]),
        name: bytes(name),
    }
}

/// Each case, its operations, and what Linux (and the page) expect of it.
fn seed_corpus() -> Vec<(&'static str, Vec<Op>)> {
    vec![
        (
            "mkdir keeps only 0o1777 of the requested mode (Linux vfs_mkdir)",
            vec![Op::Mkdir {
                user: ROOT,
                parent: at(&[]),
                name: bytes("a"),
                mode: Mode(0o6755),
            }],
        ),
        (
            "setxattr: a value over 64 KiB is E2BIG before the namespace is looked at",
            vec![Op::Setxattr {
                user: ROOT,
                target: at(&[]),
                name: bytes("other.o"),
                value: Data {
                    pattern: vec![0],
                    len: 65_537,
                },
                mode: XattrMode::Set,
            }],
        ),
        (
            "a write ending past MAX_FILE_SIZE is EFBIG",
            vec![create("a", 0o644), write(ROOT, MAX_FILE_SIZE - 1, b"xy")],
        ),
        (
            "setattr to the size the file already has changes nothing",
            vec![
                create("a", 0o6755),
                setattr(
                    at(&["a"]),
                    AttrChange {
                        size: Some(0),
                        ..AttrChange::default()
                    },
                ),
            ],
        ),
        (
            "rename checks search(P1) before dir(P2)",
            vec![
                Op::Symlink {
                    user: ROOT,
                    parent: at(&[]),
                    name: bytes("a"),
                    link: bytes("x"),
                },
                setattr(
                    at(&[]),
                    AttrChange {
                        mode: Some(Mode(0o700)),
                        ..AttrChange::default()
                    },
                ),
                Op::Rename {
                    user: ALICE,
                    parent: at(&[]),
                    name: bytes("a"),
                    new_parent: at(&["a"]),
                    new_name: bytes("b"),
                    mode: RenameMode::Replace,
                },
            ],
        ),
        (
            "punching from a block's start to inside the same block zeroes the range",
            vec![
                create("a", 0o644),
                write(ROOT, 0, b"xy"),
                Op::Fallocate {
                    user: ROOT,
                    handle: H0,
                    mode: FallocateMode::PunchHole,
                    offset: 0,
                    len: 1,
                },
            ],
        ),
        (
            "renaming into a removed directory is ENOENT",
            vec![
                mkdir(ROOT, at(&[]), "d"),
                rmdir("d"),
                Op::Mknod {
                    user: ROOT,
                    parent: at(&[]),
                    name: bytes("f"),
                    kind: FileType::NamedPipe,
                    mode: Mode(0o644),
                    rdev: 0,
                },
                Op::Rename {
                    user: ROOT,
                    parent: at(&[]),
                    name: bytes("f"),
                    new_parent: Target::Ino(2),
                    new_name: bytes("f"),
                    mode: RenameMode::Replace,
                },
            ],
        ),
        (
            "creating in a removed directory is ENOENT, before permission checks",
            vec![
                mkdir(ROOT, at(&[]), "d"),
                rmdir("d"),
                mkdir(ALICE, Target::Ino(2), "x"),
            ],
        ),
        (
            "a write by a non-member clears set-group-ID even without group-execute",
            vec![create("a", 0o2666), write(CAROL, 0, b"x")],
        ),
        (
            "chown(f, -1, -1) by a non-owner that would clear set-user-ID is EPERM",
            vec![
                create("a", 0o4755),
                Op::Setattr {
                    user: ALICE,
                    target: at(&["a"]),
                    change: AttrChange {
                        kill_setid: true,
                        ..AttrChange::default()
                    },
                    handle: None,
                },
            ],
        ),
        (
            "chown(f, -1, -1) by a non-owner with no set-ID bit to clear moves ctime",
            vec![
                create("a", 0o755),
                Op::Setattr {
                    user: ALICE,
                    target: at(&["a"]),
                    change: AttrChange {
                        kill_setid: true,
                        ..AttrChange::default()
                    },
                    handle: None,
                },
            ],
        ),
        (
            "relatime counts a day in whole seconds",
            vec![
                setattr(
                    at(&[]),
                    AttrChange {
                        atime: TimeSet::At(Timestamp {
                            secs: 1,
                            nanos: 999_999_999,
                        }),
                        ..AttrChange::default()
                    },
                ),
                Op::Sleep { secs: 86_400 },
            ],
        ),
        (
            "readlink moves atime like a read; a read into an empty buffer does not",
            vec![
                Op::Symlink {
                    user: ROOT,
                    parent: at(&[]),
                    name: bytes("s"),
                    link: bytes("x"),
                },
                create("a", 0o644),
                Op::Read {
                    user: ROOT,
                    handle: H0,
                    offset: 0,
                    len: 0,
                },
            ],
        ),
    ]
}

#[test]
fn seed_corpus_agrees() {
    let setup = Setup {
        capacity_blocks: 64,
        max_inodes: 1 << 24,
        max_xattr_bytes: 65_536,
        atime: Atime::Relatime,
        protected_hardlinks: true,
        root_perm: Mode(0o777),
        root_owner: 0,
    };
    let mut failures = Vec::new();
    for (what, ops) in seed_corpus() {
        let clock = Arc::new(ManualClock::new());
        let store = MemPool::with_block_size(setup.capacity_blocks * BLOCK as u64, BLOCK)
            .expect("a valid block size");
        let memfs = MemFs::new(store, setup.config(), clock.clone());
        let model = Model::new(setup.config(), BLOCK, setup.capacity_blocks, clock.clone());
        if let Err(report) = run_pair(&memfs, &model, &clock, &ops) {
            failures.push(format!("{what}:\n{report}"));
        }
    }
    assert!(
        failures.is_empty(),
        "a = MemFs, b = model\n\n{}",
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The model alone, against known Linux behaviour.
// ---------------------------------------------------------------------------------------------

fn model_with(config: Config, capacity_blocks: u64) -> (Model, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    (
        Model::new(config, BLOCK, capacity_blocks, clock.clone()),
        clock,
    )
}

fn model() -> (Model, Arc<ManualClock>) {
    model_with(
        Config {
            root_perm: 0o777,
            ..Config::default()
        },
        64,
    )
}

fn root() -> Credentials {
    Credentials::root()
}

#[test]
fn rename_of_a_directory_into_its_own_subtree_is_einval() {
    let (fs, _) = model();
    let a = fs.mkdir(&root(), Ino::ROOT, b"a", 0o755).unwrap().ino;
    let b = fs.mkdir(&root(), a, b"b", 0o755).unwrap().ino;
    assert_eq!(
        fs.rename(&root(), Ino::ROOT, b"a", b, b"x", RenameMode::Replace),
        Err(Errno::InvalidArgument)
    );
    assert_eq!(
        fs.rename(&root(), Ino::ROOT, b"a", a, b"x", RenameMode::Replace),
        Err(Errno::InvalidArgument)
    );
    // The other way round, the target is an ancestor of the source's parent: not empty.
    assert_eq!(
        fs.rename(&root(), a, b"b", Ino::ROOT, b"a", RenameMode::Replace),
        Err(Errno::NotEmpty)
    );
    assert_eq!(
        fs.rename(&root(), a, b"b", Ino::ROOT, b"a", RenameMode::Exchange),
        Err(Errno::InvalidArgument)
    );
    // Moving it elsewhere works and keeps nlinks right.
    fs.mkdir(&root(), Ino::ROOT, b"c", 0o755).unwrap();
    fs.rename(&root(), a, b"b", Ino::ROOT, b"b", RenameMode::NoReplace)
        .unwrap();
    assert_eq!(fs.getattr(&root(), a).unwrap().nlink, 2);
    assert_eq!(fs.getattr(&root(), Ino::ROOT).unwrap().nlink, 5);
}

#[test]
fn sticky_directory_protects_other_users_entries() {
    let (fs, _) = model();
    let alice = Credentials::user(1000, 1000);
    let bob = Credentials::user(1001, 1001);
    let tmp = fs.mkdir(&root(), Ino::ROOT, b"tmp", 0o1777).unwrap().ino;
    let (_, fh) = fs
        .create(&alice, tmp, b"f", 0o666, OpenFlags::WRITE)
        .unwrap();
    fs.release(fh).unwrap();
    assert_eq!(fs.unlink(&bob, tmp, b"f"), Err(Errno::NotPermitted));
    assert_eq!(
        fs.rename(&bob, tmp, b"f", tmp, b"g", RenameMode::Replace),
        Err(Errno::NotPermitted)
    );
    // Without the sticky bit, write permission on the directory is enough.
    fs.setattr(
        &root(),
        tmp,
        &SetAttr {
            mode: Some(0o777),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    fs.rename(&bob, tmp, b"f", tmp, b"g", RenameMode::Replace)
        .unwrap();
    fs.setattr(
        &root(),
        tmp,
        &SetAttr {
            mode: Some(0o1777),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    fs.unlink(&alice, tmp, b"g").unwrap();
}

#[test]
fn set_group_id_directories_pass_their_group_on() {
    let (fs, _) = model();
    let alice = Credentials::user(1000, 1000);
    let carol = Credentials::user(1002, 100);
    let shared = fs.mkdir(&root(), Ino::ROOT, b"shared", 0o777).unwrap().ino;
    let set = SetAttr {
        mode: Some(0o2777),
        gid: Some(1000),
        ..SetAttr::default()
    };
    fs.setattr(&root(), shared, &set, None).unwrap();

    let sub = fs.mkdir(&carol, shared, b"sub", 0o755).unwrap();
    assert_eq!((sub.uid, sub.gid, sub.perm), (1002, 1000, 0o2755));
    // Carol is not in group 1000: a set-group-ID, group-executable file loses the bit.
    let (file, _) = fs
        .create(&carol, shared, b"f", 0o2755, OpenFlags::WRITE)
        .unwrap();
    assert_eq!((file.gid, file.perm), (1000, 0o755));
    // Alice is: she keeps it.
    let (file, _) = fs
        .create(&alice, shared, b"g", 0o2755, OpenFlags::WRITE)
        .unwrap();
    assert_eq!((file.gid, file.perm), (1000, 0o2755));
    // Outside the directory, a new inode takes the caller's group.
    let (file, _) = fs
        .create(&carol, Ino::ROOT, b"h", 0o644, OpenFlags::WRITE)
        .unwrap();
    assert_eq!(file.gid, 100);
}

#[test]
fn unlinked_open_file_keeps_its_data_until_the_last_reference_goes() {
    let (fs, _) = model();
    let (attr, fh) = fs
        .create(&root(), Ino::ROOT, b"f", 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    assert_eq!(fs.write(&root(), fh, 0, b"still here"), Ok((10, 10)));
    fs.unlink(&root(), Ino::ROOT, b"f").unwrap();
    assert_eq!(fs.find(&root(), Ino::ROOT, b"f"), Err(Errno::NotFound));
    let mut buf = [0; 16];
    assert_eq!(fs.read(&root(), fh, 0, &mut buf), Ok(10));
    assert_eq!(&buf[..10], b"still here");
    assert_eq!(fs.getattr(&root(), attr.ino).unwrap().nlink, 0);
    let before = fs.statfs(&root()).unwrap();
    assert_eq!(before.blocks_free, 63);
    fs.release(fh).unwrap();
    // create's lookup still holds the inode.
    assert!(fs.getattr(&root(), attr.ino).is_ok());
    fs.forget(attr.ino, 1);
    assert_eq!(fs.getattr(&root(), attr.ino), Err(Errno::NotFound));
    let after = fs.statfs(&root()).unwrap();
    assert_eq!(
        (after.blocks_free, after.files_free),
        (64, before.files_free + 1)
    );
}

#[test]
fn holes_read_as_zeros_and_cost_no_blocks() {
    let (fs, _) = model();
    let (attr, fh) = fs
        .create(&root(), Ino::ROOT, b"f", 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&root(), fh, 8192, b"x").unwrap();
    let mut buf = vec![0xff; 9000];
    assert_eq!(fs.read(&root(), fh, 0, &mut buf), Ok(8193));
    assert!(buf[..8192].iter().all(|&b| b == 0));
    assert_eq!(buf[8192], b'x');
    assert_eq!(
        fs.getattr(&root(), attr.ino).unwrap().blocks,
        BLOCK as u64 / 512
    );
    assert_eq!(fs.lseek(&root(), fh, 0, SeekWhence::Data), Ok(8192));
    // Growing by truncation allocates nothing; shrinking into a block keeps it but zeroes its
    // tail, shrinking to a block boundary frees the block.
    fs.write(&root(), fh, 8193, b"yz").unwrap();
    let grow = SetAttr {
        size: Some(100_000),
        ..SetAttr::default()
    };
    assert_eq!(
        fs.setattr(&root(), attr.ino, &grow, None).unwrap().blocks,
        8
    );
    let shrink = SetAttr {
        size: Some(8193),
        ..SetAttr::default()
    };
    assert_eq!(
        fs.setattr(&root(), attr.ino, &shrink, None).unwrap().blocks,
        8
    );
    fs.setattr(&root(), attr.ino, &grow, None).unwrap();
    assert_eq!(fs.read(&root(), fh, 8192, &mut buf[..3]), Ok(3));
    assert_eq!(&buf[..3], b"x\0\0");
    let shrink = SetAttr {
        size: Some(8192),
        ..SetAttr::default()
    };
    assert_eq!(
        fs.setattr(&root(), attr.ino, &shrink, None).unwrap().blocks,
        0
    );
    fs.setattr(&root(), attr.ino, &grow, None).unwrap();
    // Punching keeps partial blocks allocated (zeroed) and frees whole ones.
    fs.write(&root(), fh, 0, &[7; 3 * BLOCK]).unwrap();
    fs.fallocate(&root(), fh, FallocateMode::PunchHole, 100, 2 * BLOCK as u64)
        .unwrap();
    let attr = fs.getattr(&root(), attr.ino).unwrap();
    assert_eq!((attr.size, attr.blocks), (100_000, 16));
    assert_eq!(fs.read(&root(), fh, 99, &mut buf[..2]), Ok(2));
    assert_eq!(&buf[..2], &[7, 0]);
    assert_eq!(fs.lseek(&root(), fh, 0, SeekWhence::Hole), Ok(BLOCK as u64));
}

#[test]
fn xattr_buffers_too_small_are_erange() {
    let (fs, _) = model();
    let (attr, _) = fs
        .create(&root(), Ino::ROOT, b"f", 0o644, OpenFlags::WRITE)
        .unwrap();
    fs.setxattr(&root(), attr.ino, b"user.a", b"hello", XattrMode::Create)
        .unwrap();
    fs.setxattr(&root(), attr.ino, b"trusted.t", b"", XattrMode::Set)
        .unwrap();
    let mut small = [0; 2];
    assert_eq!(
        fs.getxattr(&root(), attr.ino, b"user.a", &mut small),
        Err(Errno::Range)
    );
    assert_eq!(fs.getxattr(&root(), attr.ino, b"user.a", &mut []), Ok(5));
    assert_eq!(
        fs.listxattr(&root(), attr.ino, &mut small),
        Err(Errno::Range)
    );
    let mut list = [0; 64];
    assert_eq!(fs.listxattr(&root(), attr.ino, &mut list), Ok(17));
    assert_eq!(&list[..17], b"user.a\0trusted.t\0");
    // Others do not see trusted names.
    let alice = Credentials::user(1000, 1000);
    assert_eq!(fs.listxattr(&alice, attr.ino, &mut list), Ok(7));
    assert_eq!(
        fs.getxattr(&alice, attr.ino, b"trusted.t", &mut list),
        Err(Errno::NoData)
    );
    let long = [b'n'; 256];
    assert_eq!(
        fs.getxattr(&root(), attr.ino, &long, &mut list),
        Err(Errno::Range)
    );
    assert_eq!(
        fs.setxattr(&root(), attr.ino, b"user.a", b"x", XattrMode::Create),
        Err(Errno::Exists)
    );
    assert_eq!(
        fs.setxattr(&root(), attr.ino, b"other.a", b"x", XattrMode::Set),
        Err(Errno::NotSupported)
    );
}

#[test]
fn a_full_store_gives_short_writes_and_refuses_partial_fallocate() {
    let (fs, _) = model_with(Config::default(), 2);
    let (_, fh) = fs
        .create(&root(), Ino::ROOT, b"f", 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    assert_eq!(
        fs.write(&root(), fh, 100, &[1; 3 * BLOCK]),
        Ok((2 * BLOCK - 100, 2 * BLOCK as u64))
    );
    assert_eq!(
        fs.write(&root(), fh, 2 * BLOCK as u64, b"x"),
        Err(Errno::NoSpace)
    );
    // A write into allocated blocks still works.
    assert_eq!(fs.write(&root(), fh, 0, b"y"), Ok((1, 1)));
    fs.fallocate(&root(), fh, FallocateMode::PunchHole, 0, BLOCK as u64)
        .unwrap();
    assert_eq!(
        fs.fallocate(&root(), fh, FallocateMode::Allocate, 0, 3 * BLOCK as u64),
        Err(Errno::NoSpace)
    );
    assert_eq!(fs.statfs(&root()).unwrap().blocks_free, 1);
    fs.fallocate(&root(), fh, FallocateMode::KeepSize, 0, 2 * BLOCK as u64)
        .unwrap();
    assert_eq!(fs.statfs(&root()).unwrap().blocks_free, 0);
}

#[test]
fn hard_links_take_units_of_the_inode_budget_as_on_tmpfs() {
    let (fs, _) = model_with(
        Config {
            max_inodes: 3,
            ..Config::default()
        },
        64,
    );
    let f = fs
        .mknod(&root(), Ino::ROOT, b"f", FileType::RegularFile, 0o644, 0)
        .unwrap();
    fs.link(&root(), f.ino, Ino::ROOT, b"g").unwrap();
    assert_eq!(fs.statfs(&root()).unwrap().files_free, 0);
    assert_eq!(
        fs.link(&root(), f.ino, Ino::ROOT, b"h"),
        Err(Errno::NoSpace)
    );
    fs.unlink(&root(), Ino::ROOT, b"g").unwrap();
    assert_eq!(fs.statfs(&root()).unwrap().files_free, 1);
    fs.unlink(&root(), Ino::ROOT, b"f").unwrap();
    assert_eq!(fs.statfs(&root()).unwrap().files_free, 1);
    fs.forget(f.ino, 2);
    assert_eq!(fs.statfs(&root()).unwrap().files_free, 2);
}

#[test]
fn xattrs_take_blocks_of_the_store() {
    let (fs, _) = model_with(Config::default(), 2);
    let (attr, fh) = fs
        .create(&root(), Ino::ROOT, b"f", 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.setxattr(&root(), attr.ino, b"user.a", &[1; 5000], XattrMode::Set)
        .unwrap();
    assert_eq!(fs.statfs(&root()).unwrap().blocks_free, 0);
    assert_eq!(fs.write(&root(), fh, 0, b"x"), Err(Errno::NoSpace));
    assert_eq!(
        fs.setxattr(&root(), attr.ino, b"user.a", &[2; 9000], XattrMode::Set),
        Err(Errno::NoSpace)
    );
    assert_eq!(fs.getxattr(&root(), attr.ino, b"user.a", &mut []), Ok(5000));
    fs.removexattr(&root(), attr.ino, b"user.a").unwrap();
    assert_eq!(fs.write(&root(), fh, 0, b"x"), Ok((1, 1)));
    assert_eq!(fs.statfs(&root()).unwrap().blocks_free, 1);
}

#[test]
fn relatime_refreshes_atime_only_when_stale() {
    let (fs, clock) = model();
    let (attr, fh) = fs
        .create(&root(), Ino::ROOT, b"f", 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    let created = attr.atime;
    clock.tick();
    fs.read(&root(), fh, 0, &mut [0; 1]).unwrap();
    let first = fs.getattr(&root(), attr.ino).unwrap().atime;
    assert!(first > created, "atime == mtime: refreshed");
    clock.tick();
    fs.read(&root(), fh, 0, &mut [0; 1]).unwrap();
    assert_eq!(
        fs.getattr(&root(), attr.ino).unwrap().atime,
        first,
        "newer than mtime: kept"
    );
    clock.advance(24 * 3600 * 1_000_000_000);
    fs.read(&root(), fh, 0, &mut [0; 1]).unwrap();
    assert!(
        fs.getattr(&root(), attr.ino).unwrap().atime > first,
        "a day old: refreshed"
    );
}

#[test]
fn set_id_bits_fall_on_write_and_chown() {
    let (fs, _) = model();
    let alice = Credentials::user(1000, 1000);
    let (attr, fh) = fs
        .create(&alice, Ino::ROOT, b"f", 0o6755, OpenFlags::WRITE)
        .unwrap();
    assert_eq!(attr.perm, 0o6755);
    fs.write(&alice, fh, 0, b"x").unwrap();
    assert_eq!(fs.getattr(&root(), attr.ino).unwrap().perm, 0o755);
    let set = SetAttr {
        mode: Some(0o6755),
        ..SetAttr::default()
    };
    fs.setattr(&alice, attr.ino, &set, None).unwrap();
    let chown = SetAttr {
        uid: Some(1000),
        ..SetAttr::default()
    };
    assert_eq!(
        fs.setattr(&root(), attr.ino, &chown, None).unwrap().perm,
        0o755
    );
    // `chown(f, -1, -1)` by someone who does not own the file: EPERM when it would clear a
    // set-ID bit (the kill becomes a mode change), allowed when there is none to clear.
    let bob = Credentials::user(1001, 1001);
    let kill = SetAttr {
        kill_setid: true,
        ..SetAttr::default()
    };
    let set = SetAttr {
        mode: Some(0o4755),
        ..SetAttr::default()
    };
    fs.setattr(&alice, attr.ino, &set, None).unwrap();
    assert_eq!(
        fs.setattr(&bob, attr.ino, &kill, None),
        Err(Errno::NotPermitted)
    );
    assert_eq!(fs.getattr(&root(), attr.ino).unwrap().perm, 0o4755);
    assert_eq!(
        fs.setattr(&alice, attr.ino, &kill, None).unwrap().perm,
        0o755
    );
    assert_eq!(fs.setattr(&bob, attr.ino, &kill, None).unwrap().perm, 0o755);
    // One who may write the file may: over FUSE the kernel asks so before such a write.
    let writable = SetAttr {
        mode: Some(0o4757),
        ..SetAttr::default()
    };
    fs.setattr(&alice, attr.ino, &writable, None).unwrap();
    assert_eq!(fs.setattr(&bob, attr.ino, &kill, None).unwrap().perm, 0o757);
    let set = SetAttr {
        mode: Some(0o755),
        ..SetAttr::default()
    };
    fs.setattr(&alice, attr.ino, &set, None).unwrap();
    // Setting both times to now needs only write permission (denied here: EACCES); any other
    // time change needs ownership (EPERM), as Linux's vfs_utimes has it.
    let touch = SetAttr {
        atime: TimeSet::Now,
        mtime: TimeSet::Now,
        ..SetAttr::default()
    };
    assert_eq!(
        fs.setattr(&bob, attr.ino, &touch, None),
        Err(Errno::PermissionDenied)
    );
    let mtime_only = SetAttr {
        mtime: TimeSet::Now,
        ..SetAttr::default()
    };
    assert_eq!(
        fs.setattr(&bob, attr.ino, &mtime_only, None),
        Err(Errno::NotPermitted)
    );
    assert_eq!(fs.access(&bob, attr.ino, AccessMask::EXECUTE), Ok(()));
    assert_eq!(
        fs.access(&bob, attr.ino, AccessMask::WRITE),
        Err(Errno::PermissionDenied)
    );
}

#[test]
fn readdir_cookies_follow_insertion_order() {
    let (fs, _) = model();
    let dir = fs.mkdir(&root(), Ino::ROOT, b"d", 0o755).unwrap().ino;
    for name in [b"x", b"y", b"z"] {
        fs.mknod(&root(), dir, name, FileType::NamedPipe, 0o644, 0)
            .unwrap();
    }
    fs.unlink(&root(), dir, b"y").unwrap();
    fs.rename(&root(), dir, b"x", dir, b"w", RenameMode::Replace)
        .unwrap();
    let fh = fs.open(&root(), dir, OpenFlags::READ).unwrap();
    let mut seen = Vec::new();
    fs.readdir(&root(), fh, 2, &mut |e| {
        seen.push((e.cookie, e.name.to_vec()));
        true
    })
    .unwrap();
    assert_eq!(seen, vec![(5, b"z".to_vec()), (6, b"w".to_vec())]);
    assert_eq!(fs.getattr(&root(), dir).unwrap().size, 4 * 20);
}
