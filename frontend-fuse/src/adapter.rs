//! [`FuseFs`]: translates fuser's requests into [`Filesystem`] calls and the answers back.
//!
//! It decides nothing itself: credentials go to the engine with every call, and the engine
//! checks every permission again after the kernel (`default_permissions`) has.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use btfuse_core::locks::{
    self, LockKind, LockRange, LockRequest, LockSpace, LockTable, OwnerKind, Wake,
};
use btfuse_core::ring::OpenOptions;
use btfuse_core::{
    AccessMask, Attr, Credentials, FallocateMode, Fh, FileType, Filesystem, Ino, OpenFlags,
    RenameMode, SeekWhence, SetAttr, TimeSet, Timestamp, XattrMode,
};
use fuser::{
    AccessFlags, CopyFileRangeFlags, FileAttr, FileHandle, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLock, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, RequestId, TimeOrNow, WriteFlags,
};

use crate::closing::{Closing, SETTLE, Settler};
use crate::creds::GroupsCache;
use crate::errno::to_fuse;
use crate::lock_waits::{KernelWaits, Refused};

/// Largest write the kernel may send in one request (and the largest read it asks for).
pub(crate) const MAX_WRITE: u32 = 1 << 20;
/// How the kernel treats an open file: only this process changes file data, so cached pages
/// stay valid across opens (`KEEP_CACHE`). Not `NOFLUSH`: the FLUSH the kernel sends at every
/// `close` carries the closing process's lock owner, and is how its POSIX locks on the file go
/// (the kernel sends no unlock of its own for a file system that keeps locks).
const FILE_OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_KEEP_CACHE;
/// Chunk in which `copy_file_range` moves data between two files.
const COPY_CHUNK: usize = 1 << 20;
/// The generation of every inode the kernel is told of. The only file handles made are the
/// ring's `Handoff`s, each opened at once from a live description's inode, so no stale
/// handle can meet a reused inode number.
pub(crate) const GENERATION: u64 = 0;

/// Kernel cache lifetimes (see the README for why these values).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CachePolicy {
    /// How long the kernel may trust a name it looked up.
    pub(crate) entry_ttl: Duration,
    /// How long the kernel may trust attributes it fetched.
    pub(crate) attr_ttl: Duration,
}

/// The FUSE side of an engine (a [`MemFs`](btfuse_core::MemFs), metered or not).
pub(crate) struct FuseFs<F: Filesystem> {
    /// Shared with the threads that settle a `flock` (see [`closing`](crate::closing)).
    fs: Arc<F>,
    groups: GroupsCache,
    cache: CachePolicy,
    /// The lock waits parked for the kernel, for its interrupts.
    waits: Arc<KernelWaits>,
    /// Open files holding a `flock` whose RELEASE may be on its way.
    closing: Arc<Closing>,
}

