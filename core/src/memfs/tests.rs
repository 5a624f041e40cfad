//! Unit tests of [`MemFs`](super::MemFs): operations through the [`Filesystem`] calls,
//! checked against the layout and invariants the module header states.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::{Config, MemFs};
use crate::ZeroClock;
use crate::block::{BlockStore, FaultInjector, MemPool};
use crate::error::Errno;
use crate::fs::{Change, ContentWatch, Filesystem};
use crate::types::*;

fn fs() -> MemFs<MemPool> {
    MemFs::new(MemPool::new(64 * 4096), Config::default(), ZeroClock)
}

fn names(fs: &impl Filesystem, dir: Ino, from: u64) -> Vec<(u64, Vec<u8>)> {
    let root = Credentials::root();
    let fh = fs.open(&root, dir, OpenFlags::READ).unwrap();
    let mut out = Vec::new();
    fs.readdir(&root, fh, from, &mut |e| {
        out.push((e.cookie, e.name.to_vec()));
        true
    })
    .unwrap();
    fs.release(fh).unwrap();
    out
}

#[test]
fn looked_up_follows_lookups_and_forgets() {
    let fs = fs();
    let root = Credentials::root();
    assert!(fs.looked_up(Ino::ROOT), "the kernel always holds the root");
    // A creation counts one lookup, as the kernel's reply to it does.
    let (file, fh) = fs
        .create(&root, Ino::ROOT, b"f", 0o644, OpenFlags::WRITE)
        .unwrap();
    fs.release(fh).unwrap();
    assert!(fs.looked_up(file.ino));
    fs.forget(file.ino, 1);
    assert!(!fs.looked_up(file.ino), "forgotten");
    // A path walk counts nothing; a lookup counts one, until forgotten.
    fs.find(&root, Ino::ROOT, b"f").unwrap();
    assert!(!fs.looked_up(file.ino));
    fs.lookup(&root, Ino::ROOT, b"f").unwrap();
    fs.lookup(&root, Ino::ROOT, b"f").unwrap();
    fs.forget(file.ino, 1);
    assert!(fs.looked_up(file.ino), "one of two lookups left");
    fs.forget(file.ino, 1);
    assert!(!fs.looked_up(file.ino));
    assert!(!fs.looked_up(Ino(9999)), "unknown inodes are not known");
}

#[test]
fn dot_in_a_file_is_the_file_for_the_kernel_only() {
    let fs = fs();
    let root = Credentials::root();
    let (file, fh) = fs
        .create(&root, Ino::ROOT, b"f", 0o600, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&root, fh, 0, b"data").unwrap();
    fs.unlink(&root, Ino::ROOT, b"f").unwrap();
    fs.forget(file.ino, 1);
    // Path walks still refuse "." after a file.
    assert_eq!(fs.find(&root, file.ino, b"."), Err(Errno::NotADirectory));
    assert_eq!(fs.lookup(&root, file.ino, b".."), Err(Errno::NotADirectory));
    // The kernel's export lookup finds the unlinked file, whoever asks, and counts it.
    let other = Credentials::user(1000, 1000);
    let found = fs.lookup(&other, file.ino, b".").unwrap();
    assert_eq!((found.ino, found.nlink, found.size), (file.ino, 0, 4));
    fs.release(fh).unwrap();
    // Still counted: the record stays until the kernel forgets it.
    assert_eq!(fs.lookup(&root, file.ino, b".").unwrap().ino, file.ino);
    fs.forget(file.ino, 2);
    assert_eq!(fs.lookup(&root, file.ino, b"."), Err(Errno::NotFound));
}

#[test]
fn dropping_a_deep_tree_does_not_recurse() {
    let fs = MemFs::new(MemPool::new(4096), Config::default(), ZeroClock);
    let root = Credentials::root();
    let mut dir = Ino::ROOT;
    // Far deeper than a test thread's 2 MiB stack could unwind one frame per level.
    for _ in 0..200_000 {
        dir = fs.mkdir(&root, dir, b"d", 0o755).unwrap().ino;
    }
    drop(fs);
}

#[test]
fn memfs_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MemFs<MemPool>>();
}

/// Records what a [`ContentWatch`] is told, as `(changing?, ino, what)`.
#[derive(Default)]
struct Recorder(Mutex<Vec<(bool, Ino, Change)>>);

impl ContentWatch for Recorder {
    fn changing(&self, ino: Ino, what: Change) {
        self.0.lock().push((true, ino, what));
    }
    fn changed(&self, ino: Ino, what: Change) {
        self.0.lock().push((false, ino, what));
    }
}

impl Recorder {
    /// Empties the record; returns what it held of kind `what`, as `(changing?, ino)`.
    fn take(&self, what: Change) -> Vec<(bool, Ino)> {
        core::mem::take(&mut *self.0.lock())
            .into_iter()
            .filter(|&(_, _, w)| w == what)
            .map(|(changing, ino, _)| (changing, ino))
            .collect()
    }
}

/// A filesystem whose content watch is a [`Recorder`].
fn watched() -> (MemFs<MemPool>, Arc<Recorder>) {
    watched_with(fs())
}

fn watched_with(fs: MemFs<MemPool>) -> (MemFs<MemPool>, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    assert!(fs.watch_content(recorder.clone()));
    (fs, recorder)
}

/// Each pair, in the order announced: `changing` for every inode, then `changed`.
fn pairs(inos: &[Ino]) -> Vec<(bool, Ino)> {
    let mut expected: Vec<_> = inos.iter().map(|&i| (true, i)).collect();
    expected.extend(inos.iter().map(|&i| (false, i)));
    expected
}

#[test]
fn every_content_change_is_announced_before_and_after() {
    let (fs, recorder) = watched();
    let root = Credentials::root();
    assert!(
        !fs.watch_content(Arc::new(Recorder::default())),
        "one watch only"
    );
    let (attr, fh) = fs
        .create(&root, Ino::ROOT, b"f", 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    let ino = attr.ino;
    let take = || recorder.take(Change::Content);
    assert_eq!(
        take(),
        [(true, Ino::ROOT), (false, Ino::ROOT)],
        "creating changes the parent's listing, no content"
    );
    let both = [(true, ino), (false, ino)];
    fs.write(&root, fh, 0, b"hello").unwrap();
    assert_eq!(take(), both, "write");
    fs.write(&root, fh, 0, b"").unwrap();
    assert_eq!(take(), [], "an empty write");
    let size = SetAttr {
        size: Some(2),
        ..SetAttr::default()
    };
    fs.setattr(&root, ino, &size, None).unwrap();
    assert_eq!(take(), both, "truncate");
    fs.fallocate(&root, fh, FallocateMode::Allocate, 0, 8192)
        .unwrap();
    assert_eq!(take(), both, "fallocate");
    let truncating = OpenFlags {
        truncate: true,
        ..OpenFlags::READ_WRITE
    };
    let again = fs.open(&root, ino, truncating).unwrap();
    assert_eq!(take(), both, "O_TRUNC");
    // Reading and changing metadata leave content alone.
    fs.read(&root, fh, 0, &mut [0; 4]).unwrap();
    let mode = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    fs.setattr(&root, ino, &mode, None).unwrap();
    fs.setxattr(&root, ino, b"user.x", b"1", XattrMode::Set)
        .unwrap();
    assert_eq!(take(), []);
    // A change that fails part way is still announced as over.
    assert_eq!(
        fs.fallocate(&root, fh, FallocateMode::Allocate, 0, 1 << 20),
        Err(Errno::NoSpace)
    );
    assert_eq!(take(), both, "a failed fallocate");
    fs.release(again).unwrap();
    fs.release(fh).unwrap();
}

#[test]
fn every_change_to_a_listing_is_announced_before_and_after() {
    let (fs, recorder) = watched();
    let root = Credentials::root();
    let take = || recorder.take(Change::Content);
    let r = Ino::ROOT;
    let a = fs.mkdir(&root, r, b"a", 0o755).unwrap().ino;
    assert_eq!(take(), pairs(&[r]), "mkdir");
    let b = fs.mkdir(&root, r, b"b", 0o755).unwrap().ino;
    take();
    let f = fs.symlink(&root, a, b"l", b"t").unwrap().ino;
    assert_eq!(take(), pairs(&[a]), "symlink");
    fs.mknod(&root, a, b"p", FileType::NamedPipe, 0o644, 0)
        .unwrap();
    assert_eq!(take(), pairs(&[a]), "mknod");
    fs.link(&root, f, b, b"l2").unwrap();
    assert_eq!(take(), pairs(&[b]), "link");
    let c = fs.mkdir(&root, a, b"c", 0o755).unwrap().ino;
    let d = fs.mkdir(&root, b, b"d", 0o755).unwrap().ino;
    take();
    let (replace, exchange) = (RenameMode::Replace, RenameMode::Exchange);
    /// From, to, how, whose listings change, what it is.
    type Renaming<'a> = (Ino, &'a [u8], Ino, &'a [u8], RenameMode, &'a [Ino], &'a str);
    #[rustfmt::skip]
    let renames: [Renaming; 5] = [
        (a, b"l", a, b"m", replace, &[a], "rename in one directory"),
        (a, b"m", b, b"m", replace, &[a, b], "rename across directories"),
        (a, b"c", b, b"c", replace, &[a, b, c], "a directory moved: its `..` too"),
        (b, b"c", b, b"d", exchange, &[b], "an exchange in one directory"),
        // After the exchange `d` names c and `c` names d, empty: replaced.
        (b, b"d", b, b"c", replace, &[b, d], "an empty directory replaced"),
    ];
    for (p1, name, p2, new_name, mode, changed, what) in renames {
        fs.rename(&root, p1, name, p2, new_name, mode).unwrap();
        assert_eq!(take(), pairs(changed), "{what}");
    }
    fs.unlink(&root, b, b"l2").unwrap();
    assert_eq!(take(), pairs(&[b]), "unlink");
    fs.rmdir(&root, b, b"c").unwrap();
    assert_eq!(
        take(),
        pairs(&[b, c]),
        "rmdir: the parent and the removed one"
    );
    // Failures before any change announce nothing.
    assert_eq!(fs.unlink(&root, b, b"nothing"), Err(Errno::NotFound));
    assert_eq!(fs.mkdir(&root, r, b"a", 0o755), Err(Errno::Exists));
    assert_eq!(take(), []);
}

#[test]
fn every_attribute_change_is_announced_before_and_after() {
    // A clock that moves, so that a read after a write moves the access time once.
    let clock = TickingClock(AtomicU64::new(1));
    let (fs, recorder) = watched_with(MemFs::new(
        MemPool::new(64 * 4096),
        Config::default(),
        clock,
    ));
    let root = Credentials::root();
    let take = || recorder.take(Change::Attributes);
    let r = Ino::ROOT;
    let (attr, fh) = fs
        .create(&root, r, b"f", 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    let f = attr.ino;
    let d = fs.mkdir(&root, r, b"d", 0o755).unwrap().ino;
    assert_eq!(
        take(),
        [],
        "made: listings change, no inode's attributes alone"
    );
    let setattrs = [
        SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
        SetAttr {
            uid: Some(7),
            gid: Some(7),
            ..SetAttr::default()
        },
        SetAttr {
            atime: TimeSet::Now,
            mtime: TimeSet::At(Timestamp { secs: 5, nanos: 0 }),
            ..SetAttr::default()
        },
    ];
    for set in &setattrs {
        fs.setattr(&root, f, set, None).unwrap();
        assert_eq!(take(), pairs(&[f]), "{set:?}");
    }
    fs.setattr(&root, d, &setattrs[0], None).unwrap();
    assert_eq!(take(), pairs(&[d]), "a directory's mode");
    fs.setxattr(&root, f, b"user.x", b"1", XattrMode::Set)
        .unwrap();
    assert_eq!(take(), pairs(&[f]), "setxattr");
    fs.removexattr(&root, f, b"user.x").unwrap();
    assert_eq!(take(), pairs(&[f]), "removexattr");
    fs.link(&root, f, d, b"g").unwrap();
    assert_eq!(take(), pairs(&[f]), "link: the link count");
    fs.rename(&root, r, b"f", r, b"h", RenameMode::Replace)
        .unwrap();
    assert_eq!(take(), pairs(&[f]), "rename: the change time");
    let x = fs
        .mknod(&root, r, b"x", FileType::RegularFile, 0o644, 0)
        .unwrap()
        .ino;
    take();
    fs.rename(&root, d, b"g", r, b"x", RenameMode::Replace)
        .unwrap();
    assert_eq!(take(), pairs(&[f, x]), "rename over a file: its link count");
    fs.unlink(&root, r, b"x").unwrap();
    assert_eq!(take(), pairs(&[f]), "unlink: the link count");
    // A write changes the content (and the attributes with it); the first read after it
    // moves the access time, the next does not.
    fs.write(&root, fh, 0, b"hello").unwrap();
    assert_eq!(take(), [], "a write is a content change");
    fs.read(&root, fh, 0, &mut [0; 4]).unwrap();
    assert_eq!(take(), pairs(&[f]), "a read after a write: the access time");
    fs.read(&root, fh, 0, &mut [0; 4]).unwrap();
    assert_eq!(take(), [], "relatime: once");
    // Failures before any change announce nothing.
    assert_eq!(fs.removexattr(&root, f, b"user.y"), Err(Errno::NoData));
    let nobody = Credentials::user(65534, 65534);
    assert_eq!(
        fs.setattr(&nobody, f, &setattrs[0], None),
        Err(Errno::NotPermitted)
    );
    assert_eq!(take(), []);
    fs.release(fh).unwrap();
}

#[test]
fn unlinked_open_file_keeps_data_until_last_release() {
    let fs = fs();
    let root = Credentials::root();
    let (attr, fh) = fs
        .create(&root, Ino::ROOT, b"f", 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.forget(attr.ino, 1);
    fs.write(&root, fh, 0, &[7u8; 10000]).unwrap();
    assert_eq!(fs.store().used_blocks(), 3);
    fs.unlink(&root, Ino::ROOT, b"f").unwrap();
    assert_eq!(fs.find(&root, Ino::ROOT, b"f"), Err(Errno::NotFound));
    let mut buf = vec![0u8; 10000];
    assert_eq!(fs.read(&root, fh, 0, &mut buf), Ok(10000));
    assert!(buf.iter().all(|&b| b == 7));
    assert_eq!(fs.getattr(&root, attr.ino).unwrap().nlink, 0);
    fs.release(fh).unwrap();
    assert_eq!(fs.store().used_blocks(), 0);
    assert_eq!(fs.getattr(&root, attr.ino), Err(Errno::NotFound));
    assert_eq!(fs.usage().inodes, 1);
}

#[test]
fn a_running_programs_file_is_busy_for_writing() {
    let fs = fs();
    let root = Credentials::root();
    let (attr, fh) = fs
        .create(&root, Ino::ROOT, b"prog", 0o755, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&root, fh, 0, b"#!/bin/sh\n").unwrap();
    fs.release(fh).unwrap();
    let run = OpenFlags {
        exec: true,
        ..OpenFlags::READ
    };
    let running = fs.open(&root, attr.ino, run).unwrap();
    let again = fs.open(&root, attr.ino, run).unwrap();
    let truncate = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    let truncating = OpenFlags {
        truncate: true,
        ..OpenFlags::READ
    };
    let busy = |fs: &MemFs<MemPool>| {
        (
            fs.open(&root, attr.ino, OpenFlags::WRITE).map(drop),
            fs.open(&root, attr.ino, OpenFlags::READ_WRITE).map(drop),
            fs.open(&root, attr.ino, truncating).map(drop),
            fs.setattr(&root, attr.ino, &truncate, None).map(drop),
        )
    };
    let refused = (
        Err(Errno::TextBusy),
        Err(Errno::TextBusy),
        Err(Errno::TextBusy),
        Err(Errno::TextBusy),
    );
    assert_eq!(busy(&fs), refused);
    // Reading stays allowed, and the permission check comes first.
    let reader = fs.open(&root, attr.ino, OpenFlags::READ).unwrap();
    fs.release(reader).unwrap();
    let nobody = Credentials::user(65534, 65534);
    assert_eq!(
        fs.open(&nobody, attr.ino, OpenFlags::WRITE).map(drop),
        Err(Errno::PermissionDenied)
    );
    fs.release(running).unwrap();
    assert_eq!(busy(&fs), refused, "one run still holds it");
    fs.release(again).unwrap();
    let writer = fs.open(&root, attr.ino, OpenFlags::WRITE).unwrap();
    fs.release(writer).unwrap();
    fs.setattr(&root, attr.ino, &truncate, None).unwrap();
}

#[test]
fn full_store_writes_what_fits_and_harms_nothing() {
    let store = FaultInjector::new(MemPool::new(4 * 4096));
    let fs = MemFs::new(store, Config::default(), ZeroClock);
    let root = Credentials::root();
    let (_, a) = fs
        .create(&root, Ino::ROOT, b"a", 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    assert_eq!(fs.write(&root, a, 0, &[1u8; 8192]), Ok((8192, 8192)));
    let (_, b) = fs
        .create(&root, Ino::ROOT, b"b", 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    // Two blocks left: a 3-block write stores two and says so; the next one is ENOSPC.
    assert_eq!(fs.write(&root, b, 0, &[2u8; 12288]), Ok((8192, 8192)));
    assert_eq!(fs.write(&root, b, 8192, &[2u8; 10]), Err(Errno::NoSpace));
    // Writing inside blocks already held still works on a full store.
    assert_eq!(fs.write(&root, a, 100, &[3u8; 10]), Ok((10, 110)));
    let fh = fs.open(
        &root,
        fs.find(&root, Ino::ROOT, b"a").unwrap().ino,
        OpenFlags::READ,
    );
    let mut buf = vec![0u8; 8192];
    assert_eq!(fs.read(&root, fh.unwrap(), 0, &mut buf), Ok(8192));
    assert!(buf[..100].iter().all(|&x| x == 1) && buf[100..110].iter().all(|&x| x == 3));
    // fallocate is all or nothing.
    fs.setattr(
        &root,
        fs.find(&root, Ino::ROOT, b"b").unwrap().ino,
        &SetAttr {
            size: Some(4096),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(
        fs.fallocate(&root, b, FallocateMode::KeepSize, 0, 5 * 4096),
        Err(Errno::NoSpace)
    );
    assert_eq!(fs.store().used_blocks(), 3);
    // An injected allocation failure mid-write: the short write is reported.
    fs.store().fail_allocations_after(0);
    assert_eq!(fs.write(&root, b, 4096, &[9u8; 100]), Err(Errno::NoSpace));
    fs.store().heal();
    assert_eq!(fs.write(&root, b, 4096, &[9u8; 100]), Ok((100, 4196)));
}

#[test]
fn xattrs_take_their_room_from_the_store() {
    let store = FaultInjector::new(MemPool::new(4 * 4096));
    let fs = MemFs::new(store, Config::default(), ZeroClock);
    let root = Credentials::root();
    let free = || fs.statfs(&root).unwrap().blocks_free;
    let (f, fh) = fs
        .create(&root, Ino::ROOT, b"f", 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    // Names plus values, rounded up to whole blocks per inode: 6 + 8000 bytes take two.
    fs.setxattr(&root, f.ino, b"user.a", &[1; 8000], XattrMode::Set)
        .unwrap();
    assert_eq!((free(), fs.store().used_blocks()), (2, 2));
    fs.setxattr(&root, f.ino, b"user.b", &[2; 4000], XattrMode::Set)
        .unwrap();
    assert_eq!(free(), 1);
    // File data and attributes share the store: the last block goes to the file, and
    // then neither a write, a fallocate nor an attribute needing a block fits.
    assert_eq!(fs.write(&root, fh, 0, &[3; 4096]), Ok((4096, 4096)));
    assert_eq!(free(), 0);
    assert_eq!(fs.write(&root, fh, 4096, b"x"), Err(Errno::NoSpace));
    assert_eq!(
        fs.fallocate(&root, fh, FallocateMode::KeepSize, 4096, 4096),
        Err(Errno::NoSpace)
    );
    // 12012 bytes in three blocks: an attribute that still fits in the third one is fine.
    fs.setxattr(&root, f.ino, b"user.c", &[4; 100], XattrMode::Set)
        .unwrap();
    // One that needs a fourth block is ENOSPC, and the old value stays.
    assert_eq!(
        fs.setxattr(&root, f.ino, b"user.c", &[5; 500], XattrMode::Replace),
        Err(Errno::NoSpace)
    );
    assert_eq!(
        fs.setxattr(&root, f.ino, b"user.d", &[6; 500], XattrMode::Set),
        Err(Errno::NoSpace)
    );
    let mut buf = [0u8; 600];
    assert_eq!(fs.getxattr(&root, f.ino, b"user.c", &mut buf), Ok(100));
    assert!(buf[..100].iter().all(|&b| b == 4));
    assert_eq!(
        fs.getxattr(&root, f.ino, b"user.d", &mut buf),
        Err(Errno::NoData)
    );
    assert_eq!(fs.store().used_blocks(), 4);
    // Removing an attribute gives its room back, to the file as to attributes: 4006 +
    // 106 bytes left, in two blocks.
    fs.removexattr(&root, f.ino, b"user.a").unwrap();
    assert_eq!(free(), 1);
    assert_eq!(fs.write(&root, fh, 4096, b"x"), Ok((1, 4097)));
    assert_eq!(free(), 0);
    // Replacing a value with a smaller one gives room back too: 6 + 10 and 6 + 100 bytes.
    fs.setxattr(&root, f.ino, b"user.b", &[7; 10], XattrMode::Replace)
        .unwrap();
    assert_eq!(free(), 1);
    // A store failing part way through a charge of two blocks leaves everything as it was.
    let empty = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    fs.setattr(&root, f.ino, &empty, None).unwrap();
    assert_eq!(free(), 3);
    fs.store().fail_allocations_after(1);
    assert_eq!(
        fs.setxattr(&root, f.ino, b"user.b", &[8; 9000], XattrMode::Replace),
        Err(Errno::NoSpace)
    );
    assert_eq!(fs.store().injected_faults(), 1, "the second block failed");
    fs.store().heal();
    assert_eq!((free(), fs.store().used_blocks()), (3, 1));
    assert_eq!(fs.getxattr(&root, f.ino, b"user.b", &mut buf), Ok(10));
    assert_eq!(buf[..10], [7; 10]);
    // Freeing the inode returns every block, attributes' included.
    fs.release(fh).unwrap();
    fs.unlink(&root, Ino::ROOT, b"f").unwrap();
    assert_eq!(
        fs.store().used_blocks(),
        1,
        "the record holds its attributes"
    );
    fs.forget(f.ino, 1);
    assert_eq!((free(), fs.store().used_blocks()), (4, 0));
    // So does removing the last attribute of a directory.
    fs.setxattr(&root, Ino::ROOT, b"user.r", b"v", XattrMode::Set)
        .unwrap();
    assert_eq!(free(), 3);
    fs.removexattr(&root, Ino::ROOT, b"user.r").unwrap();
    assert_eq!(free(), 4);
}

#[test]
fn inode_budget_is_enospc() {
    let config = Config {
        max_inodes: 3,
        ..Config::default()
    };
    let fs = MemFs::new(MemPool::new(4096), config, ZeroClock);
    let root = Credentials::root();
    fs.mkdir(&root, Ino::ROOT, b"a", 0o755).unwrap();
    let b = fs
        .mknod(&root, Ino::ROOT, b"b", FileType::NamedPipe, 0o644, 0)
        .unwrap();
    assert_eq!(fs.mkdir(&root, Ino::ROOT, b"c", 0o755), Err(Errno::NoSpace));
    assert_eq!(fs.statfs(&root).unwrap().files_free, 0);
    fs.unlink(&root, Ino::ROOT, b"b").unwrap();
    // The kernel still holds a lookup of "b": the inode lives until it is forgotten.
    assert_eq!(fs.mkdir(&root, Ino::ROOT, b"c", 0o755), Err(Errno::NoSpace));
    fs.forget(b.ino, 1);
    assert_eq!(
        fs.mkdir(&root, Ino::ROOT, b"c", 0o755).map(|a| a.ino),
        Ok(Ino(4))
    );
}

#[test]
fn hard_links_count_against_the_inode_budget() {
    let config = Config {
        max_inodes: 5,
        ..Config::default()
    };
    let fs = MemFs::new(MemPool::new(4096), config, ZeroClock);
    let root = Credentials::root();
    let free = || fs.statfs(&root).unwrap().files_free;
    let f = fs
        .mknod(&root, Ino::ROOT, b"f", FileType::RegularFile, 0o644, 0)
        .unwrap();
    assert_eq!(free(), 3);
    // Each name beyond the first takes a unit, as an inode does.
    fs.link(&root, f.ino, Ino::ROOT, b"g").unwrap();
    fs.link(&root, f.ino, Ino::ROOT, b"h").unwrap();
    assert_eq!(free(), 1);
    let x = fs
        .mknod(&root, Ino::ROOT, b"x", FileType::NamedPipe, 0o644, 0)
        .unwrap();
    assert_eq!(free(), 0);
    assert_eq!(fs.link(&root, f.ino, Ino::ROOT, b"i"), Err(Errno::NoSpace));
    assert_eq!(fs.mkdir(&root, Ino::ROOT, b"d", 0o755), Err(Errno::NoSpace));
    assert_eq!(fs.find(&root, Ino::ROOT, b"i"), Err(Errno::NotFound));
    let usage = fs.usage();
    assert_eq!((usage.inodes, usage.inodes_charged), (3, 5));
    // A rename replacing one of several names gives that name's unit back.
    fs.rename(&root, Ino::ROOT, b"x", Ino::ROOT, b"g", RenameMode::Replace)
        .unwrap();
    assert_eq!((free(), fs.getattr(&root, f.ino).unwrap().nlink), (1, 2));
    // So does unlinking one while another remains.
    fs.unlink(&root, Ino::ROOT, b"h").unwrap();
    assert_eq!(free(), 2);
    fs.link(&root, f.ino, Ino::ROOT, b"i").unwrap();
    fs.unlink(&root, Ino::ROOT, b"i").unwrap();
    assert_eq!(free(), 2);
    // The last name's unit is the inode's: it comes back when the inode is freed.
    fs.unlink(&root, Ino::ROOT, b"f").unwrap();
    assert_eq!(
        free(),
        2,
        "the kernel still holds its lookups (one per link)"
    );
    fs.forget(f.ino, 4);
    assert_eq!(free(), 3);
    fs.unlink(&root, Ino::ROOT, b"g").unwrap();
    fs.forget(x.ino, 1);
    assert_eq!(free(), 4);
    let usage = fs.usage();
    assert_eq!((usage.inodes, usage.inodes_charged), (1, 1));
}

#[test]
fn readdir_cookies_survive_inserts_and_removals() {
    let fs = fs();
    let root = Credentials::root();
    for name in [b"a", b"b", b"c", b"d"] {
        fs.mknod(&root, Ino::ROOT, name, FileType::RegularFile, 0o644, 0)
            .unwrap();
    }
    let first = names(&fs, Ino::ROOT, 0);
    assert_eq!(
        first.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    let (cookie_b, _) = first[3].clone();
    fs.unlink(&root, Ino::ROOT, b"b").unwrap();
    fs.unlink(&root, Ino::ROOT, b"c").unwrap();
    fs.mknod(&root, Ino::ROOT, b"e", FileType::RegularFile, 0o644, 0)
        .unwrap();
    // Resuming after the removed "b" continues with what is still there, then the new one.
    let rest: Vec<_> = names(&fs, Ino::ROOT, cookie_b)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(rest, [b"d".to_vec(), b"e".to_vec()]);
}

#[test]
fn paged_readdir_resumes_through_changes() {
    let fs = fs();
    let root = Credentials::root();
    let dir = fs.mkdir(&root, Ino::ROOT, b"d", 0o755).unwrap().ino;
    for i in 0..10u8 {
        fs.mknod(&root, dir, &[b'a' + i], FileType::RegularFile, 0o644, 0)
            .unwrap();
    }
    let fh = fs.open(&root, dir, OpenFlags::READ).unwrap();
    let page = |cookie: u64, n: usize| {
        let mut got = Vec::new();
        fs.readdir(&root, fh, cookie, &mut |e| {
            if got.len() == n {
                return false;
            }
            got.push((e.cookie, e.name.to_vec()));
            true
        })
        .unwrap();
        got
    };
    let first = page(0, 5);
    assert_eq!(first.last().unwrap().1, b"c");
    // The entry the cursor points at goes away and its slot is reused by a new one.
    fs.unlink(&root, dir, b"c").unwrap();
    fs.mknod(&root, dir, b"z", FileType::RegularFile, 0o644, 0)
        .unwrap();
    fs.unlink(&root, dir, b"d").unwrap();
    let rest: Vec<_> = page(first.last().unwrap().0, 100)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    // "z" was created after the handle was opened: not listed until a rewind.
    let expected: Vec<&[u8]> = vec![b"e", b"f", b"g", b"h", b"i", b"j"];
    assert_eq!(rest, expected);
    // Going back to an older cookie ignores the cursor.
    let again: Vec<_> = page(2, 2).into_iter().map(|(_, n)| n).collect();
    assert_eq!(again, [b"a".to_vec(), b"b".to_vec()]);
    let rewound: Vec<_> = page(0, 100).into_iter().map(|(_, n)| n).collect();
    assert_eq!(rewound.last().map(|n| &n[..]), Some(&b"z"[..]));
    fs.release(fh).unwrap();
}

#[test]
fn rename_rules() {
    let fs = fs();
    let root = Credentials::root();
    let a = fs.mkdir(&root, Ino::ROOT, b"a", 0o755).unwrap();
    let b = fs.mkdir(&root, a.ino, b"b", 0o755).unwrap();
    assert_eq!(
        fs.rename(&root, Ino::ROOT, b"a", b.ino, b"x", RenameMode::Replace),
        Err(Errno::InvalidArgument)
    );
    assert_eq!(
        fs.rename(&root, a.ino, b"b", Ino::ROOT, b"a", RenameMode::Replace),
        Err(Errno::NotEmpty)
    );
    fs.mknod(&root, Ino::ROOT, b"f", FileType::RegularFile, 0o644, 0)
        .unwrap();
    assert_eq!(
        fs.rename(&root, Ino::ROOT, b"f", a.ino, b"b", RenameMode::Replace),
        Err(Errno::IsADirectory)
    );
    assert_eq!(
        fs.rename(&root, a.ino, b"b", Ino::ROOT, b"f", RenameMode::Replace),
        Err(Errno::NotADirectory)
    );
    // Move b up to the root, replacing nothing: nlinks follow "..".
    fs.rename(&root, a.ino, b"b", Ino::ROOT, b"b", RenameMode::NoReplace)
        .unwrap();
    assert_eq!(fs.getattr(&root, a.ino).unwrap().nlink, 2);
    assert_eq!(fs.getattr(&root, Ino::ROOT).unwrap().nlink, 4);
    assert_eq!(fs.find(&root, b.ino, b"..").unwrap().ino, Ino::ROOT);
    // Exchange a file and a directory across directories.
    fs.rename(&root, Ino::ROOT, b"f", b.ino, b"g", RenameMode::Replace)
        .unwrap();
    fs.rename(&root, b.ino, b"g", Ino::ROOT, b"a", RenameMode::Exchange)
        .unwrap();
    assert_eq!(
        fs.find(&root, Ino::ROOT, b"a").unwrap().kind,
        FileType::RegularFile
    );
    assert_eq!(fs.find(&root, b.ino, b"g").unwrap().ino, a.ino);
    assert_eq!(fs.find(&root, a.ino, b"..").unwrap().ino, b.ino);
    assert_eq!(fs.getattr(&root, b.ino).unwrap().nlink, 3);
    assert_eq!(fs.getattr(&root, Ino::ROOT).unwrap().nlink, 3);
    // Replacing an empty directory frees it.
    let c = fs.mkdir(&root, Ino::ROOT, b"c", 0o755).unwrap();
    fs.forget(c.ino, 1);
    fs.forget(a.ino, 1);
    fs.rename(&root, b.ino, b"g", Ino::ROOT, b"c", RenameMode::Replace)
        .unwrap();
    assert_eq!(fs.getattr(&root, c.ino), Err(Errno::NotFound));
}

#[test]
fn permissions_sticky_and_setgid() {
    let fs = fs();
    let root = Credentials::root();
    let alice = Credentials::user(1000, 1000);
    let bob = Credentials {
        groups: vec![1000],
        ..Credentials::user(1001, 1001)
    };
    let tmp = fs.mkdir(&root, Ino::ROOT, b"tmp", 0o1777).unwrap();
    fs.mknod(&alice, tmp.ino, b"mine", FileType::RegularFile, 0o666, 0)
        .unwrap();
    assert_eq!(fs.unlink(&bob, tmp.ino, b"mine"), Err(Errno::NotPermitted));
    fs.unlink(&alice, tmp.ino, b"mine").unwrap();
    // mkdir drops set-group-ID from the requested mode; chmod sets it.
    let shared = fs.mkdir(&root, Ino::ROOT, b"shared", 0o2775).unwrap();
    assert_eq!(shared.perm, 0o775);
    let set = SetAttr {
        gid: Some(1000),
        mode: Some(0o2775),
        ..Default::default()
    };
    fs.setattr(&root, shared.ino, &set, None).unwrap();
    let sub = fs.mkdir(&root, shared.ino, b"sub", 0o755).unwrap();
    assert_eq!((sub.gid, sub.perm), (1000, 0o2755));
    assert_eq!(
        fs.mkdir(&bob, shared.ino, b"x", 0o755).map(|a| a.gid),
        Ok(1000)
    );
    let carol = Credentials::user(1002, 100);
    assert_eq!(
        fs.mkdir(&carol, shared.ino, b"y", 0o755),
        Err(Errno::PermissionDenied)
    );
    let private = fs.mkdir(&alice, shared.ino, b"p", 0o700).unwrap();
    assert_eq!(
        fs.find(&bob, private.ino, b"z"),
        Err(Errno::PermissionDenied)
    );
    assert_eq!(fs.find(&root, private.ino, b"z"), Err(Errno::NotFound));
    // A write by a non-root caller clears set-user-ID.
    let (f, fh) = fs
        .create(&alice, private.ino, b"run", 0o4755, OpenFlags::WRITE)
        .unwrap();
    fs.write(&alice, fh, 0, b"x").unwrap();
    assert_eq!(fs.getattr(&root, f.ino).unwrap().perm, 0o755);
}

/// A clock that moves one second each time it is read, so a test can see ctime move.
struct TickingClock(AtomicU64);

impl Clock for TickingClock {
    fn now(&self) -> Timestamp {
        let secs = self.0.fetch_add(1, Ordering::Relaxed) as i64;
        Timestamp { secs, nanos: 0 }
    }
}

#[test]
fn chown_to_nobody_by_a_non_owner_cannot_drop_set_id_bits() {
    let config = Config {
        root_perm: 0o777,
        ..Config::default()
    };
    let fs = MemFs::new(
        MemPool::new(64 * 4096),
        config,
        TickingClock(AtomicU64::new(1)),
    );
    let root = Credentials::root();
    let alice = Credentials::user(1000, 1000);
    let kill = SetAttr {
        kill_setid: true,
        ..SetAttr::default()
    };
    let (f, fh) = fs
        .create(&root, Ino::ROOT, b"su", 0o4755, OpenFlags::WRITE)
        .unwrap();
    fs.release(fh).unwrap();
    // `chown(f, -1, -1)` by someone else would clear root's set-user-ID bit: EPERM, and
    // nothing changes, ctime included.
    assert_eq!(
        fs.setattr(&alice, f.ino, &kill, None),
        Err(Errno::NotPermitted)
    );
    let after = fs.getattr(&root, f.ino).unwrap();
    assert_eq!((after.perm, after.ctime), (0o4755, f.ctime));
    // A uid or gid change by a non-owner stays EPERM, whatever the bits.
    let chgrp = SetAttr {
        gid: Some(1000),
        ..kill
    };
    assert_eq!(
        fs.setattr(&alice, f.ino, &chgrp, None),
        Err(Errno::NotPermitted)
    );
    // Set-group-ID without group-execute falls only for callers outside the file's group.
    let sg = SetAttr {
        mode: Some(0o2745),
        ..SetAttr::default()
    };
    fs.setattr(&root, f.ino, &sg, None).unwrap();
    let member = Credentials {
        groups: vec![0],
        ..Credentials::user(1001, 1001)
    };
    // A member of the file's group clears nothing here: allowed, only ctime moves.
    let before = fs.getattr(&root, f.ino).unwrap();
    let done = fs.setattr(&member, f.ino, &kill, None).unwrap();
    assert_eq!(done.perm, 0o2745);
    assert!(done.ctime > before.ctime, "ctime moves");
    // Someone outside it would clear set-group-ID: EPERM.
    assert_eq!(
        fs.setattr(&alice, f.ino, &kill, None),
        Err(Errno::NotPermitted)
    );
    // With no set-ID bit at all, a non-owner's `chown(f, -1, -1)` succeeds and moves ctime.
    let plain = SetAttr {
        mode: Some(0o755),
        ..SetAttr::default()
    };
    fs.setattr(&root, f.ino, &plain, None).unwrap();
    let before = fs.getattr(&root, f.ino).unwrap();
    let done = fs.setattr(&alice, f.ino, &kill, None).unwrap();
    assert_eq!((done.perm, done.uid), (0o755, 0));
    assert!(done.ctime > before.ctime, "ctime moves");
    // Someone who may write the file may clear them: writing would clear them anyway, and
    // through FUSE the kernel asks this way before that caller's write.
    let writable = SetAttr {
        mode: Some(0o4757),
        ..SetAttr::default()
    };
    fs.setattr(&root, f.ino, &writable, None).unwrap();
    assert_eq!(fs.setattr(&alice, f.ino, &kill, None).unwrap().perm, 0o757);
    // The owner and root clear the bits as before.
    fs.setattr(
        &root,
        f.ino,
        &SetAttr {
            mode: Some(0o6755),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(fs.setattr(&root, f.ino, &kill, None).unwrap().perm, 0o755);
    let (mine, fh) = fs
        .create(&alice, Ino::ROOT, b"mine", 0o4755, OpenFlags::WRITE)
        .unwrap();
    fs.release(fh).unwrap();
    assert_eq!(
        fs.setattr(&alice, mine.ino, &kill, None).unwrap().perm,
        0o755
    );
    // Directories keep their set-ID bits on chown, so anyone may ask.
    let d = fs.mkdir(&root, Ino::ROOT, b"d", 0o755).unwrap();
    let sgid_dir = SetAttr {
        mode: Some(0o2755),
        ..SetAttr::default()
    };
    fs.setattr(&root, d.ino, &sgid_dir, None).unwrap();
    assert_eq!(fs.setattr(&alice, d.ino, &kill, None).unwrap().perm, 0o2755);
}

#[test]
fn sparse_files_and_seek() {
    let fs = fs();
    let root = Credentials::root();
    let (_, fh) = fs
        .create(&root, Ino::ROOT, b"s", 0o644, OpenFlags::READ_WRITE)
        .unwrap();
    fs.write(&root, fh, 3 * 4096 + 5, b"data").unwrap();
    assert_eq!(fs.store().used_blocks(), 1);
    assert_eq!(fs.lseek(&root, fh, 0, SeekWhence::Data), Ok(3 * 4096));
    assert_eq!(fs.lseek(&root, fh, 0, SeekWhence::Hole), Ok(0));
    assert_eq!(
        fs.lseek(&root, fh, 3 * 4096, SeekWhence::Hole),
        Ok(3 * 4096 + 9)
    );
    assert_eq!(
        fs.lseek(&root, fh, 3 * 4096 + 9, SeekWhence::Data),
        Err(Errno::NoSuchDeviceOrAddress)
    );
    let mut buf = [1u8; 16];
    assert_eq!(fs.read(&root, fh, 4096, &mut buf), Ok(16));
    assert_eq!(buf, [0u8; 16]);
    // Truncating into the block zeroes its tail; growing again reads zeros there.
    let ino = fs.find(&root, Ino::ROOT, b"s").unwrap().ino;
    let shrink = SetAttr {
        size: Some(3 * 4096 + 6),
        ..Default::default()
    };
    fs.setattr(&root, ino, &shrink, Some(fh)).unwrap();
    let grow = SetAttr {
        size: Some(4 * 4096),
        ..Default::default()
    };
    fs.setattr(&root, ino, &grow, Some(fh)).unwrap();
    let mut buf = [9u8; 4];
    fs.read(&root, fh, 3 * 4096 + 5, &mut buf).unwrap();
    assert_eq!(&buf, b"d\0\0\0");
    fs.fallocate(&root, fh, FallocateMode::PunchHole, 3 * 4096, 4096)
        .unwrap();
    assert_eq!(fs.store().used_blocks(), 0);
}