impl<F: Filesystem + 'static> FuseFs<F> {
    pub(crate) fn new(fs: F, cache: CachePolicy) -> FuseFs<F> {
        FuseFs {
            fs: Arc::new(fs),
            groups: GroupsCache::default(),
            cache,
            waits: Arc::default(),
            closing: Arc::default(),
        }
    }

    fn cred(&self, req: &Request) -> Credentials {
        self.groups.credentials(req.uid(), req.gid(), req.pid())
    }

    fn reply_entry(&self, result: btfuse_core::Result<Attr>, reply: ReplyEntry) {
        match result {
            Ok(attr) => reply.entry(
                &self.cache.entry_ttl,
                &file_attr(&attr),
                Generation(GENERATION),
            ),
            Err(e) => reply.error(to_fuse(e)),
        }
    }

    fn reply_attr(&self, result: btfuse_core::Result<Attr>, reply: ReplyAttr) {
        match result {
            Ok(attr) => reply.attr(&self.cache.attr_ttl, &file_attr(&attr)),
            Err(e) => reply.error(to_fuse(e)),
        }
    }

    /// `SETLK` (`sleep` false) or `SETLKW` of `request` through the open file `handle`, as
    /// the request `unique`.
    fn set_lock(
        &self,
        unique: RequestId,
        i: INodeNo,
        handle: FileHandle,
        request: btfuse_core::Result<LockRequest>,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let Some(locks) = self.fs.locks() else {
            return reply.error(fuser::Errno::ENOLCK);
        };
        let request = match request {
            Ok(request) => request,
            Err(e) => return reply.error(to_fuse(e)),
        };
        if !sleep {
            let result = locks.set(ino(i), &request, fh(handle));
            if result == Err(btfuse_core::Errno::TryAgain)
                && request.space == LockSpace::Flock
                && let Some(holder) = locks.get(ino(i), &request).map(|c| c.owner)
                && holder.kind == OwnerKind::Description
                && self.closing.may_go(holder.id)
                && let Some(settler) = self.closing.settler()
            {
                let held = Held {
                    ino: ino(i),
                    handle: fh(handle),
                    holder: holder.id,
                };
                return self.settle(locks, held, &request, settler, reply);
            }
            return reply_empty(result, reply);
        }
        self.wait_for_lock(locks, unique.0, ino(i), &request, fh(handle), reply);
    }

    /// A non-blocking `flock` that met the lock of an open file that may be about to be
    /// released: parked for up to [`SETTLE`] on a thread of its own, and `EWOULDBLOCK` if the
    /// release does not come (see [`closing`](crate::closing)).
    fn settle(
        &self,
        locks: &LockTable,
        held: Held,
        request: &LockRequest,
        settler: Settler,
        reply: ReplyEmpty,
    ) {
        let (granted, told) = mpsc::sync_channel(1);
        let wake: Wake = Box::new(move |outcome| {
            let _ = granted.send(());
            // Given up: the lock stayed, which a non-blocking call is told at once.
            let outcome = match outcome {
                Err(btfuse_core::Errno::Interrupted) => Err(btfuse_core::Errno::TryAgain),
                outcome => outcome,
            };
            reply_empty(outcome, reply);
        });
        let Some(id) = locks.set_wait(held.ino, request, held.handle, wake) else {
            return;
        };
        let (fs, closing) = (Arc::clone(&self.fs), Arc::clone(&self.closing));
        let waiter = std::thread::Builder::new()
            .name("flock-settle".into())
            .spawn(move || {
                let _settler = settler;
                if told.recv_timeout(SETTLE).is_err() {
                    // Unmarked before the answer goes: the process told `EWOULDBLOCK` may
                    // close another descriptor of that open file at once, and the mark its
                    // flush sets must stay. (If the lock was granted meanwhile, its RELEASE
                    // came, which unmarks it too.)
                    closing.settled(held.holder);
                    if let Some(locks) = fs.locks() {
                        locks.cancel(id);
                    }
                }
            });
        if waiter.is_err() {
            locks.cancel(id);
        }
    }

    /// Parks a wait in the table, which frees this thread: the grant answers it, from
    /// whichever thread (of either frontend) released the lock in the way, and an interrupt
    /// from the kernel (the waiting process got a signal) gives it up with `EINTR`.
    fn wait_for_lock(
        &self,
        locks: &LockTable,
        unique: u64,
        i: Ino,
        request: &LockRequest,
        handle: Fh,
        reply: ReplyEmpty,
    ) {
        match self.waits.begin(unique) {
            Ok(()) => {}
            Err(Refused::Interrupted) => return reply.error(fuser::Errno::EINTR),
            Err(Refused::Full) => return reply.error(fuser::Errno::ENOLCK),
        }
        let waits = Arc::clone(&self.waits);
        let wake: Wake = Box::new(move |outcome| {
            waits.answered(unique);
            reply_empty(outcome, reply);
        });
        if let Some(id) = locks.set_wait(i, request, handle, wake)
            && self.waits.parked(unique, id)
        {
            locks.cancel(id);
        }
    }
}

/// A `flock` request in the way of a flushed open file's lock.
#[derive(Clone, Copy)]
struct Held {
    ino: Ino,
    /// The open file asking.
    handle: Fh,
    /// The open file in the way (its engine handle).
    holder: u64,
}

fn reply_empty(result: btfuse_core::Result<()>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(to_fuse(e)),
    }
}

/// Answers getxattr/listxattr: the length alone when the kernel asks with size 0, else the
/// bytes `fill` copied into a buffer of `size`.
fn reply_xattr(
    size: u32,
    reply: ReplyXattr,
    fill: impl FnOnce(&mut [u8]) -> btfuse_core::Result<usize>,
) {
    let mut buf = vec![0u8; size as usize];
    match fill(&mut buf) {
        Ok(n) if size == 0 => reply.size(n as u32),
        Ok(n) => reply.data(&buf[..n]),
        Err(e) => reply.error(to_fuse(e)),
    }
}

fn ino(i: INodeNo) -> Ino {
    Ino(i.0)
}

fn fh(h: FileHandle) -> Fh {
    Fh(h.0)
}

fn kind(k: FileType) -> fuser::FileType {
    match k {
        FileType::RegularFile => fuser::FileType::RegularFile,
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::NamedPipe => fuser::FileType::NamedPipe,
        FileType::Socket => fuser::FileType::Socket,
        FileType::CharDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
    }
}

fn system_time(t: Timestamp) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(t.nanos));
    if t.secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(t.secs as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(t.secs.unsigned_abs()) + nanos
    }
}

/// A time the kernel sent, as fuser 0.18.0 hands it over. For times before 1970 fuser builds
/// `epoch - (secs, nanos)` from the kernel's `(-secs, nanos)` instead of `epoch - secs + nanos`
/// (its `system_time_from_time`), so this undoes exactly that; fuser is pinned to 0.18.0 for
/// it, and `kernel_times_before_1970_survive_fuser` checks it.
fn kernel_time(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        },
        Err(before) => {
            let d = before.duration();
            Timestamp {
                secs: -(d.as_secs() as i64),
                nanos: d.subsec_nanos(),
            }
        }
    }
}

fn time_set(t: Option<TimeOrNow>) -> TimeSet {
    match t {
        None => TimeSet::Omit,
        Some(TimeOrNow::Now) => TimeSet::Now,
        Some(TimeOrNow::SpecificTime(t)) => TimeSet::At(kernel_time(t)),
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino.0),
        size: a.size,
        blocks: a.blocks,
        atime: system_time(a.atime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.ctime),
        kind: kind(a.kind),
        perm: a.perm as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

/// The engine's view of `open(2)` flags, decoded as the ring decodes them. (`O_PATH` never
/// reaches a filesystem's `open`: the kernel serves such opens itself.)
fn open_flags(raw: i32) -> OpenFlags {
    OpenFlags {
        exec: raw & FMODE_EXEC != 0,
        ..OpenOptions::from_linux(raw).engine_flags()
    }
}

/// The kernel's `__FMODE_EXEC`, which FUSE passes in the flags of the open that `execve`
/// makes of the program (no program's own `open` carries it).
const FMODE_EXEC: i32 = 0x20;

/// The engine's owner for the kernel's lock owner of a record lock: a process's files table
/// for POSIX locks, a file for OFD ones.
fn kernel_owner(owner: LockOwner) -> locks::LockOwner {
    locks::LockOwner {
        kind: OwnerKind::Kernel,
        id: owner.0,
    }
}

/// A lock request as the kernel sends it: an inclusive byte range (`end` at `OFFSET_MAX` for
/// "to the end") and `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
fn kernel_request(
    owner: LockOwner,
    start: u64,
    end: u64,
    typ: i32,
    pid: u32,
) -> btfuse_core::Result<LockRequest> {
    Ok(LockRequest {
        owner: kernel_owner(owner),
        space: LockSpace::Record,
        kind: kernel_lock_kind(typ)?,
        range: LockRange::new(start, end)?,
        pid,
    })
}

/// A `flock` as the kernel sends it (`F_RDLCK` for `LOCK_SH`, `F_WRLCK` for `LOCK_EX`,
/// `F_UNLCK` for `LOCK_UN`), through the open file `handle`. Its owner is the open file, named
/// by its engine handle as the ring names a description's (`Description::lock_fh`), so a
/// `flock` through the mount and one over the ring meet in one space of one table. (The
/// kernel's own owner for it is the file too, but in numbers of its own.)
fn kernel_flock(handle: FileHandle, typ: i32, pid: u32) -> btfuse_core::Result<LockRequest> {
    Ok(LockRequest {
        owner: locks::LockOwner {
            kind: OwnerKind::Description,
            id: handle.0,
        },
        space: LockSpace::Flock,
        kind: kernel_lock_kind(typ)?,
        range: LockRange::WHOLE,
        pid,
    })
}

/// `F_RDLCK`, `F_WRLCK` or `F_UNLCK` as the engine's kind (`None` to unlock).
fn kernel_lock_kind(typ: i32) -> btfuse_core::Result<Option<LockKind>> {
    match typ {
        libc::F_RDLCK => Ok(Some(LockKind::Read)),
        libc::F_WRLCK => Ok(Some(LockKind::Write)),
        libc::F_UNLCK => Ok(None),
        _ => Err(btfuse_core::Errno::InvalidArgument),
    }
}

/// `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
fn kernel_lock_type(kind: Option<LockKind>) -> i32 {
    match kind {
        Some(LockKind::Read) => libc::F_RDLCK,
        Some(LockKind::Write) => libc::F_WRLCK,
        None => libc::F_UNLCK,
    }
}

/// A read buffer of `size` bytes (the kernel never asks for more than `MAX_WRITE`).
fn read_buffer(size: u32) -> Vec<u8> {
    vec![0u8; size.min(MAX_WRITE) as usize]
}

impl<F: Filesystem + 'static> fuser::Filesystem for FuseFs<F> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Each capability alone, so that a kernel lacking one still gets the others.
        for capability in [
            // Lookups come with readdir when the kernel thinks they will be needed.
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            // Lookups and creations in one directory run in parallel (the engine locks).
            InitFlags::FUSE_PARALLEL_DIROPS,
            // The engine clears set-ID bits on write, truncate and chown itself; without this
            // the kernel would send a chmod as the writer, which a non-owner may not do.
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
            // `open_by_handle_at` finds an inode the kernel has forgotten by asking for "." in
            // it (and ".." of a directory for its parent), which the engine answers: the
            // ring's `Handoff` opens files only the ring has seen, unlinked ones included.
            InitFlags::FUSE_EXPORT_SUPPORT,
            // POSIX, OFD and `flock` locks come to the engine's lock table, which the ring
            // shares, so a process on the mount and a preloaded one exclude each other. (The
            // kernel flags a `flock` FUSE_LK_FLOCK, which the patched fuser of vendor/fuser
            // passes on as a call of `flock`.)
            InitFlags::FUSE_POSIX_LOCKS,
            InitFlags::FUSE_FLOCK_LOCKS,
        ] {
            if config.add_capabilities(capability).is_err() {
                log::info!("kernel lacks {capability:?}");
            }
        }
        if let Err(max) = config.set_max_write(MAX_WRITE) {
            log::info!("kernel caps max_write at {max}");
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = self
            .fs
            .lookup(&self.cred(req), ino(parent), name.as_bytes());
        self.reply_entry(result, reply);
    }

    fn forget(&self, _req: &Request, i: INodeNo, nlookup: u64) {
        self.fs.forget(ino(i), nlookup);
    }

    // `batch_forget` keeps fuser's default, which calls `forget` for each inode.

    fn getattr(&self, req: &Request, i: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.reply_attr(self.fs.getattr(&self.cred(req), ino(i)), reply);
    }

    fn setattr(
        &self,
        req: &Request,
        i: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        handle: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode: mode.map(|m| m & btfuse_core::PERM_MASK),
            uid,
            gid,
            size,
            atime: time_set(atime),
            mtime: time_set(mtime),
            ctime: ctime.map_or(TimeSet::Omit, |t| TimeSet::At(kernel_time(t))),
            kill_setid: false,
        };
        // A SETATTR with no field set is the kernel's request to drop set-ID bits (fuser 0.18
        // does not show its FATTR_KILL_SUIDGID flag): sent for `chown(f, -1, -1)` and before a
        // write by someone other than root, with FUSE_HANDLE_KILLPRIV_V2.
        let set = SetAttr {
            kill_setid: set == SetAttr::default(),
            ..set
        };
        let result = self
            .fs
            .setattr(&self.cred(req), ino(i), &set, handle.map(fh));
        self.reply_attr(result, reply);
    }

    fn readlink(&self, req: &Request, i: INodeNo, reply: ReplyData) {
        match self.fs.readlink(&self.cred(req), ino(i)) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(to_fuse(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let Some(k) = FileType::from_mode(mode) else {
            return reply.error(fuser::Errno::EINVAL);
        };
        let perm = mode & btfuse_core::PERM_MASK;
        let result = self
            .fs
            .mknod(&self.cred(req), ino(parent), name.as_bytes(), k, perm, rdev);
        self.reply_entry(result, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let perm = mode & btfuse_core::PERM_MASK;
        let result = self
            .fs
            .mkdir(&self.cred(req), ino(parent), name.as_bytes(), perm);
        self.reply_entry(result, reply);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(
            self.fs
                .unlink(&self.cred(req), ino(parent), name.as_bytes()),
            reply,
        );
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(
            self.fs.rmdir(&self.cred(req), ino(parent), name.as_bytes()),
            reply,
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let target = target.as_os_str().as_bytes();
        let result = self
            .fs
            .symlink(&self.cred(req), ino(parent), link_name.as_bytes(), target);
        self.reply_entry(result, reply);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        use fuser::RenameFlags as F;
        let mode = if flags.is_empty() {
            RenameMode::Replace
        } else if flags == F::RENAME_NOREPLACE {
            RenameMode::NoReplace
        } else if flags == F::RENAME_EXCHANGE {
            RenameMode::Exchange
        } else {
            // Whiteouts are for overlay filesystems; flags together are invalid.
            return reply.error(fuser::Errno::EINVAL);
        };
        let result = self.fs.rename(
            &self.cred(req),
            ino(parent),
            name.as_bytes(),
            ino(newparent),
            newname.as_bytes(),
            mode,
        );
        reply_empty(result, reply);
    }

    fn link(
        &self,
        req: &Request,
        i: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let result = self
            .fs
            .link(&self.cred(req), ino(i), ino(newparent), newname.as_bytes());
        self.reply_entry(result, reply);
    }

    fn open(&self, req: &Request, i: INodeNo, flags: fuser::OpenFlags, reply: ReplyOpen) {
        match self.fs.open(&self.cred(req), ino(i), open_flags(flags.0)) {
            Ok(h) => reply.opened(FileHandle(h.0), FILE_OPEN_FLAGS),
            Err(e) => reply.error(to_fuse(e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        handle: FileHandle,
        offset: u64,
        size: u32,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut buf = read_buffer(size);
        match self.fs.read(&self.cred(req), fh(handle), offset, &mut buf) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(to_fuse(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        handle: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.fs.write(&self.cred(req), fh(handle), offset, data) {
            Ok((n, _)) => reply.written(n as u32),
            Err(e) => reply.error(to_fuse(e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        i: INodeNo,
        handle: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // A process closed a descriptor of the file: its POSIX locks on it go. If the open
        // file holds a `flock`, this may be its last close, whose RELEASE follows.
        if let Some(locks) = self.fs.locks() {
            locks.unlock_owner(ino(i), kernel_owner(lock_owner));
            let flock = |h: &locks::HeldLock| h.space == LockSpace::Flock && h.fh == fh(handle);
            if locks.holds(ino(i), flock) {
                self.closing.closed(handle.0);
            }
        }
        reply_empty(self.fs.fsync(&self.cred(req), fh(handle), true), reply);
    }

    fn release(
        &self,
        _req: &Request,
        i: INodeNo,
        handle: FileHandle,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // The description's last close: its OFD and `flock` locks go (the kernel sends no
        // unlock for them; `lock_owner` is set when it took a `flock`, whose owner is the
        // handle anyway), and so would anything else taken through it that a flush missed.
        if let Some(locks) = self.fs.locks() {
            locks.release_description(ino(i), fh(handle));
        }
        self.closing.settled(handle.0);
        reply_empty(self.fs.release(fh(handle)), reply);
    }

    fn getlk(
        &self,
        _req: &Request,
        i: INodeNo,
        _handle: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        let Some(locks) = self.fs.locks() else {
            return reply.error(fuser::Errno::ENOLCK);
        };
        match kernel_request(lock_owner, start, end, typ, pid) {
            Ok(request) => match locks.get(ino(i), &request) {
                Some(c) => reply.locked(
                    c.range.start(),
                    c.range.end(),
                    kernel_lock_type(Some(c.kind)),
                    c.pid,
                ),
                None => reply.locked(start, end, libc::F_UNLCK, 0),
            },
            Err(e) => reply.error(to_fuse(e)),
        }
    }

    fn setlk(
        &self,
        req: &Request,
        i: INodeNo,
        handle: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let request = kernel_request(lock_owner, start, end, typ, pid);
        self.set_lock(req.unique(), i, handle, request, sleep, reply);
    }

    fn flock(
        &self,
        req: &Request,
        i: INodeNo,
        handle: FileHandle,
        _lock_owner: LockOwner,
        _start: u64,
        _end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let request = kernel_flock(handle, typ, pid);
        self.set_lock(req.unique(), i, handle, request, sleep, reply);
    }

    fn interrupt(&self, _req: &Request, unique: RequestId) -> Result<(), fuser::Errno> {
        // Only a parked lock wait outlives its dispatch; any other request is answered, or
        // about to be, and the kernel waits for that answer.
        if let Some(id) = self.waits.interrupt(unique.0)
            && let Some(locks) = self.fs.locks()
        {
            locks.cancel(id);
        }
        Ok(())
    }

    fn fsync(
        &self,
        req: &Request,
        _ino: INodeNo,
        handle: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(self.fs.fsync(&self.cred(req), fh(handle), datasync), reply);
    }

    fn opendir(&self, req: &Request, i: INodeNo, _flags: fuser::OpenFlags, reply: ReplyOpen) {
        let flags = OpenFlags {
            directory: true,
            ..OpenFlags::READ
        };
        match self.fs.open(&self.cred(req), ino(i), flags) {
            Ok(h) => reply.opened(FileHandle(h.0), FopenFlags::empty()),
            Err(e) => reply.error(to_fuse(e)),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        _ino: INodeNo,
        handle: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let result = self
            .fs
            .readdir(&self.cred(req), fh(handle), offset, &mut |e| {
                !reply.add(
                    INodeNo(e.ino.0),
                    e.cookie,
                    kind(e.kind),
                    OsStr::from_bytes(e.name),
                )
            });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(to_fuse(e)),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        dir: INodeNo,
        handle: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let cred = self.cred(req);
        let ttl = self.cache.entry_ttl;
        let result = self.fs.readdir(&cred, fh(handle), offset, &mut |e| {
            let name = OsStr::from_bytes(e.name);
            // The kernel counts a lookup for every entry but `.` and `..`; an entry that
            // does not fit in the reply is given back.
            let dots = e.name == b"." || e.name == b"..";
            let attr = if dots {
                self.fs.getattr(&cred, e.ino)
            } else {
                self.fs.lookup(&cred, ino(dir), e.name)
            };
            let Ok(attr) = attr else { return true };
            let full = reply.add(
                INodeNo(e.ino.0),
                e.cookie,
                name,
                &ttl,
                &file_attr(&attr),
                Generation(GENERATION),
            );
            if full && !dots {
                self.fs.forget(attr.ino, 1);
            }
            !full
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(to_fuse(e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        handle: FileHandle,
        _flags: fuser::OpenFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(self.fs.release(fh(handle)), reply);
    }

    fn fsyncdir(
        &self,
        req: &Request,
        _ino: INodeNo,
        handle: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(self.fs.fsync(&self.cred(req), fh(handle), datasync), reply);
    }

    fn statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.fs.statfs(&self.cred(req)) {
            Ok(s) => reply.statfs(
                s.blocks,
                s.blocks_free,
                s.blocks_available,
                s.files,
                s.files_free,
                s.block_size,
                s.name_max,
                s.block_size,
            ),
            Err(e) => reply.error(to_fuse(e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        i: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mode = match flags {
            0 => XattrMode::Set,
            libc::XATTR_CREATE => XattrMode::Create,
            libc::XATTR_REPLACE => XattrMode::Replace,
            _ => return reply.error(fuser::Errno::EINVAL),
        };
        let result = self
            .fs
            .setxattr(&self.cred(req), ino(i), name.as_bytes(), value, mode);
        reply_empty(result, reply);
    }

    fn getxattr(&self, req: &Request, i: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let cred = self.cred(req);
        reply_xattr(size, reply, |buf| {
            self.fs.getxattr(&cred, ino(i), name.as_bytes(), buf)
        });
    }

    fn listxattr(&self, req: &Request, i: INodeNo, size: u32, reply: ReplyXattr) {
        let cred = self.cred(req);
        reply_xattr(size, reply, |buf| self.fs.listxattr(&cred, ino(i), buf));
    }

    fn removexattr(&self, req: &Request, i: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(
            self.fs
                .removexattr(&self.cred(req), ino(i), name.as_bytes()),
            reply,
        );
    }

    fn access(&self, req: &Request, i: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let mask = AccessMask {
            read: mask.contains(AccessFlags::R_OK),
            write: mask.contains(AccessFlags::W_OK),
            execute: mask.contains(AccessFlags::X_OK),
        };
        reply_empty(self.fs.access(&self.cred(req), ino(i), mask), reply);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let perm = mode & btfuse_core::PERM_MASK;
        let cred = self.cred(req);
        match self
            .fs
            .create(&cred, ino(parent), name.as_bytes(), perm, open_flags(flags))
        {
            Ok((attr, h)) => reply.created(
                &self.cache.entry_ttl,
                &file_attr(&attr),
                Generation(GENERATION),
                FileHandle(h.0),
                FILE_OPEN_FLAGS,
            ),
            Err(e) => reply.error(to_fuse(e)),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        _ino: INodeNo,
        handle: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mode = match mode {
            0 => FallocateMode::Allocate,
            libc::FALLOC_FL_KEEP_SIZE => FallocateMode::KeepSize,
            m if m == libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE => {
                FallocateMode::PunchHole
            }
            _ => return reply.error(fuser::Errno::EOPNOTSUPP),
        };
        let result = self
            .fs
            .fallocate(&self.cred(req), fh(handle), mode, offset, length);
        reply_empty(result, reply);
    }

    fn lseek(
        &self,
        req: &Request,
        _ino: INodeNo,
        handle: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let whence = match whence {
            libc::SEEK_DATA => SeekWhence::Data,
            libc::SEEK_HOLE => SeekWhence::Hole,
            // SEEK_SET, SEEK_CUR and SEEK_END never leave the kernel.
            _ => return reply.error(fuser::Errno::EINVAL),
        };
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(fuser::Errno::ENXIO);
        };
        match self.fs.lseek(&self.cred(req), fh(handle), offset, whence) {
            Ok(pos) => reply.offset(pos as i64),
            Err(e) => reply.error(to_fuse(e)),
        }
    }

    fn copy_file_range(
        &self,
        req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let cred = self.cred(req);
        // The reply counts in 32 bits: copy at most 1 GiB per call, as a short copy the caller
        // continues.
        let len = len.min(1 << 30);
        let mut buf = vec![0u8; COPY_CHUNK.min(len as usize)];
        let mut copied = 0u64;
        while copied < len {
            let want = (len - copied).min(buf.len() as u64) as usize;
            let n = match self
                .fs
                .read(&cred, fh(fh_in), offset_in + copied, &mut buf[..want])
            {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if copied == 0 => return reply.error(to_fuse(e)),
                Err(_) => break,
            };
            match self
                .fs
                .write(&cred, fh(fh_out), offset_out + copied, &buf[..n])
            {
                Ok((written, _)) => copied += written as u64,
                Err(e) if copied == 0 => return reply.error(to_fuse(e)),
                Err(_) => break,
            }
            if n < want {
                break;
            }
        }
        reply.written(copied.min(u64::from(u32::MAX)) as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_carry_exact_times() {
        let t = |secs, nanos| system_time(Timestamp { secs, nanos });
        assert_eq!(
            t(1_700_000_000, 5),
            UNIX_EPOCH + Duration::new(1_700_000_000, 5)
        );
        assert_eq!(t(-1, 500), UNIX_EPOCH - Duration::new(0, 999_999_500));
        assert_eq!(t(-86_400, 0), UNIX_EPOCH - Duration::from_secs(86_400));
    }

    #[test]
    fn kernel_times_before_1970_survive_fuser() {
        // What fuser 0.18.0 makes of the kernel's (secs, nanos) = (-1, 999_999_999).
        let from_fuser = UNIX_EPOCH - Duration::new(1, 999_999_999);
        assert_eq!(
            kernel_time(from_fuser),
            Timestamp {
                secs: -1,
                nanos: 999_999_999
            }
        );
        let later = UNIX_EPOCH + Duration::new(5, 7);
        assert_eq!(kernel_time(later), Timestamp { secs: 5, nanos: 7 });
    }

    #[test]
    fn open_flags_follow_the_access_mode() {
        let f = open_flags(libc::O_WRONLY | libc::O_APPEND | libc::O_TRUNC);
        assert!(!f.read && f.write && f.append && f.truncate && !f.exclusive);
        let f = open_flags(libc::O_RDWR | libc::O_CREAT | libc::O_EXCL);
        assert!(f.read && f.write && f.exclusive);
        assert!(open_flags(libc::O_RDONLY | libc::O_DIRECTORY).directory);
    }
}
